using System;
using System.Buffers;
using System.Threading;
using VDiskPS;

namespace VDiskPS.Formats
{
    /// <summary>Options of Sync-VDisk (a write-avoiding copy into an existing image, like dd_rescue -W).</summary>
    public sealed class SyncOptions : EngineOptions
    {
        /// <summary>The source image's format; null to probe.</summary>
        public DiskFormat? SourceFormat { get; set; }

        /// <summary>The destination image's format; null to probe.</summary>
        public DiskFormat? DestinationFormat { get; set; }

        /// <summary>
        /// Bytes compared (and, where they differ, written) as one block, at most 64 MiB; 0 picks the
        /// destination's cluster size, kept between 64 KiB and 2 MiB.
        /// </summary>
        public int BlockSize { get; set; }

        /// <summary>Grow a destination smaller than the source instead of failing (needs a resizable format).</summary>
        public bool ResizeDestination { get; set; }
    }

    /// <summary>
    /// Makes an existing image read like the source while writing as little as possible: both are read
    /// block by block and only blocks that differ are written (all-zero ones as zero writes), so a
    /// sparse overlay gains only the clusters that really changed. Runs both sides know to be zero
    /// are not read at all. A destination larger than the source keeps its bytes past the source's end.
    /// </summary>
    public static class SyncOperation
    {
        private const int MinimumDefaultBlock = 64 * 1024;
        private const int MaximumDefaultBlock = 2 << 20;
        private const int MaximumBlock = 64 << 20;

        public static VDiskSyncResult Run(string sourcePath, string destinationPath, SyncOptions options = null, IProgress<OperationProgress> progress = null, CancellationToken cancel = default)
        {
            options = options ?? new SyncOptions();
            FormatRegistry registry = options.Registry ?? FormatRegistry.Default;
            if (ImageChain.PathComparer.Equals(Transports.GetFullLocation(sourcePath), Transports.GetFullLocation(destinationPath)))
            {
                throw new ImageOptionException(destinationPath, "destination", "the destination is the source image itself");
            }

            using (var source = ImageChain.Open(sourcePath, options.OpenChain(options.SourceFormat)))
            using (var destination = ImageChain.Open(destinationPath, options.OpenChain(options.DestinationFormat, writable: true)))
            {
                ImageLayer target = destination.Top;
                if (target.Size < source.Size)
                {
                    if (!options.ResizeDestination)
                    {
                        throw new ImageOptionException(target.Path, "size", $"the destination ({target.Size} bytes) is smaller than the source ({source.Size} bytes); allow resizing it");
                    }

                    Capability.Require<IResizableLayer>(target, "resize").Resize(source.Size, false, Preallocation.Off);
                }

                if (options.BlockSize < 0 || options.BlockSize > MaximumBlock)
                {
                    throw new ImageOptionException(null, "block size", $"the block size must be between 1 and {MaximumBlock} bytes");
                }

                int blockSize = options.BlockSize > 0 ? options.BlockSize : Math.Min(MaximumDefaultBlock, Math.Max(MinimumDefaultBlock, target.ClusterSize));
                var result = new VDiskSyncResult { Path = source.Top.Path, Destination = target.Path };
                Copy(source, destination, blockSize, result, progress, cancel);
                target.Flush();
                return result;
            }
        }

        private static void Copy(ImageChain source, ImageChain destination, int blockSize, VDiskSyncResult result, IProgress<OperationProgress> progress, CancellationToken cancel)
        {
            long size = source.Size;
            ImageLayer target = destination.Top;
            byte[] wanted = ArrayPool<byte>.Shared.Rent(blockSize);
            byte[] present = ArrayPool<byte>.Shared.Rent(blockSize);
            try
            {
                long offset = 0;
                while (offset < size)
                {
                    cancel.ThrowIfCancellationRequested();

                    // Whole blocks that both sides know to be zero are skipped in one step.
                    long zeroEnd = OperationSupport.BothZeroUntil(source, destination, offset, size);
                    long skipEnd = zeroEnd >= size ? size : OperationSupport.AlignDown(zeroEnd, blockSize);
                    if (skipEnd > offset)
                    {
                        result.Compared += skipEnd - offset;
                        result.Skipped += skipEnd - offset;
                        OperationSupport.Report(progress, "Synchronizing", skipEnd, size);
                        offset = skipEnd;
                        continue;
                    }

                    int n = OperationSupport.ChunkLength(offset, size, blockSize);
                    bool sourceZero = OperationSupport.KnownZero(source, offset, n);
                    if (sourceZero && OperationSupport.KnownZero(destination, offset, n))
                    {
                        result.Skipped += n;
                    }
                    else
                    {
                        Span<byte> wantedSpan = wanted.AsSpan(0, n);
                        Span<byte> presentSpan = present.AsSpan(0, n);
                        if (sourceZero)
                        {
                            wantedSpan.Clear();
                        }
                        else
                        {
                            source.Read(offset, wantedSpan);
                        }

                        destination.Read(offset, presentSpan);
                        if (wantedSpan.SequenceEqual(presentSpan))
                        {
                            result.Skipped += n;
                        }
                        else
                        {
                            if (sourceZero || ZeroDetector.IsZero(wantedSpan))
                            {
                                target.WriteZeroes(offset, n);
                            }
                            else
                            {
                                target.Write(offset, wantedSpan);
                            }

                            result.Written += n;
                        }
                    }

                    result.Compared += n;
                    offset += n;
                    OperationSupport.Report(progress, "Synchronizing", offset, size);
                }

                OperationSupport.Report(progress, "Synchronizing", size, size);
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(wanted);
                ArrayPool<byte>.Shared.Return(present);
            }
        }
    }
}
