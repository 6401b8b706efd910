using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using VDiskPS;

namespace VDiskPS.Formats.Qcow2
{
    /// <summary>
    /// qemu-img check for qcow2 (block/qcow2-refcount.c qcow2_check_refcounts): recount every
    /// reference, compare with the stored refcounts, check the COPIED flags; repair leaks in place,
    /// or everything by fixing the flags and rebuilding the refcount structure.
    /// </summary>
    internal sealed partial class Qcow2Layer : ICheckableLayer
    {
        /// <summary>One pass of the check: the recounted references and what was found.</summary>
        private sealed class CheckPass
        {
            public readonly ClusterCounts Counts = new ClusterCounts();
            public readonly VDiskCheckResult Result;
            public bool RefcountStructureBroken;
            public long FileLength;
            public long NextContiguous;

            /// <summary>How many L1 entries (active and snapshots) name each L2 table, so each table is read once.</summary>
            public readonly Dictionary<long, long> L2References = new Dictionary<long, long>();

            /// <summary>L2 tables of the active L1 already counted for the statistics.</summary>
            public readonly HashSet<long> ActiveL2 = new HashSet<long>();

            /// <summary>Clusters of the current refcount structure, which a rebuild replaces.</summary>
            public readonly List<long> RefcountClusters = new List<long>();

            public ClusterCounts CountsWithoutRefcountStructure()
            {
                foreach (long c in RefcountClusters)
                {
                    Counts.Add(c, -1);
                }

                RefcountClusters.Clear();
                return Counts;
            }

            public CheckPass(VDiskCheckResult result)
            {
                Result = result;
            }

            public void Corruption(string message)
            {
                Result.Corruptions++;
                Result.Messages.Add("ERROR " + message);
            }
        }

        public VDiskCheckResult Check(RepairMode repair)
        {
            if (_isSnapshotView)
            {
                throw ImageNotSupportedException.Capability(Qcow2Driver.Id, "checking a snapshot view", Path);
            }

            if (repair != RepairMode.None)
            {
                EnsureWritable();
            }

            lock (_gate)
            {
                VDiskCheckResult first = RunCheck(out CheckPass pass);
                if (repair == RepairMode.None || (first.Corruptions == 0 && first.Leaks == 0 && !_header.Dirty && !_header.Corrupt))
                {
                    return first;
                }

                if (repair == RepairMode.Leaks && first.Corruptions == 0 && !pass.RefcountStructureBroken)
                {
                    FixLeaks(pass);
                }
                else if (repair == RepairMode.All)
                {
                    FixCopiedFlags(pass.Counts.Get);
                    RebuildRefcounts(pass.CountsWithoutRefcountStructure());
                    _header.IncompatibleFeatures &= ~(Qcow2Header.IncompatibleCorrupt | Qcow2Header.IncompatibleDirty);
                    WriteHeader();
                    _file.Flush();
                }
                else if (!pass.RefcountStructureBroken)
                {
                    FixLeaks(pass);
                }

                VDiskCheckResult after = RunCheck(out _);
                after.LeaksFixed = Math.Max(0, first.Leaks - after.Leaks);
                after.CorruptionsFixed = Math.Max(0, first.Corruptions - after.Corruptions);
                // What was found comes first, then what the check after the repair still finds.
                for (int i = 0; i < first.Messages.Count; i++)
                {
                    after.Messages.Insert(i, first.Messages[i]);
                }

                return after;
            }
        }

        /// <summary>Rebuilds the refcounts of an image left dirty (lazy refcounts), as QEMU does before writing to it.</summary>
        private void RepairDirty()
        {
            lock (_gate)
            {
                RunCheck(out CheckPass pass);
                FixCopiedFlags(pass.Counts.Get);
                RebuildRefcounts(pass.CountsWithoutRefcountStructure());
                _header.IncompatibleFeatures &= ~Qcow2Header.IncompatibleDirty;
                WriteHeader();
                _file.Flush();
            }
        }

        private VDiskCheckResult RunCheck(out CheckPass pass)
        {
            var result = new VDiskCheckResult { Path = Path, Format = "qcow2" };
            pass = new CheckPass(result) { FileLength = _file.Length };
            int cs = _header.ClusterSize;
            CountRange(pass, 0, cs, "header");
            if (_header.CryptMethod == Qcow2Header.CryptLuks)
            {
                CountRange(pass, _header.CryptoHeaderOffset, _header.CryptoHeaderLength, "crypto header");
            }
            CountRange(pass, _header.L1TableOffset, (long)_header.L1Size * 8, "L1 table");
            WalkL1(pass, _l1, active: true);
            if (_snapshots.Count > 0)
            {
                CountRange(pass, _header.SnapshotsOffset, Qcow2Snapshot.TableLength(_snapshots), "snapshot table");
                foreach (var snapshot in _snapshots)
                {
                    CountRange(pass, snapshot.L1TableOffset, (long)snapshot.L1Size * 8, $"snapshot '{snapshot.Name}' L1 table");
                    long[] l1;
                    try
                    {
                        l1 = ReadL1(_file, snapshot.L1TableOffset, snapshot.L1Size, "snapshot L1 table");
                    }
                    catch (ImageCorruptException e)
                    {
                        pass.Corruption(WithField(e));
                        continue;
                    }

                    WalkL1(pass, l1, active: false);
                }
            }

            CountL2Tables(pass);
            CountBitmaps(pass);
            Qcow2Refcounts refcounts = StoredRefcounts(pass);
            CountRange(pass, refcounts.TableOffset, (long)refcounts.TableClusters * cs, "refcount table");
            if (refcounts.TableOffset + (long)refcounts.TableClusters * cs - pass.FileLength < cs)
            {
                for (long c = 0; c < refcounts.TableClusters; c++)
                {
                    pass.RefcountClusters.Add((refcounts.TableOffset >> ClusterBits) + c);
                }
            }

            for (int i = 0; i < refcounts.Table.Count; i++)
            {
                long block = refcounts.Table[i];
                if (block == 0)
                {
                    continue;
                }

                if ((block & ClusterMask) != 0)
                {
                    pass.Corruption($"refcount block {i} is not cluster aligned; refcount table entry corrupted");
                    pass.RefcountStructureBroken = true;
                    continue;
                }

                if (block > pass.FileLength - cs)
                {
                    pass.Corruption($"refcount block {i} is outside image");
                    pass.RefcountStructureBroken = true;
                    continue;
                }

                pass.Counts.Add(block >> ClusterBits, 1);
                pass.RefcountClusters.Add(block >> ClusterBits);
            }

            CompareRefcounts(pass, refcounts);
            CheckCopiedFlags(pass);
            result.TotalClusters = (_size + ClusterMask) >> ClusterBits;
            return result;
        }

        /// <summary>Counts one reference for every cluster of [offset, offset + length).</summary>
        private void CountRange(CheckPass pass, long offset, long length, string what, long times = 1)
        {
            if (length <= 0)
            {
                return;
            }

            if (offset < 0 || offset + length - pass.FileLength >= _header.ClusterSize)
            {
                pass.Corruption($"counting reference for region exceeding the end of the file by one cluster or more: offset 0x{offset:x} size 0x{length:x} ({what})");
                return;
            }

            for (long c = offset >> ClusterBits; c <= (offset + length - 1) >> ClusterBits; c++)
            {
                pass.Counts.Add(c, times);
            }
        }

        /// <summary>Counts the L2 tables an L1 table names; the active table's L2 tables also feed the statistics, in L1 order.</summary>
        private void WalkL1(CheckPass pass, long[] l1, bool active)
        {
            int cs = _header.ClusterSize;
            var raw = new byte[cs];
            for (int i = 0; i < l1.Length; i++)
            {
                long l2Offset = (long)((ulong)l1[i] & OffsetMask);
                if (l2Offset == 0)
                {
                    continue;
                }

                if ((l2Offset & ClusterMask) != 0)
                {
                    pass.Corruption($"l2_offset=0x{l2Offset:x}: Table is not cluster aligned; L1 entry corrupted");
                    continue;
                }

                if (l2Offset > pass.FileLength - cs)
                {
                    pass.Corruption($"l2_offset=0x{l2Offset:x}: the L2 table lies past the end of the file");
                    continue;
                }

                pass.Counts.Add(l2Offset >> ClusterBits, 1);
                pass.L2References.TryGetValue(l2Offset, out long seen);
                pass.L2References[l2Offset] = seen + 1;
                if (!active)
                {
                    continue;
                }

                if (!pass.ActiveL2.Add(l2Offset))
                {
                    pass.Corruption($"l2_offset=0x{l2Offset:x}: the active L1 table names this L2 table twice");
                    continue;
                }

                if (!TryReadCheckedL2(pass, l2Offset, raw))
                {
                    continue;
                }

                int step = ExtendedL2 ? 16 : 8;
                for (int j = 0; j < _header.L2Entries; j++)
                {
                    ulong entry = BinaryPrimitives.ReadUInt64BigEndian(raw.AsSpan(j * step));
                    CountStatistics(pass, entry);
                }
            }
        }

        /// <summary>Reads each named L2 table once and counts its references as often as L1 entries name it.</summary>
        private void CountL2Tables(CheckPass pass)
        {
            var raw = new byte[_header.ClusterSize];
            int step = ExtendedL2 ? 16 : 8;
            foreach (var table in pass.L2References)
            {
                if (!TryReadCheckedL2(pass, table.Key, raw))
                {
                    continue;
                }

                for (int j = 0; j < _header.L2Entries; j++)
                {
                    ulong entry = BinaryPrimitives.ReadUInt64BigEndian(raw.AsSpan(j * step));
                    ulong bitmap = ExtendedL2 ? BinaryPrimitives.ReadUInt64BigEndian(raw.AsSpan(j * step + 8)) : 0;
                    CheckL2Entry(pass, entry, bitmap, table.Value);
                }
            }
        }

        private bool TryReadCheckedL2(CheckPass pass, long l2Offset, byte[] raw)
        {
            try
            {
                _file.ReadExactly(l2Offset, raw, "L2 table");
                return true;
            }
            catch (ImageException e)
            {
                pass.Result.CheckErrors++;
                pass.Result.Messages.Add("ERROR reading L2 table: " + WithField(e));
                return false;
            }
        }

        /// <summary>qemu-img check's allocation statistics for one active L2 entry (fragmentation follows host order across tables).</summary>
        private void CountStatistics(CheckPass pass, ulong entry)
        {
            if ((entry & CompressedFlag) != 0)
            {
                // QEMU counts compressed clusters as fragmented by nature (sub-sector placement).
                pass.Result.AllocatedClusters++;
                pass.Result.CompressedClusters++;
                pass.Result.FragmentedClusters++;
                return;
            }

            long offset = (long)(entry & OffsetMask);
            if (!IsAllocated(entry) || (offset & ClusterMask) != 0)
            {
                return;
            }

            pass.Result.AllocatedClusters++;
            if (pass.NextContiguous != 0 && offset != pass.NextContiguous)
            {
                pass.Result.FragmentedClusters++;
            }

            pass.NextContiguous = offset + _header.ClusterSize;
        }

        private void CheckL2Entry(CheckPass pass, ulong entry, ulong bitmap, long times)
        {
            int cs = _header.ClusterSize;
            if ((entry & CompressedFlag) != 0)
            {
                if (_dataFile != null)
                {
                    pass.Corruption("compressed cluster in an image with an external data file");
                    return;
                }

                if (ExtendedL2 && bitmap != 0)
                {
                    pass.Corruption($"compressed cluster with a non-zero subcluster bitmap 0x{bitmap:x}");
                }

                var (host, length) = CompressedExtent(entry);
                long sectorStart = host & ~511L;
                CountRange(pass, sectorStart, host + length - sectorStart, "compressed cluster", times);
                return;
            }

            if (ExtendedL2 && (bitmap & (bitmap >> Subclusters) & AllSubclustersAllocated) != 0)
            {
                pass.Corruption($"L2 entry 0x{entry:x} has subclusters marked both allocated and zero (bitmap 0x{bitmap:x})");
            }

            if (!IsAllocated(entry))
            {
                if (ExtendedL2 && (bitmap & AllSubclustersAllocated) != 0)
                {
                    pass.Corruption($"unallocated cluster with allocated subclusters (bitmap 0x{bitmap:x})");
                }

                return;
            }

            long offset = (long)(entry & OffsetMask);
            if ((offset & ClusterMask) != 0)
            {
                pass.Corruption($"offset=0x{offset:x}: Cluster is not properly aligned; L2 entry corrupted");
                return;
            }

            if (_dataFile == null)
            {
                CountRange(pass, offset, cs, "data cluster", times);
            }
        }

        private void CountBitmaps(CheckPass pass)
        {
            if (!_header.HasBitmapsExtension)
            {
                return;
            }

            List<Qcow2Bitmap> bitmaps;
            try
            {
                bitmaps = Qcow2Bitmap.ReadDirectory(_file, _header);
            }
            catch (ImageCorruptException e)
            {
                pass.Corruption(WithField(e));
                return;
            }

            CountRange(pass, _header.BitmapDirectoryOffset, _header.BitmapDirectorySize, "bitmap directory");
            foreach (var bitmap in bitmaps)
            {
                CountRange(pass, bitmap.TableOffset, (long)bitmap.TableSize * 8, $"bitmap '{bitmap.Name}' table");
                long[] table;
                try
                {
                    table = ReadBitmapTable(bitmap);
                }
                catch (ImageCorruptException e)
                {
                    pass.Corruption(WithField(e));
                    continue;
                }

                foreach (long data in table)
                {
                    long offset = (long)((ulong)data & OffsetMask);
                    if (offset != 0)
                    {
                        CountRange(pass, offset, _header.ClusterSize, $"bitmap '{bitmap.Name}' data");
                    }
                }
            }
        }

        private static string WithField(ImageException e) => e.Field != null ? e.Field + ": " + e.Reason : e.Reason;

        /// <summary>The stored refcounts; an unreadable refcount table counts as a corruption and reads as all zero, so repair can rebuild it.</summary>
        private Qcow2Refcounts StoredRefcounts(CheckPass pass)
        {
            try
            {
                return Refcounts;
            }
            catch (ImageCorruptException e)
            {
                pass.Corruption(WithField(e));
                pass.RefcountStructureBroken = true;
                return new Qcow2Refcounts(_file, ClusterBits, _header.RefcountOrder, _header.RefcountTableOffset, new long[0], (offset, clusters) => { });
            }
        }

        private void CompareRefcounts(CheckPass pass, Qcow2Refcounts refcounts)
        {
            long fileClusters = (pass.FileLength + ClusterMask) >> ClusterBits;
            long limit = Math.Max(fileClusters, pass.Counts.MaxCluster + 1);
            long perBlock = 1L << (ClusterBits + 3 - _header.RefcountOrder);
            limit = Math.Max(limit, Math.Min((long)refcounts.Table.Count * perBlock, fileClusters + perBlock));
            long highest = -1;
            for (long c = 0; c < limit; c++)
            {
                long blockIndex = c / perBlock;
                long stored = 0;
                if (blockIndex < refcounts.Table.Count && refcounts.Table[(int)blockIndex] != 0)
                {
                    try
                    {
                        stored = refcounts.Get(c);
                    }
                    catch (ImageCorruptException)
                    {
                        // Reported once as a bad refcount block above; skip its range.
                        c = (blockIndex + 1) * perBlock - 1;
                        continue;
                    }
                }

                long computed = pass.Counts.Get(c);
                if (stored > 0 || computed > 0)
                {
                    highest = c;
                }

                if (stored == computed)
                {
                    continue;
                }

                if (stored < computed)
                {
                    pass.Corruption($"cluster {c} refcount={stored} reference={computed}");
                }
                else
                {
                    pass.Result.Leaks++;
                    pass.Result.Messages.Add($"Leaked cluster {c} refcount={stored} reference={computed}");
                }
            }

            pass.Result.ImageEndOffset = (highest + 1) << ClusterBits;
        }

        private void CheckCopiedFlags(CheckPass pass)
        {
            var seen = new HashSet<long>();
            for (int i = 0; i < _l1.Length; i++)
            {
                long l2Offset = (long)((ulong)_l1[i] & OffsetMask);
                if (l2Offset == 0 || (l2Offset & ClusterMask) != 0 || l2Offset > pass.FileLength - _header.ClusterSize || !seen.Add(l2Offset))
                {
                    continue;
                }

                bool copied = ((ulong)_l1[i] & CopiedFlag) != 0;
                if ((pass.Counts.Get(l2Offset >> ClusterBits) == 1) != copied)
                {
                    pass.Corruption($"OFLAG_COPIED L2 cluster: l1_index={i} l1_entry={(ulong)_l1[i]:x} refcount={pass.Counts.Get(l2Offset >> ClusterBits)}");
                }

                if (_dataFile != null)
                {
                    continue;
                }

                var raw = new byte[_header.ClusterSize];
                _file.ReadExactly(l2Offset, raw, "L2 table");
                int step = ExtendedL2 ? 16 : 8;
                for (int j = 0; j < _header.L2Entries; j++)
                {
                    ulong entry = BinaryPrimitives.ReadUInt64BigEndian(raw.AsSpan(j * step));
                    long offset = (long)(entry & OffsetMask);
                    if ((entry & CompressedFlag) != 0 || offset == 0 || (offset & ClusterMask) != 0)
                    {
                        continue;
                    }

                    long count = pass.Counts.Get(offset >> ClusterBits);
                    if ((count == 1) != ((entry & CopiedFlag) != 0))
                    {
                        pass.Corruption($"OFLAG_COPIED data cluster: l2_entry={entry:x} refcount={count}");
                    }
                }
            }
        }

        private void FixLeaks(CheckPass pass)
        {
            Qcow2Refcounts refcounts = Refcounts;
            long fileClusters = (pass.FileLength + ClusterMask) >> ClusterBits;
            long limit = Math.Max(fileClusters, pass.Counts.MaxCluster + 1);
            for (long c = 0; c < limit; c++)
            {
                long stored;
                try
                {
                    stored = refcounts.Get(c);
                }
                catch (ImageCorruptException)
                {
                    continue;
                }

                long computed = pass.Counts.Get(c);
                if (stored > computed)
                {
                    refcounts.Set(c, computed);
                }
            }

            refcounts.Flush();
            _file.Flush();
        }

        /// <summary>Sets COPIED exactly where the reference count is 1, in the active L1 and L2 tables.</summary>
        private void FixCopiedFlags(Func<long, long> referencesOf)
        {
            for (int i = 0; i < _l1.Length; i++)
            {
                long l2Offset = (long)((ulong)_l1[i] & OffsetMask);
                if (l2Offset == 0 || (l2Offset & ClusterMask) != 0 || l2Offset > _file.Length - _header.ClusterSize)
                {
                    continue;
                }

                long wanted = referencesOf(l2Offset >> ClusterBits) == 1 ? l2Offset | unchecked((long)CopiedFlag) : l2Offset;
                if (wanted != _l1[i])
                {
                    WriteL1Entry(i, wanted);
                }

                if (_dataFile != null)
                {
                    continue;
                }

                ulong[] table = LoadL2Unchecked(l2Offset);
                int step = ExtendedL2 ? 2 : 1;
                bool changed = false;
                for (int j = 0; j < table.Length; j += step)
                {
                    ulong entry = table[j];
                    long offset = (long)(entry & OffsetMask);
                    if ((entry & CompressedFlag) != 0 || offset == 0 || (offset & ClusterMask) != 0)
                    {
                        continue;
                    }

                    ulong fixedEntry = referencesOf(offset >> ClusterBits) == 1 ? entry | CopiedFlag : entry & ~CopiedFlag;
                    if (fixedEntry != entry)
                    {
                        table[j] = fixedEntry;
                        changed = true;
                    }
                }

                if (changed)
                {
                    _file.WriteAt(l2Offset, SerializeWords(table, 0, table.Length));
                }

                if (changed || _l2Cache.TryGet(l2Offset, out _))
                {
                    _l2Cache.Remove(l2Offset);
                }
            }
        }

        private ulong[] LoadL2Unchecked(long l2Offset)
        {
            var raw = new byte[_header.ClusterSize];
            _file.ReadExactly(l2Offset, raw, "L2 table");
            var table = new ulong[_header.ClusterSize / 8];
            for (int i = 0; i < table.Length; i++)
            {
                table[i] = BinaryPrimitives.ReadUInt64BigEndian(raw.AsSpan(i * 8));
            }

            return table;
        }

        /// <summary>Writes a fresh refcount structure for <paramref name="counts"/> past the end of the file and points the header at it.</summary>
        private void RebuildRefcounts(ClusterCounts counts, int? order = null)
        {
            int newOrder = order ?? _header.RefcountOrder;
            long fileClusters = (_file.Length + ClusterMask) >> ClusterBits;
            var built = Qcow2RefcountBuilder.Build(_file, counts, ClusterBits, newOrder, fileClusters);
            _file.Flush();
            _header.RefcountTableOffset = built.TableOffset;
            _header.RefcountTableClusters = built.TableClusters;
            _header.RefcountOrder = newOrder;
            WriteHeader();
            _file.Flush();
            _refcounts = new Qcow2Refcounts(_file, ClusterBits, newOrder, built.TableOffset, built.Table, OnRefcountTableMoved);
            _compressedCursor = 0;
        }
    }
}
