using System;
using System.Buffers;
using System.Threading;
using VDiskPS;

namespace VDiskPS.Formats
{
    /// <summary>
    /// How thoroughly Optimize-VDisk works: Optimize-VHD's modes, as a tool that reads the image file (and
    /// not the guest's file system inside it) can honour them.
    /// </summary>
    public enum OptimizeMode
    {
        /// <summary>Let the format reclaim what it already knows is free (unallocated, discarded or zero units) and shorten the file.</summary>
        Quick,

        /// <summary>First find allocated units that hold only zeros and release them, then reclaim as <see cref="Quick"/> does.</summary>
        Full,

        /// <summary>Move nothing and keep the file's length: punch holes in the host file where the image uses no space.</summary>
        Retrim,

        /// <summary>As <see cref="Quick"/>: the guest's trims are already recorded as free units, which is all this mode relies on.</summary>
        Pretrimmed,

        /// <summary>Treat allocated units the guest filled with zeros as free, then reclaim: the same work as <see cref="Full"/>.</summary>
        Prezeroed,
    }

    /// <summary>Options of Optimize-VDisk.</summary>
    public sealed class OptimizeOptions : EngineOptions
    {
        /// <summary>The mode; null for the format's default (its driver's DefaultOptimizeMode: Full for VHD, as Optimize-VHD, else Quick).</summary>
        public OptimizeMode? Mode { get; set; }

        /// <summary>The image's format; null to probe.</summary>
        public DiskFormat? Format { get; set; }
    }

    /// <summary>What an optimization did.</summary>
    public sealed class OptimizeResult
    {
        /// <summary>The mode the image was optimized in (the format's default when none was asked for).</summary>
        public OptimizeMode Mode { get; set; }

        /// <summary>The image afterwards.</summary>
        public VDiskInfo Image { get; set; }

        /// <summary>Guest bytes of all-zero clusters the full pass released.</summary>
        public long ZeroBytesReleased { get; set; }

        /// <summary>Bytes the format reclaimed from the file.</summary>
        public long BytesReclaimed { get; set; }
    }

    /// <summary>
    /// Optimize-VDisk: reclaims zero-filled allocation units in place through the format's optimize
    /// capability. The full mode first turns every allocated cluster that holds only zeros into an
    /// unallocated one (where the parent reads zeros too) or a zero write, so the format can then
    /// give its space back; formats that cannot discard skip that pass.
    /// </summary>
    public static class OptimizeOperation
    {
        public static OptimizeResult Run(string path, OptimizeOptions options = null, IProgress<OperationProgress> progress = null, CancellationToken cancel = default)
        {
            options = options ?? new OptimizeOptions();
            FormatRegistry registry = options.Registry ?? FormatRegistry.Default;
            using (var chain = ImageChain.Open(path, options.OpenChain(options.Format, writable: true)))
            {
                ImageLayer layer = chain.Top;
                OptimizeMode mode = options.Mode ?? registry.Find(layer.Format)?.DefaultOptimizeMode ?? OptimizeMode.Quick;
                var result = new OptimizeResult { Mode = mode };
                if (mode == OptimizeMode.Retrim)
                {
                    result.BytesReclaimed = Capability.Require<IRetrimmableLayer>(layer, "retrim").Retrim(progress, cancel);
                    layer.Flush();
                    result.Image = ImageInspector.Describe(layer);
                    return result;
                }

                var optimizable = Capability.Require<IOptimizableLayer>(layer, "optimize");

                // Without discard a format has no way to release a cluster; its own optimize judges zeros.
                if ((mode == OptimizeMode.Full || mode == OptimizeMode.Prezeroed) && layer is IDiscardableLayer)
                {
                    result.ZeroBytesReleased = ReleaseZeroClusters(chain, progress, cancel);
                    layer.Flush();
                }

                result.BytesReclaimed = optimizable.Optimize(progress, cancel);
                layer.Flush();
                result.Image = ImageInspector.Describe(layer);
                return result;
            }
        }

        private static long ReleaseZeroClusters(ImageChain chain, IProgress<OperationProgress> progress, CancellationToken cancel)
        {
            ImageLayer layer = chain.Top;
            var discardable = (IDiscardableLayer)layer;
            long size = layer.Size;
            int cluster = Math.Max(512, layer.ClusterSize);
            byte[] buffer = ArrayPool<byte>.Shared.Rent(cluster);
            long released = 0;
            try
            {
                long offset = 0;
                while (offset < size)
                {
                    cancel.ThrowIfCancellationRequested();
                    BlockStatus status = layer.GetBlockStatus(offset, size - offset);
                    if (status.Kind != ExtentKind.Data)
                    {
                        offset = status.End;
                        continue;
                    }

                    // Whole clusters inside the data run.
                    long start = OperationSupport.AlignUp(offset, cluster);
                    long runEnd = status.End;
                    for (long at = start; at < runEnd && (at + cluster <= runEnd || runEnd == size); at += cluster)
                    {
                        cancel.ThrowIfCancellationRequested();
                        int n = OperationSupport.ChunkLength(at, size, cluster);
                        Span<byte> data = buffer.AsSpan(0, n);
                        layer.Read(at, data);
                        if (ZeroDetector.IsZero(data))
                        {
                            if (ParentReadsZero(layer, at, data))
                            {
                                discardable.Discard(at, n);
                            }
                            else
                            {
                                layer.WriteZeroes(at, n);
                            }

                            released += n;
                        }

                        OperationSupport.Report(progress, "Releasing zero clusters", at + n, size);
                    }

                    offset = Math.Max(runEnd, offset + 1);
                }

                return released;
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(buffer);
            }
        }

        /// <summary>Whether the run would read as zeros once unallocated (no parent, or the parent is zero there).</summary>
        private static bool ParentReadsZero(ImageLayer layer, long offset, Span<byte> scratch)
        {
            ImageLayer parent = layer.Parent;
            if (parent == null || offset >= parent.Size)
            {
                return true;
            }

            int inside = (int)Math.Min(scratch.Length, parent.Size - offset);
            parent.Read(offset, scratch.Slice(0, inside));
            return ZeroDetector.IsZero(scratch.Slice(0, inside));
        }
    }
}
