using System.IO;
using System.Linq;
using System.Text.Json;
using Xunit;

namespace VDiskPS.Formats.Tests.Operations
{
    /// <summary>
    /// The engine behind the Hyper-V names (issue 10): MinimumSize and the GPT a shrink leaves (judged by
    /// sgdisk), Optimize-VHD's default mode and Retrim (qemu-img check, compare, actual-size), and
    /// Get-VHD's FragmentationPercentage against qemu-img map.
    /// </summary>
    public class HyperVParityTests
    {
        private const long MiB = 1 << 20;

        // sgdisk's partition 1 from sector 2048, 20 MiB: it ends at byte 22020096; the backup GPT takes 33 sectors.
        private const long PartitionEnd = 22020096;
        private const long GptMinimum = PartitionEnd + (33 * 512);

        private static string GptRaw(TempDir dir, string name)
        {
            string path = dir.File(name);
            Qemu.Img("create", "-q", "-f", "raw", path, "64M");
            Qemu.Run("sgdisk", new[] { "-n", "1:2048:+20M", "-t", "1:8300", path }, expectSuccess: true);
            Qemu.Io("-f", "raw", "-c", "write -P 0x3c 1M 1M", "-c", "write -P 0x4d 20M 1M", path);
            return path;
        }

        private static long QemuLong(string path, string format, string field)
        {
            using JsonDocument info = Qemu.Info(path, format);
            return info.RootElement.GetProperty(field).GetInt64();
        }

        [Fact]
        public void MinimumSizeIsTheLastGptPartitionsEndPlusTheBackupTable()
        {
            using var dir = new TempDir();
            string raw = GptRaw(dir, "gpt.raw");
            Assert.Equal(GptMinimum, ImageInspector.Get(raw).MinimumSize);
        }

        [Fact]
        public void AGptWhoseHeaderChecksumFailsGivesNoMinimumSize()
        {
            using var dir = new TempDir();
            string raw = GptRaw(dir, "gpt.raw");
            using (var f = new FileStream(raw, FileMode.Open))
            {
                // Byte 40 of LBA 1: the first usable LBA, covered by the header CRC.
                f.Position = 512 + 40;
                f.WriteByte(0x7f);
            }

            Assert.Contains("CRC", Qemu.Run("sgdisk", new[] { "-v", raw }).Output, System.StringComparison.OrdinalIgnoreCase);
            Assert.Null(ImageInspector.Get(raw).MinimumSize);
        }

        [Theory]
        [InlineData("qcow2")]
        [InlineData("vhdx")]
        [InlineData("raw")]
        public void ShrinkingToTheMinimumLeavesAGptSgdiskFindsNoProblemsIn(string format)
        {
            using var dir = new TempDir();
            string raw = GptRaw(dir, "gpt.raw");
            string image = dir.File("disk." + format);
            Qemu.Img("convert", "-f", "raw", "-O", format, raw, image);
            ResizeOperation.Run(image, new ResizeOptions { ToMinimumSize = true });
            Assert.Equal(GptMinimum, QemuLong(image, format, "virtual-size"));
            if (format != "raw")
            {
                Assert.Equal(0, Qemu.Check(image, format).ExitCode);
            }

            string after = dir.File("after.raw");
            Qemu.Img("convert", "-f", format, "-O", "raw", image, after);
            string verify = Qemu.Run("sgdisk", new[] { "-v", after }).Output;
            Assert.Contains("No problems found", verify);
            byte[] before = File.ReadAllBytes(raw).Skip((int)MiB).Take((int)(PartitionEnd - MiB)).ToArray();
            byte[] kept = File.ReadAllBytes(after).Skip((int)MiB).Take((int)(PartitionEnd - MiB)).ToArray();
            Assert.Equal(before, kept);
        }

        [Fact]
        public void ASizeThatCutsAPartitionIsRefusedUnlessAllowed()
        {
            using var dir = new TempDir();
            string raw = GptRaw(dir, "gpt.raw");
            var e = Assert.Throws<ImageOptionException>(() => ResizeOperation.Run(raw, new ResizeOptions { Size = DiskSize.Parse("16M"), AllowShrink = true }));
            Assert.Equal(ResizeOperation.MinimumSizeField, e.Field);
            Assert.Equal(64 * MiB, new FileInfo(raw).Length);
            ResizeOperation.Run(raw, new ResizeOptions { Size = DiskSize.Parse("16M"), AllowShrink = true, AllowBelowMinimum = true });
            Assert.Equal(16 * MiB, new FileInfo(raw).Length);
        }

        [Fact]
        public void OptimizeDefaultsToFullForVhdAndQuickOtherwise()
        {
            using var dir = new TempDir();
            string vhd = dir.File("a.vhd");
            string qcow2 = dir.File("a.qcow2");
            Qemu.Img("create", "-q", "-f", "vpc", vhd, "8M");
            Qemu.Img("create", "-q", "-f", "qcow2", qcow2, "8M");
            Assert.Equal(OptimizeMode.Full, OptimizeOperation.Run(vhd).Mode);
            Assert.Equal(OptimizeMode.Quick, OptimizeOperation.Run(qcow2).Mode);
        }

        [Fact]
        public void RetrimPunchesTheBlocksAVhdxNoLongerUsesAndMovesNothing()
        {
            using var dir = new TempDir();
            string vhdx = dir.File("a.vhdx");
            Qemu.Img("create", "-q", "-f", "vhdx", "-o", "block_size=1M", vhdx, "8M");
            Qemu.Io("-f", "vhdx", "-c", "write -P 5 0 4M", vhdx);
            using (ImageLayer layer = FormatRegistry.Default.Open(vhdx, Fmt.Vhdx, new OpenOptions { Writable = true }))
            {
                // The guest trims two blocks: the BAT forgets them, the file keeps their space.
                ((IDiscardableLayer)layer).Discard(MiB, 2 * MiB);
                layer.Flush();
            }

            string copy = dir.File("copy.vhdx");
            File.Copy(vhdx, copy);
            long length = new FileInfo(vhdx).Length;
            long allocated = QemuLong(vhdx, "vhdx", "actual-size");
            OptimizeResult result = OptimizeOperation.Run(vhdx, new OptimizeOptions { Mode = OptimizeMode.Retrim });
            Assert.Equal(length, new FileInfo(vhdx).Length);
            Assert.True(QemuLong(vhdx, "vhdx", "actual-size") <= allocated - (2 * MiB), "the two trimmed blocks' space is given back");
            Assert.True(result.BytesReclaimed >= 2 * MiB);
            Assert.Equal(0, Qemu.Check(vhdx, "vhdx").ExitCode);
            Assert.True(Qemu.Compare(copy, "vhdx", vhdx, "vhdx", strict: true).Identical);
        }

        [Fact]
        public void FragmentationCountsTheBlocksQemuMapsOutOfGuestOrder()
        {
            using var dir = new TempDir();
            string path = dir.File("f.qcow2");
            Qemu.Img("create", "-q", "-f", "qcow2", "-o", "cluster_size=64k", path, "1M");
            Qemu.Io("-f", "qcow2", "-c", "write -P 1 128k 64k", "-c", "write -P 2 0 64k", "-c", "write -P 3 64k 64k", "-c", "write -P 4 192k 64k", path);
            using JsonDocument map = JsonDocument.Parse(Qemu.Img("map", "--output=json", "-f", "qcow2", path));
            var data = map.RootElement.EnumerateArray().Where(e => e.GetProperty("data").GetBoolean()).ToList();
            int breaks = Enumerable.Range(1, data.Count - 1).Count(i => data[i].GetProperty("offset").GetInt64() != data[i - 1].GetProperty("offset").GetInt64() + data[i - 1].GetProperty("length").GetInt64());

            // Host order 128k, 0, 64k, 192k: guest 0 and 64k follow each other, 128k and 192k each break the run.
            Assert.Equal(2, breaks);
            Assert.Equal(50, ImageInspector.Get(path).FragmentationPercentage);
        }
    }
}
