namespace VDiskPS.Formats.Tests
{
    /// <summary>The formats the tests name; the engine itself lists them only in its registry.</summary>
    internal static class Fmt
    {
        public static readonly DiskFormat Raw = global::VDiskPS.Formats.Raw.RawDriver.Id;
        public static readonly DiskFormat Qcow2 = global::VDiskPS.Formats.Qcow2.Qcow2Driver.Id;
        public static readonly DiskFormat Vmdk = global::VDiskPS.Formats.Vmdk.VmdkDriver.Id;
        public static readonly DiskFormat Vhd = global::VDiskPS.Formats.Vhd.VhdDriver.Id;
        public static readonly DiskFormat Vhdx = global::VDiskPS.Formats.Vhdx.VhdxDriver.Id;
        public static readonly DiskFormat Vdi = global::VDiskPS.Formats.Vdi.VdiDriver.Id;
        public static readonly DiskFormat Qcow = global::VDiskPS.Formats.Qcow.QcowDriver.Id;
        public static readonly DiskFormat Qed = global::VDiskPS.Formats.Qed.QedDriver.Id;
        public static readonly DiskFormat Parallels = global::VDiskPS.Formats.Parallels.ParallelsDriver.Id;
        public static readonly DiskFormat Bochs = global::VDiskPS.Formats.Bochs.BochsDriver.Id;
        public static readonly DiskFormat Luks = global::VDiskPS.Formats.Luks.LuksDriver.Id;
    }
}
