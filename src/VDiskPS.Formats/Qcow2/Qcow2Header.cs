using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.Text;

namespace VDiskPS.Formats.Qcow2
{
    /// <summary>The qcow2 header and its header extensions (qcow2.rst, "Header" and "Header extensions").</summary>
    internal sealed class Qcow2Header
    {
        // Field offsets of the fixed header (big-endian).
        public const int MagicOffset = 0;
        public const int VersionOffset = 4;
        public const int BackingFileOffsetOffset = 8;
        public const int BackingFileSizeOffset = 16;
        public const int ClusterBitsOffset = 20;
        public const int SizeOffset = 24;
        public const int CryptMethodOffset = 32;
        public const int L1SizeOffset = 36;
        public const int L1TableOffsetOffset = 40;
        public const int RefcountTableOffsetOffset = 48;
        public const int RefcountTableClustersOffset = 56;
        public const int SnapshotCountOffset = 60;
        public const int SnapshotsOffsetOffset = 64;
        public const int IncompatibleFeaturesOffset = 72;
        public const int CompatibleFeaturesOffset = 80;
        public const int AutoclearFeaturesOffset = 88;
        public const int RefcountOrderOffset = 96;
        public const int HeaderLengthOffset = 100;
        public const int CompressionTypeOffset = 104;

        public const uint Magic = 0x514649fb; // "QFI\xfb"
        public const int V2HeaderLength = 72;
        public const int V3MinHeaderLength = 104;
        public const int V3HeaderLength = 112;
        public const int MaxBackingFileNameLength = 1023;

        // Header extension types.
        public const uint ExtensionEnd = 0;
        public const uint ExtensionBackingFormat = 0xe2792aca;
        public const uint ExtensionFeatureNames = 0x6803f857;
        public const uint ExtensionBitmaps = 0x23852875;
        public const uint ExtensionEncryption = 0x0537be77;
        public const uint ExtensionDataFile = 0x44415441;

        // crypt_method values (qcow2.rst): none, legacy AES-CBC, LUKS with its header in the crypto header extension.
        public const uint CryptNone = 0;
        public const uint CryptAes = 1;
        public const uint CryptLuks = 2;

        // A LUKS1 header with 64-byte keys and 4000 stripes takes 2 MiB; a bound for the untrusted length.
        private const long MaxCryptoHeaderLength = 64L << 20;

        // Feature bits.
        public const ulong IncompatibleDirty = 1UL << 0;
        public const ulong IncompatibleCorrupt = 1UL << 1;
        public const ulong IncompatibleDataFile = 1UL << 2;
        public const ulong IncompatibleCompressionType = 1UL << 3;
        public const ulong IncompatibleExtendedL2 = 1UL << 4;
        public const ulong IncompatibleKnown = 0x1F;
        public const ulong CompatibleLazyRefcounts = 1UL << 0;
        public const ulong AutoclearBitmaps = 1UL << 0;
        public const ulong AutoclearDataFileRaw = 1UL << 1;
        public const ulong AutoclearKnown = 0x3;

        // QEMU's limits (block/qcow2.h): beyond them an image is refused rather than trusted.
        public const long MaxL1Bytes = 0x2000000;
        public const long MaxRefcountTableBytes = 8L << 20;
        public const int MaxSnapshots = 65536;
        public const long MaxSnapshotTableBytes = 64L << 20;
        public const int MinClusterBits = 9;
        public const int MaxClusterBits = 21;

        public int Version { get; set; } = 3;

        public int ClusterBits { get; set; } = 16;

        public long Size { get; set; }

        public uint CryptMethod { get; set; }

        /// <summary>Where the LUKS header of a crypt_method 2 image lies (the crypto header extension), in bytes.</summary>
        public long CryptoHeaderOffset { get; set; }

        public long CryptoHeaderLength { get; set; }

        public int L1Size { get; set; }

        public long L1TableOffset { get; set; }

        public long RefcountTableOffset { get; set; }

        public int RefcountTableClusters { get; set; }

        public int SnapshotCount { get; set; }

        public long SnapshotsOffset { get; set; }

        public ulong IncompatibleFeatures { get; set; }

        public ulong CompatibleFeatures { get; set; }

        public ulong AutoclearFeatures { get; set; }

        public int RefcountOrder { get; set; } = 4;

        public int HeaderLength { get; set; } = V3HeaderLength;

        /// <summary>0 zlib, 1 zstd.</summary>
        public byte CompressionType { get; set; }

        public string BackingFile { get; set; }

        public string BackingFormat { get; set; }

        public string DataFile { get; set; }

        public bool HasBitmapsExtension { get; set; }

        public int BitmapCount { get; set; }

        public long BitmapDirectorySize { get; set; }

        public long BitmapDirectoryOffset { get; set; }

        /// <summary>Feature names from the feature-name table: (type, bit) to name.</summary>
        public Dictionary<int, string> FeatureNames { get; } = new Dictionary<int, string>();

        /// <summary>Extensions this engine does not interpret, kept verbatim when the header is rewritten.</summary>
        public List<KeyValuePair<uint, byte[]>> UnknownExtensions { get; } = new List<KeyValuePair<uint, byte[]>>();

        public int ClusterSize => 1 << ClusterBits;

        public bool ExtendedL2 => (IncompatibleFeatures & IncompatibleExtendedL2) != 0;

        public int L2EntrySize => ExtendedL2 ? 16 : 8;

        public int L2Entries => ClusterSize / L2EntrySize;

        public int RefcountBits => 1 << RefcountOrder;

        public bool Dirty => (IncompatibleFeatures & IncompatibleDirty) != 0;

        public bool Corrupt => (IncompatibleFeatures & IncompatibleCorrupt) != 0;

        public bool LazyRefcounts => (CompatibleFeatures & CompatibleLazyRefcounts) != 0;

        public bool HasDataFile => (IncompatibleFeatures & IncompatibleDataFile) != 0;

        public bool DataFileRaw => (AutoclearFeatures & AutoclearDataFileRaw) != 0;

        public string CompatName => Version == 2 ? "0.10" : "1.1";

        /// <summary>L1 entries needed to map <paramref name="size"/> bytes.</summary>
        public static long L1EntriesFor(long size, int clusterBits, int l2Entries)
        {
            long bytesPerL1 = (long)l2Entries << clusterBits;
            return (size + bytesPerL1 - 1) / bytesPerL1;
        }

        public static bool HasMagic(ReadOnlySpan<byte> head) => head.Length >= 8 && BinaryPrimitives.ReadUInt32BigEndian(head) == Magic;

        /// <summary>Reads and validates the header and its extensions from the first cluster.</summary>
        public static Qcow2Header Read(HostFile file)
        {
            string path = file.Path;
            var fixedPart = new byte[V3HeaderLength];
            int got = file.ReadAt(0, fixedPart);
            if (got < V2HeaderLength || BinaryPrimitives.ReadUInt32BigEndian(fixedPart) != Magic)
            {
                throw new ImageFormatMismatchException(path, "magic", 0, "not a qcow2 image (no QFI\\xfb magic or a truncated header)");
            }

            var h = new Qcow2Header();
            uint version = BinaryPrimitives.ReadUInt32BigEndian(fixedPart.AsSpan(VersionOffset));
            if (version != 2 && version != 3)
            {
                throw new ImageNotSupportedException(path, "version", VersionOffset, $"qcow2 version {version} is not supported (only 2 and 3)");
            }

            h.Version = (int)version;
            uint clusterBits = BinaryPrimitives.ReadUInt32BigEndian(fixedPart.AsSpan(ClusterBitsOffset));
            if (clusterBits < MinClusterBits || clusterBits > MaxClusterBits)
            {
                throw new ImageCorruptException(path, "cluster_bits", ClusterBitsOffset, $"{clusterBits} is outside {MinClusterBits}..{MaxClusterBits} (512 B to 2 MiB clusters)");
            }

            h.ClusterBits = (int)clusterBits;
            if (version == 3)
            {
                if (got < V3MinHeaderLength)
                {
                    throw new ImageCorruptException(path, "header_length", HeaderLengthOffset, "the file ends inside the version 3 header");
                }

                uint length = BinaryPrimitives.ReadUInt32BigEndian(fixedPart.AsSpan(HeaderLengthOffset));
                if (length < V3MinHeaderLength || length > h.ClusterSize || length % 8 != 0)
                {
                    throw new ImageCorruptException(path, "header_length", HeaderLengthOffset, $"{length} is invalid (a multiple of 8 from {V3MinHeaderLength} up to the cluster size)");
                }

                h.HeaderLength = (int)length;
                h.IncompatibleFeatures = BinaryPrimitives.ReadUInt64BigEndian(fixedPart.AsSpan(IncompatibleFeaturesOffset));
                h.CompatibleFeatures = BinaryPrimitives.ReadUInt64BigEndian(fixedPart.AsSpan(CompatibleFeaturesOffset));
                h.AutoclearFeatures = BinaryPrimitives.ReadUInt64BigEndian(fixedPart.AsSpan(AutoclearFeaturesOffset));
                uint order = BinaryPrimitives.ReadUInt32BigEndian(fixedPart.AsSpan(RefcountOrderOffset));
                if (order > 6)
                {
                    throw new ImageCorruptException(path, "refcount_order", RefcountOrderOffset, $"{order} is above 6 (64-bit refcounts)");
                }

                h.RefcountOrder = (int)order;
                if (length > CompressionTypeOffset)
                {
                    h.CompressionType = fixedPart[CompressionTypeOffset];
                }
            }
            else
            {
                h.HeaderLength = V2HeaderLength;
                h.RefcountOrder = 4;
            }

            h.Size = ReadSigned(path, fixedPart, SizeOffset, "size");
            h.CryptMethod = BinaryPrimitives.ReadUInt32BigEndian(fixedPart.AsSpan(CryptMethodOffset));
            uint l1Size = BinaryPrimitives.ReadUInt32BigEndian(fixedPart.AsSpan(L1SizeOffset));
            h.L1TableOffset = ReadSigned(path, fixedPart, L1TableOffsetOffset, "l1_table_offset");
            h.RefcountTableOffset = ReadSigned(path, fixedPart, RefcountTableOffsetOffset, "refcount_table_offset");
            uint refcountClusters = BinaryPrimitives.ReadUInt32BigEndian(fixedPart.AsSpan(RefcountTableClustersOffset));
            uint snapshotCount = BinaryPrimitives.ReadUInt32BigEndian(fixedPart.AsSpan(SnapshotCountOffset));
            h.SnapshotsOffset = ReadSigned(path, fixedPart, SnapshotsOffsetOffset, "snapshots_offset");

            if (h.CryptMethod > CryptLuks)
            {
                throw new ImageCorruptException(path, "crypt_method", CryptMethodOffset, $"unknown encryption method {h.CryptMethod}");
            }

            long maxL1 = MaxL1Bytes / 8;
            if (l1Size > maxL1)
            {
                throw new ImageCorruptException(path, "l1_size", L1SizeOffset, $"{l1Size} entries exceed QEMU's limit of {maxL1}");
            }

            h.L1Size = (int)l1Size;
            long needed = L1EntriesFor(h.Size, h.ClusterBits, (h.ClusterSize / ((h.IncompatibleFeatures & IncompatibleExtendedL2) != 0 ? 16 : 8)));
            if (needed > maxL1)
            {
                throw new ImageCorruptException(path, "size", SizeOffset, $"the virtual size {h.Size} needs more L1 entries than QEMU's limit of {maxL1}");
            }

            if (h.L1Size < needed)
            {
                throw new ImageCorruptException(path, "l1_size", L1SizeOffset, $"{h.L1Size} entries are too few for the virtual size {h.Size} ({needed} needed)");
            }

            CheckTable(path, h, h.L1TableOffset, (long)h.L1Size * 8, "l1_table_offset", L1TableOffsetOffset, h.L1Size > 0);
            if ((long)refcountClusters << h.ClusterBits > MaxRefcountTableBytes || refcountClusters == 0)
            {
                throw new ImageCorruptException(path, "refcount_table_clusters", RefcountTableClustersOffset, $"{refcountClusters} clusters is outside 1..{MaxRefcountTableBytes >> h.ClusterBits}");
            }

            h.RefcountTableClusters = (int)refcountClusters;
            CheckTable(path, h, h.RefcountTableOffset, (long)refcountClusters << h.ClusterBits, "refcount_table_offset", RefcountTableOffsetOffset, true);
            if (snapshotCount > MaxSnapshots)
            {
                throw new ImageCorruptException(path, "nb_snapshots", SnapshotCountOffset, $"{snapshotCount} snapshots exceed QEMU's limit of {MaxSnapshots}");
            }

            h.SnapshotCount = (int)snapshotCount;
            CheckTable(path, h, h.SnapshotsOffset, snapshotCount > 0 ? 1 : 0, "snapshots_offset", SnapshotsOffsetOffset, snapshotCount > 0);

            if (h.Version == 2 && h.IncompatibleFeatures != 0)
            {
                throw new ImageCorruptException(path, "incompatible_features", IncompatibleFeaturesOffset, "a version 2 image has no feature bits");
            }

            ReadExtensions(file, h);
            ReadBackingFileName(file, h, fixedPart);
            if (h.CryptMethod == CryptLuks && h.CryptoHeaderLength == 0)
            {
                throw new ImageCorruptException(path, "crypt_method", CryptMethodOffset, "the image is LUKS-encrypted (crypt_method 2) but has no crypto header extension locating its LUKS header");
            }

            ulong unknown = h.IncompatibleFeatures & ~IncompatibleKnown;
            if (unknown != 0)
            {
                var names = new List<string>();
                for (int bit = 0; bit < 64; bit++)
                {
                    if ((unknown & (1UL << bit)) != 0)
                    {
                        names.Add(h.FeatureNames.TryGetValue(bit, out string name) ? $"'{name}' (bit {bit})" : $"unknown feature bit {bit}");
                    }
                }

                throw new ImageNotSupportedException(path, "incompatible_features", IncompatibleFeaturesOffset, "the image uses incompatible features this engine does not know: " + string.Join(", ", names));
            }

            if (h.CompressionType > 1)
            {
                throw new ImageNotSupportedException(path, "compression_type", CompressionTypeOffset, $"compression type {h.CompressionType} is unknown (0 zlib, 1 zstd)");
            }

            if ((h.CompressionType != 0) != ((h.IncompatibleFeatures & IncompatibleCompressionType) != 0))
            {
                throw new ImageCorruptException(path, "compression_type", CompressionTypeOffset, "the compression type and the compression-type feature bit disagree");
            }

            if (h.ExtendedL2 && h.ClusterBits < 14)
            {
                throw new ImageCorruptException(path, "incompatible_features", IncompatibleFeaturesOffset, "extended L2 entries need clusters of at least 16 KiB");
            }

            if (h.HasDataFile && string.IsNullOrEmpty(h.DataFile))
            {
                throw new ImageNotSupportedException(path, "data file", null, "the image uses an external data file but does not name it");
            }

            if (h.DataFileRaw && !h.HasDataFile)
            {
                throw new ImageCorruptException(path, "autoclear_features", AutoclearFeaturesOffset, "data-file-raw is set without an external data file");
            }

            return h;
        }

        /// <summary>The header cluster: fixed header, extensions, end marker, backing file name. Throws if it does not fit one cluster.</summary>
        public byte[] Serialize(string path)
        {
            var extensions = new List<KeyValuePair<uint, byte[]>>();
            if (BackingFile != null && BackingFormat != null)
            {
                extensions.Add(new KeyValuePair<uint, byte[]>(ExtensionBackingFormat, Encoding.UTF8.GetBytes(BackingFormat)));
            }

            if (DataFile != null)
            {
                extensions.Add(new KeyValuePair<uint, byte[]>(ExtensionDataFile, Encoding.UTF8.GetBytes(DataFile)));
            }

            if (Version >= 3)
            {
                extensions.Add(new KeyValuePair<uint, byte[]>(ExtensionFeatureNames, FeatureNameTable()));
            }

            if (HasBitmapsExtension)
            {
                var bitmaps = new byte[24];
                BinaryPrimitives.WriteUInt32BigEndian(bitmaps, (uint)BitmapCount);
                BinaryPrimitives.WriteUInt64BigEndian(bitmaps.AsSpan(8), (ulong)BitmapDirectorySize);
                BinaryPrimitives.WriteUInt64BigEndian(bitmaps.AsSpan(16), (ulong)BitmapDirectoryOffset);
                extensions.Add(new KeyValuePair<uint, byte[]>(ExtensionBitmaps, bitmaps));
            }

            if (CryptMethod == CryptLuks)
            {
                var crypto = new byte[16];
                BinaryPrimitives.WriteUInt64BigEndian(crypto, (ulong)CryptoHeaderOffset);
                BinaryPrimitives.WriteUInt64BigEndian(crypto.AsSpan(8), (ulong)CryptoHeaderLength);
                extensions.Add(new KeyValuePair<uint, byte[]>(ExtensionEncryption, crypto));
            }

            extensions.AddRange(UnknownExtensions);

            int headerLength = Version == 2 ? V2HeaderLength : HeaderLength;
            byte[] backingName = BackingFile != null ? Encoding.UTF8.GetBytes(BackingFile) : Array.Empty<byte>();
            int total = SerializedLength(headerLength, extensions, backingName.Length);
            if (total > ClusterSize)
            {
                // The feature-name table is optional: small clusters leave it out, as QEMU does.
                extensions.RemoveAll(e => e.Key == ExtensionFeatureNames);
            }

            total = headerLength;
            foreach (var e in extensions)
            {
                total += 8 + Align8(e.Value.Length);
            }

            total += 8;
            if (backingName.Length > MaxBackingFileNameLength)
            {
                throw new ImageOptionException(path, "backing_file", $"the backing file name is {backingName.Length} bytes; qcow2 allows at most {MaxBackingFileNameLength}");
            }

            int backingOffset = total;
            total += backingName.Length;
            if (total > ClusterSize)
            {
                throw new ImageOptionException(path, "backing_file", $"the header, its extensions and the backing file name need {total} bytes, more than one {ClusterSize}-byte cluster");
            }

            var buffer = new byte[total];
            Span<byte> b = buffer;
            BinaryPrimitives.WriteUInt32BigEndian(b.Slice(MagicOffset), Magic);
            BinaryPrimitives.WriteUInt32BigEndian(b.Slice(VersionOffset), (uint)Version);
            BinaryPrimitives.WriteUInt64BigEndian(b.Slice(BackingFileOffsetOffset), BackingFile != null ? (ulong)backingOffset : 0);
            BinaryPrimitives.WriteUInt32BigEndian(b.Slice(BackingFileSizeOffset), (uint)backingName.Length);
            BinaryPrimitives.WriteUInt32BigEndian(b.Slice(ClusterBitsOffset), (uint)ClusterBits);
            BinaryPrimitives.WriteUInt64BigEndian(b.Slice(SizeOffset), (ulong)Size);
            BinaryPrimitives.WriteUInt32BigEndian(b.Slice(CryptMethodOffset), CryptMethod);
            BinaryPrimitives.WriteUInt32BigEndian(b.Slice(L1SizeOffset), (uint)L1Size);
            BinaryPrimitives.WriteUInt64BigEndian(b.Slice(L1TableOffsetOffset), (ulong)L1TableOffset);
            BinaryPrimitives.WriteUInt64BigEndian(b.Slice(RefcountTableOffsetOffset), (ulong)RefcountTableOffset);
            BinaryPrimitives.WriteUInt32BigEndian(b.Slice(RefcountTableClustersOffset), (uint)RefcountTableClusters);
            BinaryPrimitives.WriteUInt32BigEndian(b.Slice(SnapshotCountOffset), (uint)SnapshotCount);
            BinaryPrimitives.WriteUInt64BigEndian(b.Slice(SnapshotsOffsetOffset), (ulong)SnapshotsOffset);
            if (Version >= 3)
            {
                BinaryPrimitives.WriteUInt64BigEndian(b.Slice(IncompatibleFeaturesOffset), IncompatibleFeatures);
                BinaryPrimitives.WriteUInt64BigEndian(b.Slice(CompatibleFeaturesOffset), CompatibleFeatures);
                BinaryPrimitives.WriteUInt64BigEndian(b.Slice(AutoclearFeaturesOffset), AutoclearFeatures);
                BinaryPrimitives.WriteUInt32BigEndian(b.Slice(RefcountOrderOffset), (uint)RefcountOrder);
                BinaryPrimitives.WriteUInt32BigEndian(b.Slice(HeaderLengthOffset), (uint)headerLength);
                if (headerLength > CompressionTypeOffset)
                {
                    b[CompressionTypeOffset] = CompressionType;
                }
            }

            int at = headerLength;
            foreach (var e in extensions)
            {
                BinaryPrimitives.WriteUInt32BigEndian(b.Slice(at), e.Key);
                BinaryPrimitives.WriteUInt32BigEndian(b.Slice(at + 4), (uint)e.Value.Length);
                e.Value.CopyTo(b.Slice(at + 8));
                at += 8 + Align8(e.Value.Length);
            }

            // The end marker is the 8 zero bytes at 'at'.
            backingName.CopyTo(b.Slice(backingOffset));
            return buffer;
        }

        private static int SerializedLength(int headerLength, List<KeyValuePair<uint, byte[]>> extensions, int backingNameLength)
        {
            int total = headerLength + 8 + backingNameLength;
            foreach (var e in extensions)
            {
                total += 8 + Align8(e.Value.Length);
            }

            return total;
        }

        private static byte[] FeatureNameTable()
        {
            // (qcow2.rst "Feature name table"): 48-byte entries of type, bit number and name.
            var features = new (byte Type, byte Bit, string Name)[]
            {
                (0, 0, "dirty bit"),
                (0, 1, "corrupt bit"),
                (0, 2, "external data file"),
                (0, 3, "compression type"),
                (0, 4, "extended L2 entries"),
                (1, 0, "lazy refcounts"),
                (2, 0, "bitmaps"),
                (2, 1, "raw external data"),
            };
            var table = new byte[features.Length * 48];
            for (int i = 0; i < features.Length; i++)
            {
                table[i * 48] = features[i].Type;
                table[i * 48 + 1] = features[i].Bit;
                Encoding.ASCII.GetBytes(features[i].Name, 0, features[i].Name.Length, table, i * 48 + 2);
            }

            return table;
        }

        private static int Align8(int n) => (n + 7) & ~7;

        private static long ReadSigned(string path, byte[] header, int offset, string field)
        {
            ulong value = BinaryPrimitives.ReadUInt64BigEndian(header.AsSpan(offset));
            if (value > long.MaxValue / 2)
            {
                throw new ImageCorruptException(path, field, offset, $"0x{value:x} is out of range");
            }

            return (long)value;
        }

        private static void CheckTable(string path, Qcow2Header h, long offset, long length, string field, int fieldOffset, bool present)
        {
            if (!present)
            {
                return;
            }

            if (offset == 0 || (offset & (h.ClusterSize - 1)) != 0)
            {
                throw new ImageCorruptException(path, field, fieldOffset, $"0x{offset:x} is not a non-zero multiple of the cluster size");
            }

            if (offset > long.MaxValue / 4 - length)
            {
                throw new ImageCorruptException(path, field, fieldOffset, $"0x{offset:x} + {length} bytes overflows");
            }
        }

        private static void ReadExtensions(HostFile file, Qcow2Header h)
        {
            // Extensions live between the header and the end of the first cluster (qcow2.rst "Header extensions").
            var cluster = new byte[h.ClusterSize];
            int got = file.ReadAt(0, cluster);
            int at = h.HeaderLength;
            while (true)
            {
                if (at + 8 > got)
                {
                    throw new ImageCorruptException(file.Path, "header extension", at, "the header extensions run past the first cluster or the end of the file");
                }

                uint type = BinaryPrimitives.ReadUInt32BigEndian(cluster.AsSpan(at));
                uint length = BinaryPrimitives.ReadUInt32BigEndian(cluster.AsSpan(at + 4));
                if (type == ExtensionEnd)
                {
                    return;
                }

                if (length > (uint)(got - at - 8))
                {
                    throw new ImageCorruptException(file.Path, $"header extension 0x{type:x8}", at, $"its length {length} runs past the first cluster");
                }

                var data = cluster.AsSpan(at + 8, (int)length);
                switch (type)
                {
                    case ExtensionBackingFormat:
                        h.BackingFormat = Encoding.UTF8.GetString(data.ToArray()).TrimEnd('\0');
                        break;
                    case ExtensionDataFile:
                        h.DataFile = Encoding.UTF8.GetString(data.ToArray()).TrimEnd('\0');
                        break;
                    case ExtensionFeatureNames:
                        for (int i = 0; i + 48 <= data.Length; i += 48)
                        {
                            string name = Encoding.ASCII.GetString(data.Slice(i + 2, 46).ToArray()).TrimEnd('\0');
                            if (data[i] == 0)
                            {
                                h.FeatureNames[data[i + 1]] = name;
                            }
                        }

                        break;
                    case ExtensionBitmaps:
                        if (length < 24)
                        {
                            throw new ImageCorruptException(file.Path, "bitmaps extension", at, $"its length {length} is below 24");
                        }

                        if ((h.AutoclearFeatures & AutoclearBitmaps) != 0)
                        {
                            // Without the autoclear bit an older writer touched the image: the bitmaps are stale and ignored (qcow2.rst).
                            h.HasBitmapsExtension = true;
                            h.BitmapCount = (int)Math.Min(BinaryPrimitives.ReadUInt32BigEndian(data), int.MaxValue);
                            h.BitmapDirectorySize = (long)Math.Min(BinaryPrimitives.ReadUInt64BigEndian(data.Slice(8)), long.MaxValue);
                            h.BitmapDirectoryOffset = (long)Math.Min(BinaryPrimitives.ReadUInt64BigEndian(data.Slice(16)), long.MaxValue);
                        }

                        break;
                    case ExtensionEncryption:
                        ReadCryptoHeaderExtension(file, h, data, at);
                        break;
                    default:
                        h.UnknownExtensions.Add(new KeyValuePair<uint, byte[]>(type, data.ToArray()));
                        break;
                }

                at += 8 + Align8((int)length);
            }
        }

        /// <summary>The crypto header extension (qcow2.rst "Full disk encryption header pointer"): offset and length, big-endian.</summary>
        private static void ReadCryptoHeaderExtension(HostFile file, Qcow2Header h, ReadOnlySpan<byte> data, int at)
        {
            if (h.CryptMethod != CryptLuks)
            {
                throw new ImageCorruptException(file.Path, "crypto header extension", at, $"the extension is only valid with crypt_method {CryptLuks} (LUKS), not {h.CryptMethod}");
            }

            if (data.Length < 16)
            {
                throw new ImageCorruptException(file.Path, "crypto header extension", at, $"its length {data.Length} is below 16");
            }

            ulong offset = BinaryPrimitives.ReadUInt64BigEndian(data);
            ulong length = BinaryPrimitives.ReadUInt64BigEndian(data.Slice(8));
            if (offset == 0 || (offset & (ulong)(h.ClusterSize - 1)) != 0 || offset > long.MaxValue / 4)
            {
                throw new ImageCorruptException(file.Path, "crypto header offset", at + 8, $"0x{offset:x} is not a non-zero multiple of the cluster size");
            }

            if (length < 592 || length > MaxCryptoHeaderLength || offset + length > (ulong)file.Length)
            {
                throw new ImageCorruptException(file.Path, "crypto header length", at + 16, $"a LUKS header of {length} bytes at 0x{offset:x} is outside 592 bytes .. {MaxCryptoHeaderLength >> 20} MiB or runs past the end of the file");
            }

            h.CryptoHeaderOffset = (long)offset;
            h.CryptoHeaderLength = (long)length;
        }

        private static void ReadBackingFileName(HostFile file, Qcow2Header h, byte[] fixedPart)
        {
            ulong offset = BinaryPrimitives.ReadUInt64BigEndian(fixedPart.AsSpan(BackingFileOffsetOffset));
            uint length = BinaryPrimitives.ReadUInt32BigEndian(fixedPart.AsSpan(BackingFileSizeOffset));
            if (offset == 0)
            {
                return;
            }

            if (length > MaxBackingFileNameLength || offset > (ulong)h.ClusterSize)
            {
                throw new ImageCorruptException(file.Path, "backing_file_offset", BackingFileOffsetOffset, $"the backing file name ({length} bytes at {offset}) is too long or outside the first cluster");
            }

            var name = new byte[length];
            file.ReadExactly((long)offset, name, "backing file name");
            h.BackingFile = Encoding.UTF8.GetString(name);
        }
    }
}
