using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.IO;
using System.Text;
using VDiskPS.Formats.Compression;
using VDiskPS.Formats.Crypto;

namespace VDiskPS.Formats.Qcow
{
    /// <summary>
    /// A qcow (version 1) image, as QEMU's block/qcow.c reads it: an L1 table of L2 table offsets, each L2
    /// table mapping clusters to host offsets (0: unallocated, read from the backing file), a compressed
    /// cluster marked by bit 63 with its byte length in the bits above the offset; legacy AES-CBC
    /// encryption (crypt_method 1) of every plain cluster, per 512-byte sector.
    /// </summary>
    internal sealed partial class QcowLayer : ImageLayer
    {
        private const ulong CompressedFlag = 1UL << 63;

        /// <summary>L2 tables kept in memory at most (64 KiB each at the largest).</summary>
        private const int MaxCachedTables = 256;

        private readonly HostFile _file;
        private readonly object _gate = new object();
        private readonly QcowHeader _header;
        private readonly ulong[] _l1;
        private readonly long _size;
        private readonly BackingReference _backing;
        private readonly Dictionary<long, ulong[]> _tables = new Dictionary<long, ulong[]>();
        private AesSectorCipher _cipher;

        // The last cluster decompressed: its host offset and content.
        private long _inflatedAt = -1;
        private byte[] _inflated;

        private QcowLayer(HostFile file, QcowHeader header, ulong[] l1, BackingReference backing)
            : base(file.Path, file.CanWrite)
        {
            _file = file;
            _header = header;
            _l1 = l1;
            _backing = backing;

            // qcow.c: total_sectors = size / 512; a partial last sector is not part of the disk.
            _size = (long)(header.Size & ~511UL);
            _fileEnd = file.Length;
        }

        public override DiskFormat Format => QcowDriver.Id;

        public override long Size => _size;

        public override int ClusterSize => _header.ClusterSize;

        public override BackingReference Backing => _backing;

        private bool Encrypted => _header.CryptMethod == QcowHeader.CryptAes;

        private int ClusterBits => _header.ClusterBits;

        private long ClusterMask => _header.ClusterSize - 1;

        /// <summary>Bits of a compressed entry that hold the host offset (qcow.c cluster_offset_mask).</summary>
        private ulong CompressedOffsetMask => (1UL << (63 - ClusterBits)) - 1;

        private long L1Bytes => _l1.Length * 8L;

        private long L2Bytes => _header.L2Entries * 8L;

        internal static QcowLayer Open(HostFile file, OpenOptions options)
        {
            string path = file.Path;
            long length = file.Length;
            if (length < QcowHeader.Length)
            {
                throw new ImageFormatMismatchException(path, "header", 0, $"not a qcow image: the file is {length} bytes, shorter than the {QcowHeader.Length}-byte header");
            }

            var raw = new byte[QcowHeader.Length];
            file.ReadExactly(0, raw, "header");
            if (BinaryPrimitives.ReadUInt32BigEndian(raw) != QcowHeader.Magic)
            {
                throw new ImageFormatMismatchException(path, "magic", QcowHeader.MagicAt, "not a qcow image: the magic 'QFI\\xfb' is missing");
            }

            QcowHeader header = QcowHeader.FromBytes(raw);
            Validate(path, header, length);
            if (header.CryptMethod == QcowHeader.CryptAes && options.Writable)
            {
                throw QcowDriver.EncryptedWriteRefused(path);
            }

            var l1Raw = new byte[header.L1Entries * 8];
            file.ReadExactly((long)header.L1TableOffset, l1Raw, "L1 table");
            var l1 = new ulong[header.L1Entries];
            for (int i = 0; i < l1.Length; i++)
            {
                l1[i] = BinaryPrimitives.ReadUInt64BigEndian(l1Raw.AsSpan(i * 8));
            }

            BackingReference backing = ReadBacking(file, header);
            var layer = new QcowLayer(file, header, l1, backing);
            if (layer.Encrypted && ImageSecrets.HasPassword)
            {
                layer._cipher = CipherFor(path, ImageSecrets.Password(path));
                ImageWarnings.Report(path, "legacy qcow AES encryption stores no key check, so a wrong password cannot be detected: it reads as garbage instead of failing (QEMU has the same limit)");
            }

            return layer;
        }

        /// <summary>
        /// qcow.c (and QEMU's qcow crypto): the password's bytes up to its first NUL, zero-padded or cut to 16
        /// bytes, are the AES-128 key; each 512-byte sector is CBC-encrypted with its sector number
        /// (little-endian, from the start of the disk) as the initial vector.
        /// </summary>
        internal static AesSectorCipher CipherFor(string path, byte[] password)
        {
            var key = new byte[16];
            try
            {
                int n = Array.IndexOf(password, (byte)0);
                Array.Copy(password, key, Math.Min(16, n < 0 ? password.Length : n));
                return AesSectorCipher.Create(path, "aes", "cbc-plain64", key);
            }
            finally
            {
                Array.Clear(key, 0, key.Length);
                Array.Clear(password, 0, password.Length);
            }
        }

        private static void Validate(string path, QcowHeader header, long length)
        {
            if (header.Version != QcowHeader.Version1)
            {
                string hint = header.Version == 2 || header.Version == 3 ? " (versions 2 and 3 are qcow2 images)" : string.Empty;
                throw new ImageNotSupportedException(path, "version", QcowHeader.VersionAt, $"qcow version {header.Version} is not qcow version 1{hint}");
            }

            if (header.Size <= 1)
            {
                throw new ImageCorruptException(path, "size", QcowHeader.SizeAt, $"the virtual size {header.Size} is too small (at least 2 bytes, as QEMU requires)");
            }

            if (header.ClusterBits < QcowHeader.MinClusterBits || header.ClusterBits > QcowHeader.MaxClusterBits)
            {
                throw new ImageCorruptException(path, "cluster_bits", QcowHeader.ClusterBitsAt, $"cluster_bits {header.ClusterBits} is outside 9 to 16 (clusters of 512 bytes to 64 KiB)");
            }

            if (header.L2Bits < QcowHeader.MinL2Bits || header.L2Bits > QcowHeader.MaxL2Bits)
            {
                throw new ImageCorruptException(path, "l2_bits", QcowHeader.L2BitsAt, $"l2_bits {header.L2Bits} is outside 6 to 13 (L2 tables of 512 bytes to 64 KiB)");
            }

            if (header.CryptMethod > QcowHeader.CryptAes)
            {
                throw new ImageCorruptException(path, "crypt_method", QcowHeader.CryptMethodAt, $"encryption method {header.CryptMethod} is neither none (0) nor AES (1)");
            }

            if (header.Size > long.MaxValue - (ulong)header.L2Span)
            {
                throw new ImageCorruptException(path, "size", QcowHeader.SizeAt, $"the virtual size {header.Size} is too large");
            }

            long l1Bytes = header.L1Entries * 8;
            ulong l1At = header.L1TableOffset;
            if (l1At < QcowHeader.Length || l1At > (ulong)length || (ulong)l1Bytes > (ulong)length - l1At)
            {
                throw new ImageCorruptException(path, "l1_table_offset", QcowHeader.L1TableOffsetAt, $"the L1 table ({l1Bytes} bytes at {l1At}, for a {header.Size}-byte disk) overlaps the header or lies past the end of the file ({length} bytes)");
            }

            if (header.BackingFileOffset != 0)
            {
                if (header.BackingFileSize > QcowHeader.MaxBackingFileName)
                {
                    throw new ImageCorruptException(path, "backing_file_size", QcowHeader.BackingFileSizeAt, $"the backing file name is {header.BackingFileSize} bytes long (at most {QcowHeader.MaxBackingFileName})");
                }

                if (header.BackingFileOffset > (ulong)length || header.BackingFileSize > (ulong)length - header.BackingFileOffset)
                {
                    throw new ImageCorruptException(path, "backing_file_offset", QcowHeader.BackingFileOffsetAt, $"the backing file name ({header.BackingFileSize} bytes at {header.BackingFileOffset}) lies past the end of the file ({length} bytes)");
                }
            }
        }

        private static BackingReference ReadBacking(HostFile file, QcowHeader header)
        {
            if (header.BackingFileOffset == 0 || header.BackingFileSize == 0)
            {
                return null;
            }

            var name = new byte[header.BackingFileSize];
            file.ReadExactly((long)header.BackingFileOffset, name, "backing file name");

            // qcow records no backing format: the parent is probed.
            return new BackingReference(Encoding.UTF8.GetString(name), null);
        }

        public override BlockStatus GetBlockStatus(long offset, long maxLength)
        {
            long end = Math.Min(_size, offset + Math.Max(1, maxLength));
            lock (_gate)
            {
                long cluster = offset >> ClusterBits;
                ulong entry = EntryOf(cluster);
                long next = (cluster + 1) << ClusterBits;
                if (entry == 0)
                {
                    // Whole L2 spans without a table are skipped at once.
                    while (next < end)
                    {
                        long l1Index = (next >> ClusterBits) >> _header.L2Bits;
                        if (_l1[l1Index] == 0)
                        {
                            next = (l1Index + 1) * _header.L2Span;
                        }
                        else if (PeekEntry(next >> ClusterBits) == 0)
                        {
                            next += _header.ClusterSize;
                        }
                        else
                        {
                            break;
                        }
                    }

                    return new BlockStatus(offset, Math.Min(end, next) - offset, ExtentKind.Unallocated);
                }

                if ((entry & CompressedFlag) != 0)
                {
                    return new BlockStatus(offset, Math.Min(end, next) - offset, ExtentKind.Data, compressed: true);
                }

                // Consecutive clusters stored back to back are one run. Encrypted data has no usable host
                // offset (qemu reports none either).
                long host = (long)entry;
                while (next < end)
                {
                    ulong? following = PeekEntry(next >> ClusterBits);
                    if (following != (ulong)(host + (next - (offset & ~ClusterMask))))
                    {
                        break;
                    }

                    next += _header.ClusterSize;
                }

                long hostOffset = Encrypted ? -1 : host + (offset & ClusterMask);
                return new BlockStatus(offset, Math.Min(end, next) - offset, ExtentKind.Data, hostOffset);
            }
        }

        public override void Describe(VDiskInfo info)
        {
            info.Encrypted = Encrypted;
            info.Compressed = false;
            info.FormatSpecific["encryption"] = Encrypted ? "aes" : "none";
            info.FormatSpecific["l2-table-size"] = L2Bytes;
            info.FormatSpecific["mtime"] = _header.Mtime;
        }

        public override void Flush()
        {
            if (IsWritable)
            {
                _file.Flush();
            }
        }

        protected override void ReadData(long offset, Span<byte> buffer, BlockStatus status)
        {
            if (!status.Compressed && status.HostOffset >= 0)
            {
                _file.ReadExactly(status.HostOffset + (offset - status.GuestOffset), buffer, "data cluster");
                return;
            }

            while (buffer.Length > 0)
            {
                long cluster = offset >> ClusterBits;
                int inCluster = (int)(offset & ClusterMask);
                int n = Math.Min(buffer.Length, _header.ClusterSize - inCluster);
                ulong entry;
                lock (_gate)
                {
                    entry = EntryOf(cluster);
                }

                if ((entry & CompressedFlag) != 0)
                {
                    ReadCompressed(cluster, entry, inCluster, buffer.Slice(0, n));
                }
                else
                {
                    ReadEncrypted(offset, (long)entry + inCluster, buffer.Slice(0, n));
                }

                offset += n;
                buffer = buffer.Slice(n);
            }
        }

        /// <summary>Decrypts the sectors under <paramref name="buffer"/> (one cluster at most) from the host bytes at <paramref name="host"/>.</summary>
        private void ReadEncrypted(long offset, long host, Span<byte> buffer)
        {
            AesSectorCipher cipher = _cipher ?? throw new ImagePasswordException(Path, missing: true);
            long first = offset & ~511L;
            int skip = (int)(offset - first);
            int length = (skip + buffer.Length + 511) & ~511;
            var sectors = new byte[length];
            _file.ReadExactly(host - skip, sectors, "encrypted cluster");
            cipher.Decrypt(first / 512, sectors, 0, length);
            sectors.AsSpan(skip, buffer.Length).CopyTo(buffer);
        }

        private void ReadCompressed(long cluster, ulong entry, int inCluster, Span<byte> buffer)
        {
            long host = (long)(entry & CompressedOffsetMask);
            lock (_gate)
            {
                if (_inflatedAt != host)
                {
                    _inflated = Inflate(cluster, entry);
                    _inflatedAt = host;
                }

                _inflated.AsSpan(inCluster, buffer.Length).CopyTo(buffer);
            }
        }

        /// <summary>qcow.c decompress_cluster: raw deflate that must fill exactly one cluster.</summary>
        private byte[] Inflate(long cluster, ulong entry)
        {
            long host = (long)(entry & CompressedOffsetMask);
            int length = CompressedLength(entry);
            var compressed = new byte[length];
            _file.ReadExactly(host, compressed, "compressed cluster");
            var output = new byte[_header.ClusterSize];
            int produced;
            try
            {
                produced = Deflate.DecompressRaw(compressed, output);
            }
            catch (InvalidDataException e)
            {
                throw new ImageCorruptException(Path, $"compressed cluster {cluster}", host, $"the deflate data does not decompress: {e.Message}", e) { Kind = ImageErrorKind.DamageNeedsCheck };
            }

            if (produced != output.Length)
            {
                throw new ImageCorruptException(Path, $"compressed cluster {cluster}", host, $"the deflate data gives {produced} bytes, not one {output.Length}-byte cluster") { Kind = ImageErrorKind.DamageNeedsCheck };
            }

            return output;
        }

        /// <summary>qcow.c: the compressed size in bytes, in the cluster_bits bits below the flag.</summary>
        private int CompressedLength(ulong entry) => (int)((entry >> (63 - ClusterBits)) & (ulong)ClusterMask);

        /// <summary>The L2 entry of guest cluster <paramref name="cluster"/>, checked against the file; call under the gate.</summary>
        private ulong EntryOf(long cluster)
        {
            long l1Index = cluster >> _header.L2Bits;
            ulong[] table = TableOf(l1Index);
            if (table == null)
            {
                return 0;
            }

            int index = (int)(cluster & (_header.L2Entries - 1));
            ulong entry = table[index];
            if (entry != 0)
            {
                string problem = EntryProblem(entry);
                if (problem != null)
                {
                    throw new ImageCorruptException(Path, $"L2 entry {index} of table {l1Index}", (long)_l1[l1Index] + (index * 8L), problem) { Kind = ImageErrorKind.DamageNeedsCheck };
                }
            }

            return entry;
        }

        /// <summary>
        /// The entry of a cluster a run might extend into, or null when its table or entry is damaged: the run
        /// stops before it, and the damage is reported when that cluster itself is asked for.
        /// </summary>
        private ulong? PeekEntry(long cluster)
        {
            try
            {
                return EntryOf(cluster);
            }
            catch (ImageCorruptException)
            {
                return null;
            }
        }

        /// <summary>Why an L2 entry cannot be used (it leaves the file, or lands on the header or L1 table), or null.</summary>
        private string EntryProblem(ulong entry)
        {
            long host;
            long length;
            if ((entry & CompressedFlag) != 0)
            {
                host = (long)(entry & CompressedOffsetMask);
                length = CompressedLength(entry);
                if (length == 0)
                {
                    return "a compressed cluster of 0 bytes";
                }
            }
            else
            {
                host = (long)entry;
                length = _header.ClusterSize;
                if ((host & 511) != 0)
                {
                    return $"the cluster offset {host} is not a multiple of 512";
                }
            }

            if (host > _fileEnd - length)
            {
                return $"the cluster ({length} bytes at {host}) lies past the end of the file ({_fileEnd} bytes)";
            }

            return OverlapsFixedMetadata(host, length) ? $"the cluster ({length} bytes at {host}) overlaps the header or the L1 table" : null;
        }

        private bool OverlapsFixedMetadata(long host, long length)
        {
            long l1At = (long)_header.L1TableOffset;
            return host < QcowHeader.Length || (host < l1At + L1Bytes && l1At < host + length);
        }

        /// <summary>The L2 table an L1 entry names (null when unallocated), loaded and checked on first use; call under the gate.</summary>
        private ulong[] TableOf(long l1Index)
        {
            ulong l2At = _l1[l1Index];
            if (l2At == 0)
            {
                return null;
            }

            if (_tables.TryGetValue(l1Index, out ulong[] table))
            {
                return table;
            }

            if (l2At > (ulong)_fileEnd || (ulong)L2Bytes > (ulong)_fileEnd - l2At || OverlapsFixedMetadata((long)l2At, L2Bytes))
            {
                throw new ImageCorruptException(Path, $"L1 entry {l1Index}", (long)_header.L1TableOffset + (l1Index * 8), $"the L2 table ({L2Bytes} bytes at {l2At}) lies past the end of the file ({_fileEnd} bytes) or overlaps the header or the L1 table") { Kind = ImageErrorKind.DamageNeedsCheck };
            }

            var raw = new byte[L2Bytes];
            _file.ReadExactly((long)l2At, raw, "L2 table");
            table = new ulong[_header.L2Entries];
            for (int i = 0; i < table.Length; i++)
            {
                table[i] = BinaryPrimitives.ReadUInt64BigEndian(raw.AsSpan(i * 8));
            }

            if (_tables.Count >= MaxCachedTables)
            {
                _tables.Clear();
            }

            _tables[l1Index] = table;
            return table;
        }

        protected override void Dispose(bool disposing)
        {
            try
            {
                if (IsWritable)
                {
                    _file.Flush();
                }
            }
            finally
            {
                _cipher?.Dispose();
                _file.Dispose();
            }
        }
    }
}
