using System;
using System.Buffers;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.IO.Compression;
using System.Text;
using VDiskPS.Formats.Compression;

namespace VDiskPS.Formats.Qcow
{
    /// <summary>
    /// Creating and writing, as block/qcow.c does: new L2 tables and clusters go at the end of the file,
    /// rounded up to a cluster; compressed clusters are appended byte-exact. The data is written before
    /// the table entry that points to it, and a new L2 table before the L1 entry that names it.
    /// </summary>
    internal sealed partial class QcowLayer : ICompressedWriteLayer
    {
        /// <summary>New clusters staged for one host write at most.</summary>
        private const int MaxClustersPerAllocation = 256;

        /// <summary>
        /// Compressed clusters are inflated by QEMU with a 4 KiB window (qcow.c: windowBits -12); the deflate
        /// here uses a larger one, which only a cluster of at most 4 KiB cannot exceed.
        /// </summary>
        private const int MaxCompressedCluster = 4096;

        /// <summary>The file's length: where the next structure is appended.</summary>
        private long _fileEnd;

        /// <summary>The L2 tables' host offsets, ascending, for refusing a data write onto a table; built at the first write.</summary>
        private List<long> _tableOffsets;

        internal static QcowLayer Create(HostFile file, long size, int clusterBits, int l2Bits, string backingFile)
        {
            byte[] name = backingFile == null ? Array.Empty<byte>() : Encoding.UTF8.GetBytes(backingFile);
            var header = new QcowHeader
            {
                Size = (ulong)size,
                ClusterBits = clusterBits,
                L2Bits = l2Bits,
                CryptMethod = QcowHeader.CryptNone,
                BackingFileOffset = name.Length == 0 ? 0 : (ulong)QcowHeader.Length,
                BackingFileSize = (uint)name.Length,
            };
            long l1At = MetadataStart(name.Length);
            header.L1TableOffset = (ulong)l1At;
            long l1Region = L1Region(header.L1Entries);
            file.WriteAt(0, header.ToBytes());
            if (name.Length > 0)
            {
                file.WriteAt(QcowHeader.Length, name);
            }

            // qcow.c writes the (empty) L1 table as whole zeroed sectors.
            file.WriteZeros(QcowHeader.Length + name.Length, l1At + l1Region - QcowHeader.Length - name.Length);
            file.Flush();
            var l1 = new ulong[header.L1Entries];
            BackingReference backing = name.Length == 0 ? null : new BackingReference(backingFile, null);
            return new QcowLayer(file, header, l1, backing);
        }

        /// <summary>Where the L1 table starts: after the header and the backing file name, 8-byte aligned.</summary>
        internal static long MetadataStart(int backingNameLength) => (QcowHeader.Length + backingNameLength + 7) & ~7L;

        /// <summary>The L1 table's bytes on disk (whole 512-byte sectors, as qemu writes it).</summary>
        internal static long L1Region(long l1Entries) => (l1Entries * 8 + 511) / 512 * 512;

        public int CompressionUnit => _header.ClusterSize;

        /// <summary>Pure and thread-safe: pads to one cluster and deflates it; null when that does not shrink it or QEMU could not inflate it.</summary>
        public byte[] Compress(ReadOnlySpan<byte> unit)
        {
            int cs = _header.ClusterSize;
            if (cs > MaxCompressedCluster)
            {
                return null;
            }

            byte[] padded = new byte[cs];
            unit.Slice(0, Math.Min(unit.Length, cs)).CopyTo(padded);
            byte[] compressed = Deflate.CompressRaw(padded, CompressionLevel.Optimal);

            // qcow.c stores the cluster plainly when the deflate output is not shorter than a cluster.
            return compressed.Length < cs ? compressed : null;
        }

        public void WriteCompressed(long offset, byte[] compressed)
        {
            EnsureWritable();
            if ((offset & ClusterMask) != 0 || offset < 0 || offset >= _size)
            {
                throw new ArgumentOutOfRangeException(nameof(offset), $"{Path}: compressed writes take whole clusters; {offset} is not a cluster start inside the disk");
            }

            if (compressed == null || compressed.Length == 0 || compressed.Length >= _header.ClusterSize)
            {
                throw new ArgumentException("the compressed cluster must be 1 to cluster_size - 1 bytes (use Compress)", nameof(compressed));
            }

            lock (_gate)
            {
                long cluster = offset >> ClusterBits;
                EntryOf(cluster);
                ulong[] table = EnsureTable(cluster >> _header.L2Bits);
                long host = _fileEnd;
                _file.WriteAt(host, compressed);
                _fileEnd = host + compressed.Length;
                ulong entry = CompressedFlag | ((ulong)compressed.Length << (63 - ClusterBits)) | (ulong)host;
                SetEntries(cluster, table, new[] { entry });
                if (_inflatedAt == host)
                {
                    _inflatedAt = -1;
                }
            }
        }

        protected override void WriteCore(long offset, ReadOnlySpan<byte> data)
        {
            lock (_gate)
            {
                // Every cluster the write touches is checked before anything is written, so that a write
                // refused for a damaged table leaves the file as it was.
                long last = (offset + data.Length - 1) >> ClusterBits;
                for (long c = offset >> ClusterBits; c <= last; c++)
                {
                    ulong entry = EntryOf(c);
                    if (entry != 0 && (entry & CompressedFlag) == 0)
                    {
                        RefuseWriteOntoTable(c, (long)entry);
                    }
                }

                while (data.Length > 0)
                {
                    long cluster = offset >> ClusterBits;
                    ulong entry = EntryOf(cluster);
                    int consumed;
                    if (entry != 0 && (entry & CompressedFlag) == 0)
                    {
                        int inCluster = (int)(offset & ClusterMask);
                        consumed = Math.Min(data.Length, _header.ClusterSize - inCluster);
                        _file.WriteAt((long)entry + inCluster, data.Slice(0, consumed));
                    }
                    else
                    {
                        consumed = Allocate(offset, data);
                    }

                    offset += consumed;
                    data = data.Slice(consumed);
                }
            }
        }

        protected override void WriteZeroesCore(long offset, long length)
        {
            // qcow has no zero clusters: an unallocated cluster of an image without a backing file reads as
            // zeros already; anything else is written with zeros.
            long end = offset + length;
            while (offset < end)
            {
                long next = Math.Min(end, ((offset >> ClusterBits) + 1) << ClusterBits);
                bool readsZero;
                lock (_gate)
                {
                    readsZero = _backing == null && EntryOf(offset >> ClusterBits) == 0;
                }

                if (!readsZero)
                {
                    base.WriteZeroesCore(offset, next - offset);
                }

                offset = next;
            }
        }

        /// <summary>
        /// New clusters for the unallocated or compressed clusters from <paramref name="offset"/> on (within
        /// one L2 table): the written bytes over what the clusters read as before (the backing file, or the
        /// decompressed data), appended in one host write; returns the bytes of <paramref name="data"/> used.
        /// </summary>
        private int Allocate(long offset, ReadOnlySpan<byte> data)
        {
            int cs = _header.ClusterSize;
            long firstCluster = offset >> ClusterBits;
            long end = offset + data.Length;
            long tableEnd = ((firstCluster >> _header.L2Bits) + 1) << _header.L2Bits;
            int count = 1;
            while (count < MaxClustersPerAllocation && firstCluster + count < tableEnd && (firstCluster + count) << ClusterBits < end)
            {
                ulong following = EntryOf(firstCluster + count);
                if (following != 0 && (following & CompressedFlag) == 0)
                {
                    break;
                }

                count++;
            }

            long guestStart = firstCluster << ClusterBits;
            int consumed = (int)(Math.Min(end, guestStart + ((long)count << ClusterBits)) - offset);
            int total = count * cs;
            byte[] staging = ArrayPool<byte>.Shared.Rent(total);
            try
            {
                var entries = new ulong[count];
                for (int i = 0; i < count; i++)
                {
                    long clusterStart = guestStart + ((long)i << ClusterBits);
                    Span<byte> content = staging.AsSpan(i * cs, cs);
                    content.Clear();
                    bool covered = offset <= clusterStart && end >= clusterStart + cs;
                    ulong old = EntryOf(firstCluster + i);
                    if (covered)
                    {
                        continue;
                    }

                    if (old != 0)
                    {
                        Inflate(firstCluster + i, old).CopyTo(content);
                    }
                    else if (_backing != null)
                    {
                        long inDisk = Math.Min(cs, _size - clusterStart);
                        ReadFromParent(clusterStart, content.Slice(0, (int)inDisk));
                    }
                }

                data.Slice(0, consumed).CopyTo(staging.AsSpan((int)(offset - guestStart)));
                ulong[] table = EnsureTable(firstCluster >> _header.L2Bits);
                long host = AlignUp(_fileEnd);
                _file.WriteAt(host, staging.AsSpan(0, total));
                _fileEnd = host + total;
                for (int i = 0; i < count; i++)
                {
                    entries[i] = (ulong)(host + ((long)i << ClusterBits));
                }

                SetEntries(firstCluster, table, entries);
                _inflatedAt = -1;
                return consumed;
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(staging);
            }
        }

        /// <summary>The L2 table for <paramref name="l1Index"/>, appended zeroed (and then named in the L1 table) when it has none.</summary>
        private ulong[] EnsureTable(long l1Index)
        {
            ulong[] table = TableOf(l1Index);
            if (table != null)
            {
                return table;
            }

            List<long> offsets = TableOffsets();
            long at = AlignUp(_fileEnd);
            _file.WriteZeros(at, L2Bytes);
            _fileEnd = at + L2Bytes;
            WriteL1Entry(l1Index, (ulong)at);
            offsets.Add(at);
            table = new ulong[_header.L2Entries];
            if (_tables.Count >= MaxCachedTables)
            {
                _tables.Clear();
            }

            _tables[l1Index] = table;
            return table;
        }

        /// <summary>Sets consecutive entries from <paramref name="firstCluster"/> (one table) in memory and on disk, in one write.</summary>
        private void SetEntries(long firstCluster, ulong[] table, ulong[] entries)
        {
            int index = (int)(firstCluster & (_header.L2Entries - 1));
            var raw = new byte[entries.Length * 8];
            for (int i = 0; i < entries.Length; i++)
            {
                table[index + i] = entries[i];
                BinaryPrimitives.WriteUInt64BigEndian(raw.AsSpan(i * 8), entries[i]);
            }

            _file.WriteAt((long)_l1[firstCluster >> _header.L2Bits] + (index * 8L), raw);
        }

        /// <summary>A damaged entry pointing a data cluster onto an L2 table would turn the write into table damage: refused.</summary>
        private void RefuseWriteOntoTable(long cluster, long host)
        {
            List<long> tables = TableOffsets();
            int i = tables.BinarySearch(host);
            int below = i >= 0 ? i : ~i - 1;
            bool hitsBelow = below >= 0 && tables[below] + L2Bytes > host;
            int above = i >= 0 ? i : ~i;
            bool hitsAbove = above < tables.Count && tables[above] < host + _header.ClusterSize;
            if (hitsBelow || hitsAbove)
            {
                long l1Index = cluster >> _header.L2Bits;
                int index = (int)(cluster & (_header.L2Entries - 1));
                throw new ImageCorruptException(Path, $"L2 entry {index} of table {l1Index}", (long)_l1[l1Index] + (index * 8L), $"the data cluster at {host} overlaps an L2 table; writing it would damage the table") { Kind = ImageErrorKind.DamageNeedsCheck };
            }
        }

        private List<long> TableOffsets()
        {
            if (_tableOffsets == null)
            {
                var offsets = new List<long>();
                foreach (ulong at in _l1)
                {
                    if (at != 0)
                    {
                        offsets.Add((long)at);
                    }
                }

                offsets.Sort();
                _tableOffsets = offsets;
            }

            return _tableOffsets;
        }

        private long AlignUp(long value) => (value + ClusterMask) & ~ClusterMask;
    }
}
