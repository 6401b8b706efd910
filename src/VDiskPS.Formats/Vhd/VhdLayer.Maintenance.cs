using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using VDiskPS;

namespace VDiskPS.Formats.Vhd
{
    /// <summary>Resize, check, discard and optimize (compaction) of VHD images.</summary>
    public sealed partial class VhdLayer : IResizableLayer, ICheckableLayer, IDiscardableLayer, IOptimizableLayer
    {
        public void Resize(long newSize, bool allowShrink, Preallocation preallocation)
        {
            EnsureWritable();
            newSize = RoundUp(newSize, SectorSize);
            if (newSize > VhdFooter.MaxSize)
            {
                throw new ImageOptionException(Path, "size", $"{newSize} bytes is beyond the VHD limit of 2040 GiB");
            }

            if (newSize < _size && !allowShrink)
            {
                throw ImageOptionException.ShrinkNotAllowed(Path, _size, newSize);
            }

            if (!IsFixed && preallocation != Preallocation.Off)
            {
                throw new ImageOptionException(Path, "preallocation", "dynamic and differencing VHDs grow as written; preallocation applies to fixed disks");
            }

            long oldSize = _size;
            if (IsFixed)
            {
                ResizeFixed(oldSize, newSize, preallocation);
                return;
            }

            ThrowIfAnyBad();
            long blockSize = BlockSize;
            long entries = Math.Max(1, (newSize + blockSize - 1) / blockSize);
            if (newSize < oldSize)
            {
                DropPast(newSize);
            }
            else if (entries > _bat.Length)
            {
                GrowTable(entries);
            }

            _footer.SetSize(newSize);
            _size = newSize;
            WriteMetadata();
        }

        public VDiskCheckResult Check(RepairMode repair)
        {
            var result = new VDiskCheckResult { Path = Path, Format = Format.ToName(), ImageEndOffset = _file.Length };
            if (IsFixed)
            {
                if (_file.Length < _size + VhdFooter.Length)
                {
                    result.Corruptions++;
                    result.Messages.Add($"the file ({_file.Length} bytes) is shorter than the disk ({_size} bytes) plus its footer");
                }

                return result;
            }

            result.TotalClusters = (_size + BlockSize - 1) / BlockSize;
            result.AllocatedClusters = _bat.Count(e => e != UnusedEntry);
            foreach (long block in _badBlocks.OrderBy(b => b))
            {
                result.Corruptions++;
                long start = _bat[block] * (long)SectorSize;
                result.Messages.Add(start + BlockSpan > _file.Length
                    ? $"block {block}: its data ({BlockSpan} bytes at {start}) lies past the end of the file"
                    : $"block {block}: its data at {start} overlaps metadata or another block");
            }

            var tail = new byte[VhdFooter.Length];
            string footerProblem = null;
            if (_file.ReadAt(_file.Length - VhdFooter.Length, tail) != tail.Length || !VhdFooter.HasCookie(tail))
            {
                footerProblem = "the footer at the end of the file is missing";
            }
            else if (System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(tail.AsSpan(VhdFooter.ChecksumOffset)) != VhdFooter.ComputeChecksum(tail, VhdFooter.ChecksumOffset))
            {
                footerProblem = $"footer checksum at offset {_file.Length - VhdFooter.Length + VhdFooter.ChecksumOffset}: the footer at the end of the file is damaged";
            }
            else if (!tail.AsSpan().SequenceEqual(_footer.ToBytes()))
            {
                footerProblem = "the footer at the end of the file differs from its copy at offset 0";
            }

            if (footerProblem != null)
            {
                result.Corruptions++;
                result.Messages.Add(footerProblem);
                if (repair == RepairMode.All && _badBlocks.Count == 0 && IsWritable)
                {
                    WriteMetadata();
                    result.CorruptionsFixed++;
                }
            }

            long leaked = LeakedBytes();
            if (leaked > 0)
            {
                result.Leaks = (leaked + BlockSpan - 1) / BlockSpan;
                result.Messages.Add($"{leaked} bytes of the file belong to no block");
                if (repair != RepairMode.None && _badBlocks.Count == 0 && IsWritable)
                {
                    Compact(null, CancellationToken.None);
                    result.LeaksFixed = result.Leaks - ((LeakedBytes() + BlockSpan - 1) / BlockSpan);
                }
            }

            result.ImageEndOffset = _file.Length;
            return result;
        }

        public void Discard(long offset, long length)
        {
            EnsureWritable();
            CheckRange(offset, length);
            if (IsFixed)
            {
                throw new ImageNotSupportedException(Path, "disk type", null, "a fixed VHD has every block allocated; discard applies to dynamic and differencing disks");
            }

            long blockSize = BlockSize;
            long end = offset + length;
            while (offset < end)
            {
                long block = offset / blockSize;
                long blockStart = block * blockSize;
                long next = Math.Min(end, blockStart + blockSize);
                if (_bat[block] != UnusedEntry)
                {
                    ThrowIfBad(block);
                    if (offset == blockStart && (next == blockStart + blockSize || next >= _size))
                    {
                        Unmap(block);
                    }
                    else if (IsDifferencing)
                    {
                        ClearSectors(block, offset - blockStart, next - blockStart);
                    }
                    else
                    {
                        base.WriteZeroesCore(offset, next - offset);
                    }
                }

                offset = next;
            }
        }

        /// <summary>Drops blocks that read as zeros (dynamic) or hold no sector (differencing), then compacts the file.</summary>
        public long Optimize(IProgress<OperationProgress> progress, CancellationToken cancel)
        {
            EnsureWritable();
            if (IsFixed)
            {
                throw new ImageNotSupportedException(Path, "disk type", null, "a fixed VHD cannot be optimized; convert it to a dynamic VHD to reclaim space");
            }

            ThrowIfAnyBad();
            long before = _file.Length;
            byte[] buffer = new byte[BlockSize];
            for (long block = 0; block < _bat.Length; block++)
            {
                cancel.ThrowIfCancellationRequested();
                if (_bat[block] == UnusedEntry)
                {
                    continue;
                }

                bool empty;
                if (IsDifferencing)
                {
                    empty = ZeroDetector.IsZero(GetBitmap(block));
                }
                else
                {
                    _file.ReadZeroPadded((_bat[block] * (long)SectorSize) + BitmapSize, buffer);
                    empty = ZeroDetector.IsZero(buffer);
                }

                if (empty)
                {
                    Unmap(block);
                }

                progress?.Report(new OperationProgress("Scanning", (block + 1) * BlockSize, _bat.Length * (long)BlockSize));
            }

            Compact(progress, cancel);
            return before - _file.Length;
        }

        private void ResizeFixed(long oldSize, long newSize, Preallocation preallocation)
        {
            if (newSize > oldSize)
            {
                // The old footer's place becomes disk space: it must read as zeros.
                _file.WriteZeros(oldSize, Math.Min(VhdFooter.Length, newSize - oldSize));
                _file.Preallocate(oldSize, newSize - oldSize, preallocation);
            }

            _footer.SetSize(newSize);
            _size = newSize;
            _nextFree = newSize;
            _file.WriteAt(newSize, _footer.ToBytes());
            _file.SetLength(newSize + VhdFooter.Length);
            _file.Flush();
        }

        /// <summary>Unmaps blocks past the new end and clears the tail of the last one, so a later grow reads zeros there.</summary>
        private void DropPast(long newSize)
        {
            long blockSize = BlockSize;
            long keep = (newSize + blockSize - 1) / blockSize;
            for (long block = keep; block < _bat.Length; block++)
            {
                if (_bat[block] != UnusedEntry)
                {
                    Unmap(block);
                }
            }

            long lastBlock = keep - 1;
            long inBlock = newSize - (lastBlock * blockSize);
            if (lastBlock >= 0 && inBlock < blockSize && _bat[lastBlock] != UnusedEntry)
            {
                ThrowIfBad(lastBlock);
                if (IsDifferencing)
                {
                    ClearSectors(lastBlock, inBlock, blockSize);
                }
                else
                {
                    _file.WriteZeros((_bat[lastBlock] * (long)SectorSize) + BitmapSize + inBlock, blockSize - inBlock);
                }
            }
        }

        /// <summary>More BAT entries: in place when the space after the table is free, else the table moves to the end of the file.</summary>
        private void GrowTable(long entries)
        {
            if (entries > MaxTableEntriesLimit)
            {
                throw new ImageOptionException(Path, "size", $"{entries} blocks are more than this module keeps in a table ({MaxTableEntriesLimit})");
            }

            long tableOffset = (long)_header.TableOffset;
            long room = RoundUp(tableOffset + (_bat.Length * 4L), SectorSize);
            long limit = _nextFree;
            foreach (long start in OccupiedStarts())
            {
                if (start >= room && start < limit)
                {
                    limit = start;
                }
            }

            var bat = new uint[entries];
            bat.AsSpan().Fill(UnusedEntry);
            _bat.CopyTo(bat, 0);
            long tableBytes = RoundUp(entries * 4, SectorSize);
            if (tableOffset + tableBytes > limit)
            {
                tableOffset = _nextFree;
                _nextFree += tableBytes;
                _header.TableOffset = (ulong)tableOffset;
            }

            var raw = new byte[tableBytes];
            raw.AsSpan().Fill(0xFF);
            for (int i = 0; i < bat.Length; i++)
            {
                BinaryPrimitives.WriteUInt32BigEndian(raw.AsSpan(i * 4), bat[i]);
            }

            _file.WriteAt(tableOffset, raw);
            lock (_lock)
            {
                _bat = bat;
            }

            _header.MaxTableEntries = (uint)entries;
        }

        /// <summary>Starts of the structures after the table: blocks, locator data, the header.</summary>
        private IEnumerable<long> OccupiedStarts()
        {
            yield return (long)_footer.DataOffset;
            foreach (var locator in _header.Locators.Where(l => l.IsUsed && l.DataLength > 0))
            {
                yield return (long)locator.DataOffset;
            }

            foreach (uint entry in _bat.Where(e => e != UnusedEntry))
            {
                yield return entry * (long)SectorSize;
            }
        }

        /// <summary>File regions holding metadata: footer copy, header, BAT, parent locator data.</summary>
        private List<(long Start, long End)> MetadataRegions()
        {
            var regions = new List<(long Start, long End)>
            {
                (0, VhdFooter.Length),
                ((long)_footer.DataOffset, (long)_footer.DataOffset + VhdDynamicHeader.Length),
                ((long)_header.TableOffset, RoundUp((long)_header.TableOffset + (_bat.Length * 4L), SectorSize)),
            };
            foreach (var locator in _header.Locators.Where(l => l.IsUsed && l.DataLength > 0))
            {
                regions.Add(((long)locator.DataOffset, RoundUp((long)locator.DataOffset + locator.DataLength, SectorSize)));
            }

            regions.Sort((a, b) => a.Start.CompareTo(b.Start));
            return regions;
        }

        /// <summary>Free space a compaction could reclaim: gaps of at least one block, and free space before the footer.</summary>
        private long LeakedBytes()
        {
            long span = BlockSpan;
            var regions = MetadataRegions();
            regions.AddRange(_bat.Where(e => e != UnusedEntry).Select(e => (e * (long)SectorSize, (e * (long)SectorSize) + span)));
            regions.Sort((a, b) => a.Start.CompareTo(b.Start));
            long position = 0;
            long leaked = 0;
            foreach (var (start, end) in regions)
            {
                if (start - position >= span)
                {
                    leaked += start - position;
                }

                position = Math.Max(position, end);
            }

            return leaked + Math.Max(0, _nextFree - position);
        }

        /// <summary>
        /// Moves blocks down into free space (only where source and target do not overlap, so a crash
        /// leaves the old copy intact until its BAT entry changes), then truncates the file.
        /// </summary>
        private void Compact(IProgress<OperationProgress> progress, CancellationToken cancel)
        {
            long span = BlockSpan;
            var metadata = MetadataRegions();
            var blocks = new List<(long Index, long Host)>();
            for (long i = 0; i < _bat.Length; i++)
            {
                if (_bat[i] != UnusedEntry)
                {
                    blocks.Add((i, _bat[i] * (long)SectorSize));
                }
            }

            blocks.Sort((a, b) => a.Host.CompareTo(b.Host));
            byte[] buffer = new byte[span];
            long cursor = 0;
            int done = 0;
            foreach (var (index, host) in blocks)
            {
                cancel.ThrowIfCancellationRequested();
                long target = FirstFit(cursor, span, metadata);
                if (host - target >= span)
                {
                    _file.ReadExactly(host, buffer, $"block {index}");
                    _file.WriteAt(target, buffer);
                    _file.Flush();
                    SetEntry(index, (uint)(target / SectorSize));
                    cursor = target + span;
                }
                else
                {
                    cursor = Math.Max(cursor, host + span);
                }

                progress?.Report(new OperationProgress("Compacting", ++done, blocks.Count));
            }

            _nextFree = Math.Max(cursor, metadata.Max(r => r.End));
            _file.WriteAt(_nextFree, _footer.ToBytes());
            _file.SetLength(_nextFree + VhdFooter.Length);
            _file.Flush();
        }

        private static long FirstFit(long position, long length, List<(long Start, long End)> taken)
        {
            bool moved = true;
            while (moved)
            {
                moved = false;
                foreach (var (start, end) in taken)
                {
                    if (position < end && start < position + length)
                    {
                        position = RoundUp(end, SectorSize);
                        moved = true;
                    }
                }
            }

            return position;
        }

        private void Unmap(long block)
        {
            SetEntry(block, UnusedEntry);
            lock (_lock)
            {
                _bitmaps.Remove(block);
            }
        }

        private void SetEntry(long block, uint entry)
        {
            var raw = new byte[4];
            BinaryPrimitives.WriteUInt32BigEndian(raw, entry);
            _file.WriteAt((long)_header.TableOffset + (block * 4), raw);
            lock (_lock)
            {
                _bat[block] = entry;
            }
        }

        /// <summary>Marks the whole sectors of [start, end) (block-relative) absent, so they read from the parent again.</summary>
        private void ClearSectors(long block, long start, long end)
        {
            byte[] bitmap = GetBitmap(block);
            long first = RoundUp(start, SectorSize) / SectorSize;
            long last = Math.Min(end, BlockSize) / SectorSize;
            lock (_lock)
            {
                for (long s = first; s < last; s++)
                {
                    bitmap[s >> 3] &= (byte)~(0x80 >> (int)(s & 7));
                }
            }

            _file.WriteAt(_bat[block] * (long)SectorSize, bitmap);
        }

        private void ThrowIfAnyBad()
        {
            foreach (long block in _badBlocks)
            {
                ThrowIfBad(block);
            }
        }
    }
}
