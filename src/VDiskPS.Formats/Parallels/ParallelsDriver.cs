using System;
using System.Collections.Generic;
using System.IO;
using VDiskPS;

namespace VDiskPS.Formats.Parallels
{
    /// <summary>
    /// Parallels expandable images (Parallels Desktop, Virtuozzo/OpenVZ ploop): read both header magics,
    /// create the extended one as qemu-img does, write and check. The format records no backing file.
    /// </summary>
    public sealed class ParallelsDriver : FormatDriver, ICreatableDriver
    {
        public const string ClusterSizeOption = "cluster_size";

        /// <summary>qemu's default cluster: 1 MiB.</summary>
        internal const long DefaultClusterSize = 1 << 20;

        private static readonly CreateOption[] s_options =
        {
            new CreateOption("size", CreateOptionKind.Size, "virtual size"),
            new CreateOption(ClusterSizeOption, CreateOptionKind.Size, "cluster size (a multiple of 512 bytes; 1 MiB by default)"),
            new CreateOption("preallocation", CreateOptionKind.Choice, "off only: Parallels images grow as written", "off"),
        };

        /// <summary>The parallels format's identity.</summary>
        public static readonly DiskFormat Id = new DiskFormat("parallels");

        public override DiskFormat Format => Id;

        public override string Description => "Parallels expandable disk image (Parallels Desktop, Virtuozzo)";

        /// <summary>.hds is the image file itself; .hdd is what Parallels Desktop names the bundle folder and older single-file images.</summary>
        public override IReadOnlyList<string> Extensions { get; } = new[] { ".hds", ".hdd" };

        public override IReadOnlyList<CreateOption> CreateOptions => s_options;

        public override int Probe(ProbeContext context) => ParallelsHeader.HasAnyMagic(context.Head) ? 100 : 0;

        public override ImageLayer Open(HostFile file, OpenOptions options) => DisposingOnFailure(file, () => ParallelsLayer.Open(file));

        public ImageLayer Create(string path, CreateRequest request)
        {
            var (size, cluster) = Plan(path, request);
            var file = request.CreateFile(path);
            try
            {
                return ParallelsLayer.Create(file, size, cluster);
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
            var (size, cluster) = Plan(null, request);
            long entries = (size + cluster - 1) / cluster;
            long header = ParallelsLayer.HeaderClusters(entries, cluster) * cluster;
            long used = Math.Min(entries, (Math.Max(0, allocatedBytes) + cluster - 1) / cluster);
            return new VDiskMeasurement
            {
                Format = Id.Name,
                Required = header + (used * cluster),
                FullyAllocated = header + (entries * cluster),
            };
        }

        /// <summary>The size and cluster size of a new image, checked as qemu's parallels_co_create does.</summary>
        private static (long Size, long Cluster) Plan(string path, CreateRequest request)
        {
            OptionSet options = request.Options.Clone();
            long size = options.GetSize("size") ?? request.Size;
            long? optionCluster = options.GetSize(ClusterSizeOption);
            Preallocation? preallocation = options.GetPreallocation("preallocation", Preallocation.Off) ?? request.Preallocation;
            options.RejectUnknown(Id.Name, s_options);
            if (optionCluster.HasValue && request.ClusterSize.HasValue && optionCluster != request.ClusterSize)
            {
                throw new ImageOptionException(path, ClusterSizeOption, "the cluster size option and the cluster size disagree");
            }

            if (preallocation.HasValue && preallocation != Preallocation.Off)
            {
                throw new ImageOptionException(path, "preallocation", "Parallels images grow as written and cannot be preallocated (qemu accepts the option but leaves the image sparse)");
            }

            if (request.Type == DiskType.Fixed)
            {
                throw new ImageOptionException(path, "type", "only expandable Parallels images are written; a fixed (plain) Parallels disk is a raw file beside a descriptor");
            }

            if (request.Backing != null || request.Type == DiskType.Differencing)
            {
                throw new ImageOptionException(path, "backing file", "a Parallels image records no backing file");
            }

            if (request.Subformat != null)
            {
                throw new ImageOptionException(path, "subformat", "Parallels images have no subformats") { Kind = ImageErrorKind.SubformatNotApplicable };
            }

            if (size < 0)
            {
                throw new ImageOptionException(path, "size", "the size must not be negative");
            }

            // qemu rounds both up to whole sectors silently.
            long cluster = ParallelsLayer.RoundUp(optionCluster ?? request.ClusterSize ?? DefaultClusterSize, ParallelsHeader.SectorSize);
            size = ParallelsLayer.RoundUp(size, ParallelsHeader.SectorSize);
            if (cluster <= 0 || cluster / ParallelsHeader.SectorSize > ParallelsLayer.MaxTracks)
            {
                throw new ImageOptionException(path, ClusterSizeOption, $"{cluster} bytes is not a cluster size between 512 bytes and {ParallelsLayer.MaxTracks * (long)ParallelsHeader.SectorSize} bytes");
            }

            long entries = (size + cluster - 1) / cluster;
            if (entries > ParallelsLayer.MaxBatEntries || size / cluster >= (1L << 32))
            {
                throw new ImageOptionException(path, "size", $"{size} bytes needs {entries} clusters of {cluster} bytes; a Parallels image has at most {ParallelsLayer.MaxBatEntries} (choose a larger cluster size)");
            }

            return (size, cluster);
        }
    }
}
