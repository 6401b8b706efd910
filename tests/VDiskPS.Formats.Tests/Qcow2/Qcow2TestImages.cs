using System;
using System.IO;
using Xunit;

namespace VDiskPS.Formats.Tests.Qcow2
{
    /// <summary>Fixtures made by qemu-img/qemu-io, and the assertions every qcow2 test shares.</summary>
    internal static class Qcow2TestImages
    {
        public const long Size = 8L << 20;

        /// <summary>A qcow2 image with data written by qemu-io at scattered, unaligned places, plus zero writes and a discard.</summary>
        public static string MakeWithQemuIo(TempDir dir, string name, string options, long size = Size)
        {
            string path = dir.File(name);
            Qemu.Img("create", "-q", "-f", "qcow2", "-o", options, path, size.ToString());
            Qemu.Io("-f", "qcow2",
                "-c", "write -P 0x11 0 65536",
                "-c", "write -P 0x22 100000 300000",
                "-c", "write -P 0x33 1048576 4096",
                "-c", "write -P 0x44 3145000 70000",
                "-c", "write -z 1048576 2048",
                "-c", "write -P 0x55 5242880 1048576",
                "-c", "write -z 5373952 131072",
                "-c", "discard 5767168 65536",
                "-c", $"write -P 0x66 {size - 1000} 1000",
                path);
            return path;
        }

        /// <summary>Asserts the engine reads the image (with its chain) exactly as qemu-img convert -O raw does.</summary>
        public static void AssertReadsLikeQemu(TempDir dir, string path)
        {
            byte[] expected = Qemu.ToRawBytes(path, "qcow2", dir.Path);
            byte[] actual = TestData.ReadAll(path, Fmt.Qcow2);
            Assert.Equal(expected.Length, actual.Length);
            int mismatch = FirstMismatch(expected, actual);
            Assert.True(mismatch < 0, $"content differs from qemu at offset {mismatch}");
        }

        /// <summary>Asserts qemu-img check finds no error and no leak.</summary>
        public static void AssertQemuCheckClean(string path)
        {
            var check = Qemu.Check(path, "qcow2");
            Assert.True(check.ExitCode == 0, check.Output);
        }

        public static int FirstMismatch(byte[] a, byte[] b)
        {
            int n = Math.Min(a.Length, b.Length);
            for (int i = 0; i < n; i++)
            {
                if (a[i] != b[i])
                {
                    return i;
                }
            }

            return a.Length == b.Length ? -1 : n;
        }

        public static ImageLayer OpenWritable(string path) => FormatRegistry.Default.Open(path, Fmt.Qcow2, new OpenOptions { Writable = true });

        public static ImageLayer OpenRead(string path) => FormatRegistry.Default.Open(path, Fmt.Qcow2, new OpenOptions());

        /// <summary>Writes the same bytes to the image and to a model array, at scattered unaligned places.</summary>
        public static void WriteScattered(ImageLayer layer, byte[] model, int seed)
        {
            var rng = new Random(seed);
            long size = layer.Size;
            foreach (var (offset, length) in new (long, int)[]
            {
                (0, 65536), (70000, 5000), (131072, 262144), (1000000, 1), (2 << 20, 1 << 20), (size - 777, 777), (4194304 - 100, 200),
            })
            {
                var data = new byte[length];
                rng.NextBytes(data);
                layer.Write(offset, data);
                Array.Copy(data, 0, model, offset, length);
            }
        }

        public static void WriteRaw(string path, byte[] model) => File.WriteAllBytes(path, model);
    }
}
