using System;
using System.Threading;
using VDiskPS;

namespace VDiskPS.Formats.Qcow2
{
    /// <summary>
    /// Optimize in place: cut the file after the last cluster with a non-zero refcount and punch the
    /// free clusters below it. Every structure (refcounts, L1/L2, snapshot table, bitmaps, header) is
    /// counted in the refcounts (qcow2.rst "Cluster refcounts"), so nothing referenced lies in what is
    /// released; refcounts are written first, so a crash at any point leaves a valid image.
    /// </summary>
    internal sealed partial class Qcow2Layer : IOptimizableLayer, IRetrimmableLayer
    {
        private const string OptimizePhase = "Optimizing";

        public long Optimize(IProgress<OperationProgress> progress, CancellationToken cancel)
        {
            EnsureWritable();
            cancel.ThrowIfCancellationRequested();
            lock (_gate)
            {
                PrepareToRelease();
                long before = _file.Length;
                OperationSupport.Report(progress, OptimizePhase, 0, before);
                cancel.ThrowIfCancellationRequested();
                long usedEnd = Refcounts.UsedEnd();
                long shrunk = TruncateAfterUsedClusters(usedEnd);
                OperationSupport.Report(progress, OptimizePhase, shrunk, before);

                long punched = PunchFreeClusters(usedEnd, progress, cancel, shrunk, before);
                _file.Flush();
                OperationSupport.Report(progress, OptimizePhase, before, before);
                return shrunk + punched;
            }
        }

        /// <summary>Punches the free clusters and the space past the last used one, keeping the file's length and every cluster's place.</summary>
        public long Retrim(IProgress<OperationProgress> progress, CancellationToken cancel)
        {
            EnsureWritable();
            cancel.ThrowIfCancellationRequested();
            lock (_gate)
            {
                PrepareToRelease();
                long length = _file.Length;
                long usedEnd = Refcounts.UsedEnd();
                long punched = PunchFreeClusters(usedEnd, progress, cancel, 0, length);
                long tail = Math.Min(length, usedEnd << ClusterBits);
                if (tail < length)
                {
                    punched += Math.Max(0, _file.PunchDataIn(tail, length));
                }

                _file.Flush();
                OperationSupport.Report(progress, OptimizePhase, length, length);
                return punched;
            }
        }

        /// <summary>The refcounts on disk must be the ones judged here before any byte is given back.</summary>
        private void PrepareToRelease()
        {
            EnsureWritableImage();
            StoreTrackedBitmaps();
            Refcounts.Flush();
            _file.Flush();
            RefuseInconsistentRefcounts();
        }

        /// <summary>Releasing clusters on refcounts that undercount references would destroy live data.</summary>
        private void RefuseInconsistentRefcounts()
        {
            VDiskCheckResult check = RunCheck(out _);
            if (check.Corruptions > 0)
            {
                throw new ImageCorruptException(Path, "refcounts", null,
                    $"the image has {check.Corruptions} corruption(s); repair it (qemu-img check -r all) before optimizing");
            }
        }

        /// <summary>Cuts the file at the end of the last used cluster; returns the bytes it shrank by.</summary>
        private long TruncateAfterUsedClusters(long usedEnd)
        {
            long before = _file.Length;
            long newLength = Math.Min(before, usedEnd << ClusterBits);
            if (newLength >= before)
            {
                return 0;
            }

            _file.SetLength(newLength);
            _file.Flush();
            Refcounts.Truncated(usedEnd);
            return before - newLength;
        }

        /// <summary>
        /// Punches the host space of free clusters below <paramref name="usedEnd"/> that still holds
        /// data; returns the bytes actually released (0 where the host cannot punch holes).
        /// </summary>
        private long PunchFreeClusters(long usedEnd, IProgress<OperationProgress> progress, CancellationToken cancel, long done, long total)
        {
            long punched = 0;
            foreach (var run in Refcounts.FreeRuns(usedEnd))
            {
                cancel.ThrowIfCancellationRequested();
                long start = run.Key << ClusterBits;
                long end = Math.Min(_file.Length, (run.Key + run.Value) << ClusterBits);
                long released = _file.PunchDataIn(start, end);
                if (released < 0)
                {
                    // The host cannot punch holes; no later run can be punched either.
                    break;
                }

                punched += released;
                OperationSupport.Report(progress, OptimizePhase, done + punched, total);
            }

            return punched;
        }
    }
}
