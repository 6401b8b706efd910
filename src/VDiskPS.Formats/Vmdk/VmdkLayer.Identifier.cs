using System;

namespace VDiskPS.Formats.Vmdk
{
    // The disk identifier is the descriptor's ddb.uuid (VMware Virtual Disk Format 5.0, "The Disk Database").
    internal partial class VmdkLayer : IDiskIdentifierLayer
    {
        internal const string DiskUuidKey = "ddb.uuid";

        /// <summary>
        /// Writes ddb.uuid (adding it when the descriptor has none). The content ids stay: CID describes the
        /// data, and delta disks pin it in parentCID, so children keep matching this disk.
        /// </summary>
        public void SetDiskIdentifier(Guid identifier)
        {
            EnsureWritable();
            Descriptor.SetDatabase(DiskUuidKey, VmdkCreateOptions.FormatUuid(identifier));
            WriteDescriptor();
        }
    }
}
