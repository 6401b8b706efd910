using System;
using System.Buffers;
using System.Buffers.Binary;

namespace VDiskPS.Formats.Vdi
{
    /// <summary>Writes: new blocks take the next data index (as qemu and VirtualBox do), then header and block map.</summary>
    public sealed partial class VdiLayer
    {
        /// <summary>New blocks staged for one host write at most.</summary>
        private const int MaxBlocksPerAllocation = 16;

        internal static VdiLayer Create(HostFile file, long size, VdiImageType type, VdiLayer parent, Preallocation preallocation)
        {
            long blockSize = DefaultBlockSize;
            long blocks = (size + blockSize - 1) / blockSize;
            long mapBytes = RoundUp(blocks * 4, VdiHeader.SectorSize);
            VdiHeader header = VdiHeader.CreateNew();
            header.ImageType = type;
            header.BlocksOffset = VdiHeader.Length;
            header.DataOffset = (uint)(VdiHeader.Length + mapBytes);
            header.DiskSize = (ulong)size;
            header.BlockSize = (uint)blockSize;
            header.BlocksInImage = (uint)blocks;
            header.BlocksAllocated = type == VdiImageType.Static ? (uint)blocks : 0;
            header.UuidCreate = Guid.NewGuid();
            header.UuidModify = Guid.NewGuid();
            if (parent != null)
            {
                header.UuidLinkage = parent.ImageUuid;
                header.UuidParentModify = parent.ModificationUuid;
            }

            var map = new uint[blocks];
            var mapRaw = new byte[mapBytes];
            for (int i = 0; i < blocks; i++)
            {
                map[i] = type == VdiImageType.Static ? (uint)i : VdiHeader.Unallocated;
                BinaryPrimitives.WriteUInt32LittleEndian(mapRaw.AsSpan(i * 4), map[i]);
            }

            file.WriteAt(0, header.ToBytes());
            file.WriteAt(VdiHeader.Length, mapRaw);
            long end = header.DataOffset + (type == VdiImageType.Static ? blocks * blockSize : 0);
            if (type == VdiImageType.Static)
            {
                file.Preallocate(header.DataOffset, blocks * blockSize, preallocation);
            }

            file.SetLength(end);
            return new VdiLayer(file, header, map) { _nextDataIndex = header.BlocksAllocated };
        }

        protected override void WriteCore(long offset, ReadOnlySpan<byte> data)
        {
            long blockSize = BlockSize;
            while (data.Length > 0)
            {
                long block = offset / blockSize;
                if (_map[block] >= VdiHeader.Zero)
                {
                    long end = offset + data.Length;
                    int count = 1;
                    while (count < MaxBlocksPerAllocation && (block + count) * blockSize < end && _map[block + count] >= VdiHeader.Zero)
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
                long inBlock = offset - (block * blockSize);
                int n = (int)Math.Min(data.Length, blockSize - inBlock);
                _file.WriteAt(DataHost(_map[block]) + inBlock, data.Slice(0, n));
                offset += n;
                data = data.Slice(n);
            }
        }

        protected override void WriteZeroesCore(long offset, long length)
        {
            // A block that reads as zeros already (no parent below it, or marked zero) needs nothing.
            long blockSize = BlockSize;
            long end = offset + length;
            while (offset < end)
            {
                long block = offset / blockSize;
                long next = Math.Min(end, (block + 1) * blockSize);
                uint entry = _map[block];
                bool readsZero = entry == VdiHeader.Zero || (entry == VdiHeader.Unallocated && (Parent == null || !IsDifferencing));
                if (!readsZero)
                {
                    base.WriteZeroesCore(offset, next - offset);
                }

                offset = next;
            }
        }

        /// <summary>Whole new blocks: the written bytes over zeros, or over the parent's content for a differencing image.</summary>
        private void AllocateBlocks(long firstBlock, int count, long offset, ReadOnlySpan<byte> data)
        {
            long blockSize = BlockSize;
            int total = (int)(blockSize * count);
            byte[] staging = ArrayPool<byte>.Shared.Rent(total);
            try
            {
                long guestStart = firstBlock * blockSize;
                for (int i = 0; i < count; i++)
                {
                    long blockStart = guestStart + (i * blockSize);
                    Span<byte> blockBuffer = staging.AsSpan((int)(i * blockSize), (int)blockSize);
                    bool fullyWritten = offset <= blockStart && offset + data.Length >= blockStart + blockSize;
                    if (fullyWritten || _map[firstBlock + i] == VdiHeader.Zero || !IsDifferencing)
                    {
                        blockBuffer.Clear();
                    }
                    else
                    {
                        // Copy-on-write of the whole block, as VirtualBox does for differencing images.
                        long inSize = Math.Min(blockSize, Math.Max(0, _size - blockStart));
                        ReadFromParent(blockStart, blockBuffer.Slice(0, (int)inSize));
                        blockBuffer.Slice((int)inSize).Clear();
                    }
                }

                data.CopyTo(staging.AsSpan((int)(offset - guestStart)));
                uint firstIndex = _nextDataIndex;
                if (firstIndex + (long)count > _header.BlocksInImage)
                {
                    throw new ImageCorruptException(Path, "blocks allocated", 0x184, $"data block {firstIndex} and up are in use; no room for more in {_header.BlocksInImage} (compact the image)");
                }

                _file.WriteAt(DataHost(firstIndex), staging.AsSpan(0, total));
                lock (_lock)
                {
                    for (int i = 0; i < count; i++)
                    {
                        _map[firstBlock + i] = firstIndex + (uint)i;
                    }

                    _header.BlocksAllocated += (uint)count;
                    _nextDataIndex = firstIndex + (uint)count;
                }

                _file.WriteAt(0, _header.ToBytes());
                WriteMapEntries(firstBlock, count);
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(staging);
            }
        }

        private void WriteMapEntries(long firstBlock, long count)
        {
            var raw = new byte[count * 4];
            for (int i = 0; i < count; i++)
            {
                BinaryPrimitives.WriteUInt32LittleEndian(raw.AsSpan(i * 4), _map[firstBlock + i]);
            }

            _file.WriteAt(_header.BlocksOffset + (firstBlock * 4), raw);
        }
    }
}
