using System;
using System.Buffers;
using System.IO;
using System.Linq;
using System.Threading;
using VDiskPS;

namespace VDiskPS.Formats
{
    /// <summary>Options of Set-VDisk -ParentPath (qemu-img rebase).</summary>
    public sealed class RebaseOptions : EngineOptions
    {
        /// <summary>The overlay's format; null to probe.</summary>
        public DiskFormat? Format { get; set; }

        /// <summary>
        /// The new parent as it is to be recorded (relative paths resolve against the overlay's folder);
        /// null or empty removes the parent, first copying everything the old chain showed into the overlay.
        /// </summary>
        public string NewParentPath { get; set; }

        /// <summary>The new parent's format; null to probe it (the probed format is recorded).</summary>
        public DiskFormat? NewParentFormat { get; set; }

        /// <summary>Only rewrite the parent pointer (qemu-img rebase -u); the old parent need not exist.</summary>
        public bool Unsafe { get; set; }

        /// <summary>Write the copied clusters compressed (qemu-img rebase -c), where the format supports it.</summary>
        public bool Compress { get; set; }

        /// <summary>Also drop overlay clusters whose content equals the new parent's (qemu-img rebase keeps them); not with <see cref="Unsafe"/>.</summary>
        public bool Deduplicate { get; set; }

        /// <summary>
        /// The leaf of the chain the overlay belongs to (Set-VHD -LeafPath): the overlay must be the leaf or
        /// one of the parents it records, else nothing is changed; null to skip the check.
        /// </summary>
        public string LeafPath { get; set; }
    }

    /// <summary>What a rebase did.</summary>
    public sealed class RebaseResult
    {
        /// <summary>The overlay after the rebase.</summary>
        public VDiskInfo Image { get; set; }

        /// <summary>Guest bytes copied into the overlay because the old and new parents differ there.</summary>
        public long BytesCopied { get; set; }

        /// <summary>Guest bytes of overlay clusters dropped as duplicates of the new parent.</summary>
        public long BytesDeduplicated { get; set; }
    }

    /// <summary>
    /// qemu-img rebase. Safe mode keeps the overlay's content: for every run the overlay does not
    /// allocate itself, the clusters where the old backing chain and the new one differ get the old
    /// content written into the overlay; then the parent pointer is rewritten. An empty new parent
    /// flattens the overlay. Work is done per overlay cluster. A cancelled rebase leaves the old
    /// pointer and an overlay that still reads the same (it only gained clusters equal to the old parent's).
    /// </summary>
    public static class RebaseOperation
    {
        /// <summary>Walks the parents <paramref name="leafPath"/> records (without reading data) until <paramref name="member"/> is found.</summary>
        private static void RequireInChainOf(string leafPath, string member, FormatRegistry registry)
        {
            string current = Path.GetFullPath(leafPath);
            var seen = new System.Collections.Generic.HashSet<string>(ImageChain.PathComparer);
            while (current != null && File.Exists(current) && seen.Add(current) && seen.Count <= 256)
            {
                if (ImageChain.PathComparer.Equals(current, member))
                {
                    return;
                }

                using (ImageLayer layer = registry.Open(current, null, new OpenOptions { IgnoreParentMismatch = true }))
                {
                    current = layer.Backing?.ResolveExisting(layer.Path);
                }
            }

            throw new ImageOptionException(member, "LeafPath", $"the image is not in the chain of the leaf '{Path.GetFullPath(leafPath)}' (not the leaf, nor a parent it names)");
        }

        public static RebaseResult Run(string path, RebaseOptions options, IProgress<OperationProgress> progress = null, CancellationToken cancel = default)
        {
            options = options ?? new RebaseOptions();
            FormatRegistry registry = options.Registry ?? FormatRegistry.Default;
            bool flatten = string.IsNullOrEmpty(options.NewParentPath);
            if (options.Unsafe && options.Deduplicate)
            {
                throw new ImageOptionException(path, "deduplicate", "deduplication reads the new parent's content, which an unsafe (pointer-only) rebase does not");
            }

            string overlayPath = Path.GetFullPath(path);
            if (!string.IsNullOrEmpty(options.LeafPath))
            {
                RequireInChainOf(options.LeafPath, overlayPath, registry);
            }

            ImageChain newChain = null;
            try
            {
                BackingReference reference = null;
                if (!flatten)
                {
                    string newPath = BackingReference.ResolveAgainst(Path.GetDirectoryName(overlayPath) ?? string.Empty, options.NewParentPath);
                    if (!options.Unsafe || File.Exists(newPath))
                    {
                        newChain = ImageChain.Open(newPath, options.OpenChain(options.NewParentFormat, noBacking: options.Unsafe));
                    }

                    // The new parent must not be, or stand on, the overlay itself.
                    bool loops = ImageChain.PathComparer.Equals(newPath, overlayPath)
                        || (newChain != null && newChain.Layers.Any(layer => ImageChain.PathComparer.Equals(layer.Path, overlayPath)));
                    if (loops)
                    {
                        throw new ImageChainException(overlayPath, "backing file", $"'{newPath}' is the image itself or has it as a backing file; the chain would loop");
                    }

                    reference = new BackingReference(options.NewParentPath, options.NewParentFormat ?? newChain?.Top.Format);
                }

                using (var chain = ImageChain.Open(overlayPath, options.OpenChain(options.Format, writable: true, noBacking: options.Unsafe)))
                {
                    ImageLayer overlay = chain.Top;
                    var changer = Capability.Require<IParentChangeableLayer>(overlay, "changing the backing file");
                    IDiscardableLayer discarder = options.Deduplicate ? Capability.Require<IDiscardableLayer>(overlay, "discard") : null;
                    ICompressedWriteLayer compressor = options.Compress && !options.Unsafe ? Capability.Require<ICompressedWriteLayer>(overlay, "compressed writes") : null;
                    var result = new RebaseResult();
                    if (!options.Unsafe)
                    {
                        result.BytesCopied = CopyDifferences(chain, newChain, compressor, progress, cancel);
                    }

                    changer.SetBacking(reference, newChain?.Top);
                    ImageChain.Stack(overlay, newChain);
                    if (discarder != null)
                    {
                        result.BytesDeduplicated = Deduplicate(overlay, newChain, discarder, progress, cancel);
                    }

                    overlay.Flush();
                    result.Image = ImageInspector.Describe(overlay);
                    return result;
                }
            }
            finally
            {
                newChain?.Dispose();
            }
        }

        /// <summary>Writes into the overlay the old content of every cluster it does not allocate whose old and new content differ.</summary>
        private static long CopyDifferences(ImageChain oldChain, ImageChain newChain, ICompressedWriteLayer compressor, IProgress<OperationProgress> progress, CancellationToken cancel)
        {
            ImageLayer overlay = oldChain.Top;
            long size = overlay.Size;
            int cluster = Math.Max(512, overlay.ClusterSize);
            byte[] oldContent = ArrayPool<byte>.Shared.Rent(cluster);
            byte[] newContent = ArrayPool<byte>.Shared.Rent(cluster);
            long copied = 0;
            try
            {
                long offset = 0;
                while (offset < size)
                {
                    cancel.ThrowIfCancellationRequested();
                    BlockStatus own = overlay.GetBlockStatus(offset, size - offset);
                    long runEnd = offset + own.Length;
                    if (own.Kind == ExtentKind.Unallocated)
                    {
                        // Cluster-aligned pieces, clipped to the run so that allocated neighbours are never touched.
                        while (offset < runEnd)
                        {
                            cancel.ThrowIfCancellationRequested();

                            // Where both parents read as zeros there is nothing to copy.
                            long zeroEnd = OperationSupport.BothZeroUntil(oldChain, newChain, offset, runEnd);
                            if (zeroEnd > offset)
                            {
                                offset = zeroEnd;
                                continue;
                            }

                            long pieceEnd = Math.Min(runEnd, OperationSupport.AlignDown(offset, cluster) + cluster);
                            int n = (int)(pieceEnd - offset);
                            Span<byte> before = oldContent.AsSpan(0, n);
                            Span<byte> after = newContent.AsSpan(0, n);
                            oldChain.Read(offset, before);
                            OperationSupport.ReadPadded(newChain, offset, after);
                            if (!before.SequenceEqual(after))
                            {
                                if (ZeroDetector.IsZero(before))
                                {
                                    overlay.WriteZeroes(offset, n);
                                }
                                else if (!TryWriteCompressed(compressor, offset, before, size))
                                {
                                    overlay.Write(offset, before);
                                }

                                copied += n;
                            }

                            offset = pieceEnd;
                            OperationSupport.Report(progress, "Copying differences", offset, size);
                        }
                    }

                    offset = runEnd;
                    OperationSupport.Report(progress, "Copying differences", offset, size);
                }

                return copied;
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(oldContent);
                ArrayPool<byte>.Shared.Return(newContent);
            }
        }

        /// <summary>Writes a whole compression unit compressed; false when it is not whole or does not compress.</summary>
        private static bool TryWriteCompressed(ICompressedWriteLayer compressor, long offset, ReadOnlySpan<byte> data, long size)
        {
            if (compressor == null)
            {
                return false;
            }

            int unit = compressor.CompressionUnit;
            if (unit <= 0 || offset % unit != 0 || (data.Length != unit && offset + data.Length != size))
            {
                return false;
            }

            byte[] compressed = compressor.Compress(data);
            if (compressed == null)
            {
                return false;
            }

            compressor.WriteCompressed(offset, compressed);
            return true;
        }

        /// <summary>Discards whole overlay clusters that read the same as the new parent; returns the bytes dropped.</summary>
        private static long Deduplicate(ImageLayer overlay, ImageChain newChain, IDiscardableLayer discarder, IProgress<OperationProgress> progress, CancellationToken cancel)
        {
            long size = overlay.Size;
            int cluster = Math.Max(512, overlay.ClusterSize);
            byte[] own = ArrayPool<byte>.Shared.Rent(cluster);
            byte[] parent = ArrayPool<byte>.Shared.Rent(cluster);
            long dropped = 0;
            try
            {
                long offset = 0;
                while (offset < size)
                {
                    cancel.ThrowIfCancellationRequested();
                    int n = OperationSupport.ChunkLength(offset, size, cluster);
                    BlockStatus status = overlay.GetBlockStatus(offset, size - offset);
                    if (status.Kind == ExtentKind.Unallocated)
                    {
                        offset = Math.Max(offset + cluster, OperationSupport.AlignDown(status.End, cluster));
                        continue;
                    }

                    // Only clusters the overlay holds whole can be dropped.
                    if (status.Length >= n)
                    {
                        bool same;
                        if (status.Kind == ExtentKind.Zero)
                        {
                            same = OperationSupport.KnownZero(newChain, offset, n) || IsZeroContent(newChain, offset, parent.AsSpan(0, n));
                        }
                        else
                        {
                            overlay.Read(offset, own.AsSpan(0, n));
                            OperationSupport.ReadPadded(newChain, offset, parent.AsSpan(0, n));
                            same = own.AsSpan(0, n).SequenceEqual(parent.AsSpan(0, n));
                        }

                        if (same)
                        {
                            discarder.Discard(offset, n);
                            dropped += n;
                        }
                    }

                    offset += n;
                    OperationSupport.Report(progress, "Deduplicating", offset, size);
                }

                return dropped;
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(own);
                ArrayPool<byte>.Shared.Return(parent);
            }
        }

        private static bool IsZeroContent(ImageChain chain, long offset, Span<byte> buffer)
        {
            OperationSupport.ReadPadded(chain, offset, buffer);
            return ZeroDetector.IsZero(buffer);
        }
    }
}
