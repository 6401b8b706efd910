using System;
using System.IO;
using Xunit;

namespace VDiskPS.Formats.Tests.Qed
{
    /// <summary>Damaged headers and tables of qemu-made QED images give typed errors, and a read-only open changes nothing.</summary>
    public class QedHostileInputTests
    {
        private static string QemuImage(TempDir dir, string options = "cluster_size=65536")
        {
            string path = dir.File("h.qed");
            Qemu.Img("create", "-f", "qed", "-o", options, path, "4M");
            QedInteropTests.FillWithQemu(path);
            return path;
        }

        private static void Patch(string path, long offset, byte[] bytes)
        {
            using var stream = new FileStream(path, FileMode.Open, FileAccess.ReadWrite);
            stream.Position = offset;
            stream.Write(bytes);
        }

        private static ImageLayer Open(string path, bool writable = false) => FormatRegistry.Default.Open(path, Fmt.Qed, new OpenOptions { Writable = writable });

        [Fact]
        public void MissingMagicIsAFormatMismatch()
        {
            using var dir = new TempDir();
            string path = QemuImage(dir);
            Patch(path, 0, new byte[] { 0x51, 0x45, 0x44, 0x01 });
            Assert.Throws<ImageFormatMismatchException>(() => Open(path));
        }

        [Theory]
        [InlineData(3)]
        [InlineData(17)]
        [InlineData(63)]
        public void UnknownIncompatibleFeaturesAreRefusedByBit(int bit)
        {
            using var dir = new TempDir();
            string path = QemuImage(dir);
            Patch(path, 16, BitConverter.GetBytes(1UL << bit));
            Assert.NotEqual(0, Qemu.Run("qemu-img", new[] { "info", "-f", "qed", path }).ExitCode);
            var error = Assert.Throws<ImageNotSupportedException>(() => Open(path));
            Assert.Contains($"bit {bit}", error.Message);
            Assert.Equal("features", error.Field);
        }

        [Fact]
        public void UnknownCompatFeaturesAreIgnoredAndUnknownAutoclearBitsClearedByAWriter()
        {
            using var dir = new TempDir();
            string path = QemuImage(dir);
            Patch(path, 24, BitConverter.GetBytes(1UL << 5));
            Patch(path, 32, BitConverter.GetBytes(1UL << 9));
            byte[] before = File.ReadAllBytes(path);
            Assert.Equal(Qemu.ToRawBytes(path, "qed", dir.Path), TestData.ReadAll(path));
            Assert.Equal(before, File.ReadAllBytes(path));
            Open(path, writable: true).Dispose();
            byte[] header = QedInteropTests.HeaderBytes(path);
            Assert.Equal(1UL << 5, BitConverter.ToUInt64(header, 24));
            Assert.Equal(0UL, BitConverter.ToUInt64(header, 32));
            Assert.Equal(0, Qemu.Check(path, "qed").ExitCode);
        }

        [Theory]
        [InlineData(4, 2048UL, 4)]
        [InlineData(4, 65537UL, 4)]
        [InlineData(8, 3UL, 4)]
        [InlineData(8, 32UL, 4)]
        [InlineData(12, 0xFFFFFFFFUL, 4)]
        [InlineData(40, 4096UL, 8)]
        [InlineData(40, 0UL, 8)]
        [InlineData(40, 1UL << 40, 8)]
        [InlineData(48, 1000UL, 8)]
        [InlineData(48, 1UL << 62, 8)]
        public void AbsurdHeaderFieldsAreCorrupt(int fieldOffset, ulong value, int width)
        {
            using var dir = new TempDir();
            string path = QemuImage(dir);
            byte[] bytes = width == 4 ? BitConverter.GetBytes((uint)value) : BitConverter.GetBytes(value);
            Patch(path, fieldOffset, bytes);
            byte[] before = File.ReadAllBytes(path);
            Assert.NotEqual(0, Qemu.Run("qemu-img", new[] { "info", "-f", "qed", path }).ExitCode);
            var error = Assert.Throws<ImageCorruptException>(() => Open(path));
            Assert.NotNull(error.Field);
            Assert.Equal(before, File.ReadAllBytes(path));
        }

        [Fact]
        public void ABackingNameOutsideTheHeaderIsCorrupt()
        {
            using var dir = new TempDir();
            File.WriteAllBytes(dir.File("b.raw"), new byte[4 << 20]);
            string path = dir.File("c.qed");
            Qemu.Img("create", "-f", "qed", "-b", "b.raw", "-F", "raw", path, "4M");
            Patch(path, 60, BitConverter.GetBytes(70000u));
            var error = Assert.Throws<ImageCorruptException>(() => Open(path));
            Assert.Equal("backing file name", error.Field);
        }

        [Fact]
        public void ABackingNameLongerThanQemuReadsIsRefused()
        {
            using var dir = new TempDir();
            File.WriteAllBytes(dir.File("b.raw"), new byte[4 << 20]);
            string path = dir.File("long.qed");
            Qemu.Img("create", "-f", "qed", "-b", "b.raw", "-F", "raw", path, "4M");
            Patch(path, 60, BitConverter.GetBytes(5000u));
            Assert.NotEqual(0, Qemu.Run("qemu-img", new[] { "info", "-f", "qed", "-U", path }).ExitCode);
            var error = Assert.Throws<ImageNotSupportedException>(() => Open(path));
            Assert.Equal("backing file name", error.Field);
        }

        [Fact]
        public void AnL2TableOffsetOutsideTheFileIsATypedErrorOnRead()
        {
            using var dir = new TempDir();
            string path = QemuImage(dir);
            byte[] header = QedInteropTests.HeaderBytes(path);
            long l1 = BitConverter.ToInt64(header, 40);
            Patch(path, l1, BitConverter.GetBytes(1UL << 44));
            using var layer = Open(path);
            var error = Assert.Throws<ImageCorruptException>(() => layer.Read(0, new byte[4096]));
            Assert.Equal("L1 entry 0", error.Field);
            Assert.Equal(l1, error.Offset);
            Assert.Equal(2, Qemu.Check(path, "qed").ExitCode);
            Assert.Equal(1, ((ICheckableLayer)layer).Check(RepairMode.None).Corruptions);
        }

        [Fact]
        public void ATruncatedFileIsATypedError()
        {
            using var dir = new TempDir();
            string path = QemuImage(dir);
            using (var stream = new FileStream(path, FileMode.Open, FileAccess.ReadWrite))
            {
                stream.SetLength(100000);
            }

            Assert.Throws<ImageCorruptException>(() => Open(path));
            using (var stream = new FileStream(path, FileMode.Open, FileAccess.ReadWrite))
            {
                stream.SetLength(40);
            }

            Assert.ThrowsAny<ImageException>(() => Open(path));
        }
    }
}
