using System;
using System.Buffers;
using System.Threading;
using System.Threading.Tasks;
using VDiskPS;

namespace VDiskPS.Formats
{
    /// <summary>Options of Invoke-VDiskCommit (qemu-img commit).</summary>
    public sealed class CommitOptions : EngineOptions
    {
        /// <summary>The top image's format; null to probe.</summary>
        public DiskFormat? Format { get; set; }

        /// <summary>The ancestor to commit into, by path (qemu-img commit -b); null with no <see cref="BaseDepth"/>: the direct parent.</summary>
        public string BasePath { get; set; }

        /// <summary>The ancestor to commit into, by depth (1 = the direct parent); used when <see cref="BasePath"/> is null.</summary>
        public int? BaseDepth { get; set; }

        /// <summary>Leave the top image's data in place (qemu-img commit -d); otherwise the top is emptied.</summary>
        public bool KeepTop { get; set; }

        /// <summary>Bytes per second to copy at most (qemu-img commit -r); 0 for no limit.</summary>
        public long RateLimit { get; set; }

        /// <summary>Test hook: told the name of each step the commit has finished (every write into the base among them).</summary>
        internal Action<string> StepObserver { get; set; }
    }

    /// <summary>What a commit did.</summary>
    public sealed class CommitResult
    {
        /// <summary>The base image after the commit.</summary>
        public VDiskInfo Base { get; set; }

        /// <summary>Guest bytes copied into the base.</summary>
        public long BytesCommitted { get; set; }

        /// <summary>Whether the top image was emptied (false with KeepTop, or when its format cannot discard).</summary>
        public bool TopEmptied { get; set; }

        /// <summary>Why the top was kept although emptying was asked for, or null.</summary>
        public string Warning { get; set; }
    }

    /// <summary>
    /// qemu-img commit: copies every run the layers above the base allocate into the base (growing the
    /// base when the top is larger), then empties the top unless asked to keep it. When the base is
    /// not the direct parent, the top is re-pointed at the base, dropping the layers between
    /// (qemu-img commit -b).
    /// An interrupted commit (cancelled, failed, or the process killed) leaves a chain that opens and reads
    /// the top's content: before the base is written, the layer whose parent it is records the identity the
    /// base is about to take (<see cref="IParentIdentityLayer"/>), so its pin on the base holds throughout;
    /// the top still holds every run being copied until the base is flushed; and the top is re-linked before
    /// it is emptied. Running the commit again completes it.
    /// </summary>
    public static class CommitOperation
    {
        private const int BufferSize = 4 << 20;

        public static CommitResult Run(string topPath, CommitOptions options = null, IProgress<OperationProgress> progress = null, CancellationToken cancel = default)
        {
            options = options ?? new CommitOptions();
            FormatRegistry registry = options.Registry ?? FormatRegistry.Default;
            Action<string> step = options.StepObserver ?? (_ => { });
            int baseDepth = FindBaseDepth(topPath, options, registry);
            bool repoint = baseDepth > 1;
            // The top is written even with KeepTop: formats that record the parent's identity
            // (VMDK parentCID, VHDX parent linkage) must be re-pinned to the changed base.
            ChainOptions open = options.OpenChain(options.Format, writable: true);
            open.WritableDepth = baseDepth;
            using (var chain = ImageChain.Open(topPath, open))
            {
                ImageLayer top = chain.Top;
                ImageLayer baseLayer = chain.Layers[baseDepth];
                IParentChangeableLayer parentChanger = null;
                if (repoint)
                {
                    parentChanger = options.KeepTop ? top as IParentChangeableLayer : Capability.Require<IParentChangeableLayer>(top, "changing the backing file");
                }

                // Before the base's first change (a resize is one): its child accepts the identity it will take.
                var pinned = chain.Layers[baseDepth - 1] as IParentIdentityLayer;
                pinned?.AcceptParentChange(baseLayer);
                step("accepted");

                var result = new CommitResult();
                if (baseLayer.Size < top.Size)
                {
                    Capability.Require<IResizableLayer>(baseLayer, "resize").Resize(top.Size, false, Preallocation.Off);
                    step("resized");
                }

                result.BytesCommitted = CopyAbove(chain, baseDepth, baseLayer, options.RateLimit, progress, step, cancel);

                // The base holds everything durably before any layer stops covering it.
                baseLayer.Flush();
                step("flushed");
                if (parentChanger != null)
                {
                    parentChanger.SetBacking(new BackingReference(RecordedPathFor(top, baseLayer), baseLayer.Format), baseLayer);
                    ImageChain.Stack(top, baseLayer);
                    top.Flush();
                    step("relinked");

                    // The dropped layer no longer describes its content over the changed base: it must not open as if it did.
                    pinned?.AbandonParentChange();
                }
                else if (top is IParentChangeableLayer sameParent && top.Backing != null)
                {
                    // Writing changed the base's identity (VMDK CID, VHDX DataWriteGuid); record the new one alone.
                    sameParent.SetBacking(top.Backing, baseLayer);
                    top.Flush();
                    step("relinked");
                }

                if (!options.KeepTop)
                {
                    if (top is IDiscardableLayer discardable)
                    {
                        discardable.Discard(0, top.Size);
                        result.TopEmptied = true;
                    }
                    else
                    {
                        result.Warning = $"{top.Format.ToName()} cannot discard clusters; the top image keeps its data (as with KeepTop)";
                    }
                }

                top.Flush();
                step("done");
                result.Base = ImageInspector.Describe(baseLayer, baseDepth);
                return result;
            }
        }

        private static int FindBaseDepth(string topPath, CommitOptions options, FormatRegistry registry)
        {
            using (var chain = ImageChain.Open(topPath, options.OpenChain(options.Format)))
            {
                if (chain.Layers.Count < 2)
                {
                    throw new ImageChainException(chain.Top.Path, "backing file", "the image has no backing file to commit into");
                }

                if (!string.IsNullOrEmpty(options.BasePath))
                {
                    string wanted = System.IO.Path.GetFullPath(options.BasePath);
                    for (int depth = 1; depth < chain.Layers.Count; depth++)
                    {
                        if (ImageChain.PathComparer.Equals(chain.Layers[depth].Path, wanted))
                        {
                            return depth;
                        }
                    }

                    throw new ImageChainException(chain.Top.Path, "base", $"'{wanted}' is not a backing file of this image");
                }

                int baseDepth = options.BaseDepth ?? 1;
                if (baseDepth < 1 || baseDepth >= chain.Layers.Count)
                {
                    throw new ImageOptionException(chain.Top.Path, "base", $"the base depth must be between 1 and {chain.Layers.Count - 1}");
                }

                return baseDepth;
            }
        }

        /// <summary>Copies what the layers above <paramref name="baseDepth"/> allocate into the base; returns the bytes copied.</summary>
        private static long CopyAbove(ImageChain chain, int baseDepth, ImageLayer baseLayer, long rateLimit, IProgress<OperationProgress> progress, Action<string> step, CancellationToken cancel)
        {
            long size = chain.Size;
            long committed = 0;
            var clock = System.Diagnostics.Stopwatch.StartNew();
            byte[] current = ArrayPool<byte>.Shared.Rent(BufferSize);
            byte[] next = ArrayPool<byte>.Shared.Rent(BufferSize);

            // One data run is read ahead (from the layers above the base) while the previous one is
            // written into the base: the two never touch the same layer.
            Task pendingRead = null;
            long pendingOffset = 0;
            int pendingLength = 0;
            void WritePending()
            {
                if (pendingRead == null)
                {
                    return;
                }

                pendingRead.GetAwaiter().GetResult();
                pendingRead = null;
                baseLayer.Write(pendingOffset, current.AsSpan(0, pendingLength));
                step("write");
                committed += pendingLength;
                Throttle(committed, rateLimit, clock, cancel);
                OperationSupport.Report(progress, "Committing", pendingOffset + pendingLength, size);
            }

            try
            {
                long offset = 0;
                while (offset < size)
                {
                    cancel.ThrowIfCancellationRequested();
                    BlockStatus status = chain.GetBlockStatus(offset, size - offset);
                    long length = status.Length;
                    if (status.Depth < baseDepth)
                    {
                        if (status.Kind == ExtentKind.Data)
                        {
                            length = Math.Min(length, BufferSize);
                            long readOffset = offset;
                            int readLength = (int)length;
                            byte[] target = next;
                            Task read = Task.Run(() => chain.Read(readOffset, target.AsSpan(0, readLength)));
                            WritePending();
                            next = current;
                            current = target;
                            pendingRead = read;
                            pendingOffset = readOffset;
                            pendingLength = readLength;
                        }
                        else
                        {
                            // A zero run above the base (a zero marker, or past a shorter parent's end).
                            baseLayer.WriteZeroes(offset, length);
                            step("write");
                            committed += length;
                            Throttle(committed, rateLimit, clock, cancel);
                        }
                    }

                    offset += length;
                    if (pendingRead == null)
                    {
                        OperationSupport.Report(progress, "Committing", offset, size);
                    }
                }

                WritePending();
                OperationSupport.Report(progress, "Committing", size, size);
                return committed;
            }
            finally
            {
                // A failure leaves a read in flight: let it end before its buffer goes back.
                try
                {
                    pendingRead?.Wait();
                }
                catch (AggregateException)
                {
                }

                ArrayPool<byte>.Shared.Return(current);
                ArrayPool<byte>.Shared.Return(next);
            }
        }

        /// <summary>Waits until <paramref name="bytes"/> at <paramref name="rateLimit"/> bytes per second would have taken as long as the clock shows.</summary>
        private static void Throttle(long bytes, long rateLimit, System.Diagnostics.Stopwatch clock, CancellationToken cancel)
        {
            if (rateLimit <= 0)
            {
                return;
            }

            double due = (double)bytes / rateLimit * 1000;
            double wait = due - clock.Elapsed.TotalMilliseconds;
            if (wait > 0)
            {
                cancel.WaitHandle.WaitOne(TimeSpan.FromMilliseconds(Math.Min(wait, int.MaxValue)));
                cancel.ThrowIfCancellationRequested();
            }
        }

        /// <summary>The base's path as the top records it: relative to the top's folder when it lies there or below.</summary>
        internal static string RecordedPathFor(ImageLayer child, ImageLayer parent)
        {
            string folder = System.IO.Path.GetDirectoryName(child.Path) ?? string.Empty;
            string parentPath = parent.Path;
            string prefix = folder.EndsWith(System.IO.Path.DirectorySeparatorChar.ToString(), StringComparison.Ordinal) ? folder : folder + System.IO.Path.DirectorySeparatorChar;
            return parentPath.StartsWith(prefix, StringComparison.Ordinal) ? parentPath.Substring(prefix.Length) : parentPath;
        }
    }
}
