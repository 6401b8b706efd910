using System;
using System.Collections.Generic;

namespace VDiskPS.Formats.Vhdx
{
    /// <summary>The create options qemu-img knows for vhdx (size, subformat, block_size, log_size, block_state_zero) plus logical_sector_size.</summary>
    internal sealed class VhdxCreateOptions
    {
        public long Size { get; private set; }

        public DiskType Type { get; private set; }

        public long BlockSize { get; private set; }

        public long LogSize { get; private set; }

        public bool BlockStateZero { get; private set; }

        /// <summary>Whether block_state_zero was given (qemu's default "on" would make a fixed image's BAT all ZERO).</summary>
        public bool BlockStateZeroGiven { get; private set; }

        public int LogicalSectorSize { get; private set; }

        public int PhysicalSectorSize { get; private set; }

        public Preallocation? Preallocation { get; private set; }

        public List<KeyValuePair<string, string>> ParentLocator { get; private set; }

        /// <summary>The virtual disk ID: new, or the parent's for a child ([MS-VHDX] 2.6.1.2: forking copies virtual disk metadata).</summary>
        public Guid DiskIdentifier { get; private set; } = Guid.NewGuid();

        public List<(Guid Id, uint Flags, byte[] Data)> InheritedItems { get; } = new List<(Guid, uint, byte[])>();


        public static VhdxCreateOptions From(string path, CreateRequest request)
        {
            OptionSet set = request.Options.Clone();
            var result = new VhdxCreateOptions();
            string subformat = set.GetChoice("subformat", "dynamic", "fixed");
            long? blockSize = set.GetSize("block_size", 0, VhdxConstants.MaxBlockSize);
            long? logSize = set.GetSize("log_size", 0, uint.MaxValue - VhdxConstants.MiB);
            bool? blockStateZero = set.GetBool("block_state_zero");
            int? logical = set.GetInt("logical_sector_size");
            long size = set.GetSize("size") ?? request.Size;
            set.RejectUnknown("vhdx", VhdxDriver.OptionTable);

            bool differencing = request.Backing != null || request.Type == DiskType.Differencing;
            DiskType type = differencing ? DiskType.Differencing
                : subformat == "fixed" ? DiskType.Fixed
                : subformat == "dynamic" ? DiskType.Dynamic
                : request.Type ?? (request.Preallocation == Formats.Preallocation.Full || request.Preallocation == Formats.Preallocation.Falloc ? DiskType.Fixed : DiskType.Dynamic);
            if (request.Type.HasValue && subformat != null && request.Type.Value.ToString().ToLowerInvariant() != subformat)
            {
                throw new ImageOptionException(path, "subformat", $"subformat={subformat} contradicts the disk type {request.Type.Value}");
            }

            if (differencing && (subformat != null || request.Backing == null))
            {
                throw new ImageOptionException(path, request.Backing == null ? "backing" : "subformat", request.Backing == null
                    ? "a differencing image needs a parent"
                    : "a differencing image has no subformat");
            }

            if (request.Preallocation.HasValue && request.Preallocation != Formats.Preallocation.Off && type != DiskType.Fixed)
            {
                throw new ImageOptionException(path, "preallocation", $"vhdx preallocates only fixed images; a {type.ToString().ToLowerInvariant()} image allocates blocks as they are written");
            }

            if (request.ClusterSize.HasValue && blockSize.HasValue && request.ClusterSize.Value != blockSize.Value)
            {
                throw new ImageOptionException(path, "block_size", $"block_size={blockSize} contradicts the block size {request.ClusterSize}");
            }

            if (request.LogicalSectorSize.HasValue && logical.HasValue && request.LogicalSectorSize.Value != logical.Value)
            {
                throw new ImageOptionException(path, "logical_sector_size", $"logical_sector_size={logical} contradicts the logical sector size {request.LogicalSectorSize}");
            }

            var parent = request.BackingLayer as VhdxLayer;
            result.Type = type;
            result.Preallocation = request.Preallocation;
            result.LogicalSectorSize = logical ?? request.LogicalSectorSize ?? parent?.LogicalSectorSize ?? 512;
            result.PhysicalSectorSize = request.PhysicalSectorSize ?? parent?.PhysicalSectorSize ?? 512;
            RequireSectorSize(path, "logical_sector_size", result.LogicalSectorSize);
            RequireSectorSize(path, "physical_sector_size", result.PhysicalSectorSize);
            if (parent != null && parent.LogicalSectorSize != result.LogicalSectorSize)
            {
                throw new ImageOptionException(path, "logical_sector_size", $"the parent has {parent.LogicalSectorSize}-byte logical sectors; a child must have the same");
            }

            if (size < 0 || size > VhdxConstants.MaxVirtualSize)
            {
                throw new ImageOptionException(path, "size", $"{size} bytes is outside 0 to 64 TiB");
            }

            // Like qemu: the size is rounded up to whole sectors.
            result.Size = (size + result.LogicalSectorSize - 1) / result.LogicalSectorSize * result.LogicalSectorSize;

            long block = blockSize ?? request.ClusterSize ?? 0;
            if (block == 0)
            {
                block = parent?.ClusterSize ?? DefaultBlockSize(result.Size);
            }

            if (block < VhdxConstants.MinBlockSize || block > VhdxConstants.MaxBlockSize || (block & (block - 1)) != 0)
            {
                throw new ImageOptionException(path, "block_size", $"{block} is not a power of two from 1 MiB to 256 MiB");
            }

            result.BlockSize = block;
            long log = logSize ?? VhdxConstants.MiB;
            result.LogSize = Math.Max(VhdxConstants.MiB, (log + VhdxConstants.MiB - 1) / VhdxConstants.MiB * VhdxConstants.MiB);
            if (result.LogSize > VhdxConstants.MaxLogLength)
            {
                throw new ImageOptionException(path, "log_size", $"{log} exceeds the {VhdxConstants.MaxLogLength}-byte limit");
            }

            result.BlockStateZeroGiven = blockStateZero.HasValue;
            result.BlockStateZero = blockStateZero ?? true;
            if (parent != null)
            {
                result.DiskIdentifier = parent.DiskIdentifier;
                result.InheritedItems.AddRange(parent.VirtualDiskItems);
            }

            if (differencing && path != null)
            {
                Guid linkage = VhdxLayer.ParentLinkageFor(request.Backing, request.BackingLayer, path);
                result.ParentLocator = VhdxLayer.BuildParentLocator(request.Backing.RecordedPath, path, linkage);
            }

            return result;
        }

        /// <summary>qemu's automatic block size: 8 MiB up to 1 GiB, 16 MiB to 100 GiB, 32 MiB to 32 TiB, then 64 MiB.</summary>
        private static long DefaultBlockSize(long size)
        {
            const long GiB = 1024 * VhdxConstants.MiB;
            return size > 32 * 1024 * GiB ? 64 * VhdxConstants.MiB
                : size > 100 * GiB ? 32 * VhdxConstants.MiB
                : size > GiB ? 16 * VhdxConstants.MiB
                : 8 * VhdxConstants.MiB;
        }

        private static void RequireSectorSize(string path, string option, int value)
        {
            if (value != 512 && value != 4096)
            {
                throw new ImageOptionException(path, option, $"{value} is neither 512 nor 4096");
            }
        }
    }
}
