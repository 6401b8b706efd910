using System;
using System.Linq;
using System.Threading;

namespace VDiskPS.Formats.Vmdk
{
    // Optimize: every hosted sparse extent is compacted in place (grains moved into free space, file cut
    // after the last one). Flat extents are preallocated and stream-optimized ones written once, so a
    // disk made only of those has nothing this can give back and says so.
    internal partial class VmdkLayer : IOptimizableLayer
    {
        public long Optimize(IProgress<OperationProgress> progress, CancellationToken cancel)
        {
            EnsureWritable();
            var sparse = _extents.OfType<SparseExtent>().ToList();
            string blocked = sparse.Select(e => e.CompactBlockedReason).FirstOrDefault(r => r != null)
                ?? _extents.Where(e => !(e is SparseExtent) && e.ReadOnlyReason != null && !(e is ZeroExtent)).Select(e => e.ReadOnlyReason).FirstOrDefault();
            if (blocked != null)
            {
                throw new ImageNotSupportedException(Path, null, null, blocked);
            }

            if (sparse.Count == 0)
            {
                throw new ImageNotSupportedException(Path, null, null, $"vmdk {Descriptor.CreateType ?? "flat"} extents are preallocated; there is nothing to optimize");
            }

            Flush();
            long total = sparse.Sum(e => e.AllocatedGrainBytes());
            long done = 0;
            long released = 0;
            OperationSupport.Report(progress, "Optimizing", 0, total);
            foreach (SparseExtent extent in sparse)
            {
                released += extent.Compact(bytes =>
                {
                    done += bytes;
                    OperationSupport.Report(progress, "Optimizing", done, total);
                }, cancel);
            }

            OperationSupport.Report(progress, "Optimizing", total, total);
            return released;
        }
    }
}
