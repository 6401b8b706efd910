using System;
using System.Collections;
using VDiskPS;

namespace VDiskPS.Formats.Qed
{
    /// <summary>
    /// qemu-img check for QED (block/qed-check.c): every cluster referenced at most once, every offset
    /// aligned and inside the file, tables wholly inside the file; unreferenced clusters are leaks.
    /// A repair clears out-of-range entries (as qemu) and, beyond qemu, gives leaked clusters back: data
    /// clusters from the end of the file move into the holes, then the file is cut after its last used
    /// cluster. It clears the need-check flag once nothing else is wrong.
    /// </summary>
    public sealed partial class QedLayer : ICheckableLayer
    {
        /// <summary>Files of more clusters than this keep their leaks (the map of owners would take over 512 MiB).</summary>
        private const long MaxReclaimClusters = 1L << 26;

        public VDiskCheckResult Check(RepairMode repair)
        {
            if (repair != RepairMode.None)
            {
                EnsureWritable();
            }

            lock (_gate)
            {
                VDiskCheckResult result = RunCheck(fix: repair != RepairMode.None);
                if (repair != RepairMode.None && result.Leaks > 0 && result.Corruptions == 0 && result.CheckErrors == 0)
                {
                    long before = result.Leaks;
                    ReclaimLeaks();
                    VDiskCheckResult after = RunCheck(fix: false);
                    after.CorruptionsFixed = result.CorruptionsFixed;
                    after.LeaksFixed = before - after.Leaks;
                    foreach (string message in result.Messages)
                    {
                        after.Messages.Add(message);
                    }

                    if (after.Leaks > 0)
                    {
                        after.Messages.Add($"{after.Leaks} leaked cluster(s) lie between used ones where no data cluster could move (too few for a table); converting the image drops them");
                    }

                    result = after;
                }

                if (_openRepair != null)
                {
                    // The open of this unclean image repaired it already: report what that found.
                    result.CorruptionsFixed += _openRepair.CorruptionsFixed;
                    result.Messages.Insert(0, "the image was not closed cleanly; it was checked and repaired when opened for writing");
                    _openRepair = null;
                }

                return result;
            }
        }

        /// <summary>One pass of qed_check. With <paramref name="fix"/>, bad entries become unallocated and a clean image loses the need-check flag. Under _gate.</summary>
        private VDiskCheckResult RunCheck(bool fix)
        {
            long cs = ClusterBytes;
            long clusters = _fileSize / cs;
            var result = new VDiskCheckResult
            {
                Path = Path,
                Format = Format.ToName(),
                TotalClusters = (Size + cs - 1) / cs,
                ImageEndOffset = _file.Length,
            };
            if (_header.NeedCheck)
            {
                result.Messages.Add("the image was not closed cleanly (its need-check flag is set)");
            }

            var used = new BitArray((int)Math.Min(int.MaxValue, clusters));
            bool MarkUsed(long offset, long count, string what)
            {
                bool fresh = true;
                for (long c = offset / cs; c < (offset / cs) + count; c++)
                {
                    if (used[(int)c])
                    {
                        fresh = false;
                    }

                    used[(int)c] = true;
                }

                if (!fresh)
                {
                    result.Corruptions++;
                    result.Messages.Add($"ERROR {what} at 0x{offset:x} uses a cluster that is referenced elsewhere too");
                }

                return fresh;
            }

            if (clusters > int.MaxValue)
            {
                result.CheckErrors++;
                result.Messages.Add($"the file holds {clusters} clusters, more than a check can track");
                return result;
            }

            MarkUsed((long)_header.L1TableOffset, _header.TableSize, "the L1 table");
            bool l1Fixed = false;
            for (long i = 0; i < _l1.Length; i++)
            {
                ulong l2Offset = _l1[i];
                if (l2Offset == 0)
                {
                    continue;
                }

                if (!IsValidTable(l2Offset))
                {
                    Bad(result, fix, $"L1 entry {i}: the L2 table offset 0x{l2Offset:x} is unaligned or outside the file");
                    if (fix)
                    {
                        _l1[i] = 0;
                        l1Fixed = true;
                    }

                    continue;
                }

                if (!MarkUsed((long)l2Offset, _header.TableSize, $"L2 table {i}"))
                {
                    continue;
                }

                ulong[] table;
                try
                {
                    table = L2Table(i);
                }
                catch (ImageException e)
                {
                    result.CheckErrors++;
                    result.Messages.Add($"ERROR L2 table {i}: {e.Reason}");
                    continue;
                }

                CheckL2(result, fix, i, table, MarkUsed);
            }

            if (l1Fixed)
            {
                _file.WriteAt((long)_header.L1TableOffset, EncodeTable(_l1, 0, _l1.Length));
            }

            for (long c = _header.HeaderSize; c < clusters; c++)
            {
                if (!used[(int)c])
                {
                    result.Leaks++;
                }
            }

            if (result.Leaks > 0)
            {
                result.Messages.Add($"{result.Leaks} cluster(s) are referenced by no table (leaked: waste of space, no harm to data)");
            }

            if (fix && result.Corruptions == 0 && result.CheckErrors == 0 && _header.NeedCheck)
            {
                // qed_check_mark_clean: the fixes reach the disk before the flag is cleared.
                _file.Flush();
                _header.NeedCheck = false;
                WriteHeader();
                _file.Flush();
            }

            return result;
        }

        private void CheckL2(VDiskCheckResult result, bool fix, long l1Index, ulong[] table, Func<long, long, string, bool> markUsed)
        {
            ulong last = 0;
            bool changed = false;
            for (long j = 0; j < table.Length; j++)
            {
                ulong entry = table[j];
                if (entry <= 1)
                {
                    continue;
                }

                result.AllocatedClusters++;
                if (last != 0 && last + (ulong)ClusterBytes != entry)
                {
                    result.FragmentedClusters++;
                }

                last = entry;
                if (!IsValidCluster(entry))
                {
                    Bad(result, fix, $"L2 table {l1Index} entry {j}: the data cluster offset 0x{entry:x} is unaligned or outside the file");
                    if (fix)
                    {
                        table[j] = 0;
                        changed = true;
                    }

                    continue;
                }

                markUsed((long)entry, 1, $"L2 table {l1Index} entry {j}");
            }

            if (changed)
            {
                _file.WriteAt((long)_l1[l1Index], EncodeTable(table, 0, table.Length));
            }
        }

        private static void Bad(VDiskCheckResult result, bool fix, string message)
        {
            if (fix)
            {
                result.CorruptionsFixed++;
                result.Messages.Add("Repaired: " + message);
            }
            else
            {
                result.Corruptions++;
                result.Messages.Add("ERROR " + message);
            }
        }

        /// <summary>
        /// Moves the data clusters nearest the end of the file into the lowest unused clusters (copy, flush,
        /// repoint, flush: a crash leaves one copy leaked, never data lost), then cuts the file after the last
        /// used cluster. Tables stay where they are. Under _gate, on an image without corruptions.
        /// </summary>
        private void ReclaimLeaks()
        {
            long cs = ClusterBytes;
            long clusters = _fileSize / cs;
            if (clusters > MaxReclaimClusters)
            {
                return;
            }

            // Per cluster: -1 unused, -2 a table or the header, else the data cluster's (L1 index << 32 | L2 index).
            var owner = new long[clusters];
            for (long c = 0; c < clusters; c++)
            {
                owner[c] = c < _header.HeaderSize ? -2 : -1;
            }

            void Table(ulong offset)
            {
                for (long c = 0; c < _header.TableSize; c++)
                {
                    owner[((long)offset / cs) + c] = -2;
                }
            }

            Table(_header.L1TableOffset);
            for (long i = 0; i < _l1.Length; i++)
            {
                if (_l1[i] == 0)
                {
                    continue;
                }

                Table(_l1[i]);
                ulong[] table = L2Table(i);
                for (long j = 0; j < table.Length; j++)
                {
                    if (table[j] > 1)
                    {
                        owner[(long)table[j] / cs] = (i << 32) | j;
                    }
                }
            }

            long hole = 0;
            long top = clusters - 1;
            var buffer = new byte[cs];
            while (true)
            {
                while (hole < clusters && owner[hole] != -1)
                {
                    hole++;
                }

                while (top >= 0 && owner[top] == -1)
                {
                    top--;
                }

                if (hole >= top || owner[top] < 0)
                {
                    break;
                }

                long l1Index = owner[top] >> 32;
                long l2Index = owner[top] & 0xFFFFFFFF;
                _file.ReadExactly(top * cs, buffer, "data cluster");
                _file.WriteAt(hole * cs, buffer);
                _file.Flush();
                ulong[] table = L2Table(l1Index);
                table[l2Index] = (ulong)(hole * cs);
                _file.WriteAt((long)_l1[l1Index] + (l2Index * 8), EncodeTable(table, l2Index, 1));
                _file.Flush();
                owner[hole] = owner[top];
                owner[top] = -1;
            }

            long end = (top + 1) * cs;
            if (end < _file.Length)
            {
                _file.Flush();
                _file.SetLength(end);
                _file.Flush();
                _fileSize = end;
            }
        }
    }
}
