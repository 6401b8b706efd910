using System;
using System.Collections.Generic;
using System.Threading;

namespace VDiskPS.Formats.Vmdk
{
    // Compaction of a hosted sparse extent: the grains nearest the end of the file move down into the
    // lowest free space past the metadata, then the file is cut after the last grain or table. A grain
    // is copied into space nothing references and made durable before its grain table entries (primary
    // and redundant) point at the copy, so after a crash every entry still points at its grain's data.
    internal sealed partial class SparseExtent
    {
        // Grains copied before their entries are switched over, bounding the data at risk of a recopy.
        private const long CompactBatchBytes = 32L << 20;

        /// <summary>Why the extent cannot be compacted, or null when it can.</summary>
        public string CompactBlockedReason
            => _header.Compressed || _streamWriting ? "streamOptimized extents are read-only (written once, compressed); convert the disk to monolithicSparse to optimize it"
            : ReadOnlyReason;

        /// <summary>Guest bytes of the allocated (data) grains, the work a compaction may have.</summary>
        public long AllocatedGrainBytes()
        {
            lock (_gate)
            {
                long grains = 0;
                for (long table = 0; table < _directory.Length; table++)
                {
                    if (_directory[table] == 0)
                    {
                        continue;
                    }

                    uint[] entries = LoadTable(table).Entries;
                    for (int index = 0; index < entries.Length && table * GrainsPerTable + index < GrainCount; index++)
                    {
                        if (IsDataEntry(entries[index]))
                        {
                            grains++;
                        }
                    }
                }

                return grains * GrainSizeBytes;
            }
        }

        /// <summary>
        /// Moves grains down into free space and truncates the file; returns the bytes the file shrank by.
        /// <paramref name="moved"/> is called with the guest bytes of each grain passed over.
        /// </summary>
        public long Compact(Action<long> moved, CancellationToken cancel)
        {
            string reason = CompactBlockedReason;
            if (reason != null)
            {
                throw new ImageNotSupportedException(File.Path, null, null, reason);
            }

            lock (_gate)
            {
                Flush();
                long before = File.Length;
                long grainSectors = (long)_header.GrainSize;
                List<Placement> used = CollectPlacements();
                List<Placement> gaps = FindGaps(used);
                byte[] grain = new byte[GrainSizeBytes];
                var pending = new List<(long Grain, long Sector)>();
                int gap = 0;
                int top = used.Count - 1;
                long end = (long)_header.Overhead;
                bool cancelled = false;
                while (top >= 0 && used[top].Grain >= 0)
                {
                    if (cancel.IsCancellationRequested)
                    {
                        cancelled = true;
                        break;
                    }

                    Placement source = used[top];
                    while (gap < gaps.Count && gaps[gap].Sectors < grainSectors)
                    {
                        gap++;
                    }

                    if (gap == gaps.Count || gaps[gap].Start + grainSectors > source.Start)
                    {
                        break;
                    }

                    // The target lies in unreferenced space below every grain still to move.
                    long target = gaps[gap].Start;
                    gaps[gap] = new Placement(target + grainSectors, gaps[gap].Sectors - grainSectors, -1);
                    File.ReadExactly(source.Start * SparseHeader.SectorSize, grain, $"grain {source.Grain}");
                    File.WriteAt(target * SparseHeader.SectorSize, grain);
                    pending.Add((source.Grain, target));
                    end = Math.Max(end, target + grainSectors);
                    top--;
                    moved(GrainSizeBytes);
                    if (pending.Count * (long)GrainSizeBytes >= CompactBatchBytes)
                    {
                        Repoint(pending);
                    }
                }

                Repoint(pending);

                // Everything past the highest placement still in use (moved or not) is free; the overhead stays whole.
                for (int i = 0; i <= top; i++)
                {
                    end = Math.Max(end, used[i].Start + used[i].Sectors);
                }

                long length = end * SparseHeader.SectorSize;
                if (length < before)
                {
                    File.SetLength(length);
                    File.Flush();
                    _nextFreeSector = end;
                }

                if (cancelled)
                {
                    cancel.ThrowIfCancellationRequested();
                }

                return before - File.Length;
            }
        }

        /// <summary>Points the entries of copied grains at their copies: copies durable first, then both grain tables.</summary>
        private void Repoint(List<(long Grain, long Sector)> pending)
        {
            if (pending.Count == 0)
            {
                return;
            }

            File.Flush();
            foreach (var (grain, sector) in pending)
            {
                SetEntry(grain, checked((uint)sector));
            }

            Flush();
            File.Flush();
            pending.Clear();
        }

        private bool IsDataEntry(uint entry) => entry != 0 && !(entry == ZeroedGrain && _header.ZeroedGrainEntries);

        /// <summary>Every placement in the file, sorted by start: metadata (Grain -1, never moved) and data grains.</summary>
        private List<Placement> CollectPlacements()
        {
            long fileSectors = File.Length / SparseHeader.SectorSize;
            long grainSectors = (long)_header.GrainSize;
            long tableSectors = (GrainsPerTable * 4 + SparseHeader.SectorSize - 1) / SparseHeader.SectorSize;
            var used = new List<Placement> { new Placement(0, (long)_header.Overhead, -1) };
            for (long table = 0; table < _directory.Length; table++)
            {
                if (_directory[table] == 0)
                {
                    continue;
                }

                used.Add(new Placement(_directory[table], tableSectors, -1));
                if (_redundantDirectory != null && _redundantDirectory[table] != 0)
                {
                    used.Add(new Placement(_redundantDirectory[table], tableSectors, -1));
                }

                uint[] entries = LoadTable(table).Entries;
                for (int index = 0; index < entries.Length; index++)
                {
                    long grain = table * GrainsPerTable + index;
                    uint entry = entries[index];
                    if (grain >= GrainCount || !IsDataEntry(entry))
                    {
                        continue;
                    }

                    if (entry < (long)_header.Overhead || entry + grainSectors > fileSectors)
                    {
                        throw new ImageCorruptException(File.Path, $"grain table entry of grain {grain}", null, $"the grain points to sector {entry}, inside the metadata or past the end of the file; run a check with repair first");
                    }

                    used.Add(new Placement(entry, grainSectors, grain));
                }
            }

            used.Sort((a, b) => a.Start.CompareTo(b.Start));
            for (int i = 1; i < used.Count; i++)
            {
                // Moving either of two grains sharing space would change the other; a repair must decide first.
                if (used[i].Start < used[i - 1].Start + used[i - 1].Sectors && (used[i].Grain >= 0 || used[i - 1].Grain >= 0))
                {
                    throw new ImageCorruptException(File.Path, "grain table", null, $"two grains or a grain and a grain table overlap at sector {used[i].Start}; run a check with repair first");
                }
            }

            return used;
        }

        /// <summary>The unreferenced runs between placements past the overhead, lowest first.</summary>
        private static List<Placement> FindGaps(List<Placement> used)
        {
            var gaps = new List<Placement>();
            long end = 0;
            foreach (Placement item in used)
            {
                if (item.Start > end)
                {
                    gaps.Add(new Placement(end, item.Start - end, -1));
                }

                end = Math.Max(end, item.Start + item.Sectors);
            }

            return gaps;
        }

        /// <summary>A run of sectors in the file: a grain (its index) or metadata (Grain -1).</summary>
        private readonly struct Placement
        {
            public Placement(long start, long sectors, long grain)
            {
                Start = start;
                Sectors = sectors;
                Grain = grain;
            }

            public long Start { get; }

            public long Sectors { get; }

            public long Grain { get; }
        }
    }
}
