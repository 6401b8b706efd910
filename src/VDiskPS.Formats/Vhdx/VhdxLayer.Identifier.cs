using System;

namespace VDiskPS.Formats.Vhdx
{
    // The disk identifier is the Page 83 Data metadata item ([MS-VHDX] 2.6.2.7): the SCSI page 83 identity
    // a host presents for the disk, so two attached disks must not share it.
    public sealed partial class VhdxLayer : IDiskIdentifierLayer
    {
        /// <summary>
        /// Rewrites the metadata region with the new Page 83 Data through the log, so a crash leaves either the
        /// old or the new identifier. The guest-visible data does not change, so DataWriteGuid (the linkage
        /// differencing children check) stays: children keep opening against this disk.
        /// </summary>
        public void SetDiskIdentifier(Guid identifier)
        {
            EnsureWritable();
            BeginModification(userVisible: false);
            _metadata.Page83Data = identifier;
            QueueMetadataRewrite();
            CommitMetadata();
        }
    }
}
