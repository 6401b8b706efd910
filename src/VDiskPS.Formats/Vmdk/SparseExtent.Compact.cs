using System;
using System.Collections.Generic;
using System.Threading;

namespace VDiskPS.Formats.Vmdk
{
    // Compaction of a hosted sparse extent: the grains and grain tables nearest the end of the file move
    // down into the lowest free space past the metadata, then the file is cut after the last one, and free
    // space left below that (too small for what lay above) becomes a hole in the host file. A grain is
    // copied into space nothing references and made durable before its grain table entries (primary and
    // redundant) point at the copy; a table likewise before its directory entry. So after a crash every
    // entry points at valid data of its grain, and the space given up is only ever unreferenced.
    internal sealed partial class SparseExtent
    {
        // Grains copied before their entries are switched over, bounding the data at risk of a recopy.
        private const long CompactBatchBytes = 32L << 20;

        // Holes are punched in whole blocks of the usual host file system block size.
        private const long HostBlockBytes = 4096;

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
        /// Moves grains and grain tables down into free space, truncates the file and punches what stays free
        /// below its end; returns the bytes released. <paramref name="moved"/> gets the bytes of each grain moved.
        /// On cancellation the moves done so far are committed and the file cut before it throws.
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
                // Entries dropped by a discard must be durable before their grains' space is reused.
                Flush();
                File.Flush();
                long before = File.Length;
                List<Placement> used = CollectPlacements();
                List<Placement> gaps = FindGaps(used);
                byte[] grain = new byte[GrainSizeBytes];
                var pending = new List<(long Grain, long Sector)>();
                var firstGap = new Dictionary<long, int>();
                int top = used.Count - 1;
                long end = (long)_header.Overhead;
                bool cancelled = false;
                while (top >= 0 && used[top].Kind != PlacementKind.Metadata)
                {
                    if (cancel.IsCancellationRequested)
                    {
                        cancelled = true;
                        break;
                    }

                    Placement source = used[top];
                    int gap = FindGap(gaps, firstGap, source.Sectors);
                    if (gap == gaps.Count || gaps[gap].Start + source.Sectors > source.Start)
                    {
                        break;
                    }

                    // The target lies in unreferenced space below everything still to move.
                    long target = gaps[gap].Start;
                    gaps[gap] = new Placement(target + source.Sectors, gaps[gap].Sectors - source.Sectors, PlacementKind.Metadata, -1);
                    end = Math.Max(end, target + source.Sectors);
                    top--;
                    if (source.Kind == PlacementKind.Grain)
                    {
                        File.ReadExactly(source.Start * SparseHeader.SectorSize, grain, $"grain {source.Index}");
                        File.WriteAt(target * SparseHeader.SectorSize, grain);
                        pending.Add((source.Index, target));
                        moved(GrainSizeBytes);
                        if (pending.Count * (long)GrainSizeBytes >= CompactBatchBytes)
                        {
                            Repoint(pending);
                        }
                    }
                    else
                    {
                        // The table on disk must hold the moved grains' entries before it is copied.
                        Repoint(pending);
                        MoveTable(source, target);
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

                return before - File.Length + PunchGaps(gaps, end);
            }
        }

        /// <summary>The lowest gap of at least <paramref name="sectors"/>; gaps only shrink, so the search resumes where it stopped for that size.</summary>
        private static int FindGap(List<Placement> gaps, Dictionary<long, int> firstGap, long sectors)
        {
            firstGap.TryGetValue(sectors, out int gap);
            while (gap < gaps.Count && gaps[gap].Sectors < sectors)
            {
                gap++;
            }

            firstGap[sectors] = gap;
            return gap;
        }

        /// <summary>Copies a grain table (primary or redundant) to <paramref name="target"/>, durable before its directory entry points there.</summary>
        private void MoveTable(Placement source, long target)
        {
            byte[] raw = new byte[source.Sectors * SparseHeader.SectorSize];
            string name = source.Kind == PlacementKind.Table ? "grain table" : "redundant grain table";
            File.ReadExactly(source.Start * SparseHeader.SectorSize, raw, $"{name} {source.Index}");
            File.WriteAt(target * SparseHeader.SectorSize, raw);
            File.Flush();
            if (source.Kind == PlacementKind.Table)
            {
                _directory[source.Index] = checked((uint)target);
                WriteDirectoryEntry(_header.DirectoryOffset, source.Index, (uint)target);
            }
            else
            {
                _redundantDirectory[source.Index] = checked((uint)target);
                WriteDirectoryEntry(_header.RedundantDirectoryOffset, source.Index, (uint)target);
            }

            File.Flush();
        }

        /// <summary>
        /// Frees the host blocks of the space still unreferenced below <paramref name="end"/> (left where a grain
        /// table pins the end of the file); returns the bytes that were allocated there and are no longer.
        /// </summary>
        private long PunchGaps(List<Placement> gaps, long end)
        {
            long released = 0;
            foreach (Placement gap in gaps)
            {
                long start = AlignUp(gap.Start * SparseHeader.SectorSize, HostBlockBytes);
                long stop = Math.Min(gap.Start + gap.Sectors, end) * SparseHeader.SectorSize / HostBlockBytes * HostBlockBytes;
                if (stop <= start)
                {
                    continue;
                }

                long allocated = AllocatedBytes(start, stop - start);
                if (allocated > 0 && File.PunchHole(start, stop - start))
                {
                    released += allocated;
                }
            }

            return released;
        }

        /// <summary>Bytes of the run that the host file system holds as data (all of it where it cannot tell).</summary>
        private long AllocatedBytes(long offset, long length)
        {
            long allocated = 0;
            long stop = offset + length;
            while (offset < stop)
            {
                var run = File.QueryAllocation(offset, stop - offset);
                if (run == null)
                {
                    return length;
                }

                if (run.Value.IsData)
                {
                    allocated += run.Value.Length;
                }

                offset += Math.Max(1, run.Value.Length);
            }

            return allocated;
        }

        private static long AlignUp(long value, long unit) => (value + unit - 1) / unit * unit;

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

        /// <summary>Every placement in the file, sorted by start: the fixed metadata, grain tables past it, and data grains.</summary>
        private List<Placement> CollectPlacements()
        {
            long fileSectors = File.Length / SparseHeader.SectorSize;
            long grainSectors = (long)_header.GrainSize;
            long tableSectors = (GrainsPerTable * 4 + SparseHeader.SectorSize - 1) / SparseHeader.SectorSize;
            long directorySectors = (_directory.Length * 4L + SparseHeader.SectorSize - 1) / SparseHeader.SectorSize;

            // The directories normally lie inside the overhead, but a grown extent may have moved them to the end.
            var used = new List<Placement>
            {
                new Placement(0, (long)_header.Overhead, PlacementKind.Metadata, -1),
                new Placement((long)_header.DirectoryOffset, directorySectors, PlacementKind.Metadata, -1),
            };
            if (_redundantDirectory != null)
            {
                used.Add(new Placement((long)_header.RedundantDirectoryOffset, directorySectors, PlacementKind.Metadata, -1));
            }

            if (_header.DescriptorOffset > 0)
            {
                used.Add(new Placement((long)_header.DescriptorOffset, (long)_header.DescriptorSize, PlacementKind.Metadata, -1));
            }

            for (long table = 0; table < _directory.Length; table++)
            {
                if (_directory[table] == 0)
                {
                    continue;
                }

                // Tables inside the overhead (where qemu-img and VMware create them) stay where they are.
                used.Add(new Placement(_directory[table], tableSectors, _directory[table] < (long)_header.Overhead ? PlacementKind.Metadata : PlacementKind.Table, table));
                if (_redundantDirectory != null && _redundantDirectory[table] != 0)
                {
                    uint redundant = _redundantDirectory[table];
                    if (redundant + tableSectors > fileSectors)
                    {
                        throw new ImageCorruptException(File.Path, $"redundant grain table {table}", null, $"the redundant grain table at sector {redundant} lies past the end of the file; run a check with repair first");
                    }

                    used.Add(new Placement(redundant, tableSectors, redundant < (long)_header.Overhead ? PlacementKind.Metadata : PlacementKind.RedundantTable, table));
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

                    used.Add(new Placement(entry, grainSectors, PlacementKind.Grain, grain));
                }
            }

            used.Sort((a, b) => a.Start.CompareTo(b.Start));
            long end = 0;
            bool endMovable = false;
            foreach (Placement item in used)
            {
                // Moving either of two placements sharing space would change the other; a repair must decide first.
                bool movable = item.Kind != PlacementKind.Metadata;
                if (item.Start < end && (movable || endMovable))
                {
                    throw new ImageCorruptException(File.Path, "grain table", null, $"grains or grain tables overlap at sector {item.Start}; run a check with repair first");
                }

                if (item.Start + item.Sectors > end)
                {
                    end = item.Start + item.Sectors;
                    endMovable = movable;
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
                    gaps.Add(new Placement(end, item.Start - end, PlacementKind.Metadata, -1));
                }

                end = Math.Max(end, item.Start + item.Sectors);
            }

            return gaps;
        }

        private enum PlacementKind
        {
            /// <summary>Header, descriptor, directories and the padding up to the overhead: never moved.</summary>
            Metadata,
            Grain,
            Table,
            RedundantTable,
        }

        /// <summary>A run of sectors in the file: what it holds and the grain or grain table index.</summary>
        private readonly struct Placement
        {
            public Placement(long start, long sectors, PlacementKind kind, long index)
            {
                Start = start;
                Sectors = sectors;
                Kind = kind;
                Index = index;
            }

            public long Start { get; }

            public long Sectors { get; }

            public PlacementKind Kind { get; }

            public long Index { get; }
        }
    }
}
