using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using VDiskPS;

namespace VDiskPS.Formats.Qed
{
    /// <summary>
    /// A QEMU Enhanced Disk image (qemu docs/interop/qed_spec.txt): header cluster(s), an L1 table of L2
    /// table offsets, L2 tables of data cluster offsets (0 unallocated, 1 zero cluster), data clusters
    /// appended at the end of the file. Unallocated clusters read from the backing file.
    /// </summary>
    public sealed partial class QedLayer : ImageLayer
    {
        /// <summary>L2 tables kept in memory at most, in bytes, before the cache starts over.</summary>
        private const long L2CacheBytes = 64L << 20;

        private readonly HostFile _file;
        private readonly object _gate = new object();
        private readonly Dictionary<long, ulong[]> _l2Cache = new Dictionary<long, ulong[]>();
        private readonly QedHeader _header;
        private readonly ulong[] _l1;
        private BackingReference _backing;
        private readonly int _clusterShift;
        private readonly int _l1Shift;

        /// <summary>The file length rounded down to a cluster: where the next cluster is allocated (qed.c file_size).</summary>
        private long _fileSize;

        private QedLayer(HostFile file, QedHeader header, ulong[] l1, BackingReference backing)
            : base(file.Path, file.CanWrite)
        {
            _file = file;
            _header = header;
            _l1 = l1;
            _backing = backing;
            _clusterShift = Log2(header.ClusterSize);
            _l1Shift = _clusterShift + Log2((ulong)header.TableEntries);
            _fileSize = file.Length / header.ClusterSize * header.ClusterSize;
        }

        public override DiskFormat Format => QedDriver.Id;

        public override long Size => (long)_header.ImageSize;

        public override int ClusterSize => (int)_header.ClusterSize;

        public override BackingReference Backing => _backing;

        /// <summary>The need-check flag: the image was not closed cleanly, its tables may be inconsistent.</summary>
        public bool NeedsCheck => _header.NeedCheck;

        private long ClusterBytes => _header.ClusterSize;

        private long TableBytes => (long)_header.TableSize * _header.ClusterSize;

        private long HeaderBytes => (long)_header.HeaderSize * _header.ClusterSize;

        internal static QedLayer Open(HostFile file, OpenOptions options)
        {
            long length = file.Length;
            if (length < QedHeader.Length)
            {
                throw new ImageFormatMismatchException(file.Path, "header", 0, $"not a QED image: the file is {length} bytes, shorter than a header");
            }

            var raw = new byte[QedHeader.Length];
            file.ReadExactly(0, raw, "header");
            if (!QedHeader.HasMagic(raw))
            {
                throw new ImageFormatMismatchException(file.Path, "magic", 0, "not a QED image: the magic QED\\0 is missing");
            }

            QedHeader header = QedHeader.FromBytes(raw);
            header.Validate(file.Path, length);
            BackingReference backing = null;
            if (header.HasBackingFile)
            {
                var name = new byte[header.BackingNameSize];
                file.ReadExactly(header.BackingNameOffset, name, "backing file name");
                string recorded = QedHeader.DecodeName(name);
                if (recorded.Length == 0)
                {
                    throw new ImageCorruptException(file.Path, "backing file name", QedHeader.BackingNameSizeOffset, "the backing file flag is set but the name is empty");
                }

                // The no-probe flag says the backing file is plain data; any other format is probed, as in qemu.
                backing = new BackingReference(recorded, header.BackingIsPlainData ? FormatRegistry.Default.PlainDataFormat : (DiskFormat?)null);
            }

            var l1Raw = new byte[(long)header.TableSize * header.ClusterSize];
            file.ReadExactly((long)header.L1TableOffset, l1Raw, "L1 table");
            var layer = new QedLayer(file, header, DecodeTable(l1Raw), backing);
            if (file.CanWrite)
            {
                layer.PrepareForWriting();
            }

            return layer;
        }

        public override BlockStatus GetBlockStatus(long offset, long maxLength)
        {
            long end = Math.Min(Size, offset + Math.Max(1, maxLength));
            lock (_gate)
            {
                long l1Index = offset >> _l1Shift;
                long tableEnd = Math.Min(end, (l1Index + 1) << _l1Shift);
                ulong l2Offset = _l1[l1Index];
                if (l2Offset == 0)
                {
                    // Whole L2 ranges without a table merge into one unallocated run.
                    long next = l1Index + 1;
                    while (tableEnd < end && _l1[next] == 0)
                    {
                        tableEnd = Math.Min(end, (++next) << _l1Shift);
                    }

                    return new BlockStatus(offset, tableEnd - offset, ExtentKind.Unallocated);
                }

                ulong[] l2 = L2Table(l1Index);
                long cs = ClusterBytes;
                long index = (offset >> _clusterShift) & (_header.TableEntries - 1);
                ulong first = l2[index];
                long inCluster = offset & (cs - 1);
                long runEnd = Math.Min(tableEnd, offset - inCluster + cs);
                long i = index + 1;
                ulong last = first;
                while (runEnd < tableEnd && SameRun(first, last, l2[i]))
                {
                    last = l2[i];
                    runEnd = Math.Min(tableEnd, runEnd + cs);
                    i++;
                }

                if (first == 0)
                {
                    return new BlockStatus(offset, runEnd - offset, ExtentKind.Unallocated);
                }

                if (first == 1)
                {
                    return new BlockStatus(offset, runEnd - offset, ExtentKind.Zero);
                }

                ThrowIfBadData(l1Index, index, first);
                for (long j = index + 1; j < i; j++)
                {
                    ThrowIfBadData(l1Index, j, l2[j]);
                }

                return new BlockStatus(offset, runEnd - offset, ExtentKind.Data, (long)first + inCluster);
            }
        }

        public override void Describe(VDiskInfo info)
        {
            info.Dirty = _header.NeedCheck;
            info.FormatSpecific["table-size"] = _header.TableSize;
            info.FormatSpecific["need-check"] = _header.NeedCheck;
            if (_backing != null)
            {
                info.FormatSpecific["backing-format-no-probe"] = _header.BackingIsPlainData;
            }
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
            _file.ReadZeroPadded(status.HostOffset + (offset - status.GuestOffset), buffer);
        }

        protected override void Dispose(bool disposing)
        {
            try
            {
                if (IsWritable)
                {
                    CloseCleanly();
                }
            }
            finally
            {
                _file.Dispose();
            }
        }

        /// <summary>qed-cluster.c qed_count_contiguous_clusters: unallocated, zero, or data clusters that follow each other in the file.</summary>
        private bool SameRun(ulong first, ulong last, ulong next)
        {
            if (first <= 1)
            {
                return next == first;
            }

            return next == last + (ulong)ClusterBytes;
        }

        private static ulong[] DecodeTable(byte[] raw)
        {
            var table = new ulong[raw.Length / 8];
            for (int i = 0; i < table.Length; i++)
            {
                table[i] = BinaryPrimitives.ReadUInt64LittleEndian(raw.AsSpan(i * 8));
            }

            return table;
        }

        private static int Log2(ulong value)
        {
            int shift = 0;
            while ((1UL << shift) < value)
            {
                shift++;
            }

            return shift;
        }

        /// <summary>qed.h qed_check_cluster_offset: aligned, past the header, inside the file.</summary>
        private bool IsValidCluster(ulong offset) => (offset & (ulong)(ClusterBytes - 1)) == 0 && offset >= (ulong)HeaderBytes && offset < (ulong)_fileSize;

        /// <summary>A table's clusters all lie inside the file (qed.h qed_check_table_offset, without its one-cluster quirk).</summary>
        private bool IsValidTable(ulong offset) => IsValidCluster(offset) && offset <= (ulong)(_fileSize - TableBytes);

        private long L1EntryOffset(long l1Index) => (long)_header.L1TableOffset + (l1Index * 8);

        /// <summary>The L2 table the L1 entry names (which must be non-zero), from the cache or the file. Under _gate.</summary>
        private ulong[] L2Table(long l1Index)
        {
            ulong l2Offset = _l1[l1Index];
            if (!IsValidTable(l2Offset))
            {
                throw new ImageCorruptException(Path, $"L1 entry {l1Index}", L1EntryOffset(l1Index),
                    $"the L2 table offset 0x{l2Offset:x} is unaligned, inside the header or outside the file") { Kind = ImageErrorKind.DamageNeedsCheck };
            }

            if (_l2Cache.TryGetValue((long)l2Offset, out ulong[] cached))
            {
                return cached;
            }

            if ((_l2Cache.Count + 1) * TableBytes > L2CacheBytes)
            {
                _l2Cache.Clear();
            }

            var raw = new byte[TableBytes];
            _file.ReadExactly((long)l2Offset, raw, $"L2 table {l1Index}");
            ulong[] table = DecodeTable(raw);
            _l2Cache[(long)l2Offset] = table;
            return table;
        }

        private void ThrowIfBadData(long l1Index, long l2Index, ulong entry)
        {
            if (!IsValidCluster(entry))
            {
                throw new ImageCorruptException(Path, $"L2 table {l1Index} entry {l2Index}", (long)_l1[l1Index] + (l2Index * 8),
                    $"the data cluster offset 0x{entry:x} is unaligned, inside the header or outside the file") { Kind = ImageErrorKind.DamageNeedsCheck };
            }
        }
    }
}
