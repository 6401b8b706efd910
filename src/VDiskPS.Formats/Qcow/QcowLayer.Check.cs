using System;
using System.Buffers.Binary;
using System.Collections.Generic;

namespace VDiskPS.Formats.Qcow
{
    /// <summary>
    /// Consistency check (QEMU has none for qcow): every L2 table and cluster inside the file and off the
    /// header and L1 table, no two structures sharing bytes, and whole clusters nothing references (leaks,
    /// which qcow, having no free-space map, cannot reuse). A repair clears the entries that point outside
    /// the file or onto the header or L1 table; what they pointed to is lost either way.
    /// </summary>
    internal sealed partial class QcowLayer : ICheckableLayer
    {
        public VDiskCheckResult Check(RepairMode repair)
        {
            if (repair != RepairMode.None)
            {
                EnsureWritable();
            }

            lock (_gate)
            {
                var result = new VDiskCheckResult
                {
                    TotalClusters = (_size + ClusterMask) >> ClusterBits,
                    ImageEndOffset = _fileEnd,
                };
                var used = new List<(long Start, long Length, string What)> { (0, QcowHeader.Length, "the header") };
                if (_backing != null)
                {
                    used.Add(((long)_header.BackingFileOffset, _header.BackingFileSize, "the backing file name"));
                }

                used.Add(((long)_header.L1TableOffset, L1Bytes, "the L1 table"));
                for (long l1Index = 0; l1Index < _l1.Length; l1Index++)
                {
                    ulong l2At = _l1[l1Index];
                    if (l2At == 0)
                    {
                        continue;
                    }

                    if (l2At > (ulong)_fileEnd || (ulong)L2Bytes > (ulong)_fileEnd - l2At || OverlapsFixedMetadata((long)l2At, L2Bytes))
                    {
                        result.Corruptions++;
                        result.Messages.Add($"L2 table {l1Index} ({L2Bytes} bytes at {l2At}) lies past the end of the file or on the header or the L1 table");
                        if (repair == RepairMode.All)
                        {
                            WriteL1Entry(l1Index, 0);
                            result.CorruptionsFixed++;
                        }

                        continue;
                    }

                    used.Add(((long)l2At, L2Bytes, $"L2 table {l1Index}"));
                    CheckTable(l1Index, repair, result, used);
                }

                FindOverlapsAndLeaks(result, used, repair);
                if (repair != RepairMode.None)
                {
                    _tables.Clear();
                    _tableOffsets = null;
                    _inflatedAt = -1;
                    _file.Flush();
                }

                return result;
            }
        }

        private void CheckTable(long l1Index, RepairMode repair, VDiskCheckResult result, List<(long Start, long Length, string What)> used)
        {
            long l2At = (long)_l1[l1Index];
            var raw = new byte[L2Bytes];
            _file.ReadExactly(l2At, raw, "L2 table");
            long firstCluster = l1Index << _header.L2Bits;
            for (int index = 0; index < _header.L2Entries; index++)
            {
                ulong entry = BinaryPrimitives.ReadUInt64BigEndian(raw.AsSpan(index * 8));
                if (entry == 0)
                {
                    continue;
                }

                string problem = EntryProblem(entry);
                if (problem != null)
                {
                    result.Corruptions++;
                    result.Messages.Add($"cluster {firstCluster + index} (L2 entry {index} of table {l1Index}): {problem}");
                    if (repair == RepairMode.All)
                    {
                        _file.WriteAt(l2At + (index * 8L), new byte[8]);
                        result.CorruptionsFixed++;
                    }

                    continue;
                }

                result.AllocatedClusters++;
                bool compressed = (entry & CompressedFlag) != 0;
                long host = compressed ? (long)(entry & CompressedOffsetMask) : (long)entry;
                long length = compressed ? CompressedLength(entry) : _header.ClusterSize;
                if (compressed)
                {
                    result.CompressedClusters++;
                }

                // Clusters appended one after another are one range, so a large image stays a short list.
                int last = used.Count - 1;
                if (used[last].What == "data" && used[last].Start + used[last].Length == host)
                {
                    used[last] = (used[last].Start, used[last].Length + length, "data");
                }
                else
                {
                    used.Add((host, length, "data"));
                }
            }
        }

        /// <summary>Structures sharing bytes are corruptions; whole clusters past the L1 table that nothing covers are leaks.</summary>
        private void FindOverlapsAndLeaks(VDiskCheckResult result, List<(long Start, long Length, string What)> used, RepairMode repair)
        {
            used.Sort((a, b) => a.Start.CompareTo(b.Start));
            long covered = 0;
            string coveredBy = null;
            long leakFrom = AlignUp((long)_header.L1TableOffset + L1Bytes);
            foreach (var range in used)
            {
                if (range.Length == 0)
                {
                    continue;
                }

                if (range.Start < covered)
                {
                    result.Corruptions++;
                    result.Messages.Add($"{Describe(range.What, range.Start)} overlaps {coveredBy} (the same bytes are used twice; the overlap is not repaired: convert the image to copy out what it reads)");
                }
                else
                {
                    result.Leaks += LeakedClusters(Math.Max(covered, leakFrom), range.Start);
                }

                if (range.Start + range.Length > covered)
                {
                    covered = range.Start + range.Length;
                    coveredBy = Describe(range.What, range.Start);
                }
            }

            result.Leaks += LeakedClusters(Math.Max(covered, leakFrom), _fileEnd);
            if (result.Leaks > 0)
            {
                result.Messages.Add(repair == RepairMode.None
                    ? $"{result.Leaks} cluster(s) of the file are not used by the image (harmless)"
                    : $"{result.Leaks} cluster(s) of the file are not used by the image; qcow has no free-space map to give them back, so they stay (converting the image leaves them out)");
            }
        }

        private static string Describe(string what, long start) => what == "data" ? $"the data at {start}" : $"{what} at {start}";

        /// <summary>Whole clusters inside [start, end).</summary>
        private long LeakedClusters(long start, long end)
        {
            long first = AlignUp(start);
            long last = end & ~ClusterMask;
            return last > first ? (last - first) >> ClusterBits : 0;
        }

        private void WriteL1Entry(long l1Index, ulong value)
        {
            var raw = new byte[8];
            BinaryPrimitives.WriteUInt64BigEndian(raw, value);
            _file.WriteAt((long)_header.L1TableOffset + (l1Index * 8), raw);
            _l1[l1Index] = value;
        }
    }
}
