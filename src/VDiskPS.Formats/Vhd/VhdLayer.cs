using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using VDiskPS;

namespace VDiskPS.Formats.Vhd
{
    /// <summary>
    /// A VHD image: fixed (data then footer), dynamic (block allocation table, blocks of sector bitmap +
    /// data) or differencing (a dynamic disk whose sector bitmaps say which sectors it holds; the rest
    /// comes from the parent). Reads follow qemu's block/vpc.c: a dynamic disk's allocated block is read
    /// whole, its bitmap is only consulted for differencing disks.
    /// </summary>
    public sealed partial class VhdLayer : ImageLayer
    {
        internal const int SectorSize = 512;
        internal const uint UnusedEntry = 0xFFFFFFFF;

        /// <summary>Bound on in-memory BAT entries (64 MiB of table), far above any real image.</summary>
        internal const uint MaxTableEntriesLimit = 1u << 24;

        internal const int MinBlockSize = SectorSize;
        internal const int MaxBlockSize = 256 << 20;

        /// <summary>Sector bitmaps of differencing blocks kept in memory at most (512 bytes each for 2 MiB blocks).</summary>
        private const int BitmapCacheLimit = 8192;

        private readonly HostFile _file;
        private readonly object _lock = new object();
        private readonly Dictionary<long, byte[]> _bitmaps = new Dictionary<long, byte[]>();
        private readonly HashSet<long> _badBlocks = new HashSet<long>();
        private VhdFooter _footer;
        private VhdDynamicHeader _header;
        private uint[] _bat;
        private long _size;
        private long _nextFree;
        private BackingReference _backing;

        private VhdLayer(HostFile file, VhdFooter footer, VhdDynamicHeader header, uint[] bat)
            : base(file.Path, file.CanWrite)
        {
            _file = file;
            _footer = footer;
            _header = header;
            _bat = bat;
            _size = footer.VirtualSize;
        }

        public override DiskFormat Format => VhdDriver.Id;

        public override long Size => _size;

        /// <summary>The block size; a fixed disk reports 64 KiB like raw (Describe shows 0, as Hyper-V does).</summary>
        public override int ClusterSize => IsFixed ? 64 * 1024 : (int)_header.BlockSize;

        public override DiskType DiskType => _footer.DiskType == VhdDiskType.Fixed ? DiskType.Fixed
            : _footer.DiskType == VhdDiskType.Differencing ? DiskType.Differencing : DiskType.Dynamic;

        public override BackingReference Backing => _backing;

        /// <summary>The footer's unique id (Hyper-V's DiskIdentifier), as GUID.</summary>
        public Guid UniqueId => _footer.UniqueGuid;

        internal byte[] UniqueIdBytes => (byte[])_footer.UniqueId.Clone();

        internal uint FooterTimestamp => _footer.Timestamp;

        private bool IsFixed => _footer.DiskType == VhdDiskType.Fixed;

        private bool IsDifferencing => _footer.DiskType == VhdDiskType.Differencing;

        private int BlockSize => (int)_header.BlockSize;

        private int BitmapSize => BitmapBytes((int)_header.BlockSize);

        /// <summary>Bytes of one block in the file: its sector bitmap then its data.</summary>
        private long BlockSpan => BitmapSize + (long)BlockSize;

        internal static int BitmapBytes(int blockSize) => ((blockSize / SectorSize / 8) + SectorSize - 1) / SectorSize * SectorSize;

        /// <summary>Opens and validates an image; bad structures give typed errors and leave the file untouched.</summary>
        internal static VhdLayer Open(HostFile file, OpenOptions options)
        {
            long length = file.Length;
            if (length < VhdFooter.Length)
            {
                throw new ImageFormatMismatchException(file.Path, "footer", 0, $"not a VHD: the file is {length} bytes, shorter than a footer");
            }

            var tail = new byte[VhdFooter.Length];
            file.ReadExactly(length - VhdFooter.Length, tail, "footer");
            var head = new byte[VhdFooter.Length];
            file.ReadExactly(0, head, "footer copy");

            // A fixed disk has its footer only at the end; dynamic disks keep a copy at 0 (read first, as qemu does).
            VhdFooter footer;
            if (VhdFooter.HasCookie(tail) && tail[63] == (byte)VhdDiskType.Fixed && tail[60] == 0 && tail[61] == 0 && tail[62] == 0)
            {
                footer = VhdFooter.Parse(tail, file.Path, length - VhdFooter.Length);
            }
            else if (VhdFooter.HasCookie(head))
            {
                footer = VhdFooter.Parse(head, file.Path, 0);
            }
            else
            {
                footer = VhdFooter.Parse(tail, file.Path, length - VhdFooter.Length);
            }

            long size = footer.VirtualSize;
            if (size < 0 || size > VhdFooter.MaxSize)
            {
                throw new ImageNotSupportedException(file.Path, "current size", 48, $"the virtual size {footer.CurrentSize} is beyond the VHD limit of 2040 GiB");
            }

            if (footer.DiskType == VhdDiskType.Fixed)
            {
                if (file.CanWrite && length - VhdFooter.Length < size)
                {
                    throw new ImageCorruptException(file.Path, "current size", length - VhdFooter.Length + 48,
                        $"the fixed disk claims {size} bytes but the file holds only {length - VhdFooter.Length}; writing would overwrite its footer");
                }

                return new VhdLayer(file, footer, null, null) { _nextFree = length - VhdFooter.Length };
            }

            var layer = OpenDynamic(file, footer, length);
            if (layer.IsDifferencing)
            {
                layer._backing = layer.ReadBacking(options);
                layer.VerifyParentIdentity(options);
            }

            return layer;
        }

        private static VhdLayer OpenDynamic(HostFile file, VhdFooter footer, long length)
        {
            if (footer.DataOffset > (ulong)(length - VhdDynamicHeader.Length) || footer.DataOffset % SectorSize != 0)
            {
                throw new ImageCorruptException(file.Path, "footer data offset", 16, $"the dynamic header offset {footer.DataOffset} is outside the file ({length} bytes) or unaligned");
            }

            long headerOffset = (long)footer.DataOffset;
            var headerBytes = new byte[VhdDynamicHeader.Length];
            file.ReadExactly(headerOffset, headerBytes, "dynamic header");
            VhdDynamicHeader header = VhdDynamicHeader.Parse(headerBytes, file.Path, headerOffset);
            uint blockSize = header.BlockSize;
            if (blockSize < MinBlockSize || blockSize > MaxBlockSize || (blockSize & (blockSize - 1)) != 0)
            {
                throw new ImageCorruptException(file.Path, "block size", headerOffset + 32, $"{blockSize} is not a power of two between {MinBlockSize} and {MaxBlockSize} bytes");
            }

            long size = footer.VirtualSize;
            long needed = (size + blockSize - 1) / blockSize;
            if (header.MaxTableEntries < needed)
            {
                throw new ImageCorruptException(file.Path, "max table entries", headerOffset + 28, $"{header.MaxTableEntries} blocks of {blockSize} bytes cannot hold the virtual size {size}");
            }

            if (header.MaxTableEntries > MaxTableEntriesLimit || header.MaxTableEntries > (ulong)VhdFooter.MaxSize / blockSize + 1)
            {
                throw new ImageCorruptException(file.Path, "max table entries", headerOffset + 28, $"{header.MaxTableEntries} entries is beyond any VHD (at most {Math.Min(MaxTableEntriesLimit, VhdFooter.MaxSize / blockSize)} for this block size)");
            }

            long tableBytes = header.MaxTableEntries * 4L;
            if (header.TableOffset % SectorSize != 0 || header.TableOffset > (ulong)(length - tableBytes))
            {
                throw new ImageCorruptException(file.Path, "table offset", headerOffset + 16, $"the block allocation table ({tableBytes} bytes at {header.TableOffset}) is outside the file ({length} bytes) or unaligned");
            }

            long tableOffset = (long)header.TableOffset;
            var raw = new byte[tableBytes];
            file.ReadExactly(tableOffset, raw, "block allocation table");
            var bat = new uint[header.MaxTableEntries];
            for (int i = 0; i < bat.Length; i++)
            {
                bat[i] = BinaryPrimitives.ReadUInt32BigEndian(raw.AsSpan(i * 4));
            }

            var layer = new VhdLayer(file, footer, header, bat);
            layer.ValidateBlocks(length, headerOffset, tableOffset, tableBytes);
            return layer;
        }

        /// <summary>Marks blocks past end of file or overlapping metadata or each other; computes where new blocks go.</summary>
        private void ValidateBlocks(long length, long headerOffset, long tableOffset, long tableBytes)
        {
            long span = BlockSpan;
            long metadataEnd = Math.Max(headerOffset + VhdDynamicHeader.Length, RoundUp(tableOffset + tableBytes, SectorSize));
            var metadata = new List<(long Start, long End)>
            {
                (0, VhdFooter.Length),
                (headerOffset, headerOffset + VhdDynamicHeader.Length),
                (tableOffset, tableOffset + tableBytes),
            };
            foreach (var locator in _header.Locators)
            {
                if (locator.IsUsed && locator.DataLength > 0 && locator.DataOffset < (ulong)length)
                {
                    long start = (long)locator.DataOffset;
                    // Writers disagree on the unit of the data space (sectors or bytes): only the data itself counts.
                    long end = RoundUp(start + locator.DataLength, SectorSize);
                    metadata.Add((start, end));
                    metadataEnd = Math.Max(metadataEnd, RoundUp(end, SectorSize));
                }
            }

            long dataEnd = Math.Max(0, length - VhdFooter.Length);
            var blocks = new List<(long Start, long Index)>();
            long nextFree = metadataEnd;
            for (long i = 0; i < _bat.Length; i++)
            {
                uint entry = _bat[i];
                if (entry == UnusedEntry)
                {
                    continue;
                }

                long start = entry * (long)SectorSize;
                long end = start + span;
                if (end > dataEnd + VhdFooter.Length)
                {
                    _badBlocks.Add(i);
                    continue;
                }

                foreach (var region in metadata)
                {
                    if (start < region.End && region.Start < end)
                    {
                        _badBlocks.Add(i);
                    }
                }

                blocks.Add((start, i));
                nextFree = Math.Max(nextFree, end);
            }

            blocks.Sort((a, b) => a.Start.CompareTo(b.Start));
            for (int i = 1; i < blocks.Count; i++)
            {
                if (blocks[i].Start < blocks[i - 1].Start + span)
                {
                    _badBlocks.Add(blocks[i].Index);
                    _badBlocks.Add(blocks[i - 1].Index);
                }
            }

            _nextFree = RoundUp(Math.Max(nextFree, dataEnd), SectorSize);
        }

        public override BlockStatus GetBlockStatus(long offset, long maxLength)
        {
            maxLength = Math.Min(maxLength, _size - offset);
            if (IsFixed)
            {
                // A fixed disk whose file is shorter than its size reads zeros past the data, never the footer.
                long dataEnd = _nextFree;
                return offset < dataEnd
                    ? new BlockStatus(offset, Math.Min(maxLength, dataEnd - offset), ExtentKind.Data, offset)
                    : new BlockStatus(offset, maxLength, ExtentKind.Zero);
            }

            long end = offset + maxLength;
            long blockSize = BlockSize;
            long block = offset / blockSize;
            uint entry = _bat[block];
            if (entry == UnusedEntry)
            {
                return new BlockStatus(offset, UnallocatedRunEnd(block + 1, end) - offset, ExtentKind.Unallocated);
            }

            ThrowIfBad(block);
            long blockStart = block * blockSize;
            long inBlock = offset - blockStart;
            long blockEnd = Math.Min(end, blockStart + blockSize);
            long dataHost = (entry * (long)SectorSize) + BitmapSize;
            if (!IsDifferencing)
            {
                return new BlockStatus(offset, blockEnd - offset, ExtentKind.Data, dataHost + inBlock);
            }

            // Differencing: the sector bitmap says which sectors this layer holds (VHD spec, "Block Format").
            byte[] bitmap = GetBitmap(block);
            long sector = inBlock / SectorSize;
            bool present = IsSet(bitmap, sector);
            long lastSector = (blockEnd - blockStart + SectorSize - 1) / SectorSize;
            long runSector = sector + 1;
            while (runSector < lastSector && IsSet(bitmap, runSector) == present)
            {
                runSector++;
            }

            long runEnd = Math.Min(blockEnd, blockStart + (runSector * SectorSize));
            if (present)
            {
                return new BlockStatus(offset, runEnd - offset, ExtentKind.Data, dataHost + inBlock);
            }

            if (runEnd == blockStart + blockSize && runEnd < end)
            {
                runEnd = UnallocatedRunEnd(block + 1, end);
            }

            return new BlockStatus(offset, runEnd - offset, ExtentKind.Unallocated);
        }

        public override void Describe(VDiskInfo info)
        {
            info.Subformat = IsFixed ? "fixed" : IsDifferencing ? "differencing" : "dynamic";
            info.DiskIdentifier = _footer.UniqueGuid;
            if (IsFixed)
            {
                info.ClusterSize = 0;
            }

            info.FormatSpecific["creator-app"] = _footer.CreatorApp.TrimEnd(' ', '\0');
            info.FormatSpecific["creator-host-os"] = _footer.CreatorHostOs.TrimEnd(' ', '\0');
            info.FormatSpecific["disk-type"] = info.Subformat;
            if (IsDifferencing)
            {
                info.FormatSpecific["parent-unique-id"] = VhdFooter.ToGuid(_header.ParentUniqueId).ToString();
            }
        }

        public override void Flush() => _file.Flush();

        protected override void ReadData(long offset, Span<byte> buffer, BlockStatus status)
        {
            _file.ReadZeroPadded(status.HostOffset + (offset - status.GuestOffset), buffer);
        }

        protected override void Dispose(bool disposing)
        {
            try
            {
                if (IsWritable)
                {
                    _file.Flush();
                }
            }
            finally
            {
                _file.Dispose();
            }
        }

        internal static long RoundUp(long value, long unit) => (value + unit - 1) / unit * unit;

        private static bool IsSet(byte[] bitmap, long sector) => (bitmap[sector >> 3] & (0x80 >> (int)(sector & 7))) != 0;

        private static void SetBit(byte[] bitmap, long sector) => bitmap[sector >> 3] |= (byte)(0x80 >> (int)(sector & 7));

        private long UnallocatedRunEnd(long nextBlock, long end)
        {
            long blockSize = BlockSize;
            long block = nextBlock;
            while (block * blockSize < end && _bat[block] == UnusedEntry)
            {
                block++;
            }

            return Math.Min(end, block * blockSize);
        }

        private void ThrowIfBad(long block)
        {
            if (_badBlocks.Contains(block))
            {
                throw new ImageCorruptException(Path, $"block allocation table entry {block}", (long)_header.TableOffset + (block * 4),
                    $"block at sector {_bat[block]} lies past the end of the file or overlaps metadata or another block") { Kind = ImageErrorKind.DamageNeedsCheck };
            }
        }

        private byte[] GetBitmap(long block)
        {
            lock (_lock)
            {
                if (_bitmaps.TryGetValue(block, out byte[] cached))
                {
                    return cached;
                }
            }

            var bitmap = new byte[BitmapSize];
            _file.ReadExactly(_bat[block] * (long)SectorSize, bitmap, $"sector bitmap of block {block}");
            lock (_lock)
            {
                if (_bitmaps.Count >= BitmapCacheLimit)
                {
                    _bitmaps.Clear();
                }

                _bitmaps[block] = bitmap;
            }

            return bitmap;
        }
    }
}
