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

        /// <summary>A hashtable or "k=v,k=v" string of format options.</summary>
        public object Option { get; set; }

        public bool Force { get; set; }

        /// <summary>The CreateRequest these parameters describe (size left to the caller).</summary>
        public CreateRequest ToCreateRequest(string path)
        {
            if (Type == DiskType.Differencing && string.IsNullOrEmpty(ParentPath))
            {
                throw new ImageOptionException(path, "ParentPath", "a differencing image needs -ParentPath");
            }

            if (ParentFormat.HasValue && string.IsNullOrEmpty(ParentPath))
            {
                throw new ImageOptionException(path, "ParentFormat", "-ParentFormat needs -ParentPath");
            }

            if (LogicalSectorSize.HasValue && LogicalSectorSize != 512 && LogicalSectorSize != 4096)
            {
                throw new ImageOptionException(path, "LogicalSectorSizeBytes", "must be 512 or 4096");
            }

            if (PhysicalSectorSize.HasValue && PhysicalSectorSize != 512 && PhysicalSectorSize != 4096)
            {
                throw new ImageOptionException(path, "PhysicalSectorSizeBytes", "must be 512 or 4096");
            }

            OptionSet options = OptionSet.From(Option);
            return new CreateRequest
            {
                Type = Type == DiskType.Differencing ? (DiskType?)null : Type,
                Subformat = Subformat,
                Backing = string.IsNullOrEmpty(ParentPath) ? null : new BackingReference(ParentPath, ParentFormat),
                ClusterSize = ClusterSize,
                LogicalSectorSize = LogicalSectorSize,
                PhysicalSectorSize = PhysicalSectorSize,
                Preallocation = Preallocation,
                CompressionType = CompressionType,
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

        /// <summary>Give a VHDX without a parent New-VHD's defaults where nothing was asked: 32 MiB blocks, 4096-byte physical sectors.</summary>
        public bool HyperVDefaults { get; set; }

        /// <summary>New-VHD's VHDX block size.</summary>
        public const long HyperVBlockSize = 32L * 1024 * 1024;

        /// <summary>New-VHD's VHDX physical sector size.</summary>
        public const int HyperVPhysicalSectorSize = 4096;

        public DiskFormat ResolveFormat() => PathPlanner.FormatForNewFile(Path, Format);

        /// <summary>What the format changed from what was asked, after <see cref="Execute"/>.</summary>
        public IList<string> Warnings { get; } = new List<string>();

        /// <summary>Refuses what cannot work before anything is created.</summary>
        public CreateRequest BuildRequest()
        {
            if (File.Exists(Path) && !Force)
            {
                throw new ImageIOException(Path, "the file already exists (use -Force to overwrite it)");
            }

            if (Directory.Exists(Path))
            {
                throw new ImageIOException(Path, "is a folder");
            }

            CreateRequest request = ToCreateRequest(Path);
            if (!Size.HasValue && request.Backing == null && string.IsNullOrEmpty(SourcePath))
            {
                throw new ImageOptionException(Path, "SizeBytes", "give -SizeBytes (or -ParentPath / -SourcePath to take the size from)");
            }

            if (Size.HasValue && Size.Value < 0)
            {
                throw new ImageOptionException(Path, "SizeBytes", "the size must not be negative");
            }

            request.Size = Size ?? 0;
            if (HyperVDefaults && request.Backing == null && string.IsNullOrEmpty(SourcePath) && ResolveFormat() == DiskFormat.Vhdx)
            {
                if (!request.ClusterSize.HasValue && !request.Options.Contains("block_size"))
                {
                    request.ClusterSize = HyperVBlockSize;
                }

                request.PhysicalSectorSize = request.PhysicalSectorSize ?? HyperVPhysicalSectorSize;
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

        public ConvertOptions BuildOptions(string destination, DiskFormat targetFormat)
        {
            if (!NoCreate && File.Exists(destination) && !Force)
            {
                throw new ImageIOException(destination, "the file already exists (use -Force to overwrite it)");
            }

            if (NoCreate && !File.Exists(destination))
            {
                throw new ImageIOException(destination, "-NoCreate needs an existing destination, and the file was not found");
            }

            if (TargetIsZero && !NoCreate)
            {
                throw new ImageOptionException(destination, "TargetIsZero", "-TargetIsZero only applies with -NoCreate");
            }

            if (SparseSize.HasValue && SparseSize.Value < 0)
            {
                throw new ImageOptionException(destination, "SparseSize", "must be 0 (fully allocated) or a positive size");
            }

            if (ThrottleLimit.HasValue && ThrottleLimit.Value < 1)
            {
                throw new ImageOptionException(destination, "ThrottleLimit", "must be at least 1");
            }

            CreateRequest request = ToCreateRequest(destination);
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
                DeleteSource = DeleteSource,
                KeepSourceType = true,
            };
        }
    }
}
