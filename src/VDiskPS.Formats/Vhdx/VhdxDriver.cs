using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.Text;
using VDiskPS;

namespace VDiskPS.Formats.Vhdx
{
    /// <summary>Hyper-V VHDX images ([MS-VHDX]): probing, opening, creating and measuring.</summary>
    public sealed class VhdxDriver : FormatDriver, ICreatableDriver, Attach.IWindowsAttachableDriver
    {
        private const string Creator = "VDiskPS";

        internal static readonly CreateOption[] OptionTable =
        {
            new CreateOption("size", CreateOptionKind.Size, "virtual size"),
            new CreateOption("subformat", CreateOptionKind.Choice, "dynamic or fixed", "dynamic", "fixed"),
            new CreateOption("block_size", CreateOptionKind.Size, "block size, 1 MiB to 256 MiB"),
            new CreateOption("log_size", CreateOptionKind.Size, "log size, a multiple of 1 MiB"),
            new CreateOption("block_state_zero", CreateOptionKind.Bool, "mark new blocks as zero (BAT state ZERO)"),
            new CreateOption("logical_sector_size", CreateOptionKind.Choice, "512 or 4096", "512", "4096"),
        };

        /// <summary>The vhdx format's identity.</summary>
        public static readonly DiskFormat Id = new DiskFormat("vhdx");

        public override DiskFormat Format => Id;

        public override string Description => "Hyper-V VHDX";

        public override IReadOnlyList<string> Extensions { get; } = new[] { ".vhdx", ".avhdx" };

        public override IReadOnlyList<CreateOption> CreateOptions => OptionTable;

        /// <summary>New-VHD's choices for a new VHDX: 32 MiB blocks and 4096-byte physical sectors.</summary>
        public override void ApplyHyperVDefaults(CreateRequest request)
        {
            if (!request.ClusterSize.HasValue && !request.Options.Contains("block_size"))
            {
                request.ClusterSize = 32L * 1024 * 1024;
            }

            request.PhysicalSectorSize = request.PhysicalSectorSize ?? 4096;
        }

        public override IReadOnlyList<string> Subformats { get; } = new[] { "dynamic", "fixed" };

        public override bool HasAllocationTypes => true;

        /// <summary>VIRTUAL_STORAGE_TYPE_DEVICE_VHDX.</summary>
        public uint VirtualStorageDeviceId => 3;

        public override int Probe(ProbeContext context)
            => context.Head.Length >= 8 && BinaryPrimitives.ReadUInt64LittleEndian(context.Head) == VhdxConstants.FileSignature ? 100 : 0;

        public override ImageLayer Open(HostFile file, OpenOptions options) => VhdxLayer.Open(file, options);

        public ImageLayer Create(string path, CreateRequest request)
        {
            VhdxCreateOptions options = VhdxCreateOptions.From(path, request);
            HostFile file = request.CreateFile(path);
            try
            {
                WriteNewImage(file, options);
                return VhdxLayer.OpenCreated(file);
            }
            catch
            {
                file.Dispose();
                System.IO.File.Delete(file.Path);
                throw;
            }
        }

        public bool SupportsCompression(CreateRequest request) => false;

        public VDiskMeasurement Measure(CreateRequest request, long allocatedBytes)
        {
            VhdxCreateOptions options = VhdxCreateOptions.From(null, request);
            VhdxLayout layout = VhdxLayout.For(options);
            long fully = layout.DataStart + (layout.DataBlocks * options.BlockSize);
            long allocated = Math.Min(AlignUp(allocatedBytes, options.BlockSize), layout.DataBlocks * options.BlockSize);
            return new VDiskMeasurement
            {
                Format = "vhdx",
                Required = options.Type == DiskType.Fixed ? fully : layout.DataStart + allocated,
                FullyAllocated = fully,
            };
        }

        private static long AlignUp(long value, long unit) => (value + unit - 1) / unit * unit;

        /// <summary>Lays the image out as [MS-VHDX] 2.1 describes: header section, log, BAT, metadata, then payload.</summary>
        private static void WriteNewImage(HostFile file, VhdxCreateOptions options)
        {
            VhdxLayout layout = VhdxLayout.For(options);

            var identifier = new byte[8 + (Creator.Length * 2)];
            BinaryPrimitives.WriteUInt64LittleEndian(identifier, VhdxConstants.FileSignature);
            Encoding.Unicode.GetBytes(Creator).CopyTo(identifier, 8);
            file.WriteAt(VhdxConstants.FileIdentifierOffset, identifier);

            var header = new VhdxHeader
            {
                FileWriteGuid = Guid.NewGuid(),
                DataWriteGuid = Guid.NewGuid(),
                LogGuid = Guid.Empty,
                LogLength = (uint)options.LogSize,
                LogOffset = layout.LogOffset,
            };
            var block = new byte[VhdxConstants.HeaderLength];
            header.WriteTo(block);
            file.WriteAt(VhdxConstants.Header1Offset, block);
            header.SequenceNumber = 1;
            header.WriteTo(block);
            file.WriteAt(VhdxConstants.Header2Offset, block);

            var regions = new List<VhdxRegion>
            {
                new VhdxRegion { Id = VhdxConstants.BatRegion, FileOffset = layout.BatOffset, Length = layout.BatLength, Required = true },
                new VhdxRegion { Id = VhdxConstants.MetadataRegion, FileOffset = layout.MetadataOffset, Length = layout.MetadataLength, Required = true },
            };
            byte[] regionTable = VhdxRegionTable.Build(regions);
            file.WriteAt(VhdxConstants.RegionTable1Offset, regionTable);
            file.WriteAt(VhdxConstants.RegionTable2Offset, regionTable);

            WriteBat(file, options, layout);

            var metadata = new VhdxMetadata
            {
                BlockSize = (uint)options.BlockSize,
                LeaveBlocksAllocated = options.Type == DiskType.Fixed,
                HasParent = options.Type == DiskType.Differencing,
                VirtualSize = options.Size,
                Page83Data = options.DiskIdentifier,
                LogicalSectorSize = options.LogicalSectorSize,
                PhysicalSectorSize = options.PhysicalSectorSize,
                ParentLocator = options.ParentLocator,
            };
            metadata.OtherItems.AddRange(options.InheritedItems);
            file.WriteAt(layout.MetadataOffset, metadata.Build(layout.MetadataLength));

            long end = layout.DataStart;
            if (options.Type == DiskType.Fixed)
            {
                end += layout.DataBlocks * options.BlockSize;
                file.Preallocate(layout.DataStart, end - layout.DataStart, options.Preallocation ?? Preallocation.Off);
            }

            file.SetLength(end);
            file.Flush();
        }

        private static void WriteBat(HostFile file, VhdxCreateOptions options, VhdxLayout layout)
        {
            int payloadState = options.Type == DiskType.Fixed && !options.BlockStateZeroGiven ? BatState.FullyPresent
                : options.BlockStateZero && options.Type != DiskType.Differencing ? BatState.Zero
                : BatState.NotPresent;
            if (payloadState == BatState.NotPresent)
            {
                // A fresh file reads as zeros: every entry NOT_PRESENT.
                return;
            }

            var bat = new byte[Math.Min(layout.BatLength, 4 * VhdxConstants.MiB)];
            long entriesPerChunk = bat.Length / 8;
            for (long firstEntry = 0; firstEntry < layout.BatEntries; firstEntry += entriesPerChunk)
            {
                Array.Clear(bat, 0, bat.Length);
                long count = Math.Min(entriesPerChunk, layout.BatEntries - firstEntry);
                for (long i = 0; i < count; i++)
                {
                    long index = firstEntry + i;
                    if (index % (layout.ChunkRatio + 1) == layout.ChunkRatio)
                    {
                        continue;
                    }

                    long dataBlock = index - (index / (layout.ChunkRatio + 1));
                    long host = payloadState == BatState.FullyPresent ? layout.DataStart + (dataBlock * options.BlockSize) : 0;
                    BinaryPrimitives.WriteUInt64LittleEndian(bat.AsSpan((int)(i * 8)), BatState.Make(payloadState, host));
                }

                file.WriteAt(layout.BatOffset + (firstEntry * 8), bat.AsSpan(0, (int)(count * 8)));
            }
        }
    }

    /// <summary>Where a new image's structures go.</summary>
    internal sealed class VhdxLayout
    {
        public long LogOffset { get; private set; }

        public long BatOffset { get; private set; }

        public long BatLength { get; private set; }

        public long BatEntries { get; private set; }

        public long ChunkRatio { get; private set; }

        public long MetadataOffset { get; private set; }

        public long MetadataLength { get; private set; }

        public long DataStart { get; private set; }

        public long DataBlocks { get; private set; }

        public static VhdxLayout For(VhdxCreateOptions options)
        {
            long mib = VhdxConstants.MiB;
            long chunkRatio = VhdxConstants.SectorsPerBitmapBlock * options.LogicalSectorSize / options.BlockSize;
            long dataBlocks = (options.Size + options.BlockSize - 1) / options.BlockSize;
            long entries = options.Type == DiskType.Differencing
                ? (dataBlocks + chunkRatio - 1) / chunkRatio * (chunkRatio + 1)
                : dataBlocks + Math.Max(0, (dataBlocks - 1) / chunkRatio);
            var layout = new VhdxLayout
            {
                LogOffset = VhdxConstants.HeaderSectionLength,
                ChunkRatio = chunkRatio,
                DataBlocks = dataBlocks,
                BatEntries = entries,
                BatLength = Math.Max(mib, (entries * 8 + mib - 1) / mib * mib),
                MetadataLength = mib,
            };
            layout.BatOffset = layout.LogOffset + options.LogSize;
            layout.MetadataOffset = layout.BatOffset + layout.BatLength;
            layout.DataStart = layout.MetadataOffset + layout.MetadataLength;
            return layout;
        }
    }
}
