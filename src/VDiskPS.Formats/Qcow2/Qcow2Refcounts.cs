using System;
using System.Buffers.Binary;
using System.Collections.Generic;

namespace VDiskPS.Formats.Qcow2
{
    /// <summary>
    /// The two-level refcount structure (qcow2.rst "Cluster refcounts"): a table of refcount block
    /// offsets and blocks of 2^refcount_order-bit counts. Blocks are cached (bounded) and changes are
    /// written back by <see cref="Flush"/>: blocks first, then the table, then the header, so that a
    /// crash leaves at worst leaked clusters. New clusters are taken at the end of the file.
    /// </summary>
    internal sealed class Qcow2Refcounts
    {
        private const long MaxCachedBytes = 32L << 20;

        private readonly HostFile _file;
        private readonly int _clusterBits;
        private readonly int _order;
        private readonly int _entriesPerBlockBits;
        private readonly Dictionary<long, byte[]> _blocks = new Dictionary<long, byte[]>();
        /// <summary>Changed blocks and the byte range changed in each, so a flush writes only that range.</summary>
        private readonly Dictionary<long, KeyValuePair<int, int>> _dirtyBlocks = new Dictionary<long, KeyValuePair<int, int>>();
        private readonly Action<long, int> _tableMoved;
        private long[] _table;
        private long _tableOffset;
        private bool _tableDirty;
        private readonly List<KeyValuePair<long, int>> _retiredTables = new List<KeyValuePair<long, int>>();
        private long _end;

        /// <summary>No cluster below this index is free (the free-run search starts here).</summary>
        private long _freeHint;

        private const long MaxFreeScan = 1 << 16;

        /// <summary>The shortest run length a full search failed to find since the last cluster was freed.</summary>
        private long _failedRunLength = long.MaxValue;

        public Qcow2Refcounts(HostFile file, int clusterBits, int order, long tableOffset, long[] table, Action<long, int> tableMoved)
        {
            _file = file;
            _clusterBits = clusterBits;
            _order = order;
            _entriesPerBlockBits = clusterBits + 3 - order;
            _tableOffset = tableOffset;
            _table = table;
            _tableMoved = tableMoved;
            _end = (file.Length + ClusterSize - 1) >> clusterBits;
        }

        public int ClusterSize => 1 << _clusterBits;

        public long TableOffset => _tableOffset;

        public int TableClusters => (int)(((long)_table.Length * 8 + ClusterSize - 1) >> _clusterBits);

        public IReadOnlyList<long> Table => _table;

        public long MaxRefcount => _order == 6 ? long.MaxValue : (1L << (1 << _order)) - 1;

        /// <summary>How many times a cluster's refcount dropped to zero (a freed cluster may be handed out again).</summary>
        public long FreedCount { get; private set; }

        /// <summary>The first cluster index past everything allocated so far (where new clusters go).</summary>
        public long EndCluster => _end;

        public static Qcow2Refcounts Load(HostFile file, Qcow2Header header, Action<long, int> tableMoved)
        {
            long bytes = (long)header.RefcountTableClusters << header.ClusterBits;
            var raw = new byte[bytes];
            file.ReadExactly(header.RefcountTableOffset, raw, "refcount table");
            var table = new long[bytes / 8];
            for (int i = 0; i < table.Length; i++)
            {
                table[i] = (long)(BinaryPrimitives.ReadUInt64BigEndian(raw.AsSpan(i * 8)) & 0x7FFFFFFFFFFFFFFFUL);
            }

            return new Qcow2Refcounts(file, header.ClusterBits, header.RefcountOrder, header.RefcountTableOffset, table, tableMoved);
        }

        public long Get(long cluster)
        {
            long blockIndex = cluster >> _entriesPerBlockBits;
            if (cluster < 0 || blockIndex >= _table.Length || _table[blockIndex] == 0)
            {
                return 0;
            }

            byte[] block = LoadBlock(blockIndex);
            return ReadEntry(block, (int)(cluster & ((1L << _entriesPerBlockBits) - 1)), _order);
        }

        /// <summary>Adds <paramref name="delta"/> to a cluster's refcount; refuses to go below 0 or above the width.</summary>
        public long Adjust(long cluster, long delta)
        {
            long current = Get(cluster);
            long value = current + delta;
            if (value < 0 || value > MaxRefcount || (delta > 0 && value < current))
            {
                throw new ImageCorruptException(_file.Path, "refcount", cluster << _clusterBits,
                    $"the refcount of cluster {cluster} would become {(value < 0 ? "negative" : "larger than " + MaxRefcount)}");
            }

            Set(cluster, value);
            return value;
        }

        public void Set(long cluster, long value)
        {
            long blockIndex = cluster >> _entriesPerBlockBits;
            EnsureBlock(blockIndex);
            byte[] block = LoadBlock(blockIndex);
            int index = (int)(cluster & ((1L << _entriesPerBlockBits) - 1));
            WriteEntry(block, index, _order, value);
            int byteStart = (int)(((long)index << _order) >> 3);
            int byteEnd = byteStart + Math.Max(1, (1 << _order) >> 3);
            MarkDirty(blockIndex, byteStart, byteEnd);
            if (value > 0 && cluster >= _end)
            {
                _end = cluster + 1;
            }

            if (value == 0)
            {
                FreedCount++;
                _failedRunLength = long.MaxValue;
                _freeHint = Math.Min(_freeHint, cluster);
            }
        }

        /// <summary>
        /// Takes <paramref name="count"/> contiguous free clusters with refcount 1 and returns the first's
        /// host offset: a free run inside the file when there is one (callers write such clusters whole),
        /// else at the end of the file, or always at the end with <paramref name="atEnd"/> (where unwritten
        /// clusters must read as zeros).
        /// </summary>
        public long Allocate(long count, bool atEnd = false)
        {
            if (!atEnd)
            {
                long free = FindFreeRun(count);
                if (free >= 0)
                {
                    for (long c = free; c < free + count; c++)
                    {
                        Set(c, 1);
                    }

                    return free << _clusterBits;
                }
            }

            while (true)
            {
                long start = _end;
                long bad = -1;
                for (long c = start; c < start + count; c++)
                {
                    if (Get(c) != 0)
                    {
                        bad = c;
                    }
                }

                if (bad >= 0)
                {
                    _end = bad + 1;
                    continue;
                }

                // Blocks or a grown table that Set needs go after the run, at the new end.
                _end = start + count;
                for (long c = start; c < start + count; c++)
                {
                    Set(c, 1);
                }

                return start << _clusterBits;
            }
        }

        /// <summary>
        /// A run of <paramref name="count"/> clusters with refcount 0 below the end, searching from the
        /// lowest cluster that may be free and at most <see cref="MaxFreeScan"/> clusters per call; -1 when none.
        /// </summary>
        private long FindFreeRun(long count)
        {
            if (count >= _failedRunLength)
            {
                // A search since the last free found no run this long; appended clusters are all in use.
                return -1;
            }

            long limit = Math.Min(_end, _freeHint + MaxFreeScan);
            long runStart = -1;
            long firstFree = -1;
            for (long c = _freeHint; c < limit; c++)
            {
                if (Get(c) != 0)
                {
                    runStart = -1;
                    continue;
                }

                if (firstFree < 0)
                {
                    firstFree = c;
                }

                if (runStart < 0)
                {
                    runStart = c;
                }

                if (c - runStart + 1 == count)
                {
                    _freeHint = firstFree == runStart ? runStart + count : firstFree;
                    return runStart;
                }
            }

            // Nothing fits: later searches start at the first free cluster seen, or where this one stopped.
            _freeHint = firstFree >= 0 ? (limit == _end ? firstFree : limit) : limit;
            if (limit == _end)
            {
                _failedRunLength = Math.Min(_failedRunLength, count);
            }

            return -1;
        }

        /// <summary>The first cluster index past the last cluster whose refcount is not zero (0 when none is).</summary>
        public long UsedEnd()
        {
            for (long blockIndex = _table.Length - 1; blockIndex >= 0; blockIndex--)
            {
                if (_table[blockIndex] == 0)
                {
                    continue;
                }

                byte[] block = LoadBlock(blockIndex);
                for (int index = (1 << _entriesPerBlockBits) - 1; index >= 0; index--)
                {
                    if (ReadEntry(block, index, _order) != 0)
                    {
                        return (blockIndex << _entriesPerBlockBits) + index + 1;
                    }
                }
            }

            return 0;
        }

        /// <summary>
        /// The runs of clusters with refcount 0 below <paramref name="endCluster"/>, as (first cluster,
        /// cluster count); a refcount table entry of 0 stands for a whole block of free clusters.
        /// </summary>
        public IEnumerable<KeyValuePair<long, long>> FreeRuns(long endCluster)
        {
            long perBlock = 1L << _entriesPerBlockBits;
            long runStart = -1;
            for (long cluster = 0; cluster < endCluster; cluster++)
            {
                long blockIndex = cluster >> _entriesPerBlockBits;
                if (blockIndex >= _table.Length || _table[blockIndex] == 0)
                {
                    // The whole block is free: jump to its last cluster inside the range.
                    cluster = Math.Min(endCluster, (blockIndex + 1) * perBlock) - 1;
                    if (runStart < 0)
                    {
                        runStart = blockIndex * perBlock;
                    }

                    continue;
                }

                bool free = ReadEntry(LoadBlock(blockIndex), (int)(cluster & (perBlock - 1)), _order) == 0;
                if (free && runStart < 0)
                {
                    runStart = cluster;
                }
                else if (!free && runStart >= 0)
                {
                    yield return new KeyValuePair<long, long>(runStart, cluster - runStart);
                    runStart = -1;
                }
            }

            if (runStart >= 0)
            {
                yield return new KeyValuePair<long, long>(runStart, endCluster - runStart);
            }
        }

        /// <summary>The file was cut after <paramref name="endCluster"/>: new clusters go there from now on.</summary>
        public void Truncated(long endCluster)
        {
            _end = endCluster;
            _freeHint = Math.Min(_freeHint, endCluster);
        }

        /// <summary>Writes changed blocks, then a moved or changed table and the header, then frees a retired table.</summary>
        public void Flush()
        {
            WriteDirtyBlocks();
            if (_tableDirty)
            {
                _file.WriteAt(_tableOffset, SerializeTable());
                _tableDirty = false;
            }

            if (_retiredTables.Count > 0)
            {
                _tableMoved(_tableOffset, TableClusters);
                var retired = new List<KeyValuePair<long, int>>(_retiredTables);
                _retiredTables.Clear();
                foreach (var old in retired)
                {
                    for (int i = 0; i < old.Value; i++)
                    {
                        Adjust((old.Key >> _clusterBits) + i, -1);
                    }
                }

                WriteDirtyBlocks();
            }

            TrimCache();
        }

        public static long ReadEntry(byte[] block, int index, int order)
        {
            switch (order)
            {
                case 0:
                case 1:
                case 2:
                    int bits = 1 << order;
                    int bitIndex = index * bits;
                    return (block[bitIndex >> 3] >> (bitIndex & 7)) & ((1 << bits) - 1);
                case 3:
                    return block[index];
                case 4:
                    return BinaryPrimitives.ReadUInt16BigEndian(block.AsSpan(index * 2));
                case 5:
                    return BinaryPrimitives.ReadUInt32BigEndian(block.AsSpan(index * 4));
                default:
                    return (long)Math.Min(BinaryPrimitives.ReadUInt64BigEndian(block.AsSpan(index * 8)), long.MaxValue);
            }
        }

        public static void WriteEntry(byte[] block, int index, int order, long value)
        {
            switch (order)
            {
                case 0:
                case 1:
                case 2:
                    int bits = 1 << order;
                    int bitIndex = index * bits;
                    int mask = ((1 << bits) - 1) << (bitIndex & 7);
                    block[bitIndex >> 3] = (byte)((block[bitIndex >> 3] & ~mask) | (((int)value << (bitIndex & 7)) & mask));
                    break;
                case 3:
                    block[index] = (byte)value;
                    break;
                case 4:
                    BinaryPrimitives.WriteUInt16BigEndian(block.AsSpan(index * 2), (ushort)value);
                    break;
                case 5:
                    BinaryPrimitives.WriteUInt32BigEndian(block.AsSpan(index * 4), (uint)value);
                    break;
                default:
                    BinaryPrimitives.WriteUInt64BigEndian(block.AsSpan(index * 8), (ulong)value);
                    break;
            }
        }

        private byte[] LoadBlock(long blockIndex)
        {
            if (_blocks.TryGetValue(blockIndex, out byte[] block))
            {
                return block;
            }

            long offset = _table[blockIndex];
            if ((offset & (ClusterSize - 1)) != 0 || offset > _file.Length - ClusterSize)
            {
                throw new ImageCorruptException(_file.Path, "refcount block", _tableOffset + blockIndex * 8,
                    $"refcount table entry {blockIndex} points to 0x{offset:x}, which is unaligned or past the end of the file");
            }

            block = new byte[ClusterSize];
            _file.ReadExactly(offset, block, "refcount block");
            TrimCache();
            _blocks[blockIndex] = block;
            return block;
        }

        private void TrimCache()
        {
            if (_blocks.Count < Math.Max(4, MaxCachedBytes >> _clusterBits))
            {
                return;
            }

            var clean = new List<long>();
            foreach (long key in _blocks.Keys)
            {
                if (!_dirtyBlocks.ContainsKey(key))
                {
                    clean.Add(key);
                }
            }

            foreach (long key in clean)
            {
                _blocks.Remove(key);
            }
        }

        private void EnsureBlock(long blockIndex)
        {
            if (blockIndex < _table.Length && _table[blockIndex] != 0)
            {
                return;
            }

            if (blockIndex >= _table.Length)
            {
                GrowTable(blockIndex + 1);
            }

            // The new block goes at the end; it may have to count itself (qcow2.rst allows that).
            long cluster = _end;
            while (Get(cluster) != 0)
            {
                cluster++;
            }

            _end = cluster + 1;
            _table[blockIndex] = cluster << _clusterBits;
            _tableDirty = true;
            _blocks[blockIndex] = new byte[ClusterSize];
            MarkDirty(blockIndex, 0, ClusterSize);
            Set(cluster, 1);
        }

        private void GrowTable(long minEntries)
        {
            long perCluster = ClusterSize / 8;
            long entries = Math.Max(minEntries, (long)_table.Length * 3 / 2);

            // Leave room for the blocks that count the new table itself.
            long clusters = (entries + 2 + perCluster - 1) / perCluster;
            while (true)
            {
                long tableEnd = _end + clusters;
                long needed = Math.Max(minEntries, ((tableEnd + 2) >> _entriesPerBlockBits) + 2);
                long fits = clusters * perCluster;
                if (fits >= needed)
                {
                    break;
                }

                clusters = (needed + perCluster - 1) / perCluster;
            }

            if ((clusters << _clusterBits) > Qcow2Header.MaxRefcountTableBytes)
            {
                throw new ImageNotSupportedException(_file.Path, "refcount table", _tableOffset, "the refcount table would exceed QEMU's 8 MiB limit; the image cannot grow further");
            }

            long oldOffset = _tableOffset;
            int oldClusters = TableClusters;
            var table = new long[clusters * perCluster];
            Array.Copy(_table, table, _table.Length);
            long start = _end;
            _end = start + clusters;
            _table = table;
            _tableOffset = start << _clusterBits;
            _tableDirty = true;
            for (long c = start; c < start + clusters; c++)
            {
                Set(c, 1);
            }

            _retiredTables.Add(new KeyValuePair<long, int>(oldOffset, oldClusters));
        }

        private void WriteDirtyBlocks()
        {
            if (_dirtyBlocks.Count == 0)
            {
                return;
            }

            var order = new List<long>(_dirtyBlocks.Keys);
            order.Sort();
            foreach (long blockIndex in order)
            {
                var range = _dirtyBlocks[blockIndex];
                _file.WriteAt(_table[blockIndex] + range.Key, _blocks[blockIndex].AsSpan(range.Key, range.Value - range.Key));
            }

            _dirtyBlocks.Clear();
        }

        private void MarkDirty(long blockIndex, int byteStart, int byteEnd)
        {
            if (_dirtyBlocks.TryGetValue(blockIndex, out var range))
            {
                byteStart = Math.Min(byteStart, range.Key);
                byteEnd = Math.Max(byteEnd, range.Value);
            }

            _dirtyBlocks[blockIndex] = new KeyValuePair<int, int>(byteStart, byteEnd);
        }

        private byte[] SerializeTable()
        {
            var raw = new byte[(long)TableClusters << _clusterBits];
            for (int i = 0; i < _table.Length; i++)
            {
                BinaryPrimitives.WriteUInt64BigEndian(raw.AsSpan(i * 8), (ulong)_table[i]);
            }

            return raw;
        }
    }
}
