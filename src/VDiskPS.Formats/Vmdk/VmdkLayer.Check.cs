using VDiskPS;

namespace VDiskPS.Formats.Vmdk
{
    // qemu-img check for VMDK: grain tables and grains of every sparse extent (flat extents have no metadata).
    internal partial class VmdkLayer : ICheckableLayer
    {
        public VDiskCheckResult Check(RepairMode repair)
        {
            if (repair != RepairMode.None)
            {
                EnsureWritable();
            }

            if (IsStreamed)
            {
                throw new ImageNotSupportedException(Path, null, null, "a streamOptimized image read as a stream (from a server that ignores range requests) cannot be checked: the check needs its grain directory, which the stream reaches last; convert it, then check the copy");
            }

            var result = new VDiskCheckResult { Path = Path, Format = Format.ToName() };
            foreach (var extent in _extents)
            {
                if (extent is SparseExtent sparse)
                {
                    sparse.Check(result, repair);
                }
            }

            return result;
        }
    }
}
