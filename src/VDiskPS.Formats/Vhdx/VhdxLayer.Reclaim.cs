using System;
using System.Collections.Generic;
using System.Threading;

namespace VDiskPS.Formats.Vhdx
{
    // Giving space back: discard (blocks not present again) and optimize (zero blocks dropped, blocks
    // moved down into holes, file truncated). Moves copy into free space only and the BAT follows
    // through the log, so a crash leaves the old or the new placement, never a mix.
    public sealed partial class VhdxLayer : IDiscardableLayer, IOptimizableLayer, IRetrimmableLayer
    {
        public void Discard(long offset, long length)
        {
            EnsureWritable();
            CheckRange(offset, length);
            if (length == 0)
            {
                return;
            }

            BeginModification(userVisible: true);
            long end = offset + length;
            while (offset < end)
            {
                long inBlock = offset % _blockSize;
                long n = Math.Min(end - offset, _blockSize - inBlock);
                long block = offset / _blockSize;
                long index = BatIndexOfBlock(block);
                int state = BatState.StateOf(_bat[index]);
                if (_metadata.LeaveBlocksAllocated || !_metadata.HasParent && n < _blockSize)
                {
                    // A fixed image keeps its blocks, and part of a block without a parent can only read as zeros by holding zeros.
                    if (state == BatState.FullyPresent)
                    {
                        base.WriteZeroesCore(offset, n);
                    }
                }
                else if (n == _blockSize)
                {
                    if (_metadata.HasParent && (state == BatState.PartiallyPresent || state == BatState.FullyPresent))
                    {
                        // libvhdi reads a not-present block of a differencing image by its sector bitmap: no present bit may outlive the block.
                        DiscardSectors(block, index, offset, n);
                    }

                    SetBatEntry(index, 0);
                }
                else
                {
                    DiscardSectors(block, index, offset, n);
                }

                offset += n;
            }
        }

        public long Optimize(IProgress<OperationProgress> progress, CancellationToken cancel)
        {
            EnsureWritable();
            long before = _file.Length;
            if (_metadata.LeaveBlocksAllocated)
            {
                return 0;
            }

            BeginModification(userVisible: false);
            DropZeroBlocks(progress, cancel);
            MoveBlocksIntoHoles(progress, cancel);
            CommitMetadata();
            TruncateToUsedSpace();
            return Math.Max(0, before - _file.Length);
        }

        /// <summary>Clears the present bits of the whole sectors in the run, so they read from the parent again.</summary>
        private void DiscardSectors(long block, long index, long offset, long length)
        {
            long sectorSize = LogicalSectorSize;
            long first = AlignUp(offset, sectorSize);
            long last = (offset + length) / sectorSize * sectorSize;
            int state = BatState.StateOf(_bat[index]);
            bool readsZero = state == BatState.Zero || state == BatState.Unmapped || state == BatState.UnmappedDraft;
            if (last <= first || (state != BatState.FullyPresent && state != BatState.PartiallyPresent && !readsZero))
            {
                return;
            }

            long chunk = block / _chunkRatio;
            lock (_gate)
            {
                byte[] bitmap = LoadBitmap(chunk);
                long blockFirstBit = (block % _chunkRatio) * _sectorsPerBlock;
                if (readsZero)
                {
                    // The rest of the block must keep reading as zeros: it gets fresh (zero) space of its own.
                    SetBatEntry(index, BatState.Make(BatState.FullyPresent, AllocateSpace(_blockSize)));
                    state = BatState.FullyPresent;
                }

                if (state == BatState.FullyPresent)
                {
                    EnsureBitmapAllocated(chunk);
                    SetBits(bitmap, blockFirstBit, _sectorsPerBlock);
                    MarkBitmapDirty(chunk, blockFirstBit, _sectorsPerBlock);
                    SetBatEntry(index, BatState.Make(BatState.PartiallyPresent, BatState.OffsetOf(_bat[index])));
                }

                long firstBit = (first / sectorSize) % VhdxConstants.SectorsPerBitmapBlock;
                long count = (last - first) / sectorSize;
                for (long bit = firstBit; bit < firstBit + count; bit++)
                {
                    bitmap[bit >> 3] &= (byte)~(1 << (int)(bit & 7));
                }

                MarkBitmapDirty(chunk, firstBit, count);
            }
        }

        /// <summary>Fully present blocks that hold only zeros become ZERO blocks ([MS-VHDX] 2.5.1.1).</summary>
        private void DropZeroBlocks(IProgress<OperationProgress> progress, CancellationToken cancel)
        {
            var buffer = new byte[Math.Min(_blockSize, VhdxConstants.MiB)];
            for (long block = 0; block < _dataBlockCount; block++)
            {
                cancel.ThrowIfCancellationRequested();
                progress?.Report(new OperationProgress("Finding zero blocks", block * _blockSize, Size));
                long index = BatIndexOfBlock(block);
                ulong entry = _bat[index];
                if (BatState.StateOf(entry) != BatState.FullyPresent)
                {
                    continue;
                }

                bool zero = true;
                for (long at = 0; at < _blockSize && zero; at += buffer.Length)
                {
                    ReadPayload(BatState.OffsetOf(entry) + at, buffer);
                    zero = IsAllZero(buffer);
                }

                if (zero)
                {
                    SetBatEntry(index, BatState.Make(BatState.Zero, 0));
                }
            }
        }

        private static bool IsAllZero(byte[] buffer)
        {
            var words = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ulong>(buffer);
            foreach (ulong word in words)
            {
                if (word != 0)
                {
                    return false;
                }
            }

            return true;
        }

        /// <summary>Moves the highest blocks into the lowest holes below them that they fit in whole.</summary>
        private void MoveBlocksIntoHoles(IProgress<OperationProgress> progress, CancellationToken cancel)
        {
            var used = UsedSpans();
            var holes = HolesBetween(used, out _);

            // Holes only shrink, so the lowest hole that fits a payload block (or a bitmap) only moves up.
            var buffer = new byte[VhdxConstants.MiB];
            int blockCursor = 0;
            int bitmapCursor = 0;
            for (int i = used.Count - 1; i >= 0; i--)
            {
                cancel.ThrowIfCancellationRequested();
                progress?.Report(new OperationProgress("Moving blocks", used.Count - 1 - i, used.Count));
                var span = used[i];
                int hole = span.Length == _blockSize ? LowestHole(holes, ref blockCursor, span.Length) : LowestHole(holes, ref bitmapCursor, span.Length);
                if (hole >= holes.Count || holes[hole].Start + span.Length > span.Start)
                {
                    continue;
                }

                long target = holes[hole].Start;
                for (long at = 0; at < span.Length; at += buffer.Length)
                {
                    ReadPayload(span.Start + at, buffer);
                    _file.WriteAt(target + at, buffer);
                }

                holes[hole] = (target + span.Length, holes[hole].Length - span.Length);
                ulong entry = _bat[span.Index];
                SetBatEntry(span.Index, BatState.Make(BatState.StateOf(entry), target));
                long chunk = (span.Index - _chunkRatio) / (_chunkRatio + 1);
                if ((span.Index % (_chunkRatio + 1)) == _chunkRatio && _dirtyBitmapChunks.Contains(chunk))
                {
                    // A cached bitmap with uncommitted changes is written out whole at its new place.
                    MarkBitmapDirty(chunk, 0, VhdxConstants.SectorsPerBitmapBlock);
                }
            }
        }

        /// <summary>Payload blocks and sector bitmaps the BAT places in the file, lowest first.</summary>
        private List<(long Start, long Length, long Index)> UsedSpans()
        {
            var used = new List<(long Start, long Length, long Index)>();
            for (long index = 0; index < _bat.Length; index++)
            {
                ulong entry = _bat[index];
                int state = BatState.StateOf(entry);
                bool isBitmap = (index % (_chunkRatio + 1)) == _chunkRatio;
                if (isBitmap ? state == BatState.SectorBitmapPresent : state == BatState.FullyPresent || state == BatState.PartiallyPresent)
                {
                    used.Add((BatState.OffsetOf(entry), isBitmap ? VhdxConstants.SectorBitmapBlockLength : _blockSize, index));
                }
            }

            used.Sort((a, b) => a.Start.CompareTo(b.Start));
            return used;
        }

        /// <summary>The free space between the metadata and the used spans; <paramref name="end"/> gets where the last of them ends.</summary>
        private List<(long Start, long Length)> HolesBetween(List<(long Start, long Length, long Index)> used, out long end)
        {
            var holes = new List<(long Start, long Length)>();
            long cursor = AlignUp(MetadataEnd(), VhdxConstants.MiB);
            foreach (var span in used)
            {
                if (span.Start > cursor)
                {
                    holes.Add((cursor, span.Start - cursor));
                }

                cursor = Math.Max(cursor, span.Start + span.Length);
            }

            end = cursor;
            return holes;
        }

        /// <summary>Punches the file space no block, bitmap or structure uses, moving nothing; a fixed image keeps its blocks.</summary>
        public long Retrim(IProgress<OperationProgress> progress, CancellationToken cancel)
        {
            EnsureWritable();
            if (_metadata.LeaveBlocksAllocated)
            {
                return 0;
            }

            // The log must be empty first: a replay would write into space this gives back.
            CommitMetadata();
            var holes = HolesBetween(UsedSpans(), out long usedEnd);
            long length = _file.Length;
            if (usedEnd < length)
            {
                holes.Add((usedEnd, length - usedEnd));
            }

            long punched = 0;
            for (int i = 0; i < holes.Count; i++)
            {
                cancel.ThrowIfCancellationRequested();
                progress?.Report(new OperationProgress("Retrimming", i, holes.Count));
                long released = _file.PunchDataIn(holes[i].Start, holes[i].Start + holes[i].Length);
                if (released < 0)
                {
                    break;
                }

                punched += released;
            }

            _file.Flush();
            return punched;
        }

        private static int LowestHole(List<(long Start, long Length)> holes, ref int cursor, long length)
        {
            while (cursor < holes.Count && holes[cursor].Length < length)
            {
                cursor++;
            }

            return cursor;
        }
    }
}
