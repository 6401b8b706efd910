using System;
using System.Buffers;
using System.Buffers.Binary;

namespace VDiskPS.Formats.Vhd
{
    /// <summary>Writes: block allocation (bitmap + data + footer, then the BAT entry, as qemu orders it) and sector bitmaps.</summary>
    public sealed partial class VhdLayer
    {
        /// <summary>New blocks written with one host write at most (bounds the staging buffer).</summary>
        private const int MaxBlocksPerAllocation = 16;

        protected override void WriteCore(long offset, ReadOnlySpan<byte> data)
        {
            if (IsFixed)
            {
                _file.WriteAt(offset, data);
                return;
            }

            long blockSize = BlockSize;
            while (data.Length > 0)
            {
                long block = offset / blockSize;
                long inBlock = offset - (block * blockSize);
                if (_bat[block] == UnusedEntry)
                {
                    // Gather the run of unallocated blocks this write covers and allocate them in one write.
                    long end = offset + data.Length;
                    int count = 1;
                    while (count < MaxBlocksPerAllocation && (block + count) * blockSize < end && _bat[block + count] == UnusedEntry)
                    {
                        count++;
                    }

                    int consumed = (int)(Math.Min(end, (block + count) * blockSize) - offset);
                    AllocateBlocks(block, count, offset, data.Slice(0, consumed));
                    offset += consumed;
                    data = data.Slice(consumed);
                    continue;
                }

                ThrowIfBad(block);
                int n = (int)Math.Min(data.Length, blockSize - inBlock);
                WriteAllocated(block, inBlock, data.Slice(0, n));
                offset += n;
                data = data.Slice(n);
            }
        }

        protected override void WriteZeroesCore(long offset, long length)
        {
            if (IsFixed || IsDifferencing)
            {
                base.WriteZeroesCore(offset, length);
                return;
            }

            // A dynamic disk reads unallocated blocks as zeros: only allocated ones need zeros written.
            long blockSize = BlockSize;
            long end = offset + length;
            while (offset < end)
            {
                long block = offset / blockSize;
                long next = Math.Min(end, (block + 1) * blockSize);
                if (_bat[block] != UnusedEntry)
                {
                    base.WriteZeroesCore(offset, next - offset);
                }

                offset = next;
            }
        }

        /// <summary>Stages bitmap + data of <paramref name="count"/> new blocks, writes them at the end, then the footer, then the BAT.</summary>
        private void AllocateBlocks(long firstBlock, int count, long offset, ReadOnlySpan<byte> data)
        {
            long blockSize = BlockSize;
            int bitmapSize = BitmapSize;
            long span = BlockSpan;
            int total = (int)(span * count);
            byte[] staging = ArrayPool<byte>.Shared.Rent(total);
            var bitmaps = new byte[count][];
            try
            {
                Array.Clear(staging, 0, total);
                for (int i = 0; i < count; i++)
                {
                    long blockStart = (firstBlock + i) * blockSize;
                    long writeStart = Math.Max(offset, blockStart);
                    long writeEnd = Math.Min(offset + data.Length, blockStart + blockSize);
                    int bitmapAt = (int)(i * span);
                    int dataAt = bitmapAt + bitmapSize;
                    var bitmap = new byte[bitmapSize];
                    if (IsDifferencing)
                    {
                        // Only the written sectors become present; partial sectors take the rest from the parent.
                        long sectorStart = (writeStart - blockStart) / SectorSize * SectorSize;
                        long sectorEnd = Math.Min(blockSize, RoundUp(writeEnd - blockStart, SectorSize));
                        if (blockStart + sectorStart < writeStart)
                        {
                            ReadFromParent(blockStart + sectorStart, staging.AsSpan(dataAt + (int)sectorStart, (int)(writeStart - blockStart - sectorStart)));
                        }

                        if (writeEnd < blockStart + sectorEnd)
                        {
                            ReadFromParent(writeEnd, staging.AsSpan(dataAt + (int)(writeEnd - blockStart), (int)(blockStart + sectorEnd - writeEnd)));
                        }

                        for (long s = sectorStart / SectorSize; s < sectorEnd / SectorSize; s++)
                        {
                            SetBit(bitmap, s);
                        }
                    }
                    else
                    {
                        // As qemu does: every sector of a dynamic disk's block is marked present.
                        bitmap.AsSpan().Fill(0xFF);
                    }

                    bitmap.CopyTo(staging, bitmapAt);
                    bitmaps[i] = bitmap;
                    data.Slice((int)(writeStart - offset), (int)(writeEnd - writeStart)).CopyTo(staging.AsSpan(dataAt + (int)(writeStart - blockStart)));
                }

                long hostStart = _nextFree;
                if ((hostStart + total) / SectorSize >= UnusedEntry)
                {
                    throw new ImageIOException(Path, "the file would grow past the 2 TiB a VHD block table can address");
                }

                // A bad entry may claim the space past the end of a truncated file: a new block placed
                // there would become unreadable too, so such an image takes no new blocks.
                foreach (long bad in _badBlocks)
                {
                    long badStart = _bat[bad] * (long)SectorSize;
                    if (badStart < hostStart + total && hostStart < badStart + span)
                    {
                        ThrowIfBad(bad);
                    }
                }

                _file.WriteAt(hostStart, staging.AsSpan(0, total));
                _nextFree = hostStart + total;
                _file.WriteAt(_nextFree, _footer.ToBytes());
                var entries = new byte[count * 4];
                for (int i = 0; i < count; i++)
                {
                    uint sector = (uint)((hostStart + (i * span)) / SectorSize);
                    BinaryPrimitives.WriteUInt32BigEndian(entries.AsSpan(i * 4), sector);
                }

                _file.WriteAt((long)_header.TableOffset + (firstBlock * 4), entries);
                lock (_lock)
                {
                    for (int i = 0; i < count; i++)
                    {
                        _bat[firstBlock + i] = (uint)((hostStart + (i * span)) / SectorSize);
                        if (IsDifferencing)
                        {
                            _bitmaps[firstBlock + i] = bitmaps[i];
                        }
                    }
                }
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(staging);
            }
        }

        /// <summary>Writes into an allocated block; a differencing block fills partial absent sectors from the parent and marks the sectors present.</summary>
        private void WriteAllocated(long block, long inBlock, ReadOnlySpan<byte> data)
        {
            long bitmapHost = _bat[block] * (long)SectorSize;
            long dataHost = bitmapHost + BitmapSize;
            if (!IsDifferencing)
            {
                _file.WriteAt(dataHost + inBlock, data);
                return;
            }

            byte[] bitmap = GetBitmap(block);
            long blockStart = block * BlockSize;
            long end = inBlock + data.Length;
            bool headFill = inBlock % SectorSize != 0 && !IsSet(bitmap, inBlock / SectorSize);
            bool tailFill = end % SectorSize != 0 && !IsSet(bitmap, end / SectorSize);
            long alignedStart = headFill ? inBlock / SectorSize * SectorSize : inBlock;
            long alignedEnd = tailFill ? RoundUp(end, SectorSize) : end;
            if (headFill || tailFill)
            {
                var buffer = new byte[alignedEnd - alignedStart];
                if (headFill)
                {
                    ReadFromParent(blockStart + alignedStart, buffer.AsSpan(0, (int)(inBlock - alignedStart)));
                }

                if (tailFill)
                {
                    ReadFromParent(blockStart + end, buffer.AsSpan((int)(end - alignedStart)));
                }

                data.CopyTo(buffer.AsSpan((int)(inBlock - alignedStart)));
                _file.WriteAt(dataHost + alignedStart, buffer);
            }
            else
            {
                _file.WriteAt(dataHost + inBlock, data);
            }

            bool changed = false;
            long firstSector = inBlock / SectorSize;
            long lastSector = (end - 1) / SectorSize;
            lock (_lock)
            {
                for (long s = firstSector; s <= lastSector; s++)
                {
                    if (!IsSet(bitmap, s))
                    {
                        SetBit(bitmap, s);
                        changed = true;
                    }
                }
            }

            if (changed)
            {
                // The bitmap follows the data, so a crash leaves the sectors absent (reading the parent), never garbage.
                int firstByte = (int)(firstSector / 8 / SectorSize * SectorSize);
                int lastByte = (int)Math.Min(bitmap.Length, RoundUp((lastSector / 8) + 1, SectorSize));
                _file.WriteAt(bitmapHost + firstByte, bitmap.AsSpan(firstByte, lastByte - firstByte));
            }
        }

        /// <summary>Writes the dynamic header and both footer copies (after a change of size, type or parent).</summary>
        private void WriteMetadata()
        {
            byte[] footer = _footer.ToBytes();
            _file.WriteAt(_nextFree, footer);
            if (!IsFixed)
            {
                _file.WriteAt((long)_footer.DataOffset, _header.ToBytes());
                _file.WriteAt(0, footer);
                _file.SetLength(_nextFree + VhdFooter.Length);
            }

            _file.Flush();
        }
    }
}
