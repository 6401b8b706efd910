using System;
using System.Collections.Generic;
using System.IO;

namespace VDiskPS.Formats
{
    /// <summary>The creation parameters New-VDisk and Convert-VDisk share, as the user gave them.</summary>
    public class ImageParameters
    {
        public DiskFormat? Format { get; set; }

        public DiskType? Type { get; set; }

        public string Subformat { get; set; }

        /// <summary>The parent to record, as the user wrote it (relative paths are kept relative).</summary>
        public string ParentPath { get; set; }

        public DiskFormat? ParentFormat { get; set; }

        public long? ClusterSize { get; set; }

        public int? LogicalSectorSize { get; set; }

        public int? PhysicalSectorSize { get; set; }

        public Preallocation? Preallocation { get; set; }

        public CompressionType? CompressionType { get; set; }

        /// <summary>Encrypt the new image with this scheme (luks), where the format can; the password comes from <see cref="ImageSecrets"/>.</summary>
        public string Encryption { get; set; }

        /// <summary>A hashtable or "k=v,k=v" string of format options.</summary>
        public object Option { get; set; }

        public bool Force { get; set; }

        /// <summary>
        /// The CreateRequest these parameters describe for an image of <paramref name="format"/> (size left
        /// to the caller). Parameters that contradict each other or the format are refused, not ignored.
        /// </summary>
        public CreateRequest ToCreateRequest(string path, DiskFormat format)
        {
            bool hasParent = !string.IsNullOrEmpty(ParentPath);
            if (Type == DiskType.Differencing && !hasParent)
            {
                throw new ImageOptionException(path, "parent", "a differencing image needs a parent") { Kind = ImageErrorKind.ParentNotNamed };
            }

            if (Type == DiskType.Fixed && hasParent)
            {
                throw new ImageOptionException(path, "type", "an image with a parent is a differencing image, not a fixed one") { Kind = ImageErrorKind.FixedWithParent };
            }

            if (ParentFormat.HasValue && !hasParent)
            {
                throw new ImageOptionException(path, "parent format", "a parent format was given without a parent") { Kind = ImageErrorKind.ParentFormatWithoutParent };
            }

            if (LogicalSectorSize.HasValue && LogicalSectorSize != 512 && LogicalSectorSize != 4096)
            {
                throw new ImageOptionException(path, "logical sector size", "must be 512 or 4096");
            }

            if (PhysicalSectorSize.HasValue && PhysicalSectorSize != 512 && PhysicalSectorSize != 4096)
            {
                throw new ImageOptionException(path, "physical sector size", "must be 512 or 4096");
            }

            OptionSet options = OptionSet.From(Option);
            string subformat = Subformat;
            if (!string.IsNullOrEmpty(subformat))
            {
                // A subformat is the format's "subformat" create option (VMDK create types; VHD and VHDX
                // dynamic or fixed), which validates the value; the other formats have none.
                if (FormatRegistry.Default.Get(format).Subformats.Count == 0)
                {
                    var withSubformats = System.Linq.Enumerable.Where(FormatRegistry.Default.Drivers, d => d.Subformats.Count > 0 && d is ICreatableDriver);
                    throw new ImageOptionException(path, "subformat", $"{format.ToName()} images have no subformat; '{subformat}' is a subformat of another format (formats with subformats: {string.Join(", ", System.Linq.Enumerable.Select(withSubformats, d => d.Format.Name))})") { Kind = ImageErrorKind.SubformatNotApplicable };
                }

                if (options.Contains("subformat"))
                {
                    throw new ImageOptionException(path, "subformat", "the subformat is given twice");
                }

                options.Set("subformat", subformat);
                subformat = null;
            }

            return new CreateRequest
            {
                Type = Type == DiskType.Differencing ? (DiskType?)null : Type,
                Subformat = subformat,
                Backing = string.IsNullOrEmpty(ParentPath) ? null : new BackingReference(ParentPath, ParentFormat),
                ClusterSize = ClusterSize,
                LogicalSectorSize = LogicalSectorSize,
                PhysicalSectorSize = PhysicalSectorSize,
                Preallocation = Preallocation,
                CompressionType = CompressionType,
                Encryption = Encryption,
                Options = options,
                Overwrite = Force,
            };
        }
    }

    /// <summary>New-VDisk's parameters and the decisions made from them.</summary>
    public sealed class NewDiskPlan : ImageParameters
    {
        public string Path { get; set; }

        public long? Size { get; set; }

        /// <summary>Record the parent without opening it (qemu-img create -u).</summary>
        public bool Unsafe { get; set; }

        /// <summary>Fill the new image from this one (New-VHD -SourceDisk).</summary>
        public string SourcePath { get; set; }

        /// <summary>Give an image without a parent New-VHD's defaults where nothing was asked (for VHDX: 32 MiB blocks, 4096-byte physical sectors).</summary>
        public bool HyperVDefaults { get; set; }

        public DiskFormat ResolveFormat() => PathPlanner.FormatForNewFile(Path, Format);

        /// <summary>What the format changed from what was asked, after <see cref="Execute"/>.</summary>
        public IList<string> Warnings { get; } = new List<string>();

        /// <summary>Refuses what cannot work before anything is created: contradictions first, then an existing file.</summary>
        public CreateRequest BuildRequest()
        {
            CreateRequest request = ToCreateRequest(Path, ResolveFormat());
            if (!Size.HasValue && request.Backing == null && string.IsNullOrEmpty(SourcePath))
            {
                throw new ImageOptionException(Path, "size", "no size was given, and no parent or source image to take it from") { Kind = ImageErrorKind.SizeNotNamed };
            }

            if (Size.HasValue && Size.Value < 0)
            {
                throw new ImageOptionException(Path, "size", "the size must not be negative");
            }

            if (Directory.Exists(Path))
            {
                throw new ImageIOException(Path, "is a folder");
            }

            if (File.Exists(Path) && !Force)
            {
                throw ImageIOException.OutputExists(Path);
            }

            request.Size = Size ?? 0;
            if (HyperVDefaults && request.Backing == null && string.IsNullOrEmpty(SourcePath))
            {
                FormatRegistry.Default.Get(ResolveFormat()).ApplyHyperVDefaults(request);
            }

            return request;
        }

        /// <summary>Creates the image (or converts <see cref="SourcePath"/> into it) and describes it.</summary>
        public VDiskInfo Execute(IProgress<OperationProgress> progress = null, System.Threading.CancellationToken cancel = default)
        {
            DiskFormat format = ResolveFormat();
            CreateRequest request = BuildRequest();
            if (string.IsNullOrEmpty(SourcePath))
            {
                VDiskInfo created = CreateOperation.Create(Path, format, request, Unsafe);
                AddWarnings(request);
                return created;
            }

            // Created at its final size, so the image appears under its name only when filled.
            request.Size = 0;
            ConvertOperation.Run(SourcePath, Path, new ConvertOptions { TargetFormat = format, Target = request, TargetSize = Size }, progress, cancel);
            AddWarnings(request);
            return ImageInspector.Get(Path, format);
        }

        private void AddWarnings(CreateRequest request)
        {
            foreach (string warning in request.Warnings)
            {
                Warnings.Add(warning);
            }
        }
    }

    /// <summary>Convert-VDisk's parameters and the decisions made from them.</summary>
    public sealed class ConvertPlan : ImageParameters
    {
        public string SourcePath { get; set; }

        /// <summary>A file, an existing folder, or null (beside the source).</summary>
        public string Destination { get; set; }

        public DiskFormat? SourceFormat { get; set; }

        public bool Compress { get; set; }

        public long? SparseSize { get; set; }

        public string Snapshot { get; set; }

        public bool NoCreate { get; set; }

        public bool TargetIsZero { get; set; }

        public int? ThrottleLimit { get; set; }

        public bool ShareWithWriters { get; set; }

        /// <summary>Open a child whose recorded parent identity no longer matches its parent.</summary>
        public bool IgnoreParentMismatch { get; set; }

        /// <summary>Delete the source image's files once the output is verified identical to it.</summary>
        public bool DeleteSource { get; set; }

        /// <summary>Where the output goes and in what format.</summary>
        public string ResolveDestination(out DiskFormat targetFormat)
            => PathPlanner.ConvertDestination(SourcePath, Destination, Format, out targetFormat);

        /// <summary>Refuses what cannot work before anything is written: contradictions first, then the destination's existence.</summary>
        public ConvertOptions BuildOptions(string destination, DiskFormat targetFormat)
        {
            if (TargetIsZero && !NoCreate)
            {
                throw new ImageOptionException(destination, "target is zero", "the promise that the destination reads as zeros applies only when writing into an existing image") { Kind = ImageErrorKind.TargetIsZeroWithoutExistingOutput };
            }

            if (SparseSize.HasValue && SparseSize.Value < 0)
            {
                throw new ImageOptionException(destination, "sparse size", "must be 0 (fully allocated) or a positive size");
            }

            if (ThrottleLimit.HasValue && ThrottleLimit.Value < 1)
            {
                throw new ImageOptionException(destination, "parallel reads", "must be at least 1");
            }

            CreateRequest request = ToCreateRequest(destination, targetFormat);
            if (!NoCreate && File.Exists(destination) && !Force)
            {
                throw ImageIOException.OutputExists(destination);
            }

            if (NoCreate && !Transports.Exists(destination))
            {
                throw new ImageIOException(destination, "writing into an existing image was asked for, and the file was not found") { Kind = ImageErrorKind.ExistingOutputMissing };
            }

            if (Compress && CompressionType.HasValue)
            {
                request.CompressionType = CompressionType;
            }

            return new ConvertOptions
            {
                SourceFormat = SourceFormat,
                ShareWithWriters = ShareWithWriters,
                IgnoreParentMismatch = IgnoreParentMismatch,
                Snapshot = Snapshot,
                TargetFormat = targetFormat,
                Target = request,
                Compress = Compress,
                SparseSize = SparseSize ?? 4096,
                NoCreate = NoCreate,
                TargetIsZero = TargetIsZero,
                ThrottleLimit = ThrottleLimit ?? Environment.ProcessorCount,
                ReadsInFlight = ThrottleLimit,
                DeleteSource = DeleteSource,
                KeepSourceType = true,
            };
        }
    }
}
