namespace VDiskPS.Formats.Ova
{
    /// <summary>The virtual machine an OVF descriptor describes (Get-VDiskOva), for sizing the VM it becomes.</summary>
    public sealed class OvfVirtualMachine
    {
        /// <summary>The .ova or .ovf file.</summary>
        public string Path { get; set; }

        /// <summary>The VirtualSystem's Name (its ovf:id where it has none).</summary>
        public string Name { get; set; }

        /// <summary>The VirtualSystem's ovf:id.</summary>
        public string Id { get; set; }

        /// <summary>Virtual CPUs (ResourceType 3), or null when the descriptor gives none.</summary>
        public int? CpuCount { get; set; }

        /// <summary>Memory in MiB (ResourceType 4, converted from its AllocationUnits), or null.</summary>
        public long? MemoryMB { get; set; }

        /// <summary>"bios" or "efi" (VMware's firmware setting); "bios" where the descriptor does not say.</summary>
        public string Firmware { get; set; }

        /// <summary>The guest OS: VMware's vmw:osType where present, else the OperatingSystemSection's description, else its CIM id.</summary>
        public string OSType { get; set; }

        /// <summary>The CIM operating system id (OperatingSystemSection ovf:id).</summary>
        public int? OSId { get; set; }

        /// <summary>The virtual hardware family (vmx-13, virtualbox-2.2, ...).</summary>
        public string HardwareFamily { get; set; }

        /// <summary>The logical networks the package names.</summary>
        public string[] Networks { get; set; } = new string[0];

        public OvfDisk[] Disks { get; set; } = new OvfDisk[0];

        public override string ToString() => Name;
    }

    /// <summary>One disk of an OVF package: DiskSection, its file and where the hardware attaches it.</summary>
    public sealed class OvfDisk
    {
        /// <summary>ovf:diskId.</summary>
        public string DiskId { get; set; }

        /// <summary>The file (ovf:href of the References entry) holding the disk.</summary>
        public string File { get; set; }

        /// <summary>The References entry's ovf:id.</summary>
        public string FileId { get; set; }

        /// <summary>The file's size from the References entry, or null.</summary>
        public long? FileSize { get; set; }

        /// <summary>Virtual size in bytes.</summary>
        public long Capacity { get; set; }

        /// <summary>Bytes of data the disk holds (ovf:populatedSize), or null.</summary>
        public long? PopulatedSize { get; set; }

        /// <summary>The disk format URI (ovf:format).</summary>
        public string Format { get; set; }

        /// <summary>The controller the disk hangs on: IDE, SCSI, SATA, NVMe, or the ResourceType number.</summary>
        public string Controller { get; set; }

        /// <summary>The controller's model (ResourceSubType: lsilogic, vmware.sata.ahci, AHCI, PIIX4, ...).</summary>
        public string ControllerModel { get; set; }

        /// <summary>The disk's unit on its controller (AddressOnParent), or null.</summary>
        public int? Address { get; set; }

        public override string ToString() => File ?? DiskId;
    }
}
