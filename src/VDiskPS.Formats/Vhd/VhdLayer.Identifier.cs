using System;

namespace VDiskPS.Formats.Vhd
{
    // The disk identifier is the footer's Unique Id (VHD spec, "Hard Disk Footer Format", Unique Id).
    public sealed partial class VhdLayer : IDiskIdentifierLayer
    {
        /// <summary>
        /// Writes a new Unique Id into the footer at the end and, for dynamic and differencing disks, into its
        /// copy at offset 0, each with its checksum. Differencing disks made from this one record the old id
        /// as their Parent Unique Id, so they no longer match it (as after Set-VHD -ResetDiskIdentifier).
        /// </summary>
        public void SetDiskIdentifier(Guid identifier)
        {
            EnsureWritable();
            _footer.UniqueId = VhdFooter.FromGuid(identifier);
            WriteMetadata();
        }
    }
}
