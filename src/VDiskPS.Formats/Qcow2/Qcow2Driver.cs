using System;
using System.Collections.Generic;
using System.IO;
using VDiskPS;

namespace VDiskPS.Formats.Qcow2
{
    /// <summary>QEMU's qcow2 format: probing, opening, creating with every qemu-img create option, and measuring.</summary>
    public sealed class Qcow2Driver : FormatDriver, ICreatableDriver
    {
        /// <summary>The qcow2 format's identity.</summary>
        public static readonly DiskFormat Id = new DiskFormat("qcow2");

        public override DiskFormat Format => Id;

        public override string Description => "QEMU copy-on-write v2/v3";

        public override IReadOnlyList<string> Extensions { get; } = new[] { ".qcow2" };

        public override IReadOnlyList<CreateOption> CreateOptions => Qcow2CreateOptions.Names;

        public override bool HasQemuFormatSpecific => true;

        public override int Probe(ProbeContext context)
        {
            if (!Qcow2Header.HasMagic(context.Head))
            {
                return 0;
            }

            // Version 1 (the original qcow) shares the magic but is another format, with a driver of its own;
            // any other version is a qcow2 image, opened or refused by its header reader, never raw.
            return System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(context.Head.AsSpan(4)) == 1 ? 0 : 100;
        }

        public override ImageLayer Open(HostFile file, OpenOptions options) => Qcow2Layer.Open(file, options);

        public ImageLayer Create(string path, CreateRequest request)
        {
            var options = Qcow2CreateOptions.Parse(path, request);
            return Qcow2Layer.Create(path, options, request);
        }

        public bool SupportsCompression(CreateRequest request)
        {
            return request?.Options == null || !(request.Options.Contains("data_file") || request.Options.Contains("encrypt.format") || request.Options.Contains("encryption") || request.Encryption != null);
        }

        /// <summary>qemu-img measure (block/qcow2.c qcow2_measure): metadata for a full image, plus the data required.</summary>
        public VDiskMeasurement Measure(CreateRequest request, long allocatedBytes)
        {
            var options = Qcow2CreateOptions.Parse(null, request, forMeasure: true);
            long cs = options.ClusterSize;
            long virtualSize = (options.Size + cs - 1) / cs * cs;
            long required;
            if (options.BackingFile != null)
            {
                required = virtualSize;
            }
            else
            {
                required = Math.Min(virtualSize, (Math.Max(0, allocatedBytes) + cs - 1) / cs * cs);
            }

            if (options.Preallocation == Preallocation.Full || options.Preallocation == Preallocation.Falloc)
            {
                required = virtualSize;
            }

            long fully = PreallocatedSize(virtualSize, cs, options.RefcountOrder, options.ExtendedL2);

            // qcow2_measure adds the LUKS header, in whole clusters.
            long crypto = options.Encryption == null ? 0 : (Qcow2Layer.LuksEncryption(null).NewHeaderLength + cs - 1) / cs * cs;
            return new VDiskMeasurement
            {
                Format = "qcow2",
                Required = fully - virtualSize + required + crypto,
                FullyAllocated = fully + crypto,
            };
        }

        /// <summary>block/qcow2.c qcow2_calc_prealloc_size.</summary>
        internal static long PreallocatedSize(long totalSize, long clusterSize, int refcountOrder, bool extendedL2)
        {
            long aligned = (totalSize + clusterSize - 1) / clusterSize * clusterSize;
            long l2EntrySize = extendedL2 ? 16 : 8;
            long meta = clusterSize;
            long l2Entries = aligned / clusterSize;
            long perL2 = clusterSize / l2EntrySize;
            l2Entries = (l2Entries + perL2 - 1) / perL2 * perL2;
            meta += l2Entries * l2EntrySize;
            long l1Entries = l2Entries * l2EntrySize / clusterSize;
            long perL1Cluster = clusterSize / 8;
            l1Entries = (l1Entries + perL1Cluster - 1) / perL1Cluster * perL1Cluster;
            meta += l1Entries * 8;
            meta += RefcountMetadataSize((meta + aligned) / clusterSize, clusterSize, refcountOrder);
            return meta + aligned;
        }

        /// <summary>block/qcow2-refcount.c qcow2_refcount_metadata_size: the fixed point of blocks and table.</summary>
        internal static long RefcountMetadataSize(long clusters, long clusterSize, int refcountOrder)
        {
            long blocksPerTableCluster = clusterSize / 8;
            long refcountsPerBlock = clusterSize * 8 / (1L << refcountOrder);
            long table = 0;
            long blocks = 0;
            long n = 0;
            long last;
            do
            {
                last = n;
                blocks = (clusters + table + blocks + refcountsPerBlock - 1) / refcountsPerBlock;
                table = (blocks + blocksPerTableCluster - 1) / blocksPerTableCluster;
                n = clusters + blocks + table;
            }
            while (n != last);

            return (blocks + table) * clusterSize;
        }
    }

    /// <summary>The qcow2 create options (qemu-img create -f qcow2 -o help), parsed and checked together.</summary>
    internal sealed class Qcow2CreateOptions
    {
        public static readonly CreateOption[] Names =
        {
            new CreateOption("size", CreateOptionKind.Size, "virtual size"),
            new CreateOption("compat", CreateOptionKind.Choice, "0.10 (version 2) or 1.1 (version 3)", "0.10", "1.1", "v2", "v3"),
            new CreateOption("backing_file", CreateOptionKind.Text, "the parent image"),
            new CreateOption("backing_fmt", CreateOptionKind.Text, "the parent's format"),
            new CreateOption("data_file", CreateOptionKind.Text, "an external file that holds the guest data"),
            new CreateOption("data_file_raw", CreateOptionKind.Bool, "the data file is valid raw data on its own"),
            new CreateOption("encryption", CreateOptionKind.Bool, "qemu's old spelling of encrypt.format=aes (refused: legacy AES)"),
            new CreateOption("encrypt.format", CreateOptionKind.Choice, "the encryption format: luks (aes, the legacy one, is refused for new images)", Qcow2Layer.LuksScheme, LegacyAesName),
            new CreateOption("encrypt.iter-time", CreateOptionKind.Number, "milliseconds the LUKS key derivation takes (PBKDF2 is benchmarked); 2000 by default"),
            new CreateOption("cluster_size", CreateOptionKind.Size, "cluster size, 512 B to 2 MiB"),
            new CreateOption("preallocation", CreateOptionKind.Choice, "how the file's space is reserved", "off", "metadata", "falloc", "full"),
            new CreateOption("lazy_refcounts", CreateOptionKind.Bool, "postpone refcount updates"),
            new CreateOption("refcount_bits", CreateOptionKind.Number, "width of a refcount entry, 1 to 64"),
            new CreateOption("compression_type", CreateOptionKind.Choice, "compressed cluster format", "zlib", "zstd"),
            new CreateOption("extended_l2", CreateOptionKind.Bool, "subcluster allocation"),
        };

        public long Size { get; private set; }

        public int Version { get; private set; } = 3;

        public int ClusterSize { get; private set; } = 65536;

        public int RefcountOrder { get; private set; } = 4;

        public bool LazyRefcounts { get; private set; }

        public bool ExtendedL2 { get; private set; }

        public CompressionType Compression { get; private set; }

        public Preallocation Preallocation { get; private set; }

        public string BackingFile { get; private set; }

        public string BackingFormat { get; private set; }

        public string DataFile { get; private set; }

        public bool DataFileRaw { get; private set; }

        /// <summary>The encryption scheme of the new image (LUKS), or null.</summary>
        public string Encryption { get; private set; }

        /// <summary>The LUKS key slot's PBKDF2 time (encrypt.iter-time), in milliseconds.</summary>
        public int IterationMilliseconds { get; private set; } = DefaultIterationMilliseconds;

        // qemu's iter-time default; "aes" is qemu's encrypt.format name of legacy AES (crypt_method 1).
        private const int DefaultIterationMilliseconds = 2000;
        private const string LegacyAesName = "aes";

        public static Qcow2CreateOptions Parse(string path, CreateRequest request, bool forMeasure = false)
        {
            OptionSet set = (request.Options ?? new OptionSet()).Clone();
            var o = new Qcow2CreateOptions();

            long? size = set.GetSize("size");
            if (size.HasValue && request.Size != 0 && size.Value != request.Size)
            {
                throw new ImageOptionException(path, "size", $"the size option ({size}) and the size given ({request.Size}) disagree");
            }

            o.Size = size ?? request.Size;

            string compat = set.GetChoice("compat", "0.10", "1.1", "v2", "v3") ?? request.Subformat;
            if (compat != null)
            {
                switch (compat.ToLowerInvariant())
                {
                    case "0.10":
                    case "v2":
                        o.Version = 2;
                        break;
                    case "1.1":
                    case "v3":
                        o.Version = 3;
                        break;
                    default:
                        throw new ImageOptionException(path, "compat", $"'{compat}' is not one of: 0.10, 1.1");
                }
            }

            long? clusterSize = set.GetSize("cluster_size", 512, 2 << 20);
            if (clusterSize.HasValue && request.ClusterSize.HasValue && clusterSize != request.ClusterSize)
            {
                throw new ImageOptionException(path, "cluster_size", $"the cluster_size option ({clusterSize}) and the cluster size given ({request.ClusterSize}) disagree");
            }

            long cs = clusterSize ?? request.ClusterSize ?? 65536;
            if (cs < 512 || cs > (2 << 20) || (cs & (cs - 1)) != 0)
            {
                throw new ImageOptionException(path, "cluster_size", $"{cs} must be a power of two between 512 bytes and 2 MiB");
            }

            o.ClusterSize = (int)cs;

            int? refcountBits = set.GetInt("refcount_bits", 1, 64);
            if (refcountBits.HasValue)
            {
                int bits = refcountBits.Value;
                if ((bits & (bits - 1)) != 0)
                {
                    throw new ImageOptionException(path, "refcount_bits", $"{bits} must be a power of two from 1 to 64");
                }

                if (o.Version < 3 && bits != 16)
                {
                    throw new ImageOptionException(path, "refcount_bits", "version 2 (compat=0.10) images need 16-bit refcounts");
                }

                int order = 0;
                while ((1 << order) < bits)
                {
                    order++;
                }

                o.RefcountOrder = order;
            }

            o.LazyRefcounts = set.GetBool("lazy_refcounts") ?? false;
            if (o.LazyRefcounts && o.Version < 3)
            {
                throw new ImageOptionException(path, "lazy_refcounts", "lazy refcounts need compat=1.1");
            }

            o.ExtendedL2 = set.GetBool("extended_l2") ?? false;
            if (o.ExtendedL2)
            {
                if (o.Version < 3)
                {
                    throw new ImageOptionException(path, "extended_l2", "extended L2 entries need compat=1.1");
                }

                if (o.ClusterSize < 16384)
                {
                    throw new ImageOptionException(path, "extended_l2", "extended L2 entries need a cluster size of at least 16 KiB");
                }
            }

            string compression = set.GetChoice("compression_type", "zlib", "zstd");
            CompressionType? type = compression == null ? (CompressionType?)null : compression == "zstd" ? CompressionType.Zstd : CompressionType.Zlib;
            if (type.HasValue && request.CompressionType.HasValue && type != request.CompressionType)
            {
                throw new ImageOptionException(path, "compression_type", $"the compression_type option ({compression}) and the compression type given ({request.CompressionType}) disagree");
            }

            o.Compression = type ?? request.CompressionType ?? CompressionType.Zlib;
            if (o.Compression == CompressionType.Zstd && o.Version < 3)
            {
                throw new ImageOptionException(path, "compression_type", "zstd compression needs compat=1.1");
            }

            Preallocation? preallocation = set.GetPreallocation("preallocation");
            if (preallocation.HasValue && request.Preallocation.HasValue && preallocation != request.Preallocation)
            {
                throw new ImageOptionException(path, "preallocation", $"the preallocation option ({preallocation}) and the preallocation given ({request.Preallocation}) disagree");
            }

            o.Preallocation = preallocation ?? request.Preallocation ?? (request.Type == DiskType.Fixed ? Preallocation.Falloc : Preallocation.Off);

            string backingFile = set.GetString("backing_file");
            string backingFormat = set.GetString("backing_fmt");
            if (backingFile != null && request.Backing != null && backingFile != request.Backing.RecordedPath)
            {
                throw new ImageOptionException(path, "backing_file", $"the backing_file option ('{backingFile}') and the backing file given ('{request.Backing.RecordedPath}') disagree");
            }

            o.BackingFile = BackingReference.ToPortable(backingFile ?? request.Backing?.RecordedPath);
            if (backingFormat != null)
            {
                DiskFormat parsed = FormatRegistry.Default.Parse(backingFormat);
                if (request.Backing?.Format != null && request.Backing.Format != parsed)
                {
                    throw new ImageOptionException(path, "backing_fmt", $"the backing_fmt option ({backingFormat}) and the backing format given ({request.Backing.Format.Value.ToName()}) disagree");
                }

                o.BackingFormat = parsed.ToQemuName();
            }
            else if (request.Backing?.Format != null)
            {
                o.BackingFormat = request.Backing.Format.Value.ToQemuName();
            }
            else if (o.BackingFile != null && request.BackingLayer != null)
            {
                o.BackingFormat = request.BackingLayer.Format.ToQemuName();
            }

            if (o.BackingFile == null && request.Type == DiskType.Differencing)
            {
                throw new ImageOptionException(path, "backing_file", "a differencing image needs a backing file");
            }

            if (o.BackingFile != null && o.Preallocation != Preallocation.Off && !o.ExtendedL2)
            {
                throw new ImageOptionException(path, "preallocation", "a backing file and preallocation can only be combined with extended_l2=on (as in QEMU)");
            }

            o.DataFile = set.GetString("data_file");
            o.DataFileRaw = set.GetBool("data_file_raw") ?? false;
            if (o.DataFile != null && o.Version < 3)
            {
                throw new ImageOptionException(path, "data_file", "an external data file needs compat=1.1");
            }

            if (o.DataFileRaw && o.DataFile == null)
            {
                throw new ImageOptionException(path, "data_file_raw", "data_file_raw needs data_file");
            }

            if (o.DataFileRaw && o.BackingFile != null)
            {
                throw new ImageOptionException(path, "data_file_raw", "data_file_raw cannot be combined with a backing file");
            }

            if (o.DataFileRaw && o.Preallocation == Preallocation.Off)
            {
                // The metadata must map every guest offset to the same data file offset (block/qcow2.c).
                o.Preallocation = Preallocation.Metadata;
            }

            ParseEncryption(path, request, set, o);
            set.RejectUnknown("qcow2", Names);
            if (o.Size < 0 || Qcow2Header.L1EntriesFor(o.Size, ClusterBitsOf(o.ClusterSize), o.ClusterSize / (o.ExtendedL2 ? 16 : 8)) > Qcow2Header.MaxL1Bytes / 8)
            {
                throw new ImageOptionException(path, "size", $"{o.Size} bytes is too large for {o.ClusterSize}-byte clusters (the L1 table would exceed QEMU's 32 MiB limit)");
            }

            return o;
        }

        /// <summary>
        /// encrypt.format (or the request's encryption scheme; encryption=on is qemu's old spelling of the
        /// legacy aes): LUKS is created; legacy AES is refused as QEMU deprecates it.
        /// </summary>
        private static void ParseEncryption(string path, CreateRequest request, OptionSet set, Qcow2CreateOptions o)
        {
            bool? encryption = set.GetBool("encryption");
            string format = set.GetChoice("encrypt.format", Qcow2Layer.LuksScheme, LegacyAesName);
            int? iterTime = set.GetInt("encrypt.iter-time", 1, 60000);
            if (encryption == true && format == null)
            {
                format = LegacyAesName;
            }

            if (request.Encryption != null)
            {
                string asked = request.Encryption.ToLowerInvariant();
                if (format != null && format != asked)
                {
                    throw new ImageOptionException(path, "encrypt.format", $"the encrypt.format option ({format}) and the encryption given ({request.Encryption}) disagree");
                }

                format = asked;
            }

            if (format == null)
            {
                if (iterTime.HasValue)
                {
                    throw new ImageOptionException(path, "encrypt.iter-time", "encrypt.iter-time needs encrypt.format=luks");
                }

                return;
            }

            if (format == LegacyAesName)
            {
                throw new ImageNotSupportedException(path, "encrypt.format", null,
                    "qcow2's legacy AES encryption is not created: it is insecure and QEMU no longer supports it for running guests (\"Use of AES-CBC encrypted qcow2 images is no longer supported in system emulators\"); use LUKS encryption");
            }

            if (format != Qcow2Layer.LuksScheme)
            {
                throw new ImageOptionException(path, "encrypt.format", $"'{format}' is not an encryption qcow2 takes (luks)");
            }

            if (o.DataFile != null)
            {
                throw ImageNotSupportedException.Capability(Qcow2Driver.Id, "encryption with an external data file", path);
            }

            if (o.Preallocation != Preallocation.Off)
            {
                throw new ImageOptionException(path, "preallocation", "preallocation and encryption are not supported together: preallocated clusters would not hold encrypted zeros");
            }

            o.Encryption = format;
            o.IterationMilliseconds = iterTime ?? DefaultIterationMilliseconds;
        }

        public static int ClusterBitsOf(int clusterSize)
        {
            int bits = 0;
            while ((1 << bits) < clusterSize)
            {
                bits++;
            }

            return bits;
        }
    }
}
