using System;
using System.Buffers.Binary;
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
            using var layer = FormatRegistry.Default.Open(path, Fmt.Vmdk, options ?? new OpenOptions());
            var buffer = new byte[layer.Size];
            layer.Read(0, buffer);
            return buffer;
        }

        /// <summary>A 1 MiB vmfsSparse (COWD) extent with three 4 KiB grains (0, 10, 255), written field by field.</summary>
        public static void CowdFile(string path)
        {
            const int grainSectors = 8;
            const int capacitySectors = 2048;
            byte[] file = new byte[(37 + 3 * grainSectors) * 512];
            System.Text.Encoding.ASCII.GetBytes("COWD").CopyTo(file, 0);
            Put32(file, 4, 1);
            Put32(file, 8, 3);
            Put32(file, 12, capacitySectors);
            Put32(file, 16, grainSectors);
            Put32(file, 20, 4);
            Put32(file, 24, 1);
            Put32(file, 4 * 512, 5);
            int[] grains = { 0, 10, 255 };
            for (int i = 0; i < grains.Length; i++)
            {
                int sector = 37 + i * grainSectors;
                Put32(file, 5 * 512 + grains[i] * 4, sector);
                TestData.Pattern(grainSectors * 512, 20 + i).CopyTo(file, sector * 512);
            }

            File.WriteAllBytes(path, file);
        }

        /// <summary>A 1 MiB seSparse extent in the layout qemu reads: grains 0, 9 and 200 allocated, grain 5 zero.</summary>
        public static void SeSparseFile(string path)
        {
            byte[] file = new byte[91 * 512];
            Put64(file, 0, 0xCAFEBABE);
            Put64(file, 8, 0x0000000200000001);
            Put64(file, 16, 2048);
            Put64(file, 24, 8);
            Put64(file, 32, 64);
            Put64(file, 80, 1);
            Put64(file, 88, 1);
            Put64(file, 128, 2);
            Put64(file, 136, 1);
            Put64(file, 144, 3);
            Put64(file, 152, 64);
            Put64(file, 192, 67);
            Put64(file, 200, 24);
            Put64(file, 512, 0xCAFECAFE);
            Put64(file, 2 * 512, 0x1000000000000000);
            (int Grain, ulong Entry)[] entries = { (0, 0x3000000000000000), (5, 0x2000000000000000), (9, 0x3001000000000000), (200, 0x3002000000000000) };
            foreach (var (grain, entry) in entries)
            {
                Put64(file, 3 * 512 + grain * 8, entry);
            }

            for (int index = 0; index < 3; index++)
            {
                TestData.Pattern(4096, 30 + index).CopyTo(file, (67 + index * 8) * 512);
            }

            File.WriteAllBytes(path, file);
        }

        private static void Put32(byte[] target, int offset, int value) => BinaryPrimitives.WriteInt32LittleEndian(target.AsSpan(offset), value);

        private static void Put64(byte[] target, int offset, ulong value) => BinaryPrimitives.WriteUInt64LittleEndian(target.AsSpan(offset), value);

        private static void Put(FileStream file, long offset, byte[] data)
        {
            file.Position = offset;
            file.Write(data, 0, data.Length);
        }
    }
}
