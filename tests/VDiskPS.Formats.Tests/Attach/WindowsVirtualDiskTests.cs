using System;
using System.Reflection;
using System.Runtime.InteropServices;
using VDiskPS.Formats.Attach;
using Xunit;

namespace VDiskPS.Formats.Tests.Attach
{
    /// <summary>
    /// Windows' attach path (virtdisk.dll) cannot run on this Linux machine; what can be checked here is
    /// checked: the formats it refuses before calling Windows, and the native structure layouts against
    /// virtdisk.h (sizes and offsets for x64, the only layout Windows PowerShell and PowerShell 7 run).
    /// </summary>
    public class WindowsVirtualDiskTests
    {
        [Theory]
        [InlineData("qcow2")]
        [InlineData("vmdk")]
        [InlineData("raw")]
        [InlineData("vdi")]
        public void Formats_Windows_cannot_open_are_refused_by_name_before_any_native_call(string formatName)
        {
            DiskFormat format = DiskFormat.Parse(formatName);
            var e = Assert.Throws<ImageNotSupportedException>(() => WindowsVirtualDisk.Attach("/images/disk", format, readOnly: true));
            Assert.Contains("Windows attaches vhd, vhdx images only", e.Message);
            Assert.Contains(format.ToName(), e.Message);
        }

        [Fact]
        public void Native_structures_match_virtdisk_h()
        {
            Type attach = typeof(WindowsVirtualDisk).GetNestedType("AttachParameters", BindingFlags.NonPublic);
            Type storage = typeof(WindowsVirtualDisk).GetNestedType("VirtualStorageType", BindingFlags.NonPublic);

            // ATTACH_VIRTUAL_DISK_PARAMETERS: Version (4), padding, union of 8-aligned members (16).
            Assert.Equal(24, Marshal.SizeOf(attach));
            Assert.Equal(8, (int)Marshal.OffsetOf(attach, "Reserved"));

            // VIRTUAL_STORAGE_TYPE: ULONG DeviceId, GUID VendorId.
            Assert.Equal(20, Marshal.SizeOf(storage));
            Assert.Equal(4, (int)Marshal.OffsetOf(storage, "VendorId"));
        }
    }
}
