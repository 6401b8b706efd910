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

        /// <summary>raw, qcow2, vmdk, vhd, vhdx or vdi.</summary>
        public string Format { get; set; }

        /// <summary>Fixed, Dynamic or Differencing.</summary>
        public string Type { get; set; }

        /// <summary>Format subtype: VMDK create type, qcow2 compat level, VDI image type.</summary>
        public string Subformat { get; set; }

        /// <summary>Virtual size in bytes.</summary>
        public long Size { get; set; }

        /// <summary>Bytes the image occupies on the host (all of its files, allocated space).</summary>
        public long FileSize { get; set; }

        public long ClusterSize { get; set; }

        /// <summary>Same as <see cref="ClusterSize"/> under the Hyper-V name.</summary>
        public long BlockSize => ClusterSize;

        public int LogicalSectorSize { get; set; } = 512;

        public int PhysicalSectorSize { get; set; } = 512;

        /// <summary>The parent path exactly as the image records it.</summary>
        public string ParentPath { get; set; }

        /// <summary>The parent path resolved against this image's directory.</summary>
        public string ParentFullPath { get; set; }

        public string ParentFormat { get; set; }

        public Guid? DiskIdentifier { get; set; }

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
