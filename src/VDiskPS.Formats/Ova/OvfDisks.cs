using System.Linq;

namespace VDiskPS.Formats.Ova
{
    /// <summary>
    /// A format an OVF package's disks can be written in: the one whose file references importers accept
    /// (vSphere, Workstation and VirtualBox take streamOptimized VMDK). Its driver says how.
    /// </summary>
    public interface IOvfDiskDriver : ICreatableDriver
    {
        /// <summary>The DiskSection format URI the descriptor records.</summary>
        string OvfDiskFormatUri { get; }

        /// <summary>The extension of the disk files in the package.</summary>
        string OvfDiskExtension { get; }

        /// <summary>The create request of one packaged disk of <paramref name="size"/> bytes, written front to back.</summary>
        CreateRequest OvfDiskRequest(long size);
    }

    internal static class OvfDisks
    {
        public static IOvfDiskDriver Driver(FormatRegistry registry)
            => registry.Drivers.OfType<IOvfDiskDriver>().FirstOrDefault()
                ?? throw new ImageNotSupportedException(null, "format", null, "this build has no format an OVF package's disks can be written in");
    }
}
