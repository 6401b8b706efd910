using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.IO;
using VDiskPS;

namespace VDiskPS.Formats.Vdi
{
    /// <summary>
    /// A VirtualBox VDI image: header, block map (one little-endian entry per block: the block's index
    /// in the data area, or unallocated / zero), then the data blocks. Static images have every block
    /// allocated in order; differencing images name their parent by UUID only.
    /// </summary>
    public sealed partial class VdiLayer : ImageLayer
    {
        internal const int DefaultBlockSize = 1 << 20;
        internal const int MinBlockSize = VdiHeader.SectorSize;
        internal const int MaxBlockSize = 256 << 20;

        /// <summary>qemu's limit on blocks (block/vdi.c VDI_BLOCKS_IN_IMAGE_MAX).</summary>
        internal const uint MaxBlocksInImage = 0x3FFFFFFF;

        /// <summary>Images scanned at most when looking for a differencing image's parent.</summary>
        private const int MaxParentCandidates = 4096;

        private readonly HostFile _file;
        private readonly object _lock = new object();
        private readonly HashSet<long> _badBlocks = new HashSet<long>();
        private VdiHeader _header;
        private uint[] _map;
        private long _size;
        private uint _nextDataIndex;
        private BackingReference _backing;

        // A parent UUID that no image nearby carries: reported when the parent is asked for, so that a
        // pointer-only rebase (which does not open the old parent) can still give the child a parent.
        private ImageChainException _parentNotFound;

        private VdiLayer(HostFile file, VdiHeader header, uint[] map)
            : base(file.Path, file.CanWrite)
        {
            _file = file;
            _header = header;
            _map = map;
            _size = RoundUp((long)header.DiskSize, VdiHeader.SectorSize);
        }

        public override DiskFormat Format => VdiDriver.Id;

        public override long Size => _size;

        public override int ClusterSize => (int)_header.BlockSize;

        public override DiskType DiskType => _header.ImageType == VdiImageType.Static ? DiskType.Fixed
            : _header.ImageType == VdiImageType.Differencing ? DiskType.Differencing : DiskType.Dynamic;

        public override BackingReference Backing => _parentNotFound != null ? throw _parentNotFound : _backing;

        /// <summary>The image UUID (VirtualBox's medium id).</summary>
        public Guid ImageUuid => _header.UuidCreate;

        internal Guid ModificationUuid => _header.UuidModify;

        private bool IsDifferencing => _header.ImageType == VdiImageType.Differencing;

        private long BlockSize => _header.BlockSize;

        internal static long RoundUp(long value, long unit) => (value + unit - 1) / unit * unit;

        internal static VdiLayer Open(HostFile file, OpenOptions options)
        {
            long length = file.Length;
            if (length < VdiHeader.Length)
            {
                throw new ImageFormatMismatchException(file.Path, "header", 0, $"not a VDI: the file is {length} bytes, shorter than a header");
            }

            var raw = new byte[VdiHeader.Length];
            file.ReadExactly(0, raw, "header");
            if (!VdiHeader.HasSignature(raw))
            {
                throw new ImageFormatMismatchException(file.Path, "signature", 0x40, "not a VDI: the signature 0xbeda107f is missing");
            }

            VdiHeader header = VdiHeader.FromBytes(raw);
            Validate(file.Path, header, length);
            long mapBytes = header.BlocksInImage * 4L;
            var mapRaw = new byte[mapBytes];
            file.ReadExactly(header.BlocksOffset, mapRaw, "block map");
            var map = new uint[header.BlocksInImage];
            for (int i = 0; i < map.Length; i++)
            {
                map[i] = BinaryPrimitives.ReadUInt32LittleEndian(mapRaw.AsSpan(i * 4));
            }

            var layer = new VdiLayer(file, header, map);
            layer.FindBadBlocks();
            if (layer.IsDifferencing)
            {
                try
                {
                    layer._backing = layer.FindParent(options);
                }
                catch (ImageChainException e)
                {
                    layer._parentNotFound = e;
                }
            }

            return layer;
        }

        private static void Validate(string path, VdiHeader header, long length)
        {
            if (header.Version != VdiHeader.Version11)
            {
                throw new ImageNotSupportedException(path, "version", 0x44, $"VDI version {header.Version >> 16}.{header.Version & 0xFFFF} is not supported (only 1.1)");
            }

            VdiImageType type = header.ImageType;
            if (type != VdiImageType.Dynamic && type != VdiImageType.Static && type != VdiImageType.Differencing)
            {
                throw new ImageNotSupportedException(path, "image type", 0x4C, $"image type {(uint)type} is not dynamic (1), static (2) or differencing (4)");
            }

            if (header.SectorSizeField != VdiHeader.SectorSize)
            {
                throw new ImageNotSupportedException(path, "sector size", 0x168, $"sector size {header.SectorSizeField} is not 512");
            }

            uint blockSize = header.BlockSize;
            if (blockSize < MinBlockSize || blockSize > MaxBlockSize || (blockSize & (blockSize - 1)) != 0)
            {
                throw new ImageCorruptException(path, "block size", 0x178, $"{blockSize} is not a power of two between {MinBlockSize} and {MaxBlockSize} bytes");
            }

            if (header.BlockExtra != 0)
            {
                throw new ImageNotSupportedException(path, "block extra", 0x17C, $"{header.BlockExtra} bytes of extra data per block are not supported");
            }

            if (header.BlocksInImage > MaxBlocksInImage)
            {
                throw new ImageCorruptException(path, "blocks in image", 0x180, $"{header.BlocksInImage} blocks is beyond the VDI limit of {MaxBlocksInImage}");
            }

            if (header.DiskSize > (ulong)header.BlocksInImage * blockSize)
            {
                throw new ImageCorruptException(path, "disk size", 0x170, $"{header.DiskSize} bytes do not fit in {header.BlocksInImage} blocks of {blockSize} bytes");
            }

            if (header.BlocksOffset % VdiHeader.SectorSize != 0 || header.BlocksOffset < VdiHeader.Length || header.BlocksOffset + (header.BlocksInImage * 4L) > length)
            {
                throw new ImageCorruptException(path, "block map offset", 0x154, $"the block map ({header.BlocksInImage * 4L} bytes at {header.BlocksOffset}) is outside the file ({length} bytes) or unaligned");
            }

            if (header.DataOffset % VdiHeader.SectorSize != 0 || header.DataOffset < header.BlocksOffset + (header.BlocksInImage * 4L))
            {
                throw new ImageCorruptException(path, "data offset", 0x158, $"the data area at {header.DataOffset} is unaligned or overlaps the block map");
            }

            if (type == VdiImageType.Differencing && header.UuidLinkage == Guid.Empty)
            {
                throw new ImageCorruptException(path, "parent uuid", 0x1A8, "a differencing image without a parent UUID");
            }

            if (type != VdiImageType.Differencing && header.UuidLinkage != Guid.Empty)
            {
                throw new ImageNotSupportedException(path, "parent uuid", 0x1A8, $"image type {type} records a parent UUID");
            }
        }

        /// <summary>Entries past the data area's block count, or two entries naming one data block (qemu vdi_check).</summary>
        private void FindBadBlocks()
        {
            var owner = new Dictionary<uint, long>();
            for (long i = 0; i < _map.Length; i++)
            {
                uint entry = _map[i];
                if (entry >= VdiHeader.Zero)
                {
                    continue;
                }

                if (entry >= _header.BlocksInImage)
                {
                    _badBlocks.Add(i);
                }
                else if (owner.TryGetValue(entry, out long first))
                {
                    _badBlocks.Add(i);
                    _badBlocks.Add(first);
                }
                else
                {
                    owner[entry] = i;
                    _nextDataIndex = Math.Max(_nextDataIndex, entry + 1);
                }
            }

            _nextDataIndex = Math.Max(_nextDataIndex, Math.Min(_header.BlocksAllocated, _header.BlocksInImage));
        }

        public override BlockStatus GetBlockStatus(long offset, long maxLength)
        {
            maxLength = Math.Min(maxLength, _size - offset);
            long end = offset + maxLength;
            long blockSize = BlockSize;
            long block = offset / blockSize;
            uint entry = _map[block];
            if (entry >= VdiHeader.Zero)
            {
                // Merge the following blocks of the same kind.
                long next = block + 1;
                while (next * blockSize < end && _map[next] == entry)
                {
                    next++;
                }

                return new BlockStatus(offset, Math.Min(end, next * blockSize) - offset, entry == VdiHeader.Zero ? ExtentKind.Zero : ExtentKind.Unallocated);
            }

            ThrowIfBad(block);
            long host = DataHost(entry) + (offset - (block * blockSize));
            long runEnd = Math.Min(end, (block + 1) * blockSize);

            // Consecutive data indices are contiguous in the file: one run.
            long b = block + 1;
            while (runEnd < end && _map[b] < VdiHeader.Zero && _map[b] == entry + (b - block) && !_badBlocks.Contains(b))
            {
                runEnd = Math.Min(end, (b + 1) * blockSize);
                b++;
            }

            return new BlockStatus(offset, runEnd - offset, ExtentKind.Data, host);
        }

        public override void Describe(VDiskInfo info)
        {
            info.Subformat = _header.ImageType == VdiImageType.Static ? "static" : IsDifferencing ? "differencing" : "dynamic";
            info.DiskIdentifier = _header.UuidCreate;
            info.FormatSpecific["image-type"] = info.Subformat;
            info.FormatSpecific["uuid"] = _header.UuidCreate.ToString();
            info.FormatSpecific["modification-uuid"] = _header.UuidModify.ToString();
            if (IsDifferencing)
            {
                info.FormatSpecific["parent-uuid"] = _header.UuidLinkage.ToString();
                info.FormatSpecific["parent-modification-uuid"] = _header.UuidParentModify.ToString();
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

        private long DataHost(uint entry) => _header.DataOffset + (entry * BlockSize);

        private void ThrowIfBad(long block)
        {
            if (_badBlocks.Contains(block))
            {
                throw new ImageCorruptException(Path, $"block map entry {block}", _header.BlocksOffset + (block * 4),
                    $"data block {_map[block]} is out of range or used twice") { Kind = ImageErrorKind.DamageNeedsCheck };
            }
        }

        /// <summary>A differencing image names its parent by UUID: look for it among the images beside it.</summary>
        private BackingReference FindParent(OpenOptions options)
        {
            Guid wanted = _header.UuidLinkage;
            if (Transports.IsRemote(Path))
            {
                throw new ImageChainException(Path, "parent uuid",
                    $"a differencing VDI names its parent only by UUID ({wanted:B}), and the folder of a remote location cannot be listed to find it; copy the chain into a local folder and read it there");
            }

            string dir = System.IO.Path.GetDirectoryName(Path) ?? ".";
            var folders = new List<(string Dir, string Prefix)> { (dir, string.Empty) };
            string up = System.IO.Path.GetDirectoryName(dir);
            if (options.AllowExternalPaths && !string.IsNullOrEmpty(up))
            {
                folders.Add((up, ".." + System.IO.Path.DirectorySeparatorChar));
            }

            int scanned = 0;
            foreach (var (folder, prefix) in folders)
            {
                IEnumerable<string> files;
                try
                {
                    files = Directory.EnumerateFiles(folder, "*.vdi");
                }
                catch (Exception e) when (e is IOException || e is UnauthorizedAccessException)
                {
                    continue;
                }

                foreach (string candidate in files)
                {
                    if (++scanned > MaxParentCandidates)
                    {
                        break;
                    }

                    if (ImageChain.PathComparer.Equals(System.IO.Path.GetFullPath(candidate), Path))
                    {
                        continue;
                    }

                    if (ReadImageUuid(candidate) == wanted)
                    {
                        return new BackingReference(prefix + System.IO.Path.GetFileName(candidate), VdiDriver.Id);
                    }
                }
            }

            throw new ImageChainException(Path, "parent uuid", $"the parent image {{{wanted}}} was not found among the VDI images in '{dir}' or its parent folder");
        }

        private static Guid? ReadImageUuid(string path)
        {
            try
            {
                using (var file = HostFile.Open(path, HostAccess.ReadIgnoringWriters))
                {
                    var raw = new byte[VdiHeader.Length];
                    if (file.ReadAt(0, raw) != raw.Length || !VdiHeader.HasSignature(raw))
                    {
                        return null;
                    }

                    return VdiHeader.FromBytes(raw).UuidCreate;
                }
            }
            catch (ImageException)
            {
                return null;
            }
        }
    }
}
