using System;
using System.Buffers.Binary;
using System.IO;
using System.Security.Cryptography;
using Xunit;

namespace VDiskPS.Formats.Tests.Vdi
{
    public class VdiHostileInputTests
    {
        private const int MapOffset = 0x200;

        private static string MakeDynamic(TempDir dir, string name = "d.vdi")
        {
            string path = dir.File(name);
            CreateOperation.Create(path, Fmt.Vdi, new CreateRequest { Size = 4L << 20 });
            using var layer = FormatRegistry.Default.Open(path, null, new OpenOptions { Writable = true });
            layer.Write(0, TestData.Pattern(2 << 20, 61));
            layer.Write(3L << 20, TestData.Pattern(4096, 62));
            return path;
        }

        private static void Patch(string path, long offset, uint value)
        {
            var bytes = new byte[4];
            BinaryPrimitives.WriteUInt32LittleEndian(bytes, value);
            using var stream = File.Open(path, FileMode.Open);
            stream.Position = offset;
            stream.Write(bytes);
        }

        private static ImageLayer Open(string path) => FormatRegistry.Default.Open(path, Fmt.Vdi, new OpenOptions());

        [Fact]
        public void MissingSignatureIsAFormatMismatch()
        {
            using var dir = new TempDir();
            string path = MakeDynamic(dir);
            Patch(path, 0x40, 0x12345678);
            Assert.Throws<ImageFormatMismatchException>(() => Open(path));
        }

        [Theory]
        [InlineData(0x180, 0xFFFFFFFFu)]
        [InlineData(0x178, 3u)]
        [InlineData(0x178, 0x80000000u)]
        [InlineData(0x154, 0x7FFFFE00u)]
        [InlineData(0x158, 0x200u)]
        [InlineData(0x174, 0x7FFFFFFFu)]
        public void AbsurdHeaderFieldsAreCorrupt(int fieldOffset, uint value)
        {
            using var dir = new TempDir();
            string path = MakeDynamic(dir);
            Patch(path, fieldOffset, value);
            Assert.Throws<ImageCorruptException>(() => Open(path));
        }

        [Fact]
        public void UnsupportedVersionIsNamed()
        {
            using var dir = new TempDir();
            string path = MakeDynamic(dir);
            Patch(path, 0x44, 0x00010000);
            var error = Assert.Throws<ImageNotSupportedException>(() => Open(path));
            Assert.Equal("version", error.Field);
        }

        [Fact]
        public void EntryPastTheDataAreaIsCorruptAsQemuSays()
        {
            using var dir = new TempDir();
            string path = MakeDynamic(dir);
            Patch(path, MapOffset + 4, 1000);
            Assert.NotEqual(0, Qemu.Check(path, "vdi").ExitCode);
            using var layer = Open(path);
            Assert.Throws<ImageCorruptException>(() => layer.Read(1L << 20, new byte[512]));
            var result = ((ICheckableLayer)layer).Check(RepairMode.None);
            Assert.True(result.Corruptions >= 1);
            Assert.Contains("too large", result.Messages[0]);
        }

        [Fact]
        public void BlockUsedTwiceIsCorrupt()
        {
            using var dir = new TempDir();
            string path = MakeDynamic(dir);
            Patch(path, MapOffset + 12, 0);
            Assert.NotEqual(0, Qemu.Check(path, "vdi").ExitCode);
            using var layer = Open(path);
            Assert.Throws<ImageCorruptException>(() => layer.Read(0, new byte[512]));
            Assert.Contains(((ICheckableLayer)layer).Check(RepairMode.None).Messages, m => m.Contains("also used"));
        }

        [Fact]
        public void WritableOpenOfABadImageDoesNotWriteIt()
        {
            using var dir = new TempDir();
            string path = MakeDynamic(dir);
            Patch(path, MapOffset + 4, 1000);
            byte[] before = File.ReadAllBytes(path);
            using (var layer = FormatRegistry.Default.Open(path, Fmt.Vdi, new OpenOptions { Writable = true }))
            {
                Assert.Throws<ImageCorruptException>(() => layer.Write(1L << 20, new byte[512]));
                Assert.Throws<ImageCorruptException>(() => ((IOptimizableLayer)layer).Optimize(null, default));
            }

            Assert.Equal(before, File.ReadAllBytes(path));
        }

        [Fact]
        public void TinyFileIsNotAVdi()
        {
            using var dir = new TempDir();
            string path = dir.File("tiny.vdi");
            File.WriteAllBytes(path, new byte[300]);
            Assert.Throws<ImageFormatMismatchException>(() => Open(path));
        }

        [Fact]
        public void RandomlyDamagedHeaderAndMapGiveOnlyTypedErrors()
        {
            using var dir = new TempDir();
            byte[] original = File.ReadAllBytes(MakeDynamic(dir));
            string victim = dir.File("victim.vdi");
            var rng = new Random(3);
            for (int iteration = 0; iteration < 100; iteration++)
            {
                byte[] damaged = (byte[])original.Clone();
                int flips = rng.Next(1, 5);
                for (int i = 0; i < flips; i++)
                {
                    damaged[rng.Next(0x40, 0x210)] = (byte)rng.Next(256);
                }

                File.WriteAllBytes(victim, damaged);
                byte[] before = SHA256.HashData(damaged);
                try
                {
                    using var chain = ImageChain.Open(victim, new ChainOptions { Format = Fmt.Vdi });
                    ImageLayer top = chain.Top;
                    long length = Math.Min(top.Size, 4L << 20);
                    top.Read(0, new byte[length]);
                    ((ICheckableLayer)top).Check(RepairMode.None);
                }
                catch (ImageException)
                {
                }

                Assert.Equal(before, SHA256.HashData(File.ReadAllBytes(victim)));
            }
        }
    }
}
