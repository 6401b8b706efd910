using System;
using System.Collections.Generic;
using System.Linq;

namespace VDiskPS.Formats.Ova
{
    /// <summary>
    /// The guest operating systems a package can name: the CIM_OperatingSystem OSType value the OVF
    /// spec puts in OperatingSystemSection ovf:id (which VirtualBox maps to its OS types), VMware's guest
    /// id (vmw:osType, which vSphere and Workstation use) and a description. Newer Windows releases have
    /// no CIM value; they carry 1 (Other) and the VMware id.
    /// </summary>
    public static class OvfGuests
    {
        private static readonly OvfGuest[] s_guests =
        {
            new OvfGuest("Other", 1, "otherGuest", "Other"),
            new OvfGuest("Other64", 102, "otherGuest64", "Other 64-bit"),
            new OvfGuest("Linux64", 101, "otherLinux64Guest", "Linux 64-bit"),
            new OvfGuest("Ubuntu64", 94, "ubuntu64Guest", "Ubuntu 64-bit"),
            new OvfGuest("Debian64", 96, "debian10_64Guest", "Debian 64-bit"),
            new OvfGuest("RHEL64", 80, "rhel8_64Guest", "Red Hat Enterprise Linux 64-bit"),
            new OvfGuest("CentOS64", 107, "centos8_64Guest", "CentOS 64-bit"),
            new OvfGuest("OracleLinux64", 109, "oracleLinux8_64Guest", "Oracle Linux 64-bit"),
            new OvfGuest("SLES64", 85, "sles15_64Guest", "SUSE Linux Enterprise Server 64-bit"),
            new OvfGuest("FreeBSD64", 78, "freebsd12_64Guest", "FreeBSD 64-bit"),
            new OvfGuest("Windows7_64", 105, "windows7_64Guest", "Microsoft Windows 7 64-bit"),
            new OvfGuest("Windows10_64", 120, "windows9_64Guest", "Microsoft Windows 10 64-bit"),
            new OvfGuest("WindowsServer2012R2", 115, "windows8Server64Guest", "Microsoft Windows Server 2012 R2"),
            new OvfGuest("WindowsServer2016", 118, "windows9Server64Guest", "Microsoft Windows Server 2016"),
            new OvfGuest("WindowsServer2019", 1, "windows2019srv_64Guest", "Microsoft Windows Server 2019"),
            new OvfGuest("WindowsServer2022", 1, "windows2019srvNext_64Guest", "Microsoft Windows Server 2022"),
        };

        public static IReadOnlyList<OvfGuest> All => s_guests;

        /// <summary>The guest named <paramref name="name"/> (case-insensitive; also by VMware id), or an option error listing the names.</summary>
        public static OvfGuest Find(string name)
        {
            OvfGuest guest = s_guests.FirstOrDefault(g => string.Equals(g.Name, name, StringComparison.OrdinalIgnoreCase) || string.Equals(g.VmwareId, name, StringComparison.OrdinalIgnoreCase));
            return guest ?? throw new ImageOptionException(null, "OS type", $"'{name}' is not a known guest; use one of {string.Join(", ", s_guests.Select(g => g.Name))}");
        }
    }

    /// <summary>One guest operating system as a descriptor names it.</summary>
    public sealed class OvfGuest
    {
        public OvfGuest(string name, int cimId, string vmwareId, string description)
        {
            Name = name;
            CimId = cimId;
            VmwareId = vmwareId;
            Description = description;
        }

        public string Name { get; }

        public int CimId { get; }

        public string VmwareId { get; }

        public string Description { get; }

        public override string ToString() => Name;
    }
}
