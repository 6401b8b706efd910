using System;
using System.Runtime.InteropServices;
using VDiskPS.Formats.Nbd;

namespace VDiskPS.Formats.Attach
{
    /// <summary>An image attached to this host as a disk, until <see cref="Detach"/>.</summary>
    public interface IDiskAttachment : IDisposable
    {
        /// <summary>The image file.</summary>
        string Path { get; }

        /// <summary>How it is attached: "nbd-client", "nbdfuse" or "virtdisk" (Windows).</summary>
        string Method { get; }

        /// <summary>/dev/nbdN, the FUSE file holding the guest disk, or \\.\PhysicalDriveN.</summary>
        string DevicePath { get; }

        /// <summary>The FUSE mount point; null for a block device.</summary>
        string MountPoint { get; }

        bool ReadOnly { get; }

        /// <summary>The NBD URI the attachment is served on; null where the OS opens the image itself.</summary>
        string Uri { get; }

        /// <summary>Flushes and detaches; a second call does nothing.</summary>
        void Detach();
    }

    /// <summary>Attaches an image the way the host can: NBD on Linux, the OS's virtual disk service for VHD and VHDX on Windows.</summary>
    public static class DiskAttachments
    {
        /// <summary>Attaches <paramref name="export"/>'s image; <paramref name="mountPoint"/> is the FUSE folder on Linux (null: a private one).</summary>
        public static IDiskAttachment Attach(NbdExportOptions export, string mountPoint)
        {
            if (RuntimeInformation.IsOSPlatform(OSPlatform.Windows))
            {
                if (mountPoint != null)
                {
                    throw new ImageOptionException(export.Path, "mount point", "Windows attaches the image as a disk; a mount point applies to FUSE on Linux only");
                }

                DiskFormat format = export.Format ?? FormatRegistry.Default.Probe(export.Path);
                return WindowsVirtualDisk.Attach(export.Path, format, !export.Writable);
            }

            if (RuntimeInformation.IsOSPlatform(OSPlatform.Linux))
            {
                return NbdAttachment.Attach(export, mountPoint);
            }

            throw new ImageNotSupportedException(export.Path, "attach", null,
                "attaching is done through NBD on Linux (nbd-client or nbdfuse) and through the virtual disk service on Windows; this operating system has neither (serve the image over NBD and attach it with the system's own client)");
        }
    }
}
