using System.IO;

namespace VDiskPS.Formats.Tests.Vmdk
{
    /// <summary>Images for the VMDK tests, made by qemu-img/qemu-io or by the engine.</summary>
    internal static class VmdkFixtures
    {
        public const long SmallSize = 8L << 20;

        /// <summary>A raw image with data at aligned, unaligned and last positions, and an explicit zero run.</summary>
        public static string MixedRaw(TempDir dir, string name = "source.raw", long size = SmallSize)
        {
            string path = dir.File(name);
            using (var file = File.Create(path))
            {
                file.SetLength(size);
                Put(file, 0, TestData.Pattern(200000, 1));
                Put(file, (1L << 20) + 123, TestData.Pattern(70000, 2));
                Put(file, 3L << 20, new byte[1 << 20]);
                Put(file, size - 4096, TestData.Pattern(4096, 3));
            }

            return path;
        }

        /// <summary>qemu-img create -f vmdk -o subformat=..., then data written by qemu-io.</summary>
        public static string QemuImage(TempDir dir, string subformat, long size = SmallSize, string extraOptions = null, string name = null)
        {
            string path = dir.File(name ?? subformat + ".vmdk");
            string options = "subformat=" + subformat + (extraOptions == null ? string.Empty : "," + extraOptions);
            Qemu.Img("create", "-q", "-f", "vmdk", "-o", options, path, size.ToString());
            Qemu.Io("-f", "vmdk", "-c", "write -P 0x5a 0 200000", "-c", "write -P 0xa5 1048699 70000", "-c", $"write -P 0x11 {size - 4096} 4096", path);
            return path;
        }

        /// <summary>qemu-img convert of a raw image to a vmdk subformat (how qemu writes streamOptimized).</summary>
        public static string QemuConverted(TempDir dir, string raw, string subformat)
        {
            string path = dir.File("qemu-" + subformat + ".vmdk");
            Qemu.Img("convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=" + subformat, raw, path);
            return path;
        }

        public static byte[] EngineBytes(string path, OpenOptions options = null)
        {
            using var layer = FormatRegistry.Default.Open(path, DiskFormat.Vmdk, options ?? new OpenOptions());
            var buffer = new byte[layer.Size];
            layer.Read(0, buffer);
            return buffer;
        }

        private static void Put(FileStream file, long offset, byte[] data)
        {
            file.Position = offset;
            file.Write(data, 0, data.Length);
        }
    }
}
