using System;
using System.Collections.Generic;

namespace VDiskPS
{
    /// <summary>
    /// What Get-VDisk returns for one image (one layer of a chain). Field meanings match
    /// qemu-img info --output=json; the names match the Hyper-V VHD cmdlets where they overlap.
    /// </summary>
    public sealed class VDiskInfo
    {
        public string Path { get; set; }

        /// <summary>Same as <see cref="Path"/>, so the object binds to -Path/-FullName of the next cmdlet.</summary>
        public string FullName => Path;

        /// <summary>The format's name (raw, qcow2, vmdk, vhd, vhdx, vdi, ...: the -Format values).</summary>
        public string Format { get; set; }

        /// <summary>Get-VHD's VhdFormat: the format's name in capitals (VHD, VHDX, and so QCOW2, VMDK for the others).</summary>
        public string VhdFormat => Format?.ToUpperInvariant();

        /// <summary>Fixed, Dynamic or Differencing.</summary>
        public string Type { get; set; }

        /// <summary>Format subtype: VMDK create type, qcow2 compat level, VDI image type.</summary>
        public string Subformat { get; set; }

        /// <summary>Virtual size in bytes.</summary>
        public long Size { get; set; }

        /// <summary>The length of the image's files on the host, all extent files together (Get-VHD's FileSize).</summary>
        public long FileSize { get; set; }

        /// <summary>The bytes the host really stores for the image's files: holes in sparse files do not count (qemu-img info's actual-size).</summary>
        public long AllocatedSize { get; set; }

        /// <summary>
        /// The smallest size the disk can shrink to without cutting a partition (Get-VHD's MinimumSize): the end
        /// of the last partition of the guest's MBR or GPT, plus the backup GPT; null when the first sectors hold
        /// no partition table (or the chain below a differencing image could not be read).
        /// </summary>
        public long? MinimumSize { get; set; }

        public long ClusterSize { get; set; }

        /// <summary>Same as <see cref="ClusterSize"/> under the Hyper-V name.</summary>
        public long BlockSize => ClusterSize;

        public int LogicalSectorSize { get; set; } = 512;

        public int PhysicalSectorSize { get; set; } = 512;

        /// <summary>The parent's full path, as Get-VHD shows it (a VHDX shows its absolute parent locator); <see cref="BackingFile"/> holds the string as recorded.</summary>
        public string ParentPath { get; set; }

        /// <summary>The parent path exactly as the image records it (qemu-img info's backing-filename).</summary>
        public string BackingFile { get; set; }

        /// <summary>The parent file that is used: the recorded path resolved against this image's directory (qemu-img info's full-backing-filename).</summary>
        public string ParentFullPath { get; set; }

        public string ParentFormat { get; set; }

        public Guid? DiskIdentifier { get; set; }

        /// <summary>
        /// Get-VHD's FragmentationPercentage for block-based formats: the share of allocated blocks (in whole
        /// percent) whose data does not follow the previous allocated block's in the file, walking in guest
        /// order; null for raw images.
        /// </summary>
        public int? FragmentationPercentage { get; set; }

        /// <summary>Get-VHD's Alignment: 1 when every allocated block's data starts on a physical-sector boundary of the file and, for block-based formats, on a boundary of 1 MiB (or of the block, when blocks are smaller); else 0; null when the block map could not be read.</summary>
        public int? Alignment { get; set; }

        public bool Dirty { get; set; }

        public bool Corrupt { get; set; }

        public bool Encrypted { get; set; }

        public bool Compressed { get; set; }

        public int Snapshots { get; set; }

        public int Bitmaps { get; set; }

        /// <summary>Position in a chain: 0 for the image asked about, 1 for its parent, ...</summary>
        public int Depth { get; set; }

        /// <summary>For a disk inside an OVF package (Path is the .ova or .ovf): the file of the package that holds it; else null.</summary>
        public string Member { get; set; }

        /// <summary>For a disk inside an OVF package: its ovf:diskId in the descriptor's DiskSection; else null.</summary>
        public string DiskId { get; set; }

        /// <summary>Format-specific fields, named as in qemu-img info's "format-specific" data.</summary>
        public IDictionary<string, object> FormatSpecific { get; } = new SortedDictionary<string, object>(StringComparer.Ordinal);

        public override string ToString() => Path;
    }
}
