using System;
using System.Linq;
using System.ComponentModel;
using System.Runtime.InteropServices;
using System.Text;
using Microsoft.Win32.SafeHandles;

namespace VDiskPS.Formats.Attach
{
    /// <summary>A format Windows' virtual disk service (virtdisk.dll) attaches, as Mount-VHD does.</summary>
    public interface IWindowsAttachableDriver
    {
        /// <summary>VIRTUAL_STORAGE_TYPE.DeviceId of the format.</summary>
        uint VirtualStorageDeviceId { get; }
    }

    /// <summary>
    /// A VHD or VHDX attached by Windows' virtual disk service (virtdisk.dll, as Mount-VHD does). The
    /// disk stays attached while the handle is open: detaching or leaving the session closes it.
    /// Windows reads the image (and its parents) itself, so only its own formats attach this way.
    /// </summary>
    internal sealed class WindowsVirtualDisk : IDiskAttachment
    {
        private const uint AccessAttachReadOnly = 0x00010000;
        private const uint AccessAttachReadWrite = 0x00020000;
        private const uint AccessDetach = 0x00040000;
        private const uint AccessGetInfo = 0x00080000;
        private const uint AttachFlagReadOnly = 0x00000001;
        private const int ErrorFileNotFound = 2;
        private const int ErrorPathNotFound = 3;
        private const int ErrorAccessDenied = 5;
        private const int ErrorSharingViolation = 32;
        private const int ErrorPrivilegeNotHeld = 1314;

        private static readonly Guid VendorMicrosoft = new Guid("EC984AEC-A0F9-47E9-901F-71415A66345B");

        private readonly SafeFileHandle _handle;
        private bool _detached;

        private WindowsVirtualDisk(string path, SafeFileHandle handle, string devicePath, bool readOnly)
        {
            Path = path;
            _handle = handle;
            DevicePath = devicePath;
            ReadOnly = readOnly;
        }

        public string Path { get; }

        public string Method => "virtdisk";

        public string DevicePath { get; }

        public string MountPoint => null;

        public bool ReadOnly { get; }

        public string Uri => null;

        public static WindowsVirtualDisk Attach(string path, DiskFormat format, bool readOnly)
        {
            var attachable = FormatRegistry.Default.Get(format) as IWindowsAttachableDriver;
            if (attachable == null)
            {
                string formats = string.Join(", ", FormatRegistry.Default.Drivers.OfType<IWindowsAttachableDriver>().Select(d => ((FormatDriver)d).Format.Name));
                throw new ImageNotSupportedException(path, "attach", null,
                    $"Windows attaches {formats} images only; this image is {format.ToName()} (convert it to one of those first, or serve it over NBD)");
            }

            uint device = attachable.VirtualStorageDeviceId;

            var type = new VirtualStorageType { DeviceId = device, VendorId = VendorMicrosoft };
            uint access = (readOnly ? AccessAttachReadOnly : AccessAttachReadWrite) | AccessDetach | AccessGetInfo;
            Check(path, "open", OpenVirtualDisk(ref type, path, access, 0, IntPtr.Zero, out SafeFileHandle handle));
            try
            {
                var parameters = new AttachParameters { Version = 1 };
                Check(path, "attach", AttachVirtualDisk(handle, IntPtr.Zero, readOnly ? AttachFlagReadOnly : 0, 0, ref parameters, IntPtr.Zero));
                uint size = 520;
                var physical = new StringBuilder((int)size / 2);
                Check(path, "find the attached disk of", GetVirtualDiskPhysicalPath(handle, ref size, physical));
                return new WindowsVirtualDisk(path, handle, physical.ToString(), readOnly);
            }
            catch
            {
                handle.Dispose();
                throw;
            }
        }

        public void Detach()
        {
            if (_detached)
            {
                return;
            }

            _detached = true;
            try
            {
                Check(Path, "detach", DetachVirtualDisk(_handle, 0, 0));
            }
            finally
            {
                _handle.Dispose();
            }
        }

        public void Dispose() => Detach();

        private static void Check(string path, string what, int error)
        {
            switch (error)
            {
                case 0:
                    return;
                case ErrorFileNotFound:
                case ErrorPathNotFound:
                    throw new ImageIOException(path, $"could not {what} the image: a file of it (or of its parent chain) was not found");
                case ErrorAccessDenied:
                case ErrorPrivilegeNotHeld:
                    throw new ImageIOException(path, $"could not {what} the image: Windows attaches disks for administrators only (run PowerShell elevated)");
                case ErrorSharingViolation:
                    throw new ImageLockedException(path, $"could not {what} the image: another process has it open", false, new Win32Exception(error));
                default:
                    throw new ImageIOException(path, $"could not {what} the image: {new Win32Exception(error).Message} (error {error})");
            }
        }

        [StructLayout(LayoutKind.Sequential)]
        private struct VirtualStorageType
        {
            public uint DeviceId;
            public Guid VendorId;
        }

        // ATTACH_VIRTUAL_DISK_PARAMETERS: the version, then a union aligned to 8 (version 2 holds
        // ULONGLONGs), so version 1's Reserved field is at offset 8 and the struct is 24 bytes.
        [StructLayout(LayoutKind.Explicit, Size = 24)]
        private struct AttachParameters
        {
            [FieldOffset(0)]
            public int Version;

            [FieldOffset(8)]
            public uint Reserved;
        }

        [DllImport("virtdisk.dll", CharSet = CharSet.Unicode, ExactSpelling = true)]
        private static extern int OpenVirtualDisk(ref VirtualStorageType virtualStorageType, string path, uint virtualDiskAccessMask, uint flags, IntPtr parameters, out SafeFileHandle handle);

        [DllImport("virtdisk.dll", ExactSpelling = true)]
        private static extern int AttachVirtualDisk(SafeFileHandle virtualDiskHandle, IntPtr securityDescriptor, uint flags, uint providerSpecificFlags, ref AttachParameters parameters, IntPtr overlapped);

        [DllImport("virtdisk.dll", CharSet = CharSet.Unicode, ExactSpelling = true)]
        private static extern int GetVirtualDiskPhysicalPath(SafeFileHandle virtualDiskHandle, ref uint diskPathSizeInBytes, StringBuilder diskPath);

        [DllImport("virtdisk.dll", ExactSpelling = true)]
        private static extern int DetachVirtualDisk(SafeFileHandle virtualDiskHandle, uint flags, uint providerSpecificFlags);
    }
}
