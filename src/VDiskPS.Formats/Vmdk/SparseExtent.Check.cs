using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using VDiskPS;

namespace VDiskPS.Formats.Vmdk
{
    // Consistency check of a sparse extent: every grain table and grain inside the file and past the
    // metadata, no two grains sharing space, the redundant grain tables equal to the primary ones, and
    // space at the end of the file that nothing references (leaked grains).
    internal sealed partial class SparseExtent
    {
        public void Check(VDiskCheckResult result, RepairMode repair)
        {
            lock (_gate)
            {
                Flush();
                long fileSectors = File.Length / SparseHeader.SectorSize;
                long tableSectors = (GrainsPerTable * 4 + SparseHeader.SectorSize - 1) / SparseHeader.SectorSize;
                long directorySectors = (_directory.Length * 4L + SparseHeader.SectorSize - 1) / SparseHeader.SectorSize;
                var used = new List<(long Start, long Length, string What)>
                {
                    (0, 1, "the header"),
                    ((long)_header.DirectoryOffset, directorySectors, "the grain directory"),
                };
                if (_header.DescriptorOffset > 0)
                {
                    used.Add(((long)_header.DescriptorOffset, (long)_header.DescriptorSize, "the descriptor"));
                }

                if (_redundantDirectory != null)
                {
                    used.Add(((long)_header.RedundantDirectoryOffset, directorySectors, "the redundant grain directory"));
                }

                long grainCount = GrainCount;
                result.TotalClusters += grainCount;
                for (long table = 0; table < _directory.Length; table++)
                {
                    long sector = _directory[table];
                    if (sector == 0)
                    {
                        continue;
                    }

                    if (sector + tableSectors > fileSectors)
                    {
                        Report(result, $"{File.Path}: grain table {table} at sector {sector} lies past the end of the file");
                        result.Corruptions++;
                        if (repair == RepairMode.All)
                        {
                            _directory[table] = 0;
                            WriteDirectoryEntry(_header.DirectoryOffset, table, 0);
                            result.CorruptionsFixed++;
                        }

                        continue;
                    }

                    used.Add((sector, tableSectors, $"grain table {table}"));
                    if (_redundantDirectory != null && _redundantDirectory[table] != 0)
                    {
                        CheckRedundantTable(result, repair, table, tableSectors, fileSectors, used);
                    }

                    CheckTableEntries(result, repair, table, fileSectors, used);
                }

                FindOverlapsAndLeaks(result, repair, used, fileSectors);
            }
        }

        private void CheckTableEntries(VDiskCheckResult result, RepairMode repair, long table, long fileSectors, List<(long Start, long Length, string What)> used)
        {
            GrainTable gt = LoadTable(table);
            long grainSectors = (long)_header.GrainSize;
            for (int index = 0; index < gt.Entries.Length; index++)
            {
                long grain = table * GrainsPerTable + index;
                uint entry = gt.Entries[index];
                if (entry == 0 || (entry == ZeroedGrain && _header.ZeroedGrainEntries) || grain >= GrainCount)
                {
                    continue;
                }

                result.AllocatedClusters++;
                long length = grainSectors;
                string problem = null;
                if (_header.Compressed)
                {
                    result.CompressedClusters++;
                    length = CompressedGrainSectors(entry, grain, fileSectors, out problem);
                }
                else if (entry + grainSectors > fileSectors)
                {
                    problem = $"grain {grain} at sector {entry} lies past the end of the file";
                }

                if (problem == null && entry < (long)_header.Overhead && !_header.Compressed)
                {
                    problem = $"grain {grain} at sector {entry} points into the metadata";
                }

                if (problem != null)
                {
                    Report(result, $"{File.Path}: {problem}");
                    result.Corruptions++;
                    if (repair == RepairMode.All && !_header.Compressed)
                    {
                        gt.Entries[index] = 0;
                        gt.Dirty = true;
                        result.CorruptionsFixed++;
                    }

                    continue;
                }

                used.Add((entry, length, $"grain {grain}"));
            }

            if (gt.Dirty)
            {
                WriteTable(table, gt);
            }
        }

        private long CompressedGrainSectors(long sector, long grain, long fileSectors, out string problem)
        {
            problem = null;
            if (!_header.HasMarkers)
            {
                return 1;
            }

            if (sector >= fileSectors)
            {
                problem = $"compressed grain {grain} at sector {sector} lies past the end of the file";
                return 0;
            }

            byte[] marker = new byte[StreamMarker.GrainHeaderSize];
            File.ReadExactly(sector * SparseHeader.SectorSize, marker, $"grain marker of grain {grain}");
            uint size = StreamMarker.ReadSize(marker);
            long sectors = (StreamMarker.GrainHeaderSize + (long)size + SparseHeader.SectorSize - 1) / SparseHeader.SectorSize;
            if (size == 0 || size > GrainSizeBytes * 2L + 1024 || sector + sectors > fileSectors)
            {
                problem = $"compressed grain {grain} at sector {sector} has a bad size ({size} bytes)";
            }
            else if (StreamMarker.ReadValue(marker) != (ulong)(grain * (long)_header.GrainSize))
            {
                problem = $"compressed grain {grain} at sector {sector} is marked for sector {StreamMarker.ReadValue(marker)}";
            }

            return sectors;
        }

        private void CheckRedundantTable(VDiskCheckResult result, RepairMode repair, long table, long tableSectors, long fileSectors, List<(long Start, long Length, string What)> used)
        {
            long sector = _redundantDirectory[table];
            if (sector + tableSectors > fileSectors)
            {
                Report(result, $"{File.Path}: redundant grain table {table} at sector {sector} lies past the end of the file");
                result.Corruptions++;
                return;
            }

            used.Add((sector, tableSectors, $"redundant grain table {table}"));
            GrainTable primary = LoadTable(table);
            byte[] raw = new byte[GrainsPerTable * 4];
            File.ReadExactly(sector * SparseHeader.SectorSize, raw, $"redundant grain table {table}");
            for (int i = 0; i < primary.Entries.Length; i++)
            {
                if (BinaryPrimitives.ReadUInt32LittleEndian(raw.AsSpan(i * 4)) != primary.Entries[i])
                {
                    Report(result, $"{File.Path}: redundant grain table {table} differs from the primary one at entry {i}");
                    result.Corruptions++;
                    if (repair == RepairMode.All)
                    {
                        WriteTable(table, primary);
                        result.CorruptionsFixed++;
                    }

                    return;
                }
            }
        }

        private void FindOverlapsAndLeaks(VDiskCheckResult result, RepairMode repair, List<(long Start, long Length, string What)> used, long fileSectors)
        {
            used.Sort((a, b) => a.Start.CompareTo(b.Start));
            long end = 0;
            string endWhat = null;
            foreach (var item in used)
            {
                if (item.Start < end)
                {
                    Report(result, $"{File.Path}: {item.What} at sector {item.Start} overlaps {endWhat}");
                    result.Corruptions++;
                }

                if (item.Start + item.Length > end)
                {
                    end = item.Start + item.Length;
                    endWhat = item.What;
                }
            }

            // Stream extents end with the directory, footer and end-of-stream marker; no leak check there.
            if (_header.Compressed)
            {
                result.ImageEndOffset = Math.Max(result.ImageEndOffset, File.Length);
                return;
            }

            // qemu-img and VMware round the metadata up to a whole grain; that padding is no leak.
            end = Math.Max(end, (long)_header.Overhead);
            long leakedSectors = fileSectors - end;
            if (leakedSectors >= (long)_header.GrainSize)
            {
                long grains = leakedSectors / (long)_header.GrainSize;
                Report(result, $"{File.Path}: {grains} leaked grain(s) at the end of the file");
                result.Leaks += grains;
                if (repair != RepairMode.None && File.CanWrite)
                {
                    File.SetLength(end * SparseHeader.SectorSize);
                    _nextFreeSector = end;
                    result.LeaksFixed += grains;
                }
            }

            result.ImageEndOffset = Math.Max(result.ImageEndOffset, Math.Min(end, fileSectors) * SparseHeader.SectorSize);
        }

        private static void Report(VDiskCheckResult result, string message)
        {
            if (result.Messages.Count < 1000)
            {
                result.Messages.Add(message);
            }
        }
    }
}
