using System;
using System.IO;
using Xunit;

namespace VDiskPS.Formats.Tests.Qed
{
    /// <summary>The need-check flag and qemu-img check's findings (leaks, out-of-range entries), on images qemu made and then damaged.</summary>
    public class QedCheckTests
    {
        /// <summary>An image qemu-io abandons mid-session (abort): its need-check flag stays set, as after a crash.</summary>
        private static string UncleanImage(TempDir dir)
        {
            string path = dir.File("unclean.qed");
            Qemu.Img("create", "-f", "qed", path, "4M");
            var run = Qemu.Run("qemu-io", new[] { "-f", "qed", "-c", "write -P 0x33 0 64k", "-c", "write -P 0x44 2M 4k", "-c", "abort", path });
            Assert.NotEqual(0, run.ExitCode);
            Assert.Equal(2UL, QedInteropTests.Features(path) & 2);
            return path;
        }

        private static void Poke(string path, long offset, ulong value)
        {
            using var stream = new FileStream(path, FileMode.Open, FileAccess.ReadWrite);
            stream.Position = offset;
            stream.Write(BitConverter.GetBytes(value));
        }

        /// <summary>The file offset of the L2 entry for guest cluster <paramref name="cluster"/> (one L2 table, 64 KiB clusters).</summary>
        private static long L2EntryOffset(string path, long cluster)
        {
            byte[] header = QedInteropTests.HeaderBytes(path, 4096);
            long l1 = BitConverter.ToInt64(header, 40);
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read);
            var entry = new byte[8];
            stream.Position = l1;
            stream.ReadExactly(entry);
            return BitConverter.ToInt64(entry, 0) + (cluster * 8);
        }

        [Fact]
        public void AnUncleanImageReadsReadOnlyAndIsReportedDirtyWithoutBeingChanged()
        {
            using var dir = new TempDir();
            string path = UncleanImage(dir);
            byte[] before = File.ReadAllBytes(path);
            Assert.Equal(Qemu.ToRawBytes(path, "qed", dir.Path), TestData.ReadAll(path));
            Assert.True(ImageInspector.Get(path).Dirty);
            VDiskCheckResult check = CheckOperation.Run(path, null, RepairMode.None);
            Assert.True(check.IsValid);
            Assert.Contains(check.Messages, m => m.Contains("not closed cleanly"));
            Assert.Equal(before, File.ReadAllBytes(path));
        }

        [Fact]
        public void AWritableOpenChecksAnUncleanImageAndACleanCloseClearsTheFlag()
        {
            using var dir = new TempDir();
            string path = UncleanImage(dir);
            // A table entry past the end of the file, as a crash between the L2 write and the data can leave.
            Poke(path, L2EntryOffset(path, 40), 1UL << 40);
            Assert.Equal(2, Qemu.Check(path, "qed").ExitCode);
            Assert.Throws<ImageCorruptException>(() => TestData.ReadAll(path));
            using (var layer = FormatRegistry.Default.Open(path, null, new OpenOptions { Writable = true }))
            {
                Assert.Equal(0UL, QedInteropTests.Features(path) & 2);
                VDiskCheckResult result = ((ICheckableLayer)layer).Check(RepairMode.None);
                Assert.Equal(1, result.CorruptionsFixed);
                layer.Write(3L << 20, TestData.Pattern(512, 3));
            }

            Assert.Equal(0UL, QedInteropTests.Features(path) & 2);
            var check = Qemu.Check(path, "qed");
            Assert.True(check.ExitCode == 0, check.Output);
            Assert.Equal(Qemu.ToRawBytes(path, "qed", dir.Path), TestData.ReadAll(path));
        }

        [Fact]
        public void AnUncleanImageWithAClusterUsedTwiceIsRefusedForWriting()
        {
            using var dir = new TempDir();
            string path = UncleanImage(dir);
            long first = L2EntryOffset(path, 0);
            byte[] entry = new byte[8];
            using (var stream = new FileStream(path, FileMode.Open, FileAccess.Read))
            {
                stream.Position = first;
                stream.ReadExactly(entry);
            }

            Poke(path, L2EntryOffset(path, 48), BitConverter.ToUInt64(entry, 0));
            Assert.Equal(2, Qemu.Check(path, "qed").ExitCode);
            var error = Assert.Throws<ImageCorruptException>(() => FormatRegistry.Default.Open(path, null, new OpenOptions { Writable = true }).Dispose());
            Assert.Equal(ImageErrorKind.DamageNeedsCheck, error.Kind);
            Assert.Contains("not closed cleanly", error.Message);
            Assert.Equal(2UL, QedInteropTests.Features(path) & 2);
        }

        [Fact]
        public void LeaksMatchQemuAndTrailingLeaksAreRepaired()
        {
            using var dir = new TempDir();
            string path = dir.File("leak.qed");
            Qemu.Img("create", "-f", "qed", path, "4M");
            QedInteropTests.FillWithQemu(path);
            using (var stream = new FileStream(path, FileMode.Open, FileAccess.ReadWrite))
            {
                stream.SetLength(stream.Length + (3 * 65536));
            }

            var qemu = Qemu.Check(path, "qed");
            Assert.Equal(3, qemu.ExitCode);
            Assert.Contains("3 leaked clusters", qemu.Output);
            Assert.Equal(3, CheckOperation.Run(path, null, RepairMode.None).Leaks);
            VDiskCheckResult repaired = CheckOperation.Run(path, null, RepairMode.Leaks);
            Assert.Equal(3, repaired.LeaksFixed);
            Assert.Equal(0, repaired.Leaks);
            var after = Qemu.Check(path, "qed");
            Assert.True(after.ExitCode == 0, after.Output);
        }

        [Fact]
        public void ALeakBetweenUsedClustersIsCountedAsQemuCountsItAndRepairedByMovingData()
        {
            using var dir = new TempDir();
            string path = dir.File("midleak.qed");
            Qemu.Img("create", "-f", "qed", path, "4M");
            QedInteropTests.FillWithQemu(path);
            Poke(path, L2EntryOffset(path, 0), 0);
            var qemu = Qemu.Check(path, "qed");
            Assert.Equal(3, qemu.ExitCode);
            Assert.Contains("1 leaked clusters", qemu.Output);
            VDiskCheckResult ours = CheckOperation.Run(path, null, RepairMode.None);
            Assert.Equal(1, ours.Leaks);
            Assert.True(ours.IsValid);
            byte[] content = Qemu.ToRawBytes(path, "qed", dir.Path);
            long length = new FileInfo(path).Length;
            VDiskCheckResult repaired = CheckOperation.Run(path, null, RepairMode.Leaks);
            Assert.Equal(1, repaired.LeaksFixed);
            Assert.Equal(length - 65536, new FileInfo(path).Length);
            var after = Qemu.Check(path, "qed");
            Assert.True(after.ExitCode == 0, after.Output);
            Assert.Equal(content, Qemu.ToRawBytes(path, "qed", dir.Path));
        }

        [Fact]
        public void OutOfRangeEntriesAreCorruptionsAndRepairClearsThem()
        {
            using var dir = new TempDir();
            string path = dir.File("range.qed");
            Qemu.Img("create", "-f", "qed", path, "4M");
            QedInteropTests.FillWithQemu(path);
            Poke(path, L2EntryOffset(path, 50), (1UL << 40) + 4096);
            Poke(path, L2EntryOffset(path, 51), 65536 + 5);
            var qemu = Qemu.Check(path, "qed");
            Assert.Equal(2, qemu.ExitCode);
            Assert.Contains("2 errors were found", qemu.Output);
            VDiskCheckResult ours = CheckOperation.Run(path, null, RepairMode.None);
            Assert.Equal(2, ours.Corruptions);
            VDiskCheckResult repaired = CheckOperation.Run(path, null, RepairMode.All);
            Assert.Equal(2, repaired.CorruptionsFixed);
            Assert.True(repaired.IsValid);
            var after = Qemu.Check(path, "qed");
            Assert.True(after.ExitCode == 0, after.Output);
        }

        [Fact]
        public void CheckStatisticsMatchQemu()
        {
            using var dir = new TempDir();
            string path = dir.File("stats.qed");
            Qemu.Img("create", "-f", "qed", path, "8M");
            QedInteropTests.FillWithQemu(path);
            using var json = System.Text.Json.JsonDocument.Parse(Qemu.Run("qemu-img", new[] { "check", "--output=json", "-f", "qed", path }).Output);
            VDiskCheckResult ours = CheckOperation.Run(path, null, RepairMode.None);
            Assert.Equal(json.RootElement.GetProperty("total-clusters").GetInt64(), ours.TotalClusters);
            Assert.Equal(json.RootElement.GetProperty("allocated-clusters").GetInt64(), ours.AllocatedClusters);
            Assert.Equal(json.RootElement.GetProperty("fragmented-clusters").GetInt64(), ours.FragmentedClusters);
        }
    }
}
