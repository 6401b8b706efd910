namespace VDiskPS.Formats.Vmdk
{
    // Pointer-only rebase: a delta disk names its parent in parentFileNameHint and pins the parent's
    // content id in parentCID (VMware Virtual Disk Format 5.0, "Parent-Child Disk Relationships").
    internal partial class VmdkLayer : IParentChangeableLayer
    {
        public void SetBacking(BackingReference backing, ImageLayer parent)
        {
            EnsureWritable();
            if (backing == null)
            {
                Descriptor.ParentFileNameHint = null;
                Descriptor.ParentCid = VmdkDescriptor.NoParentCid;
            }
            else
            {
                if ((backing.Format.HasValue && backing.Format.Value != DiskFormat.Vmdk) || (parent != null && !(parent is VmdkLayer)))
                {
                    string format = parent?.Format.ToName() ?? backing.Format.Value.ToName();
                    throw new ImageNotSupportedException(Path, "parentFileNameHint", null, $"the new parent is {format}; a VMDK delta disk's parent must be a VMDK");
                }

                if (DiskType == DiskType.Fixed)
                {
                    throw new ImageNotSupportedException(Path, "parentFileNameHint", null, $"a {Descriptor.CreateType} disk stores every sector and cannot be a delta disk");
                }

                Descriptor.ParentFileNameHint = backing.PortablePath;

                // Without the opened parent its CID is unknown; ffffffff tells readers not to check it.
                Descriptor.ParentCid = parent is VmdkLayer vmdkParent ? vmdkParent.Cid : VmdkDescriptor.NoParentCid;
            }

            WriteDescriptor();
            ResetParentVerification();
        }
    }
}
