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
        /// Placements (grains, tables, metadata) held at once while compacting: 1 M of 32 bytes, twice that
        /// while a window is selected, so at most 64 MiB whatever the extent. They are never all in memory (a
        /// full 1 TiB extent of 64 KiB grains has 16 M, 512 MiB) but read from the grain tables a window at a
        /// time: each window is one pass over the tables, so a window holds many to keep the passes few. Tests shrink it.
        /// </summary>
        internal static int CompactWindow { get; set; } = 1 << 20;

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
                CheckNoOverlaps();
                var sources = new SourceStream(this);
                var gaps = new GapStream(this);
                byte[] grain = new byte[GrainSizeBytes];
                var pending = new List<(long Grain, long Sector)>();
                bool cancelled = false;
                while (sources.TryPeek(pending, out Placement source) && source.Kind != PlacementKind.Metadata)
                {
                    if (cancel.IsCancellationRequested)
                    {
                        cancelled = true;
                        break;
                    }

                    // The target lies in unreferenced space below everything still to move.
                    long target = gaps.Take(source.Sectors, source.Start, pending);
                    if (target < 0)
                    {
                        break;
                    }

                    sources.Pop();
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

                // Everything past the highest placement now in use is free; the overhead stays whole.
                long end = (long)_header.Overhead;
                ForEachPlacement(item => end = Math.Max(end, item.Start + item.Sectors));
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

                return before - File.Length + PunchGaps(end);
            }
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
        private long PunchGaps(long end)
        {
            long released = 0;
            var gaps = new GapStream(this);
            while (gaps.Next(out Placement gap) && gap.Start < end)
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

        /// <summary>
        /// Calls <paramref name="visit"/> for every placement in the file, in no order: the fixed metadata,
        /// the grain tables and the data grains. Entries pointing into the metadata or past the end are corrupt.
        /// </summary>
        private void ForEachPlacement(Action<Placement> visit)
        {
            long fileSectors = File.Length / SparseHeader.SectorSize;
            long grainSectors = (long)_header.GrainSize;
            long tableSectors = (GrainsPerTable * 4 + SparseHeader.SectorSize - 1) / SparseHeader.SectorSize;
            long directorySectors = (_directory.Length * 4L + SparseHeader.SectorSize - 1) / SparseHeader.SectorSize;

            // The directories normally lie inside the overhead, but a grown extent may have moved them to the end.
            // Negative indices keep the keys of the metadata placements distinct.
            visit(new Placement(0, (long)_header.Overhead, PlacementKind.Metadata, -1));
            visit(new Placement((long)_header.DirectoryOffset, directorySectors, PlacementKind.Metadata, -2));
            if (_redundantDirectory != null)
            {
                visit(new Placement((long)_header.RedundantDirectoryOffset, directorySectors, PlacementKind.Metadata, -3));
            }

            if (_header.DescriptorOffset > 0)
            {
                visit(new Placement((long)_header.DescriptorOffset, (long)_header.DescriptorSize, PlacementKind.Metadata, -4));
            }

            for (long table = 0; table < _directory.Length; table++)
            {
                if (_directory[table] == 0)
                {
                    continue;
                }

                // Tables inside the overhead (where qemu-img and VMware create them) stay where they are.
                visit(new Placement(_directory[table], tableSectors, _directory[table] < (long)_header.Overhead ? PlacementKind.Metadata : PlacementKind.Table, table));
                if (_redundantDirectory != null && _redundantDirectory[table] != 0)
                {
                    uint redundant = _redundantDirectory[table];
                    if (redundant + tableSectors > fileSectors)
                    {
                        throw new ImageCorruptException(File.Path, $"redundant grain table {table}", null, $"the redundant grain table at sector {redundant} lies past the end of the file; run a check with repair first");
                    }

                    visit(new Placement(redundant, tableSectors, redundant < (long)_header.Overhead ? PlacementKind.Metadata : PlacementKind.RedundantTable, table));
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

                    visit(new Placement(entry, grainSectors, PlacementKind.Grain, grain));
                }
            }
        }

        /// <summary>
        /// The placements with keys strictly between <paramref name="after"/> and <paramref name="below"/> (null: no
        /// bound), at most <see cref="CompactWindow"/> of them, the lowest or the highest, sorted by key into
        /// <paramref name="window"/>: one pass over the grain tables, holding at most twice the window.
        /// </summary>
        private void SelectWindow(Placement? after, Placement? below, bool lowest, List<Placement> window)
        {
            int limit = Math.Max(1, CompactWindow);
            window.Clear();
            Placement? cut = null;
            void Trim()
            {
                window.Sort(s_byKey);
                if (window.Count > limit)
                {
                    window.RemoveRange(lowest ? limit : 0, window.Count - limit);
                    cut = lowest ? window[window.Count - 1] : window[0];
                }
            }

            ForEachPlacement(item =>
            {
                if ((after.HasValue && CompareKeys(item, after.Value) <= 0) || (below.HasValue && CompareKeys(item, below.Value) >= 0)
                    || (cut.HasValue && (lowest ? CompareKeys(item, cut.Value) > 0 : CompareKeys(item, cut.Value) < 0)))
                {
                    return;
                }

                window.Add(item);
                if (window.Count >= 2 * limit)
                {
                    Trim();
                }
            });
            Trim();
        }

        private static readonly Comparison<Placement> s_byKey = CompareKeys;

        /// <summary>By start sector, then kind and index: every placement has a key of its own.</summary>
        private static int CompareKeys(Placement a, Placement b)
        {
            int c = a.Start.CompareTo(b.Start);
            if (c == 0)
            {
                c = a.Kind.CompareTo(b.Kind);
            }

            return c != 0 ? c : a.Index.CompareTo(b.Index);
        }

        /// <summary>Refuses to move anything when grains or grain tables share space: a repair must decide first.</summary>
        private void CheckNoOverlaps()
        {
            var window = new List<Placement>();
            Placement? after = null;
            long end = 0;
            bool endMovable = false;
            while (true)
            {
                SelectWindow(after, null, true, window);
                if (window.Count == 0)
                {
                    return;
                }

                foreach (Placement item in window)
                {
                    // Moving either of two placements sharing space would change the other.
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

                after = window[window.Count - 1];
            }
        }

        /// <summary>The placements from the highest down, a window at a time: what compaction moves.</summary>
        private sealed class SourceStream
        {
            private readonly SparseExtent _extent;
            private readonly List<Placement> _window = new List<Placement>();
            private Placement? _lowestTaken;
            private bool _done;

            public SourceStream(SparseExtent extent) => _extent = extent;

            /// <summary>The highest placement not yet taken. A window is read after the moves so far are repointed.</summary>
            public bool TryPeek(List<(long Grain, long Sector)> pending, out Placement item)
            {
                if (_window.Count == 0 && !_done)
                {
                    _extent.Repoint(pending);
                    _extent.SelectWindow(null, _lowestTaken, false, _window);
                    _done = _window.Count == 0;
                }

                item = _window.Count > 0 ? _window[_window.Count - 1] : default;
                return _window.Count > 0;
            }

            public void Pop()
            {
                _lowestTaken = _window[_window.Count - 1];
                _window.RemoveAt(_window.Count - 1);
            }
        }

        /// <summary>
        /// The unreferenced runs between placements, lowest first, read a window of placements at a time. Gaps
        /// only shrink from their start as compaction fills them, so the search for each size resumes where it
        /// stopped; the gaps below every size's search are dropped, and past twice the window the lowest ones.
        /// </summary>
        private sealed class GapStream
        {
            private readonly SparseExtent _extent;
            private readonly List<Placement> _window = new List<Placement>();
            private readonly List<Placement> _gaps = new List<Placement>();
            private readonly Dictionary<long, int> _firstGap = new Dictionary<long, int>();
            private Placement? _lastPlacement;
            private long _end;
            private int _next;
            private bool _done;

            public GapStream(SparseExtent extent) => _extent = extent;

            /// <summary>Each gap once, lowest first (for punching; nothing is taken from them).</summary>
            public bool Next(out Placement gap)
            {
                while (_next >= _gaps.Count)
                {
                    _gaps.Clear();
                    _next = 0;
                    if (_done || !Load())
                    {
                        _done = true;
                        gap = default;
                        return false;
                    }
                }

                gap = _gaps[_next++];
                return true;
            }

            /// <summary>
            /// Takes <paramref name="sectors"/> from the start of the lowest gap that holds them, if that ends at or
            /// below <paramref name="limit"/>; returns the sector, or -1.
            /// </summary>
            public long Take(long sectors, long limit, List<(long Grain, long Sector)> pending)
            {
                _firstGap.TryGetValue(sectors, out int gap);
                while (true)
                {
                    while (gap < _gaps.Count && _gaps[gap].Sectors < sectors)
                    {
                        gap++;
                    }

                    _firstGap[sectors] = gap;
                    if (gap < _gaps.Count)
                    {
                        break;
                    }

                    // Gaps still to read start at or above the end of the placements read so far.
                    if (_done || _end + sectors > limit)
                    {
                        return -1;
                    }

                    // Placements are read from the tables: the moves so far must be repointed first.
                    _extent.Repoint(pending);
                    DropPassedGaps();
                    gap = _firstGap[sectors];
                    _done = !Load();
                }

                Placement found = _gaps[gap];
                if (found.Start + sectors > limit)
                {
                    return -1;
                }

                _gaps[gap] = new Placement(found.Start + sectors, found.Sectors - sectors, PlacementKind.Metadata, -1);
                return found.Start;
            }

            private void DropPassedGaps()
            {
                int drop = int.MaxValue;
                foreach (int position in _firstGap.Values)
                {
                    drop = Math.Min(drop, position);
                }

                drop = Math.Min(_gaps.Count, Math.Max(drop, _gaps.Count - 2 * Math.Max(1, CompactWindow)));
                _gaps.RemoveRange(0, drop);
                foreach (long size in new List<long>(_firstGap.Keys))
                {
                    _firstGap[size] = Math.Max(0, _firstGap[size] - drop);
                }
            }

            /// <summary>Appends the gaps below the next window of placements; false when no placement is left.</summary>
            private bool Load()
            {
                _extent.SelectWindow(_lastPlacement, null, true, _window);
                if (_window.Count == 0)
                {
                    return false;
                }

                foreach (Placement item in _window)
                {
                    if (item.Start > _end)
                    {
                        _gaps.Add(new Placement(_end, item.Start - _end, PlacementKind.Metadata, -1));
                    }

                    _end = Math.Max(_end, item.Start + item.Sectors);
                }

                _lastPlacement = _window[_window.Count - 1];
                return true;
            }
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
