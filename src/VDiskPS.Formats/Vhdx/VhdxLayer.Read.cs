using System;
using System.Collections.Generic;

namespace VDiskPS.Formats.Vhdx
{
    // Reading: BAT states to block status ([MS-VHDX] 2.5.1), sector bitmaps for partially present blocks.
    public sealed partial class VhdxLayer
    {
        private const int MaxReportedProblems = 100;
        private const int MaxCachedBitmaps = 64;

        private readonly Dictionary<long, byte[]> _bitmaps = new Dictionary<long, byte[]>();
        private readonly List<string> _batProblems = new List<string>();
        private readonly VhdxEntrySet _badBatEntries = new VhdxEntrySet();
        private long _fileEnd;

        public override BlockStatus GetBlockStatus(long offset, long maxLength)
        {
            maxLength = Math.Min(maxLength, Size - offset);
            lock (_gate)
            {
                BlockStatus first = BlockStatusAt(offset, maxLength);
                long end = first.End;
                long limit = offset + maxLength;

                // Data runs merge while they stay contiguous in the file, so each run has its host offset.
                while (end < limit && end % _blockSize == 0)
                {
                    BlockStatus next = BlockStatusAt(end, limit - end);
                    if (next.Kind != first.Kind || (first.Kind == ExtentKind.Data && next.HostOffset != first.HostOffset + (end - offset)))
                    {
                        break;
                    }

                    end = next.End;
                }

                return first.WithLength(end - offset);
            }
        }

        protected override void ReadData(long offset, Span<byte> buffer, BlockStatus status)
        {
            while (buffer.Length > 0)
            {
                BlockStatus part;
                lock (_gate)
                {
                    part = BlockStatusAt(offset, buffer.Length);
                }

                int n = (int)Math.Min(part.Length, buffer.Length);
                switch (part.Kind)
                {
                    case ExtentKind.Data:
                        ReadPayload(part.HostOffset, buffer.Slice(0, n));
                        break;
                    case ExtentKind.Zero:
                        buffer.Slice(0, n).Clear();
                        break;
                    default:
                        ReadFromParent(offset, buffer.Slice(0, n));
                        break;
                }

                offset += n;
                buffer = buffer.Slice(n);
            }
        }

        /// <summary>The status of the run at <paramref name="offset"/> inside one block (caller holds the lock).</summary>
        private BlockStatus BlockStatusAt(long offset, long maxLength)
        {
            long block = offset / _blockSize;
            long inBlock = offset % _blockSize;
            long length = Math.Min(maxLength, _blockSize - inBlock);
            long index = BatIndexOfBlock(block);
            ulong entry = _bat[index];
            switch (BatState.StateOf(entry))
            {
                case BatState.FullyPresent:
                    ThrowIfBad(index);
                    return new BlockStatus(offset, length, ExtentKind.Data, BatState.OffsetOf(entry) + inBlock);
                case BatState.PartiallyPresent:
                    ThrowIfBad(index);
                    return PartialBlockStatus(offset, length, block, BatState.OffsetOf(entry) + inBlock);
                case BatState.Zero:
                case BatState.Unmapped:
                case BatState.UnmappedDraft:
                    return new BlockStatus(offset, length, ExtentKind.Zero);
                case BatState.NotPresent:
                case BatState.Undefined:
                    return new BlockStatus(offset, length, ExtentKind.Unallocated);
                default:
                    throw new ImageCorruptException(Path, $"BAT entry {index}", BatEntryFileOffset(index), $"block state {BatState.StateOf(entry)} is not defined");
            }
        }

        /// <summary>A run of sectors of one kind in a partially present block, as its sector bitmap says ([MS-VHDX] 2.5.1.2).</summary>
        private BlockStatus PartialBlockStatus(long offset, long length, long block, long hostOffset)
        {
            byte[] bitmap = LoadBitmap(block / _chunkRatio);
            long sectorSize = _metadata.LogicalSectorSize;
            long sector = offset / sectorSize;
            long bit = sector % VhdxConstants.SectorsPerBitmapBlock;
            bool present = IsBitSet(bitmap, bit);
            long end = offset + length;
            long runEnd = Math.Min(end, (sector + 1) * sectorSize);
            while (runEnd < end && IsBitSet(bitmap, ++bit) == present)
            {
                runEnd = Math.Min(end, runEnd + sectorSize);
            }

            return present
                ? new BlockStatus(offset, runEnd - offset, ExtentKind.Data, hostOffset)
                : new BlockStatus(offset, runEnd - offset, ExtentKind.Unallocated);
        }

        private static bool IsBitSet(byte[] bitmap, long bit) => (bitmap[bit >> 3] & (1 << (int)(bit & 7))) != 0;

        /// <summary>The sector bitmap block of one chunk, cached (caller holds the lock).</summary>
        private byte[] LoadBitmap(long chunk)
        {
            if (_bitmaps.TryGetValue(chunk, out byte[] bitmap))
            {
                return bitmap;
            }

            long index = BatIndexOfBitmap(chunk);
            ulong entry = index < _bat.Length ? _bat[index] : 0;
            bitmap = new byte[VhdxConstants.SectorBitmapBlockLength];
            if (BatState.StateOf(entry) == BatState.SectorBitmapPresent)
            {
                ThrowIfBad(index);
                ReadView(BatState.OffsetOf(entry), bitmap, $"sector bitmap block {chunk}");
            }
            else if (BatState.StateOf(entry) != BatState.NotPresent)
            {
                throw new ImageCorruptException(Path, $"BAT entry {index}", BatEntryFileOffset(index), $"sector bitmap state {BatState.StateOf(entry)} is not defined");
            }

            if (_bitmaps.Count >= MaxCachedBitmaps)
            {
                // Each bitmap is 1 MiB: keep the ones with uncommitted changes, drop the rest.
                foreach (long cached in new List<long>(_bitmaps.Keys))
                {
                    if (!_dirtyBitmapChunks.Contains(cached))
                    {
                        _bitmaps.Remove(cached);
                    }
                }
            }

            _bitmaps[chunk] = bitmap;
            return bitmap;
        }

        private void ThrowIfBad(long index)
        {
            if (_badBatEntries.Count > 0 && _badBatEntries.Contains(index))
            {
                throw new ImageCorruptException(Path, $"BAT entry {index}", BatEntryFileOffset(index), $"the entry 0x{_bat[index]:x16} points outside the file or into metadata");
            }
        }

        /// <summary>
        /// Notes every BAT entry that points past the end of the file or into the header section, log or a
        /// region; reads of such blocks fail and Check reports them. Linear in the BAT, whatever the region count.
        /// </summary>
        private void ValidateBatEntries()
        {
            long fileLength = ViewLength;
            long logEnd = _header.LogOffset + _header.LogLength;
            var regions = _regions.ToArray();
            Array.Sort(regions, (a, b) => a.FileOffset.CompareTo(b.FileOffset));
            for (long index = 0; index < _bat.Length; index++)
            {
                ulong entry = _bat[index];
                int state = BatState.StateOf(entry);
                bool isBitmap = (index % (_chunkRatio + 1)) == _chunkRatio;
                bool allocated = isBitmap ? state == BatState.SectorBitmapPresent : state == BatState.FullyPresent || state == BatState.PartiallyPresent;
                if (!allocated)
                {
                    continue;
                }

                long start = BatState.OffsetOf(entry);
                long length = isBitmap ? VhdxConstants.SectorBitmapBlockLength : _blockSize;
                bool partialWithoutParent = !isBitmap && state == BatState.PartiallyPresent && !_metadata.HasParent;
                bool pastEnd = start + length > fileLength;
                bool inHeaderOrLog = start < VhdxConstants.HeaderSectionLength || (start < logEnd && _header.LogOffset < start + length);
                VhdxRegion region = partialWithoutParent || pastEnd || inHeaderOrLog ? null : OverlappingRegion(regions, start, start + length);
                if (!partialWithoutParent && !pastEnd && !inHeaderOrLog && region == null)
                {
                    continue;
                }

                _badBatEntries.Add(index, _bat.Length);
                if (_batProblems.Count < MaxReportedProblems)
                {
                    string problem = partialWithoutParent ? "a partially present block in an image without a parent"
                        : pastEnd ? $"the block ({start}+{length}) extends past the end of the {fileLength}-byte file"
                        : inHeaderOrLog ? $"the block ({start}+{length}) overlaps the header section or the log"
                        : $"the block ({start}+{length}) overlaps the {(region.Id == VhdxConstants.BatRegion ? "BAT" : region.Id == VhdxConstants.MetadataRegion ? "metadata" : region.Id.ToString())} region";
                    _batProblems.Add($"BAT entry {index} at offset {BatEntryFileOffset(index)}: {problem}");
                }
            }
        }

        /// <summary>The region overlapping [start, end) among regions sorted by offset (they do not overlap each other).</summary>
        private static VhdxRegion OverlappingRegion(VhdxRegion[] sorted, long start, long end)
        {
            int low = 0, high = sorted.Length - 1, last = -1;
            while (low <= high)
            {
                int middle = (low + high) / 2;
                if (sorted[middle].FileOffset < end)
                {
                    last = middle;
                    low = middle + 1;
                }
                else
                {
                    high = middle - 1;
                }
            }

            return last >= 0 && sorted[last].End > start ? sorted[last] : null;
        }
    }
}
