using System;
using System.Collections.Generic;
using System.IO;
using VDiskPS;

namespace VDiskPS.Formats.Vdi
{
    /// <summary>
    /// VirtualBox VDI: dynamic, static (qemu's static=on, Type Fixed) and differencing images
    /// (VirtualBox snapshots; a parent given by CreateRequest.Backing must be a VDI).
    /// </summary>
    public sealed class VdiDriver : FormatDriver, ICreatableDriver
    {
        public const string StaticOption = "static";

        private static readonly CreateOption[] s_optionNames =
        {
            new CreateOption("size", CreateOptionKind.Size, "virtual size"),
            new CreateOption(StaticOption, CreateOptionKind.Bool, "preallocate every block (a fixed image)"),
        };

        /// <summary>The vdi format's identity.</summary>
        public static readonly DiskFormat Id = new DiskFormat("vdi");

        public override DiskFormat Format => Id;

        public override string Description => "VirtualBox disk image";

        public override IReadOnlyList<string> Extensions { get; } = new[] { ".vdi" };

        public override IReadOnlyList<CreateOption> CreateOptions => s_optionNames;

        public override bool HasAllocationTypes => true;

        public override int Probe(ProbeContext context) => VdiHeader.HasSignature(context.Head) ? 100 : 0;

        public override ImageLayer Open(HostFile file, OpenOptions options) => DisposingOnFailure(file, () => VdiLayer.Open(file, options));

        public ImageLayer Create(string path, CreateRequest request)
        {
            var plan = Plan(path, request);
            VdiLayer parent = null;
            if (plan.Type == VdiImageType.Differencing)
            {
                if (request.BackingLayer == null)
                {
                    throw new ImageOptionException(path, "backing file", "a differencing VDI records its parent's UUID, so the parent must be opened") { Kind = ImageErrorKind.ParentMustBeOpened };
                }

                parent = request.BackingLayer as VdiLayer
                    ?? throw new ImageOptionException(path, "backing file", $"the parent of a differencing VDI must be a VDI, not {request.BackingLayer.Format.ToName()}");
            }

            var file = request.CreateFile(path);
            try
            {
                return VdiLayer.Create(file, plan.Size, plan.Type, parent, plan.Preallocation);
            }
            catch
            {
                file.Dispose();
                File.Delete(file.Path);
                throw;
            }
        }

        public bool SupportsCompression(CreateRequest request) => false;

        public VDiskMeasurement Measure(CreateRequest request, long allocatedBytes)
        {
            var plan = Plan(null, request);
            long blockSize = VdiLayer.DefaultBlockSize;
            long blocks = (plan.Size + blockSize - 1) / blockSize;
            long overhead = VdiHeader.Length + VdiLayer.RoundUp(blocks * 4, VdiHeader.SectorSize);
            long full = overhead + (blocks * blockSize);
            long used = Math.Min(blocks, (Math.Max(0, allocatedBytes) + blockSize - 1) / blockSize);
            return new VDiskMeasurement
            {
                Format = "vdi",
                Required = plan.Type == VdiImageType.Static ? full : overhead + (used * blockSize),
                FullyAllocated = full,
            };
        }

        private sealed class CreatePlan
        {
            public long Size;
            public VdiImageType Type;
            public Preallocation Preallocation;
        }

        private static CreatePlan Plan(string path, CreateRequest request)
        {
            OptionSet options = request.Options.Clone();
            long size = options.GetSize("size") ?? request.Size;
            bool? isStatic = options.GetBool(StaticOption);
            if (request.Subformat != null)
            {
                string dedicated = request.Subformat.Trim().ToLowerInvariant();
                bool? wanted = dedicated == "static" || dedicated == "fixed" ? true : dedicated == "dynamic" ? false : (bool?)null;
                if (wanted == null || (isStatic != null && isStatic != wanted))
                {
                    throw new ImageOptionException(path, StaticOption, $"'{request.Subformat}' is not a VDI subformat (dynamic or static), or disagrees with the static option");
                }

                isStatic = wanted;
            }

            options.RejectUnknown("vdi", s_optionNames);
            if ((isStatic == true && request.Type == DiskType.Dynamic) || (isStatic == false && request.Type == DiskType.Fixed))
            {
                throw new ImageOptionException(path, StaticOption, "the disk type and the static option disagree");
            }

            VdiImageType type = request.Backing != null || request.Type == DiskType.Differencing ? VdiImageType.Differencing
                : isStatic == true || request.Type == DiskType.Fixed ? VdiImageType.Static : VdiImageType.Dynamic;
            if (type == VdiImageType.Differencing && (isStatic == true || request.Backing == null))
            {
                throw new ImageOptionException(path, StaticOption, request.Backing == null ? "a differencing VDI needs a parent" : "a differencing VDI cannot be static");
            }

            if (request.Backing?.Format != null && request.Backing.Format != VdiDriver.Id)
            {
                throw new ImageOptionException(path, "backing format", $"the parent of a differencing VDI must be a VDI, not {request.Backing.Format.Value.ToName()}");
            }

            if (request.ClusterSize.HasValue && request.ClusterSize != VdiLayer.DefaultBlockSize)
            {
                throw new ImageOptionException(path, "block size", "VDI blocks are 1 MiB (the only size qemu and VirtualBox read)");
            }

            if (size < 0)
            {
                throw new ImageOptionException(path, "size", "the size must not be negative");
            }

            size = VdiLayer.RoundUp(size, VdiHeader.SectorSize);
            if (size / VdiLayer.DefaultBlockSize > VdiLayer.MaxBlocksInImage)
            {
                throw new ImageOptionException(path, "size", $"{size} bytes is beyond the VDI limit of {VdiLayer.MaxBlocksInImage} blocks of 1 MiB");
            }

            // Asking for a Fixed disk (as New-VHD -Fixed does) reserves its space; the qemu option alone stays sparse, as in qemu.
            Preallocation preallocation = request.Preallocation ?? (request.Type == DiskType.Fixed && type == VdiImageType.Static ? Preallocation.Falloc : Preallocation.Off);
            if (type != VdiImageType.Static && preallocation != Preallocation.Off)
            {
                throw new ImageOptionException(path, "preallocation", "dynamic VDIs grow as written; use static=on (Type Fixed) to preallocate");
            }

            if (preallocation == Preallocation.Metadata)
            {
                throw new ImageOptionException(path, "preallocation", "a static VDI has its metadata complete already; use off, falloc or full");
            }

            return new CreatePlan { Size = size, Type = type, Preallocation = preallocation };
        }
    }
}
