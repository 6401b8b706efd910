using System;

namespace VDiskPS.Formats.Vhdx
{
    // The disk identifier is the Page 83 Data metadata item ([MS-VHDX] 2.6.2.7): the SCSI page 83 identity
    // a host presents for the disk, so two attached disks must not share it. The physical sector size is
    // another metadata item rewritten the same way.
    public sealed partial class VhdxLayer : IDiskIdentifierLayer, IPhysicalSectorSizeLayer
    {
        /// <summary>Rewrites the Physical Sector Size metadata item ([MS-VHDX] 2.6.2.5) through the log; 512 or 4096.</summary>
        public void SetPhysicalSectorSize(int bytes)
        {
            EnsureWritable();
            if (bytes != 512 && bytes != 4096)
            {
                throw new ImageOptionException(Path, "physical_sector_size", $"{bytes} is not 512 or 4096");
            }

            if (bytes == _metadata.PhysicalSectorSize)
            {
                return;
            }

            BeginModification(userVisible: false);
            _metadata.PhysicalSectorSize = bytes;
            QueueMetadataRewrite();
            CommitMetadata();
        }

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
