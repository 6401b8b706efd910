using System;
using System.Buffers;
using System.Buffers.Binary;
using System.Collections.Generic;

namespace VDiskPS.Formats.Qcow2
{
    /// <summary>
    /// Writing: cluster allocation, copy-on-write, zero clusters and discards. Every change follows
    /// QEMU's order: data, then refcounts, then L2, then L1 on allocation; L2 before refcounts on
    /// free; so a crash leaves at worst leaked clusters.
    /// </summary>
    internal sealed partial class Qcow2Layer
    {
        private const ulong AllSubclustersAllocated = 0x00000000FFFFFFFFUL;
        private const ulong AllSubclustersZero = 0xFFFFFFFF00000000UL;

        /// <summary>An L2 table being changed by one operation, and what must be written afterwards.</summary>
        private sealed class L2Update
        {
            public int L1Index;
            public long Offset;
            public ulong[] Table;
            public bool IsNew;
            public long OldOffset;
            public int DirtyFrom = int.MaxValue;
            public int DirtyTo = -1;
            public readonly List<ulong> Freed = new List<ulong>();

            public void Touch(int entryWord)
            {
                DirtyFrom = Math.Min(DirtyFrom, entryWord);
                DirtyTo = Math.Max(DirtyTo, entryWord);
            }
        }

        private enum ClusterAction
        {
            InPlace,
            InPlaceMerge,
            Allocate,
        }

        protected override void WriteCore(long offset, ReadOnlySpan<byte> data)
        {
            lock (_gate)
            {
                EnsureWritableImage();
                MarkBitmaps(offset, data.Length);
                long l2Span = (long)_header.L2Entries << ClusterBits;
                while (data.Length > 0)
                {
                    long segmentEnd = Math.Min(offset + data.Length, (offset / l2Span + 1) * l2Span);
                    int n = (int)(segmentEnd - offset);
                    WriteSegment(offset, data.Slice(0, n));
                    offset += n;
                    data = data.Slice(n);
                }
            }
        }

        protected override void WriteZeroesCore(long offset, long length)
        {
            lock (_gate)
            {
                EnsureWritableImage();
                MarkBitmaps(offset, length);
                bool hasParent = Parent != null || _backing != null;
                if (_header.Version < 3 && hasParent)
                {
                    // Version 2 has no zero clusters: over a backing file zeros must be written.
                    base.WriteZeroesCore(offset, length);
                    return;
                }

                ZeroOrDiscard(offset, length, zero: true);
            }
        }

        private void EnsureWritableImage()
        {
            // The corrupt bit this layer set itself (Qcow2Layer.Incomplete.cs) marks its own rewrite, not damage.
            if (_header.Corrupt && !_markedIncomplete)
            {
                throw new ImageCorruptException(Path, "incompatible_features", Qcow2Header.IncompatibleFeaturesOffset,
                    "the image is marked corrupt; repair it (qemu-img check -r all) before writing");
            }
        }

        /// <summary>Writes a run that lies inside one L2 table's range.</summary>
        private void WriteSegment(long offset, ReadOnlySpan<byte> data)
        {
            long firstCluster = offset >> ClusterBits;
            long lastCluster = (offset + data.Length - 1) >> ClusterBits;
            int count = (int)(lastCluster - firstCluster + 1);
            int l1Index = (int)(firstCluster / _header.L2Entries);
            int firstIndex = (int)(firstCluster % _header.L2Entries);
            L2Update update = BeginL2Update(l1Index, allocate: true);
            int step = ExtendedL2 ? 2 : 1;

            var actions = new ClusterAction[count];
            for (int i = 0; i < count; i++)
            {
                ulong entry = update.Table[(firstIndex + i) * step];
                ulong bitmap = ExtendedL2 ? update.Table[(firstIndex + i) * 2 + 1] : 0;
                bool owned = IsAllocated(entry) && ((entry & CopiedFlag) != 0 || _dataFile != null);
                if (!owned)
                {
                    actions[i] = ClusterAction.Allocate;
                }
                else if ((entry & ZeroFlag) != 0 || (ExtendedL2 && (bitmap & AllSubclustersAllocated) != AllSubclustersAllocated))
                {
                    actions[i] = ClusterAction.InPlaceMerge;
                }
                else
                {
                    // An encrypted cluster is rewritten whole: sectors are the cipher's unit.
                    actions[i] = _cipher != null ? ClusterAction.InPlaceMerge : ClusterAction.InPlace;
                }
            }

            int at = 0;
            while (at < count)
            {
                int runEnd = at + 1;
                // A run shares one action and, for clusters written where they are, contiguous host clusters.
                while (runEnd < count && actions[runEnd] == actions[at] && (actions[at] == ClusterAction.Allocate || HostOf(update, firstIndex + runEnd) == HostOf(update, firstIndex + at) + ((long)(runEnd - at) << ClusterBits)))
                {
                    runEnd++;
                }

                long runGuest = (firstCluster + at) << ClusterBits;
                long dataStart = Math.Max(offset, runGuest);
                long dataEnd = Math.Min(offset + data.Length, (firstCluster + runEnd) << ClusterBits);
                ReadOnlySpan<byte> runData = data.Slice((int)(dataStart - offset), (int)(dataEnd - dataStart));
                if (actions[at] == ClusterAction.InPlace)
                {
                    long host = HostOf(update, firstIndex + at) + (dataStart - runGuest);
                    (_dataFile ?? _file).WriteAt(host, runData);
                }
                else
                {
                    long host;
                    if (actions[at] == ClusterAction.InPlaceMerge)
                    {
                        host = HostOf(update, firstIndex + at);
                    }
                    else if (_dataFile != null)
                    {
                        // External data files map guest offset N to host offset N.
                        host = runGuest;
                    }
                    else
                    {
                        host = Refcounts.Allocate(runEnd - at);
                    }

                    WriteWholeClusters(runGuest, runEnd - at, dataStart, runData, host);
                    for (int i = at; i < runEnd; i++)
                    {
                        int index = firstIndex + i;
                        ulong old = update.Table[index * step];
                        long newHost = host + ((long)(i - at) << ClusterBits);
                        if (actions[i] == ClusterAction.Allocate && IsAllocatedOrCompressed(old) && _dataFile == null)
                        {
                            update.Freed.Add(old);
                        }

                        update.Table[index * step] = (ulong)newHost | CopiedFlag;
                        update.Touch(index * step);
                        if (ExtendedL2)
                        {
                            update.Table[index * 2 + 1] = AllSubclustersAllocated;
                            update.Touch(index * 2 + 1);
                        }
                    }
                }

                at = runEnd;
            }

            CommitL2Update(update);
        }

        private long HostOf(L2Update update, int index)
        {
            ulong entry = update.Table[index * (ExtendedL2 ? 2 : 1)];
            return (long)(entry & OffsetMask);
        }

        private static bool IsAllocatedOrCompressed(ulong entry) => (entry & CompressedFlag) != 0 || (entry & OffsetMask) != 0;

        /// <summary>
        /// Writes clusters [guest, guest + count clusters) at <paramref name="host"/>, taking the bytes
        /// the caller does not supply from what the layer reads there now (copy-on-write from the
        /// parent, old data, or zeros).
        /// </summary>
        private void WriteWholeClusters(long guest, int count, long dataStart, ReadOnlySpan<byte> data, long host)
        {
            int cs = _header.ClusterSize;
            long runBytes = (long)count << ClusterBits;
            HostFile target = _dataFile ?? _file;
            int head = (int)(dataStart - guest);
            long tail = runBytes - head - data.Length;
            if (head == 0 && tail == 0)
            {
                WriteClusterData(target, host, data);
                return;
            }

            // Only the first and last clusters need merging; the clusters between come straight from the caller.
            byte[] cluster = ArrayPool<byte>.Shared.Rent(cs);
            try
            {
                var buffer = cluster.AsSpan(0, cs);
                if (count == 1)
                {
                    ReadBase(guest, buffer);
                    data.CopyTo(buffer.Slice(head));
                    WriteClusterData(target, host, buffer);
                    return;
                }

                int firstPart = cs - head;
                if (head > 0)
                {
                    ReadBase(guest, buffer);
                    data.Slice(0, firstPart).CopyTo(buffer.Slice(head));
                    WriteClusterData(target, host, buffer);
                }
                else
                {
                    WriteClusterData(target, host, data.Slice(0, cs));
                }

                int middleLength = (int)(runBytes - 2L * cs);
                if (middleLength > 0)
                {
                    WriteClusterData(target, host + cs, data.Slice(firstPart, middleLength));
                }

                int lastPart = data.Length - firstPart - middleLength;
                long lastGuest = guest + runBytes - cs;
                if (tail > 0)
                {
                    ReadBase(lastGuest, buffer);
                    data.Slice(firstPart + middleLength, lastPart).CopyTo(buffer);
                    WriteClusterData(target, host + runBytes - cs, buffer);
                }
                else
                {
                    WriteClusterData(target, host + runBytes - cs, data.Slice(firstPart + middleLength, lastPart));
                }
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(cluster);
            }
        }

        /// <summary>What this layer reads for one cluster now; the part past the virtual size is zero.</summary>
        private void ReadBase(long guestCluster, Span<byte> cluster)
        {
            int valid = (int)Math.Max(0, Math.Min(cluster.Length, _size - guestCluster));
            Read(guestCluster, cluster.Slice(0, valid));
            cluster.Slice(valid).Clear();
        }

        /// <summary>Starts changing the L2 table of <paramref name="l1Index"/>: allocates it (when <paramref name="allocate"/>), or copies it if a snapshot shares it.</summary>
        private L2Update BeginL2Update(int l1Index, bool allocate)
        {
            long l1Entry = _l1[l1Index];
            long l2Offset = (long)((ulong)l1Entry & OffsetMask);
            if (l2Offset != 0 && ((ulong)l1Entry & CopiedFlag) != 0)
            {
                return new L2Update { L1Index = l1Index, Offset = l2Offset, Table = LoadL2(l2Offset, l1Index) };
            }

            if (l2Offset == 0 && !allocate)
            {
                return null;
            }

            ulong[] table = l2Offset == 0 ? new ulong[_header.ClusterSize / 8] : (ulong[])LoadL2(l2Offset, l1Index).Clone();
            long newOffset = Refcounts.Allocate(1);
            _l2Cache.Put(newOffset, table);
            return new L2Update { L1Index = l1Index, Offset = newOffset, Table = table, IsNew = true, OldOffset = l2Offset };
        }

        /// <summary>Refcounts, then the L2 table, then the L1 entry; then frees what the update replaced.</summary>
        private void CommitL2Update(L2Update update)
        {
            _lastRun = null;
            Refcounts.Flush();
            if (update.IsNew)
            {
                _file.WriteAt(update.Offset, SerializeWords(update.Table, 0, update.Table.Length));
                WriteL1Entry(update.L1Index, update.Offset | unchecked((long)CopiedFlag));
                if (update.OldOffset != 0)
                {
                    Refcounts.Adjust(update.OldOffset >> ClusterBits, -1);
                }
            }
            else if (update.DirtyTo >= 0)
            {
                _file.WriteAt(update.Offset + (long)update.DirtyFrom * 8, SerializeWords(update.Table, update.DirtyFrom, update.DirtyTo - update.DirtyFrom + 1));
            }

            foreach (ulong old in update.Freed)
            {
                FreeEntry(old);
            }

            Refcounts.Flush();
        }

        private void WriteL1Entry(int l1Index, long value)
        {
            _lastRun = null;
            _l1[l1Index] = value;
            var raw = new byte[8];
            BinaryPrimitives.WriteUInt64BigEndian(raw, (ulong)value);
            _file.WriteAt(_header.L1TableOffset + (long)l1Index * 8, raw);
        }

        /// <summary>Drops one reference held by an L2 entry (plain or compressed cluster).</summary>
        private void FreeEntry(ulong entry)
        {
            if ((entry & CompressedFlag) != 0)
            {
                var (host, _) = CompressedExtent(entry);
                int shift = 62 - (ClusterBits - 8);
                long sectors = (long)((entry >> shift) & ((1UL << (ClusterBits - 8)) - 1)) + 1;
                long start = host & ~511L;
                long end = start + sectors * 512;
                for (long c = start >> ClusterBits; c <= (end - 1) >> ClusterBits; c++)
                {
                    Refcounts.Adjust(c, -1);
                }

                return;
            }

            long offset = (long)(entry & OffsetMask);
            if (offset != 0 && _dataFile == null)
            {
                Refcounts.Adjust(offset >> ClusterBits, -1);
            }
        }

        private static byte[] SerializeWords(ulong[] words, int from, int count)
        {
            var raw = new byte[count * 8];
            for (int i = 0; i < count; i++)
            {
                BinaryPrimitives.WriteUInt64BigEndian(raw.AsSpan(i * 8), words[from + i]);
            }

            return raw;
        }

        /// <summary>Zero clusters (<paramref name="zero"/>) or unallocated clusters (discard) for whole clusters; partial clusters get zeros written (zero) or are left (discard).</summary>
        private void ZeroOrDiscard(long offset, long length, bool zero)
        {
            int cs = _header.ClusterSize;
            long end = offset + length;
            long firstFull = (offset + cs - 1) & ~ClusterMask;
            long lastFull = end == _size ? ((end + cs - 1) & ~ClusterMask) : end & ~ClusterMask;
            if (firstFull >= lastFull)
            {
                if (zero)
                {
                    base.WriteZeroesCore(offset, length);
                }

                return;
            }

            if (zero && offset < firstFull)
            {
                base.WriteZeroesCore(offset, firstFull - offset);
            }

            if (zero && lastFull < end)
            {
                base.WriteZeroesCore(lastFull, end - lastFull);
            }

            // Version 3 marks zero clusters (they stay zero even if a backing file is added later); version 2 without a parent deallocates.
            bool hasParent = Parent != null || _backing != null;
            bool useZeroFlag = zero && (hasParent || _header.Version >= 3);
            int step = ExtendedL2 ? 2 : 1;
            long l2Span = (long)_header.L2Entries << ClusterBits;
            for (long pos = firstFull; pos < lastFull;)
            {
                long segmentEnd = Math.Min(lastFull, (pos / l2Span + 1) * l2Span);
                int l1Index = (int)(pos / l2Span);
                L2Update update = BeginL2Update(l1Index, allocate: useZeroFlag);
                if (update != null)
                {
                    for (long c = pos; c < segmentEnd; c += cs)
                    {
                        int index = (int)((c >> ClusterBits) % _header.L2Entries);
                        ulong old = update.Table[index * step];
                        ulong bitmap = ExtendedL2 ? update.Table[index * 2 + 1] : 0;
                        ulong newEntry = 0;
                        ulong newBitmap = useZeroFlag && ExtendedL2 ? AllSubclustersZero : 0;
                        if (useZeroFlag && !ExtendedL2)
                        {
                            newEntry = ZeroFlag;
                        }

                        if (_dataFile != null && IsAllocated(old))
                        {
                            // The data file keeps guest offset N at host offset N; zero it there too for data-file-raw.
                            if (_header.DataFileRaw)
                            {
                                _dataFile.WriteZeros(c, cs);
                                continue;
                            }
                        }

                        if (old == newEntry && bitmap == newBitmap)
                        {
                            continue;
                        }

                        if (IsAllocatedOrCompressed(old) && _dataFile == null)
                        {
                            update.Freed.Add(old);
                        }

                        update.Table[index * step] = newEntry;
                        update.Touch(index * step);
                        if (ExtendedL2)
                        {
                            update.Table[index * 2 + 1] = newBitmap;
                            update.Touch(index * 2 + 1);
                        }
                    }

                    CommitL2Update(update);
                }

                pos = segmentEnd;
            }
        }
    }
}
