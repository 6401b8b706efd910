using System;
using System.Buffers;
using System.Buffers.Binary;

namespace VDiskPS.Formats.Vmdk
{
    // Writes into a hosted sparse extent: in place for allocated grains, appended at the end of the
    // file for new ones (runs of new grains are allocated contiguously and written at once). Data is
    // written before the grain table entries that point to it, so a crash leaves only leaked grains.
    internal sealed partial class SparseExtent
    {
        public override string ReadOnlyReason
            => _streamWriting ? null
            : _header.Compressed ? "an existing streamOptimized (compressed) extent cannot be modified; convert it to monolithicSparse first"
            : _header.IsCowd ? "vmfsSparse (COWD) extents are read-only here; convert the disk to write it"
            : _header.Version == 3 ? "version 3 sparse extents carry changed-block tracking that this module does not update; they are read-only here (as in qemu)"
            : null;

        public override void Write(long offset, ReadOnlySpan<byte> data, ReadBelow below)
        {
            if (_streamWriting)
            {
                StreamWrite(offset, data);
                return;
            }

            if (ReadOnlyReason != null)
            {
                throw new ImageNotSupportedException(File.Path, null, null, ReadOnlyReason);
            }

            if (offset + data.Length > CapacityBytes)
            {
                throw new ImageCorruptException(File.Path, "sparse header capacity", 12, $"the write at {offset} reaches past the extent's capacity of {CapacityBytes} bytes");
            }

            long grainBytes = GrainSizeBytes;
            lock (_gate)
            {
                while (data.Length > 0)
                {
                    long grain = offset / grainBytes;
                    int inGrain = (int)(offset % grainBytes);
                    GrainState state = GetGrainState(grain);
                    int n;
                    if (state.Kind == ExtentKind.Data)
                    {
                        if (state.HostSector < (long)_header.Overhead)
                        {
                            // Writing there would overwrite the header, descriptor or tables.
                            throw new ImageCorruptException(File.Path, $"grain table entry of grain {grain}", null, $"the grain points to sector {state.HostSector}, inside the metadata; run a check with repair first");
                        }

                        n = (int)Math.Min(data.Length, grainBytes - inGrain);
                        long nextHost = state.HostSector + (long)_header.GrainSize;
                        while (n < data.Length)
                        {
                            GrainState next = GetGrainState((offset + n) / grainBytes);
                            if (next.Kind != ExtentKind.Data || next.HostSector != nextHost)
                            {
                                break;
                            }

                            n += (int)Math.Min(data.Length - n, grainBytes);
                            nextHost += (long)_header.GrainSize;
                        }

                        File.WriteAt(state.HostSector * SparseHeader.SectorSize + inGrain, data.Slice(0, n));
                    }
                    else
                    {
                        n = WriteNewGrains(offset, data, below);
                    }

                    offset += n;
                    data = data.Slice(n);
                }
            }
        }

        public override long TryWriteZeroGrains(long offset, long length, bool hasParent)
        {
            if (_streamWriting)
            {
                return StreamWriteZeroes(offset, length);
            }

            long grainBytes = GrainSizeBytes;
            if (_header.Compressed || _header.IsCowd || offset % grainBytes != 0)
            {
                return 0;
            }

            long handled = 0;
            lock (_gate)
            {
                while (handled < length)
                {
                    long grainStart = offset + handled;
                    long grainLength = Math.Min(grainBytes, CapacityBytes - grainStart);
                    if (grainLength <= 0 || length - handled < grainLength)
                    {
                        break;
                    }

                    long grain = grainStart / grainBytes;
                    GrainState state = GetGrainState(grain);
                    if (_header.ZeroedGrainEntries)
                    {
                        if (state.Kind != ExtentKind.Zero)
                        {
                            SetEntry(grain, ZeroedGrain);
                        }
                    }
                    else if (hasParent || state.Kind == ExtentKind.Data)
                    {
                        break;
                    }

                    handled += grainLength;
                }
            }

            return handled;
        }

        /// <summary>Unallocates the whole grains inside the run.</summary>
        public void Discard(long offset, long length)
        {
            if (_header.Compressed || _streamWriting || _header.IsCowd)
            {
                throw new ImageNotSupportedException(File.Path, null, null, "grains of a streamOptimized or vmfsSparse extent cannot be discarded");
            }

            long grainBytes = GrainSizeBytes;
            long first = (offset + grainBytes - 1) / grainBytes;
            long end = Math.Min(offset + length, CapacityBytes);
            long last = end == CapacityBytes ? (end + grainBytes - 1) / grainBytes : end / grainBytes;
            lock (_gate)
            {
                for (long grain = first; grain < last; grain++)
                {
                    if (DirectoryEntry(grain / GrainsPerTable) != 0 && GetEntry(grain) != 0)
                    {
                        SetEntry(grain, 0);
                    }
                }
            }
        }

        public override void Flush()
        {
            lock (_gate)
            {
                if (File == null || !File.CanWrite)
                {
                    return;
                }

                foreach (var pair in _tables)
                {
                    if (pair.Value.Dirty)
                    {
                        WriteTable(pair.Key, pair.Value);
                    }
                }
            }
        }

        /// <summary>Allocates the run of unallocated or zeroed grains at <paramref name="offset"/>; returns the bytes of data consumed.</summary>
        private int WriteNewGrains(long offset, ReadOnlySpan<byte> data, ReadBelow below)
        {
            long grainBytes = GrainSizeBytes;
            long firstGrain = offset / grainBytes;
            long dataEnd = offset + data.Length;
            long lastGrain = firstGrain;
            while ((lastGrain + 1) * grainBytes < dataEnd && GetGrainState(lastGrain + 1).Kind != ExtentKind.Data)
            {
                lastGrain++;
            }

            long runStart = firstGrain * grainBytes;
            long runEnd = (lastGrain + 1) * grainBytes;
            int consumed = (int)(Math.Min(dataEnd, runEnd) - offset);
            long grains = lastGrain - firstGrain + 1;
            long hostSector;
            if (offset == runStart && consumed == runEnd - runStart)
            {
                // Whole grains: the caller's buffer goes to disk as is.
                hostSector = AllocateSectors(grains * (long)_header.GrainSize);
                File.WriteAt(hostSector * SparseHeader.SectorSize, data.Slice(0, consumed));
            }
            else
            {
                int length = (int)(runEnd - runStart);
                byte[] buffer = ArrayPool<byte>.Shared.Rent(length);
                try
                {
                    Span<byte> run = buffer.AsSpan(0, length);
                    FillBelow(firstGrain, run.Slice(0, (int)(offset - runStart)), runStart, below);
                    long tailStart = offset + consumed;
                    if (tailStart < runEnd)
                    {
                        FillBelow(lastGrain, run.Slice((int)(tailStart - runStart)), tailStart, below);
                    }

                    data.Slice(0, consumed).CopyTo(run.Slice((int)(offset - runStart)));
                    hostSector = AllocateSectors(grains * (long)_header.GrainSize);
                    File.WriteAt(hostSector * SparseHeader.SectorSize, run);
                }
                finally
                {
                    ArrayPool<byte>.Shared.Return(buffer);
                }
            }

            for (long g = 0; g < grains; g++)
            {
                SetEntry(firstGrain + g, checked((uint)(hostSector + g * (long)_header.GrainSize)));
            }

            return consumed;
        }

        /// <summary>Fills the part of a new grain that the write does not cover: zeros for a zeroed grain, else what lies below.</summary>
        private void FillBelow(long grain, Span<byte> target, long extentOffset, ReadBelow below)
        {
            if (target.Length == 0)
            {
                return;
            }

            if (GetGrainState(grain).Kind == ExtentKind.Zero || below == null)
            {
                target.Clear();
                return;
            }

            int inside = (int)Math.Max(0, Math.Min(target.Length, Line.Sectors * SparseHeader.SectorSize - extentOffset));
            below(extentOffset, target.Slice(0, inside));
            target.Slice(inside).Clear();
        }

        private long AllocateSectors(long sectors)
        {
            long start = _nextFreeSector;
            if (start + sectors > uint.MaxValue)
            {
                throw new ImageNotSupportedException(File.Path, null, null, "the sparse extent file would grow past 2 TiB, the limit of its 32-bit sector offsets");
            }

            _nextFreeSector += sectors;
            return start;
        }

        private void SetEntry(long grain, uint value)
        {
            long table = grain / GrainsPerTable;
            if (DirectoryEntry(table) == 0)
            {
                AllocateTable(table);
            }

            GrainTable gt = LoadTable(table);
            gt.Entries[grain % GrainsPerTable] = value;
            gt.Dirty = true;
        }

        /// <summary>Allocates a zeroed grain table (and its redundant copy) and records it in the directories.</summary>
        private void AllocateTable(long table)
        {
            long tableSectors = (GrainsPerTable * 4 + SparseHeader.SectorSize - 1) / SparseHeader.SectorSize;
            byte[] zeros = new byte[tableSectors * SparseHeader.SectorSize];
            long sector = AllocateSectors(tableSectors);
            File.WriteAt(sector * SparseHeader.SectorSize, zeros);
            _directory[table] = checked((uint)sector);
            WriteDirectoryEntry(_header.DirectoryOffset, table, (uint)sector);
            if (_redundantDirectory != null)
            {
                long redundant = AllocateSectors(tableSectors);
                File.WriteAt(redundant * SparseHeader.SectorSize, zeros);
                _redundantDirectory[table] = checked((uint)redundant);
                WriteDirectoryEntry(_header.RedundantDirectoryOffset, table, (uint)redundant);
            }
        }

        private void WriteDirectoryEntry(ulong directorySector, long table, uint value)
        {
            byte[] entry = new byte[4];
            BinaryPrimitives.WriteUInt32LittleEndian(entry, value);
            File.WriteAt((long)directorySector * SparseHeader.SectorSize + table * 4, entry);
        }

        private void WriteTable(long table, GrainTable gt)
        {
            byte[] raw = new byte[gt.Entries.Length * 4];
            for (int i = 0; i < gt.Entries.Length; i++)
            {
                BinaryPrimitives.WriteUInt32LittleEndian(raw.AsSpan(i * 4), gt.Entries[i]);
            }

            File.WriteAt((long)_directory[table] * SparseHeader.SectorSize, raw);
            if (_redundantDirectory != null && _redundantDirectory[table] != 0)
            {
                File.WriteAt((long)_redundantDirectory[table] * SparseHeader.SectorSize, raw);
            }

            gt.Dirty = false;
        }
    }
}
