using System;
using System.Collections.Generic;
using System.Threading;
using VDiskPS;

namespace VDiskPS.Formats
{
    /// <summary>Options of Measure-VDisk (qemu-img measure).</summary>
    public sealed class MeasureOptions : EngineOptions
    {
        /// <summary>The format to measure for (qemu-img measure -O).</summary>
        /// <summary>The format to measure for; null: the plain-data format (raw).</summary>
        public DiskFormat? TargetFormat { get; set; }

        /// <summary>Create options of the target; its Size is taken from the source, or set it when measuring without one.</summary>
        public CreateRequest Target { get; set; } = new CreateRequest();

        /// <summary>The source image's format; null to probe.</summary>
        public DiskFormat? SourceFormat { get; set; }

        /// <summary>Measure the disk as it was in this internal snapshot of the source (id or name).</summary>
        public string Snapshot { get; set; }
    }

    /// <summary>
    /// qemu-img measure: the space a new image of the target format needs, either for the content of a
    /// source image (chain) or, without a source, for an empty image of Target.Size bytes. The data the
    /// target must store is counted from the source's block status as qcow2_measure counts it: every
    /// target cluster that holds data in the source (zero runs cost nothing); the format driver turns
    /// that into bytes with its metadata.
    /// </summary>
    public static class MeasureOperation
    {
        private const long DefaultGranularity = 64 * 1024;

        /// <summary>Measures for the content of <paramref name="sourcePath"/>, or for an empty image of Target.Size bytes when it is null.</summary>
        public static VDiskMeasurement Run(string sourcePath, MeasureOptions options, CancellationToken cancel = default)
        {
            options = options ?? new MeasureOptions();
            FormatRegistry registry = options.Registry ?? FormatRegistry.Default;
            CreateRequest request = options.Target ?? new CreateRequest();
            FormatDriver target = registry.Get(options.TargetFormat ?? registry.PlainDataFormat);
            ICreatableDriver driver = registry.GetCreatable(target.Format);
            if (string.IsNullOrEmpty(sourcePath))
            {
                if (request.Size < 0)
                {
                    throw new ImageOptionException(null, "size", "the size must not be negative");
                }

                return driver.Measure(request, 0);
            }

            using (var chain = ImageChain.Open(sourcePath, options.OpenChain(options.SourceFormat)))
            {
                ImageChain view = chain;
                ImageLayer snapshot = null;
                try
                {
                    if (!string.IsNullOrEmpty(options.Snapshot))
                    {
                        snapshot = Capability.Require<ISnapshotLayer>(chain.Top, "internal snapshots").OpenSnapshot(options.Snapshot);
                        view = chain.WithTop(snapshot);
                    }

                    request.Size = view.Size;
                    long allocated = AllocatedBytes(view, Granularity(target, request), cancel);
                    VDiskMeasurement measurement = driver.Measure(request, allocated);
                    measurement.Path = sourcePath;
                    return measurement;
                }
                finally
                {
                    // The snapshot view's lower layers belong to the source chain; close only the view.
                    snapshot?.Dispose();
                }
            }
        }

        /// <summary>
        /// Bytes of the target clusters (of <paramref name="granularity"/> bytes) that hold data in the
        /// chain: a data run is extended to the end of its last cluster, and a cluster is counted once.
        /// </summary>
        public static long AllocatedBytes(ImageChain chain, long granularity, CancellationToken cancel = default)
        {
            long size = chain.Size;
            long required = 0;
            long offset = 0;
            while (offset < size)
            {
                cancel.ThrowIfCancellationRequested();
                BlockStatus status = chain.GetBlockStatus(offset, size - offset);
                long length = status.Length;
                if (status.Kind == ExtentKind.Data)
                {
                    // qcow2_measure: count from the cluster's start and skip to its end.
                    long end = Math.Min(size, OperationSupport.AlignUp(offset + length, granularity));
                    required += end - OperationSupport.AlignDown(offset, granularity);
                    length = end - offset;
                }

                offset += length;
            }

            return required;
        }

        /// <summary>The target's allocation unit: raw stores bytes; other formats their cluster/block size.</summary>
        private static long Granularity(FormatDriver format, CreateRequest request)
        {
            if (format.IsPlainData)
            {
                return 1;
            }

            OptionSet options = (request.Options ?? new OptionSet()).Clone();
            long granularity = request.ClusterSize ?? options.GetSize("cluster_size") ?? options.GetSize("block_size") ?? DefaultGranularity;
            return granularity > 0 ? granularity : DefaultGranularity;
        }
    }
}
