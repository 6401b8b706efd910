using System;
using System.Buffers.Binary;
using System.IO;
using System.Security.Cryptography;
using Xunit;

namespace VDiskPS.Formats.Tests.Parallels
{
    /// <summary>Check and repair judged by qemu-img check; damaged headers and BATs give typed errors.</summary>
    public class ParallelsCheckTests
    {
        private const int Bat = 64;

        private static uint Read(string path, long offset) => BinaryPrimitives.ReadUInt32LittleEndian(File.ReadAllBytes(path).AsSpan((int)offset));

        private static string Image(TempDir dir) => ParallelsInteropTests.MakeQemuImage(dir);

        [Fact]
        public void CleanImageChecksCleanAsQemuSays()
        {
            using var dir = new TempDir();
            string path = Image(dir);
            Assert.Equal(0, Qemu.Check(path, "parallels").ExitCode);
            VDiskCheckResult result = CheckOperation.Run(path, null, RepairMode.None);
            Assert.True(result.IsValid);
            Assert.Equal(0, result.Leaks);
            Assert.Equal(64, result.TotalClusters);
            Assert.Equal(1 + 24 + 1 + 1, result.AllocatedClusters);
            Assert.Equal(new FileInfo(path).Length, result.ImageEndOffset);
        }

        [Fact]
        public void ClusterOutsideTheFileIsACorruptionThatRepairClears()
        {
            using var dir = new TempDir();
            string path = Image(dir);
            TestData.PatchUInt32(path, Bat + (10 * 4), 100_000);
            var qemuBefore = Qemu.Check(path, "parallels");
            Assert.Equal(2, qemuBefore.ExitCode);
            Assert.Contains("outside image", qemuBefore.Output);

            VDiskCheckResult result = CheckOperation.Run(path, null, RepairMode.None);
            Assert.Equal(1, result.Corruptions);
            var read = Assert.Throws<ImageCorruptException>(() => TestData.ReadAll(path));
            Assert.Equal(Bat + 40, read.Offset);
            Assert.Equal(ImageErrorKind.DamageNeedsCheck, read.Kind);

            VDiskCheckResult repaired = CheckOperation.Run(path, null, RepairMode.All);
            Assert.Equal(1, repaired.CorruptionsFixed);
            Assert.Equal(0u, Read(path, Bat + 40));
            Assert.Equal(0, Qemu.Check(path, "parallels").ExitCode);
            Assert.Equal(Qemu.ToRawBytes(path, "parallels", dir.Path), TestData.ReadAll(path));
        }

        [Fact]
        public void SpacePastTheLastClusterIsALeakThatRepairTruncates()
        {
            using var dir = new TempDir();
            string path = Image(dir);
            long length = new FileInfo(path).Length;
            using (var stream = File.Open(path, FileMode.Open))
            {
                stream.SetLength(length + (150 << 10));
            }

            var qemuBefore = Qemu.Check(path, "parallels");
            Assert.Equal(3, qemuBefore.ExitCode);
            Assert.Contains("3 leaked clusters", qemuBefore.Output);
            VDiskCheckResult result = CheckOperation.Run(path, null, RepairMode.None);
            Assert.True(result.IsValid);
            Assert.Equal(3, result.Leaks);

            VDiskCheckResult repaired = CheckOperation.Run(path, null, RepairMode.Leaks);
            Assert.Equal(3, repaired.LeaksFixed);
            Assert.Equal(length, new FileInfo(path).Length);
            Assert.Equal(0, Qemu.Check(path, "parallels").ExitCode);
        }

        [Fact]
        public void InUseMarkerIsACorruptionThatBlocksWritingUntilRepaired()
        {
            using var dir = new TempDir();
            string path = Image(dir);
            byte[] content = Qemu.ToRawBytes(path, "parallels", dir.Path);
            TestData.PatchUInt32(path, 44, 0x746F6E59);
            var qemuBefore = Qemu.Check(path, "parallels");
            Assert.Equal(2, qemuBefore.ExitCode);
            Assert.Contains("not closed correctly", qemuBefore.Output);

            // Reading is fine, as in qemu; writing is refused and leaves the file as it was.
            Assert.Equal(content, TestData.ReadAll(path));
            Assert.Equal(1, CheckOperation.Run(path, null, RepairMode.None).Corruptions);
            byte[] before = File.ReadAllBytes(path);
            using (var layer = FormatRegistry.Default.Open(path, null, new OpenOptions { Writable = true }))
            {
                var error = Assert.Throws<ImageCorruptException>(() => layer.Write(0, new byte[512]));
                Assert.Equal(ImageErrorKind.DamageNeedsCheck, error.Kind);
            }

            Assert.Equal(SHA256.HashData(before), SHA256.HashData(File.ReadAllBytes(path)));
            Assert.Equal(1, CheckOperation.Run(path, null, RepairMode.All).CorruptionsFixed);
            Assert.Equal(0, Qemu.Check(path, "parallels").ExitCode);
            Assert.Equal(content, TestData.ReadAll(path));
        }

        [Fact]
        public void OverlappingClustersAreSeparatedByRepairKeepingTheContent()
        {
            // qemu 7.2's check does not look for entries sharing a cluster; qemu's reading judges the content.
            using var dir = new TempDir();
            string path = Image(dir);
            uint first = Read(path, Bat);
            TestData.PatchUInt32(path, Bat + (40 * 4), first);
            byte[] content = Qemu.ToRawBytes(path, "parallels", dir.Path);
            Assert.Equal(content, TestData.ReadAll(path));
            VDiskCheckResult result = CheckOperation.Run(path, null, RepairMode.None);
            Assert.Equal(2, result.Corruptions);

            using (var layer = FormatRegistry.Default.Open(path, null, new OpenOptions { Writable = true }))
            {
                Assert.Throws<ImageCorruptException>(() => layer.Write(40L << 16, new byte[512]));
            }

            VDiskCheckResult repaired = CheckOperation.Run(path, null, RepairMode.All);
            Assert.Equal(2, repaired.CorruptionsFixed);
            Assert.NotEqual(first, Read(path, Bat + (40 * 4)));
            Assert.Equal(content, Qemu.ToRawBytes(path, "parallels", dir.Path));
            Assert.Equal(0, Qemu.Check(path, "parallels").ExitCode);
            Assert.True(CheckOperation.Run(path, null, RepairMode.None).IsValid);

            // The clusters are independent now: a write to one leaves the other as it was.
            using (var layer = FormatRegistry.Default.Open(path, null, new OpenOptions { Writable = true }))
            {
                layer.Write(40L << 16, TestData.Pattern(512, 9));
            }

            byte[] after = Qemu.ToRawBytes(path, "parallels", dir.Path);
            Assert.Equal(content.AsSpan(0, 512).ToArray(), after.AsSpan(0, 512).ToArray());
            Assert.Equal(TestData.Pattern(512, 9), after.AsSpan(40 << 16, 512).ToArray());
        }

        [Fact]
        public void FormatExtensionBlocksWritingButNotReading()
        {
            using var dir = new TempDir();
            string path = Image(dir);
            byte[] content = TestData.ReadAll(path);
            byte[] image = File.ReadAllBytes(path);
            BinaryPrimitives.WriteUInt64LittleEndian(image.AsSpan(56), (ulong)(image.Length / 512));
            File.WriteAllBytes(path, image);
            Assert.Equal(content, TestData.ReadAll(path));
            using var layer = FormatRegistry.Default.Open(path, null, new OpenOptions { Writable = true });
            var error = Assert.Throws<ImageNotSupportedException>(() => layer.Write(0, new byte[512]));
            Assert.Equal("ext_off", error.Field);
        }

        [Theory]
        [InlineData(16, 3u, typeof(ImageNotSupportedException), "version")]
        [InlineData(28, 0u, typeof(ImageCorruptException), "tracks")]
        [InlineData(28, 0x7FFFFFFFu, typeof(ImageCorruptException), "tracks")]
        [InlineData(32, 0x10000000u, typeof(ImageCorruptException), "bat entries")]
        [InlineData(32, 10_000_000u, typeof(ImageCorruptException), "bat entries")]
        [InlineData(40, 0xFFFFFFFFu, typeof(ImageCorruptException), "nb_sectors")]
        public void DamagedHeaderFieldsAreTypedErrors(int offset, uint value, Type expected, string field)
        {
            using var dir = new TempDir();
            string path = Image(dir);
            TestData.PatchUInt32(path, offset, value);
            byte[] before = File.ReadAllBytes(path);
            var error = Assert.ThrowsAny<ImageException>(() => TestData.ReadAll(path));
            Assert.IsType(expected, error);
            Assert.Equal(field, error.Field);
            Assert.Equal(path, error.FilePath);
            Assert.Equal(SHA256.HashData(before), SHA256.HashData(File.ReadAllBytes(path)));
        }

        [Fact]
        public void ClusterInTheHeaderAreaIsACorruptionAndDataOffMustClearTheBat()
        {
            // 4 KiB clusters: the 1024-entry BAT ends at byte 4160, so the header takes clusters 0 and 1.
            using var dir = new TempDir();
            string path = ParallelsInteropTests.MakeQemuImage(dir, "4k");
            Assert.Equal(16u, Read(path, 48));
            TestData.PatchUInt32(path, Bat + (5 * 4), 1);

            // qemu 7.2 reads cluster 1 (BAT bytes) as the guest's data and its check does not object; the engine refuses both.
            Assert.Equal(0, Qemu.Check(path, "parallels").ExitCode);
            var read = Assert.Throws<ImageCorruptException>(() => TestData.ReadAll(path));
            Assert.Equal("BAT entry 5", read.Field);
            Assert.Equal(1, CheckOperation.Run(path, null, RepairMode.None).Corruptions);
            Assert.Equal(1, CheckOperation.Run(path, null, RepairMode.All).CorruptionsFixed);
            Assert.Equal(0u, Read(path, Bat + (5 * 4)));

            TestData.PatchUInt32(path, 48, 4);
            var error = Assert.Throws<ImageCorruptException>(() => TestData.ReadAll(path));
            Assert.Equal("data_off", error.Field);
        }

        [Fact]
        public void ProbedMagicWithAnotherVersionIsNotReadAsRaw()
        {
            using var dir = new TempDir();
            string path = Image(dir);
            TestData.PatchUInt32(path, 16, 7);
            // qemu reads it as raw data; the engine refuses it as a Parallels version it does not know.
            Assert.Contains("file format: raw", Qemu.Img("info", path));
            var error = Assert.Throws<ImageNotSupportedException>(() => TestData.ReadAll(path));
            Assert.Equal("version", error.Field);
        }
    }
}
