using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using VDiskPS;

namespace VDiskPS.Formats.Vdi
{
    /// <summary>
    /// Resize, check (qemu's vdi_check rules), compaction (VBoxManage --compact) and parent change. Every
    /// operation leaves the data indices dense (0 .. allocated-1), the layout qemu and VirtualBox assume
    /// when they allocate the next block.
    /// </summary>
    public sealed partial class VdiLayer : IResizableLayer, ICheckableLayer, IOptimizableLayer, IParentChangeableLayer
    {
        public void Resize(long newSize, bool allowShrink, Preallocation preallocation)
        {
            EnsureWritable();
            ThrowIfAnyBad();
            newSize = RoundUp(newSize, VdiHeader.SectorSize);
            if (newSize < _size && !allowShrink)
            {
                throw ImageOptionException.ShrinkNotAllowed(Path, _size, newSize);
            }

            if (preallocation != Preallocation.Off && _header.ImageType != VdiImageType.Static)
            {
                throw new ImageOptionException(Path, "preallocation", "dynamic VDIs grow as written; preallocation applies to static images");
            }

            long blockSize = BlockSize;
            long blocks = (newSize + blockSize - 1) / blockSize;
            if (blocks > MaxBlocksInImage)
            {
                throw new ImageOptionException(Path, "size", $"{newSize} bytes is beyond the VDI limit of {MaxBlocksInImage} blocks");
            }

            if (blocks < _map.Length)
            {
                ShrinkMap(newSize, blocks);
            }
            else if (blocks > _map.Length)
            {
                GrowMap(blocks, preallocation);
            }
            else if (newSize < _size)
            {
                ZeroTail(newSize);
            }

            _header.DiskSize = (ulong)newSize;
            _size = newSize;
            WriteHeaderAndMap();
        }

        /// <summary>qemu's vdi_check: entries past the data area, blocks used twice, a wrong allocated count; plus unused data blocks (leaks).</summary>
        public VDiskCheckResult Check(RepairMode repair)
        {
            var result = new VDiskCheckResult
            {
                Path = Path,
                Format = Format.ToName(),
                TotalClusters = _map.Length,
                ImageEndOffset = _file.Length,
            };
            long allocated = 0;
            var users = new Dictionary<uint, long>();
            for (long block = 0; block < _map.Length; block++)
            {
                uint entry = _map[block];
                if (entry >= VdiHeader.Zero)
                {
                    continue;
                }

                if (entry >= _header.BlocksInImage)
                {
                    result.Corruptions++;
                    result.Messages.Add($"block {block}: data block index {entry} is too large (the image has {_header.BlocksInImage} blocks)");
                    continue;
                }

                allocated++;
                if (users.TryGetValue(entry, out long other))
                {
                    result.Corruptions++;
                    result.Messages.Add($"block {block}: data block index {entry} is also used by block {other}");
                }
                else
                {
                    users[entry] = block;
                }
            }

            result.AllocatedClusters = allocated;
            if (allocated != _header.BlocksAllocated)
            {
                result.Corruptions++;
                result.Messages.Add($"the header counts {_header.BlocksAllocated} allocated blocks, the block map {allocated}");
                if (repair == RepairMode.All && _badBlocks.Count == 0 && IsWritable)
                {
                    _header.BlocksAllocated = (uint)allocated;
                    WriteHeaderAndMap();
                    result.CorruptionsFixed++;
                }
            }

            long leaks = _badBlocks.Count == 0 ? Math.Max(0, _nextDataIndex - allocated) : 0;
            if (leaks > 0)
            {
                result.Leaks = leaks;
                result.Messages.Add($"{leaks} data blocks belong to no disk block");
                if (repair != RepairMode.None && IsWritable)
                {
                    CompactIndices(null, CancellationToken.None);
                    result.LeaksFixed = leaks;
                }
            }

            result.ImageEndOffset = _file.Length;
            return result;
        }

        /// <summary>Marks all-zero blocks as zero (or, in a differencing image, keeps them: they hide the parent) and compacts the file.</summary>
        public long Optimize(IProgress<OperationProgress> progress, CancellationToken cancel)
        {
            EnsureWritable();
            ThrowIfAnyBad();
            if (_header.ImageType == VdiImageType.Static)
            {
                throw new ImageNotSupportedException(Path, "image type", 0x4C, "a static VDI cannot be compacted; convert it to a dynamic VDI to reclaim space");
            }

            long before = _file.Length;
            byte[] buffer = new byte[BlockSize];
            bool changed = false;
            for (long block = 0; block < _map.Length; block++)
            {
                cancel.ThrowIfCancellationRequested();
                uint entry = _map[block];
                if (entry < VdiHeader.Zero)
                {
                    _file.ReadZeroPadded(DataHost(entry), buffer);
                    if (ZeroDetector.IsZero(buffer) && !IsDifferencing)
                    {
                        _map[block] = VdiHeader.Zero;
                        _header.BlocksAllocated--;
                        changed = true;
                    }
                }

                progress?.Report(new OperationProgress("Scanning", (block + 1) * BlockSize, _map.Length * BlockSize));
            }

            if (changed)
            {
                WriteHeaderAndMap();
            }

            CompactIndices(progress, cancel);
            return before - _file.Length;
        }

        public void SetBacking(BackingReference backing, ImageLayer parent)
        {
            EnsureWritable();
            _parentNotFound = null;
            if (backing == null)
            {
                if (IsDifferencing)
                {
                    // The unallocated blocks read as zeros from now on, as in any dynamic image.
                    _header.ImageType = VdiImageType.Dynamic;
                    _header.UuidLinkage = Guid.Empty;
                    _header.UuidParentModify = Guid.Empty;
                }

                _backing = null;
                WriteHeaderAndMap();
                return;
            }

            if (_header.ImageType == VdiImageType.Static)
            {
                throw new ImageNotSupportedException(Path, "image type", 0x4C, "a static VDI cannot have a parent");
            }

            if (!(parent is VdiLayer vdiParent))
            {
                throw new ImageNotSupportedException(Path, "parent", null, parent == null
                    ? "a differencing VDI records its parent's UUID, so the new parent must be opened"
                    : $"the parent of a differencing VDI must be a VDI, not {parent.Format.ToName()}");
            }

            string childDir = System.IO.Path.GetDirectoryName(Path) ?? string.Empty;
            string parentDir = System.IO.Path.GetDirectoryName(vdiParent.Path) ?? string.Empty;
            bool beside = ImageChain.PathComparer.Equals(parentDir, childDir);
            bool above = ImageChain.PathComparer.Equals(parentDir, System.IO.Path.GetDirectoryName(childDir) ?? string.Empty);
            if (!beside && !above)
            {
                throw new ImageOptionException(Path, "parent", "a VDI finds its parent by UUID in its own folder or the folder above; move the parent there first");
            }

            _header.ImageType = VdiImageType.Differencing;
            _header.UuidLinkage = vdiParent.ImageUuid;
            _header.UuidParentModify = vdiParent.ModificationUuid;
            _backing = new BackingReference((beside ? string.Empty : ".." + System.IO.Path.DirectorySeparatorChar) + System.IO.Path.GetFileName(vdiParent.Path), VdiDriver.Id);
            WriteHeaderAndMap();
        }

        private void ShrinkMap(long newSize, long blocks)
        {
            for (long block = blocks; block < _map.Length; block++)
            {
                if (_map[block] < VdiHeader.Zero)
                {
                    _header.BlocksAllocated--;
                }
            }

            Array.Resize(ref _map, (int)blocks);
            _header.BlocksInImage = (uint)blocks;
            ZeroTail(newSize);
            WriteHeaderAndMap();
            CompactIndices(null, CancellationToken.None);
        }

        /// <summary>Clears the last block past the new end, so a later grow reads zeros there.</summary>
        private void ZeroTail(long newSize)
        {
            long blockSize = BlockSize;
            long last = (newSize - 1) / blockSize;
            long inBlock = newSize - (last * blockSize);
            if (newSize > 0 && last < _map.Length && inBlock < blockSize && _map[last] < VdiHeader.Zero)
            {
                _file.WriteZeros(DataHost(_map[last]) + inBlock, blockSize - inBlock);
            }
        }

        /// <summary>
        /// A larger block map: where it does not fit before the data area, the first data blocks move to
        /// the end and the data area starts that many blocks later (as VirtualBox does).
        /// </summary>
        private void GrowMap(long blocks, Preallocation preallocation)
        {
            long blockSize = BlockSize;
            long mapBytes = RoundUp(blocks * 4, VdiHeader.SectorSize);
            long room = _header.DataOffset - _header.BlocksOffset;
            if (mapBytes > room)
            {
                CompactIndices(null, CancellationToken.None);
                long shift = (mapBytes - room + blockSize - 1) / blockSize;
                uint used = _nextDataIndex;
                long moved = Math.Min(shift, used);
                long firstFree = Math.Max(used, shift);
                var newIndex = new Dictionary<uint, uint>();
                for (uint index = 0; index < moved; index++)
                {
                    CopyDataBlock(index, (uint)(firstFree + index));
                    newIndex[index] = (uint)(firstFree + index - shift);
                }

                _file.Flush();
                for (long block = 0; block < _map.Length; block++)
                {
                    uint entry = _map[block];
                    if (entry < VdiHeader.Zero)
                    {
                        _map[block] = newIndex.TryGetValue(entry, out uint relocated) ? relocated : (uint)(entry - shift);
                    }
                }

                _header.DataOffset = (uint)(_header.DataOffset + (shift * blockSize));
                _nextDataIndex = (uint)(firstFree + moved - shift);
            }

            long oldBlocks = _map.Length;
            Array.Resize(ref _map, (int)blocks);
            for (long block = oldBlocks; block < blocks; block++)
            {
                if (_header.ImageType == VdiImageType.Static)
                {
                    _map[block] = _nextDataIndex++;
                    _header.BlocksAllocated++;
                }
                else
                {
                    _map[block] = VdiHeader.Unallocated;
                }
            }

            _header.BlocksInImage = (uint)blocks;
            long end = _header.DataOffset + (_nextDataIndex * blockSize);
            if (_header.ImageType == VdiImageType.Static)
            {
                long newData = _header.DataOffset + ((_nextDataIndex - (blocks - oldBlocks)) * blockSize);
                _file.Preallocate(newData, end - newData, preallocation);
            }

            if (_file.Length < end || _header.ImageType == VdiImageType.Static)
            {
                _file.SetLength(Math.Max(_file.Length, end));
            }
        }

        /// <summary>Moves the data blocks with the highest indices into unused indices, then truncates the file.</summary>
        private void CompactIndices(IProgress<OperationProgress> progress, CancellationToken cancel)
        {
            var owner = new Dictionary<uint, long>();
            for (long block = 0; block < _map.Length; block++)
            {
                if (_map[block] < VdiHeader.Zero)
                {
                    owner[_map[block]] = block;
                }
            }

            uint count = (uint)owner.Count;
            var free = new Queue<uint>(Enumerable.Range(0, (int)count).Select(i => (uint)i).Where(i => !owner.ContainsKey(i)));
            var movers = owner.Keys.Where(i => i >= count).OrderBy(i => i).ToList();
            int done = 0;
            foreach (uint from in movers)
            {
                cancel.ThrowIfCancellationRequested();
                uint to = free.Dequeue();
                CopyDataBlock(from, to);
                _file.Flush();
                long block = owner[from];
                _map[block] = to;
                WriteMapEntries(block, 1);
                progress?.Report(new OperationProgress("Compacting", ++done, movers.Count));
            }

            _nextDataIndex = count;
            _header.BlocksAllocated = count;
            WriteHeaderAndMap();
            _file.SetLength(_header.DataOffset + (count * BlockSize));
            _file.Flush();
        }

        private void CopyDataBlock(uint from, uint to)
        {
            var buffer = new byte[BlockSize];
            _file.ReadZeroPadded(DataHost(from), buffer);
            _file.WriteAt(DataHost(to), buffer);
        }

        private void WriteHeaderAndMap()
        {
            var raw = new byte[RoundUp(_map.Length * 4L, VdiHeader.SectorSize)];
            raw.AsSpan().Fill(0xFF);
            for (int i = 0; i < _map.Length; i++)
            {
                BinaryPrimitives.WriteUInt32LittleEndian(raw.AsSpan(i * 4), _map[i]);
            }

            _file.WriteAt(_header.BlocksOffset, raw.AsSpan(0, Math.Min(raw.Length, (int)(_header.DataOffset - _header.BlocksOffset))));
            _file.WriteAt(0, _header.ToBytes());
            _file.Flush();
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
