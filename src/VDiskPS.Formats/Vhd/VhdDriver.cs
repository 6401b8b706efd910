using System;
using System.Collections.Generic;
using System.IO;
using VDiskPS;

namespace VDiskPS.Formats.Vhd
{
    /// <summary>
    /// VHD (qemu's "vpc"): fixed, dynamic and differencing disks. Create options are qemu's
    /// (subformat=dynamic|fixed, force_size=on|off) plus azure=on (a fixed disk of whole MiB, the
    /// form Azure accepts) and azure_round=up|refuse.
    /// </summary>
    public sealed class VhdDriver : FormatDriver, ICreatableDriver, Attach.IWindowsAttachableDriver
    {
        public const string SubformatOption = "subformat";
        public const string ForceSizeOption = "force_size";
        public const string AzureOption = "azure";
        public const string AzureRoundOption = "azure_round";

        private const long MiB = 1 << 20;
        private const int DefaultBlockSize = 2 << 20;

        private static readonly CreateOption[] s_optionNames =
        {
            new CreateOption("size", CreateOptionKind.Size, "virtual size"),
            new CreateOption(SubformatOption, CreateOptionKind.Choice, "dynamic or fixed", "dynamic", "fixed"),
            new CreateOption(ForceSizeOption, CreateOptionKind.Bool, "keep the exact size instead of rounding to the CHS geometry"),
            new CreateOption(AzureOption, CreateOptionKind.Bool, "a fixed VHD whose size is a whole number of MiB, as Azure requires"),
            new CreateOption(AzureRoundOption, CreateOptionKind.Bool, "round the size up to a whole MiB for Azure"),
        };

        /// <summary>The vhd format's identity.</summary>
        public static readonly DiskFormat Id = new DiskFormat("vhd");

        public override DiskFormat Format => Id;

        public override string QemuName => "vpc";

        public override string Description => "Microsoft Virtual PC / Hyper-V VHD";

        public override IReadOnlyList<string> Extensions { get; } = new[] { ".vhd", ".avhd" };

        public override IReadOnlyList<CreateOption> CreateOptions => s_optionNames;

        /// <summary>
        /// The size Azure accepts for <paramref name="requested"/> bytes: a whole number of MiB. Rounds
        /// up (with a warning for the caller to show) or refuses; null warning when nothing changed.
        /// </summary>
        public static long AzureSize(long requested, bool roundUp, out string warning)
        {
            warning = null;
            if (requested % MiB == 0 && requested > 0)
            {
                return requested;
            }

            long rounded = Math.Max(MiB, (requested + MiB - 1) / MiB * MiB);
            if (!roundUp)
            {
                throw new ImageOptionException(null, "size", $"Azure needs a size that is a whole number of MiB; {requested} bytes is not (use {rounded}, or azure_round=up)");
            }

            warning = $"the size was rounded up from {requested} to {rounded} bytes, a whole number of MiB as Azure requires";
            return rounded;
        }

        /// <summary>Footer at 0 (dynamic, differencing) or in the last 512 bytes (fixed).</summary>
        public override IReadOnlyList<string> Subformats { get; } = new[] { "dynamic", "fixed" };

        public override bool HasAllocationTypes => true;

        /// <summary>VHD has no zero marker, so reclaiming a block needs its content read (Full).</summary>
        public override OptimizeMode DefaultOptimizeMode => OptimizeMode.Full;

        /// <summary>VIRTUAL_STORAGE_TYPE_DEVICE_VHD.</summary>
        public uint VirtualStorageDeviceId => 2;

        public override int Probe(ProbeContext context)
        {
            if (VhdFooter.HasCookie(context.Head))
            {
                return 100;
            }

            if (context.Tail.Length == VhdFooter.Length && VhdFooter.HasCookie(context.Tail))
            {
                uint stored = System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(context.Tail.AsSpan(VhdFooter.ChecksumOffset));
                return stored == VhdFooter.ComputeChecksum(context.Tail, VhdFooter.ChecksumOffset) ? 100 : 50;
            }

            return 0;
        }

        public override ImageLayer Open(HostFile file, OpenOptions options) => DisposingOnFailure(file, () => VhdLayer.Open(file, options));

        public ImageLayer Create(string path, CreateRequest request)
        {
            var plan = Plan(path, request);
            if (plan.Differencing && request.BackingLayer != null && !(request.BackingLayer is VhdLayer))
            {
                throw new ImageOptionException(path, "backing file", $"the parent of a differencing VHD must be a VHD, not {request.BackingLayer.Format.ToName()}");
            }

            var footer = new VhdFooter
            {
                Timestamp = VhdFooter.Now(),
                UniqueId = VhdFooter.NewUniqueId(),
                OriginalSize = (ulong)plan.Size,
            };
            footer.SetSize(plan.Size);
            var file = request.CreateFile(path);
            try
            {
                if (plan.Fixed)
                {
                    return VhdLayer.CreateFixed(file, footer, plan.Size, plan.Preallocation);
                }

                VhdLayer.ParentPaths parentPaths = plan.Differencing ? new VhdLayer.ParentPaths(path, request.Backing) : null;
                return VhdLayer.CreateDynamic(file, footer, plan.Size, plan.BlockSize, parentPaths, request.BackingLayer as VhdLayer);
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
            if (plan.Fixed)
            {
                return new VDiskMeasurement { Format = "vpc", Required = plan.Size + VhdFooter.Length, FullyAllocated = plan.Size + VhdFooter.Length };
            }

            long entries = Math.Max(1, (plan.Size + plan.BlockSize - 1) / plan.BlockSize);
            long overhead = VhdFooter.Length + VhdDynamicHeader.Length + VhdLayer.RoundUp(entries * 4, 512) + VhdFooter.Length + (plan.Differencing ? 2 * 4096 : 0);
            long span = VhdLayer.BitmapBytes(plan.BlockSize) + (long)plan.BlockSize;
            long usedBlocks = Math.Min(entries, (Math.Max(0, allocatedBytes) + plan.BlockSize - 1) / plan.BlockSize);
            return new VDiskMeasurement { Format = "vpc", Required = overhead + (usedBlocks * span), FullyAllocated = overhead + (entries * span) };
        }

        private sealed class CreatePlan
        {
            public long Size;
            public bool Fixed;
            public bool Differencing;
            public int BlockSize;
            public Preallocation Preallocation;
        }

        /// <summary>Reads and cross-checks the dedicated fields and the options.</summary>
        private static CreatePlan Plan(string path, CreateRequest request)
        {
            OptionSet options = request.Options.Clone();
            long size = options.GetSize("size") ?? request.Size;
            string subformat = options.GetChoice(SubformatOption, "dynamic", "fixed");
            if (request.Subformat != null)
            {
                string dedicated = request.Subformat.Trim().ToLowerInvariant();
                if ((dedicated != "dynamic" && dedicated != "fixed") || (subformat != null && subformat != dedicated))
                {
                    throw new ImageOptionException(path, SubformatOption, $"'{request.Subformat}' is not a VHD subformat (dynamic or fixed), or disagrees with the subformat option");
                }

                subformat = dedicated;
            }

            bool? forceSize = options.GetBool(ForceSizeOption);
            bool azure = options.GetBool(AzureOption) ?? false;
            string azureRound = options.GetChoice(AzureRoundOption, "up", "refuse");
            options.RejectUnknown("vpc", s_optionNames);

            bool differencing = request.Backing != null || request.Type == DiskType.Differencing;
            if (differencing && request.Backing == null)
            {
                throw new ImageOptionException(path, "backing file", "a differencing VHD needs a parent");
            }

            if (request.Backing?.Format != null && request.Backing.Format != VhdDriver.Id)
            {
                throw new ImageOptionException(path, "backing format", $"the parent of a differencing VHD must be a VHD, not {request.Backing.Format.Value.ToName()}");
            }

            bool fixedType = request.Type == DiskType.Fixed || subformat == "fixed" || azure;
            if ((request.Type == DiskType.Dynamic && subformat == "fixed") || (request.Type == DiskType.Fixed && subformat == "dynamic") || (azure && subformat == "dynamic"))
            {
                throw new ImageOptionException(path, SubformatOption, "the disk type and subformat disagree");
            }

            if (differencing && (fixedType || subformat != null))
            {
                throw new ImageOptionException(path, SubformatOption, "a differencing VHD is dynamic by nature; do not ask for a fixed or dynamic subformat");
            }

            if (azureRound != null && !azure)
            {
                throw new ImageOptionException(path, AzureRoundOption, "azure_round only applies with azure=on");
            }

            if (size < 0)
            {
                throw new ImageOptionException(path, "size", "the size must not be negative");
            }

            // VHD sizes are whole sectors.
            size = VhdLayer.RoundUp(size, 512);
            if (azure)
            {
                size = AzureSize(size, azureRound != "refuse", out string warning);
                if (warning != null)
                {
                    request.Warnings.Add(warning);
                }
            }
            else if (forceSize == false)
            {
                // qemu's default: grow the size until the CHS geometry covers it, and use the geometry's size.
                long sectors = size / 512;
                for (long extra = 0; ; extra++)
                {
                    var (c, h, s) = VhdFooter.Geometry(sectors + extra);
                    long covered = (long)c * h * s;
                    if (covered >= sectors || (c == 65535 && h == 16 && s == 255))
                    {
                        size = Math.Max(size, covered * 512);
                        break;
                    }
                }
            }

            if (size > VhdFooter.MaxSize)
            {
                throw new ImageOptionException(path, "size", $"{size} bytes is beyond the VHD limit of 2040 GiB ({VhdFooter.MaxSize} bytes); use VHDX for larger disks");
            }

            long blockSize = request.ClusterSize ?? DefaultBlockSize;
            if (blockSize < 4096 || blockSize > VhdLayer.MaxBlockSize || (blockSize & (blockSize - 1)) != 0)
            {
                throw new ImageOptionException(path, "block size", $"{blockSize} is not a power of two between 4 KiB and 256 MiB (Hyper-V uses 512 KiB or 2 MiB)");
            }

            if (fixedType && request.ClusterSize.HasValue)
            {
                throw new ImageOptionException(path, "block size", "a fixed VHD has no blocks");
            }

            // Asking for a Fixed disk (as New-VHD -Fixed does) reserves its space; the qemu option alone stays sparse, as in qemu.
            Preallocation preallocation = request.Preallocation ?? (request.Type == DiskType.Fixed && fixedType ? Preallocation.Falloc : Preallocation.Off);
            if (!fixedType && preallocation != Preallocation.Off)
            {
                throw new ImageOptionException(path, "preallocation", "dynamic and differencing VHDs grow as written; preallocation applies to fixed disks");
            }

            if (preallocation == Preallocation.Metadata)
            {
                throw new ImageOptionException(path, "preallocation", "a fixed VHD has no metadata to preallocate; use off, falloc or full");
            }

            return new CreatePlan { Size = size, Fixed = fixedType, Differencing = differencing, BlockSize = (int)blockSize, Preallocation = preallocation };
        }
    }
}
