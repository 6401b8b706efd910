using System;
using System.Buffers.Binary;

namespace VDiskPS.Formats.Vhdx
{
    // Changing the virtual size: the BAT grows in place or moves to the end of the file; the new size,
    // the BAT and (when the BAT moved) the region tables change together through the log.
    public sealed partial class VhdxLayer : IResizableLayer
    {
        public void Resize(long newSize, bool allowShrink, Preallocation preallocation)
        {
            EnsureWritable();
            if (newSize < 0 || newSize > VhdxConstants.MaxVirtualSize || newSize % LogicalSectorSize != 0)
            {
                throw new ImageOptionException(Path, "size", $"{newSize} bytes is not a multiple of the {LogicalSectorSize}-byte logical sector from 0 to 64 TiB");
            }

            if (newSize < Size && !allowShrink)
            {
                throw ImageOptionException.ShrinkNotAllowed(Path, Size, newSize);
            }

            if (preallocation != Preallocation.Off && DiskType != DiskType.Fixed)
            {
                throw new ImageOptionException(Path, "preallocation", "vhdx preallocates only fixed images");
            }

            if (newSize == Size)
            {
                return;
            }

            BeginModification(userVisible: true);
            long oldSize = Size;
            long newBlocks = DivideRoundingUp(newSize, _blockSize);
            long newEntries = BatEntryCount(newBlocks);
            if (newSize < oldSize)
            {
                DropBeyond(newSize, newEntries);
            }
            else
            {
                GrowBat(newEntries);
                if (_metadata.LeaveBlocksAllocated)
                {
                    AllocateFixedBlocks(_dataBlockCount, newBlocks, preallocation);
                }
            }

            _metadata.VirtualSize = newSize;
            ComputeGeometry();
            if (newSize > oldSize && _metadata.HasParent)
            {
                // Like qemu, a grown area reads as zeros, even where the parent holds data.
                WriteZeroesCore(oldSize, newSize - oldSize);
            }

            QueueMetadataRewrite();
            CommitMetadata();
            if (newSize < oldSize)
            {
                TruncateToUsedSpace();
            }
        }

        private void GrowBat(long newEntries)
        {
            long oldEntries = _bat.Length;
            if (newEntries * 8 > _batRegion.Length)
            {
                // The region is too small: a new one at the end of the file, filled before the region table names it.
                long length = AlignUp(newEntries * 8, VhdxConstants.MiB);
                long offset = AllocateSpace(length);
                var bytes = new byte[Math.Min(length, 4 * VhdxConstants.MiB)];
                for (long first = 0; first < oldEntries; first += bytes.Length / 8)
                {
                    int n = (int)Math.Min(bytes.Length / 8, oldEntries - first);
                    for (int i = 0; i < n; i++)
                    {
                        BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(i * 8), _bat[first + i]);
                    }

                    _file.WriteAt(offset + (first * 8), bytes.AsSpan(0, n * 8));
                }

                _file.SetLength(Math.Max(_file.Length, offset + length));
                int at = _regions.IndexOf(_batRegion);
                _batRegion = new VhdxRegion { Id = VhdxConstants.BatRegion, FileOffset = offset, Length = length, Required = true };
                _regions[at] = _batRegion;
                byte[] table = VhdxRegionTable.Build(_regions);
                for (int page = 0; page < table.Length; page += VhdxConstants.LogSectorLength)
                {
                    byte[] data = table.AsSpan(page, VhdxConstants.LogSectorLength).ToArray();
                    _pendingPages[VhdxConstants.RegionTable1Offset + page] = data;
                    _pendingPages[VhdxConstants.RegionTable2Offset + page] = data;
                }
            }

            lock (_gate)
            {
                Array.Resize(ref _bat, (int)newEntries);
            }

            // Whatever the region held past the old entries is not trusted: the new entries are written as zeros.
            for (long index = oldEntries; index < newEntries; index++)
            {
                _dirtyBatPages.Add(index * 8 / VhdxConstants.LogSectorLength);
            }
        }

        private void AllocateFixedBlocks(long fromBlock, long toBlock, Preallocation preallocation)
        {
            for (long block = fromBlock; block < toBlock; block++)
            {
                long index = BatIndexOfBlock(block);
                if (BatState.StateOf(_bat[index]) != BatState.FullyPresent)
                {
                    SetBatEntry(index, BatState.Make(BatState.FullyPresent, AllocateSpace(_blockSize)));
                }
            }

            if (preallocation == Preallocation.Falloc || preallocation == Preallocation.Full)
            {
                long start = Math.Min(_file.Length, _fileEnd);
                _file.Preallocate(start, _fileEnd - start, preallocation);
            }
        }

        /// <summary>Forgets blocks past the new end and clears the part of the last block past it, so a later grow reads zeros there.</summary>
        private void DropBeyond(long newSize, long newEntries)
        {
            long lastBlock = newSize / _blockSize;
            long inBlock = newSize % _blockSize;
            if (inBlock != 0)
            {
                long index = BatIndexOfBlock(lastBlock);
                ulong entry = _bat[index];
                if (BatState.StateOf(entry) == BatState.FullyPresent)
                {
                    var zeros = new byte[Math.Min(_blockSize - inBlock, VhdxConstants.MiB)];
                    for (long at = inBlock; at < _blockSize; at += zeros.Length)
                    {
                        _file.WriteAt(BatState.OffsetOf(entry) + at, zeros.AsSpan(0, (int)Math.Min(zeros.Length, _blockSize - at)));
                    }
                }
                else if (BatState.StateOf(entry) == BatState.PartiallyPresent)
                {
                    lock (_gate)
                    {
                        byte[] bitmap = LoadBitmap(lastBlock / _chunkRatio);
                        long firstBit = (newSize / LogicalSectorSize) % VhdxConstants.SectorsPerBitmapBlock;
                        long count = (_blockSize - inBlock) / LogicalSectorSize;
                        for (long bit = firstBit; bit < firstBit + count; bit++)
                        {
                            bitmap[bit >> 3] &= (byte)~(1 << (int)(bit & 7));
                        }

                        MarkBitmapDirty(lastBlock / _chunkRatio, firstBit, count);
                    }
                }
            }

            long newBlocks = DivideRoundingUp(newSize, _blockSize);
            for (long block = newBlocks; block < _dataBlockCount; block++)
            {
                long index = BatIndexOfBlock(block);
                if (index < newEntries)
                {
                    SetBatEntry(index, 0);
                }
            }

            for (long index = newEntries; index < _bat.Length; index++)
            {
                _dirtyBatPages.Add(index * 8 / VhdxConstants.LogSectorLength);
            }

            // Sector bitmap entries that sit past the new payload entries go with them.
            lock (_gate)
            {
                Array.Clear(_bat, (int)newEntries, (int)(_bat.Length - newEntries));
                Array.Resize(ref _bat, (int)newEntries);
                foreach (long chunk in new System.Collections.Generic.List<long>(_bitmaps.Keys))
                {
                    if (BatIndexOfBitmap(chunk) >= newEntries)
                    {
                        _bitmaps.Remove(chunk);
                    }
                }
            }
        }

        /// <summary>After a shrink is committed, gives back the file space past the last structure still in use.</summary>
        private void TruncateToUsedSpace()
        {
            long end = MetadataEnd();
            for (long index = 0; index < _bat.Length; index++)
            {
                ulong entry = _bat[index];
                int state = BatState.StateOf(entry);
                bool isBitmap = (index % (_chunkRatio + 1)) == _chunkRatio;
                if (isBitmap ? state == BatState.SectorBitmapPresent : state == BatState.FullyPresent || state == BatState.PartiallyPresent)
                {
                    end = Math.Max(end, BatState.OffsetOf(entry) + (isBitmap ? VhdxConstants.SectorBitmapBlockLength : _blockSize));
                }
            }

            end = AlignUp(end, VhdxConstants.MiB);
            if (end < _file.Length)
            {
                _file.SetLength(end);
                _file.Flush();
            }

            _fileEnd = Math.Max(end, AlignUp(_file.Length, VhdxConstants.MiB));
        }
    }
}
