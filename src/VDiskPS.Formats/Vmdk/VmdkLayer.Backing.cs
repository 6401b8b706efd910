using System.Globalization;

namespace VDiskPS.Formats.Vmdk
{
    // Pointer-only rebase: a delta disk names its parent in parentFileNameHint and pins the parent's
    // content id in parentCID (VMware Virtual Disk Format 5.0, "Parent-Child Disk Relationships").
    internal partial class VmdkLayer : IParentChangeableLayer, IParentIdentityLayer
    {
        /// <summary>
        /// The parent's CID from before a commit into it, accepted beside parentCID (which names the parent's
        /// new CID) until the commit completes. A ddb key: VMware and qemu ignore disk database entries they
        /// do not know.
        /// </summary>
        internal const string PreviousParentCidKey = "ddb.vdiskps.commitParentCID";

        public void SetBacking(BackingReference backing, ImageLayer parent)
        {
            EnsureWritable();
            if (backing == null)
            {
                Descriptor.ParentFileNameHint = null;
                Descriptor.RemoveDatabase(PreviousParentCidKey);
                Descriptor.ParentCid = VmdkDescriptor.NoParentCid;
            }
            else
            {
                if ((backing.Format.HasValue && backing.Format.Value != VmdkDriver.Id) || (parent != null && !(parent is VmdkLayer)))
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
                Descriptor.RemoveDatabase(PreviousParentCidKey);
            }

            WriteDescriptor();
            ResetParentVerification();
        }

        /// <summary>
        /// parentCID names the CID the parent takes for the commit, which the parent writes at once, and the
        /// old one stays accepted in the disk database: qemu, which compares parentCID with the parent's CID
        /// on every read through, reads the chain at every moment but the one between the two writes.
        /// </summary>
        public void AcceptParentChange(ImageLayer parent)
        {
            EnsureWritable();
            if (!(parent is VmdkLayer vmdkParent) || Descriptor.ParentCid == VmdkDescriptor.NoParentCid)
            {
                // Nothing pins the parent's content: its change cannot break this disk.
                return;
            }

            uint current = vmdkParent.Cid;
            Descriptor.ParentCid = vmdkParent.PrepareCid();
            Descriptor.SetDatabase(PreviousParentCidKey, current.ToString("x8", CultureInfo.InvariantCulture));
            WriteDescriptor();
            Flush();
            ResetParentVerification();
            vmdkParent.ApplyPreparedCid();
        }

        /// <summary>Pins the parent's CID from before the change again: this disk did not follow it.</summary>
        public void AbandonParentChange()
        {
            EnsureWritable();
            uint? previous = PreviousParentCid;
            if (previous.HasValue)
            {
                Descriptor.ParentCid = previous.Value;
                Descriptor.RemoveDatabase(PreviousParentCidKey);
                WriteDescriptor();
                Flush();
                ResetParentVerification();
            }
        }

        /// <summary>The parent CID recorded by <see cref="AcceptParentChange"/>, or null.</summary>
        private uint? PreviousParentCid
            => uint.TryParse(Descriptor.GetDatabase(PreviousParentCidKey) ?? string.Empty, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out uint cid) ? cid : (uint?)null;
    }
}
