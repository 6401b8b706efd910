using System;
using System.Collections.Generic;
using System.IO;
using VDiskPS;

namespace VDiskPS.Formats.Qed
{
    /// <summary>
    /// QEMU Enhanced Disk (qemu's qed driver): sparse images with a backing file, zero clusters and a
    /// need-check flag for images not closed cleanly. The image records no backing format except
    /// "plain data, do not probe".
    /// </summary>
    public sealed class QedDriver : FormatDriver, ICreatableDriver
    {
        public const string ClusterSizeOption = "cluster_size";
        public const string TableSizeOption = "table_size";

        /// <summary>qemu's defaults (block/qed.h QED_DEFAULT_CLUSTER_SIZE, QED_DEFAULT_TABLE_SIZE).</summary>
        public const int DefaultClusterSize = 64 * 1024;
        public const int DefaultTableSize = 4;

        private static readonly CreateOption[] s_options =
        {
            new CreateOption("size", CreateOptionKind.Size, "virtual size"),
            new CreateOption("backing_file", CreateOptionKind.Text, "the parent image"),
            new CreateOption("backing_fmt", CreateOptionKind.Text, "the parent's format (only plain data is recorded; others are probed)"),
            new CreateOption(ClusterSizeOption, CreateOptionKind.Size, "cluster size, a power of two from 4 KiB to 64 MiB"),
            new CreateOption(TableSizeOption, CreateOptionKind.Number, "L1/L2 table size in clusters, a power of two from 2 to 16"),
        };

        /// <summary>The qed format's identity.</summary>
        public static readonly DiskFormat Id = new DiskFormat("qed");

        public override DiskFormat Format => Id;

        public override string Description => "QEMU Enhanced Disk image";

        public override IReadOnlyList<string> Extensions { get; } = new[] { ".qed" };

        public override IReadOnlyList<CreateOption> CreateOptions => s_options;

        /// <summary>QED records only the parent's name (and, for a raw parent, "do not probe").</summary>
        public override bool RecordsBackingFormat => false;

        public override int Probe(ProbeContext context) => QedHeader.HasMagic(context.Head) ? 100 : 0;

        public override ImageLayer Open(HostFile file, OpenOptions options) => DisposingOnFailure(file, () => QedLayer.Open(file, options));

        public ImageLayer Create(string path, CreateRequest request)
        {
            CreatePlan plan = Plan(path, request);
            var file = request.CreateFile(path);
            try
            {
                return QedLayer.Create(file, plan.Size, plan.ClusterSize, plan.TableSize, plan.Backing, plan.BackingIsPlainData);
            }
            catch
            {
                file.Dispose();
                File.Delete(file.Path);
                throw;
            }
        }

        public bool SupportsCompression(CreateRequest request) => false;

        /// <summary>
        /// qemu has no measure for QED: the header cluster, the L1 table, and for the data one cluster per
        /// allocated cluster plus the L2 tables that address them (all of them for a full image).
        /// </summary>
        public VDiskMeasurement Measure(CreateRequest request, long allocatedBytes)
        {
            CreatePlan plan = Plan(null, request);
            long cs = plan.ClusterSize;
            long tableBytes = plan.TableSize * cs;
            long entries = tableBytes / 8;
            long clusters = (plan.Size + cs - 1) / cs;
            long tables = (clusters + entries - 1) / entries;
            long fixedPart = cs + tableBytes;
            long full = fixedPart + (tables * tableBytes) + (clusters * cs);
            long used = Math.Min(clusters, (Math.Max(0, allocatedBytes) + cs - 1) / cs);
            long usedTables = Math.Min(tables, (used + entries - 1) / entries);
            return new VDiskMeasurement
            {
                Format = Id.Name,
                Required = fixedPart + (usedTables * tableBytes) + (used * cs),
                FullyAllocated = full,
            };
        }

        private sealed class CreatePlan
        {
            public long Size;
            public uint ClusterSize;
            public uint TableSize;
            public BackingReference Backing;
            public bool BackingIsPlainData;
        }

        private static CreatePlan Plan(string path, CreateRequest request)
        {
            OptionSet options = request.Options.Clone();
            long size = options.GetSize("size") ?? request.Size;
            long? clusterOption = options.GetSize(ClusterSizeOption);
            int? tableOption = options.GetInt(TableSizeOption);
            string backingFile = options.GetString("backing_file");
            string backingFormat = options.GetString("backing_fmt");
            options.RejectUnknown(Id.Name, s_options);
            if (clusterOption.HasValue && request.ClusterSize.HasValue && clusterOption != request.ClusterSize)
            {
                throw new ImageOptionException(path, ClusterSizeOption, $"the cluster_size option ({clusterOption}) and the cluster size given ({request.ClusterSize}) disagree");
            }

            long clusterSize = clusterOption ?? request.ClusterSize ?? DefaultClusterSize;
            if (!QedHeader.IsPowerOfTwoIn(clusterSize, QedHeader.MinClusterSize, QedHeader.MaxClusterSize))
            {
                throw new ImageOptionException(path, ClusterSizeOption, $"{clusterSize} is not a power of two between {QedHeader.MinClusterSize} and {QedHeader.MaxClusterSize} bytes");
            }

            long tableSize = tableOption ?? DefaultTableSize;
            if (!QedHeader.IsPowerOfTwoIn(tableSize, 2, QedHeader.MaxTableSize))
            {
                // The spec allows one-cluster tables, but qemu refuses to open them ("QED table offset is invalid").
                throw new ImageOptionException(path, TableSizeOption, $"{tableSize} is not a power of two between 2 and {QedHeader.MaxTableSize} (qemu cannot open images with 1-cluster tables)");
            }

            if (size < 0)
            {
                throw new ImageOptionException(path, "size", "the size must not be negative");
            }

            // qemu rounds the size up to a sector.
            size = (size + 511) / 512 * 512;
            ulong max = QedHeader.MaxImageSize((uint)clusterSize, (uint)tableSize);
            if ((ulong)size > max)
            {
                throw new ImageOptionException(path, "size", $"{size} bytes is beyond the {max} bytes QED tables of {tableSize} clusters of {clusterSize} bytes address");
            }

            if (request.Preallocation.HasValue && request.Preallocation != Preallocation.Off)
            {
                throw new ImageOptionException(path, "preallocation", "QED images grow as written; only preallocation off is supported (as in qemu)");
            }

            if (request.Type == DiskType.Fixed)
            {
                throw new ImageOptionException(path, "type", "QED images are always dynamic (sparse)");
            }

            BackingReference backing = request.Backing;
            if (backingFile != null)
            {
                if (backing != null && backing.RecordedPath != backingFile)
                {
                    throw new ImageOptionException(path, "backing_file", $"the backing_file option ('{backingFile}') and the backing file given ('{backing.RecordedPath}') disagree");
                }

                DiskFormat? parsed = backingFormat == null ? (DiskFormat?)null : FormatRegistry.Default.Parse(backingFormat);
                backing = backing ?? new BackingReference(backingFile, parsed);
            }
            else if (backingFormat != null && backing == null)
            {
                throw new ImageOptionException(path, "backing_fmt", "a backing format was given without a backing file") { Kind = ImageErrorKind.ParentFormatWithoutParent };
            }

            if (backing == null && request.Type == DiskType.Differencing)
            {
                throw new ImageOptionException(path, "backing_file", "a differencing image needs a backing file") { Kind = ImageErrorKind.ParentNotNamed };
            }

            bool plain = false;
            if (backing != null)
            {
                DiskFormat? format = backingFormat != null ? FormatRegistry.Default.Parse(backingFormat) : backing.Format ?? request.BackingLayer?.Format;
                plain = format.HasValue && FormatRegistry.Default.Get(format.Value).IsPlainData;
                if (format.HasValue && !plain)
                {
                    request.Warnings.Add($"QED records no backing format but plain data: the parent's format ({format.Value.ToName()}) will be probed from its content when the image is opened");
                }

                int nameBytes = System.Text.Encoding.UTF8.GetByteCount(backing.PortablePath);
                if (QedHeader.Length + nameBytes > clusterSize)
                {
                    throw new ImageOptionException(path, "backing_file", $"the backing file name ({nameBytes} bytes) does not fit in the {clusterSize}-byte header cluster");
                }
            }

            return new CreatePlan { Size = size, ClusterSize = (uint)clusterSize, TableSize = (uint)tableSize, Backing = backing, BackingIsPlainData = plain };
        }
    }
}
