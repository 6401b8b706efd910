using System;
using System.IO;
using System.Security.Cryptography;
using System.Threading;
using Xunit;

namespace VDiskPS.Formats.Tests.Qcow2
{
    public class Qcow2OptimizeTests
    {
        private const long MiB = 1 << 20;
        private const long FileSystemSlack = 64 << 10;

        /// <summary>An 8 MiB image written by qemu-io at the start, in the middle and at the end.</summary>
        private static string MakeWritten(TempDir dir, string name, string options = "compat=1.1")
        {
            string path = dir.File(name);
            Qemu.Img("create", "-q", "-f", "qcow2", "-o", options, path, (8 * MiB).ToString());
            Qemu.Io("-f", "qcow2",
                "-c", "write -P 0x11 0 1M",
                "-c", "write -P 0x22 2M 1M",
                "-c", "write -P 0x33 6M 2M",
                path);
            return path;
        }

        /// <summary>The guest content as qemu-img reads it, kept as a raw file to compare with afterwards.</summary>
        private static string TakeRawCopy(TempDir dir, string path, string name)
        {
            string raw = dir.File(name);
            Qemu.Img("convert", "-f", "qcow2", "-O", "raw", path, raw);
            return raw;
        }

        private static void AssertSameContent(string raw, string path)
        {
            var compare = Qemu.Compare(raw, "raw", path, "qcow2");
            Assert.True(compare.Identical, compare.Output);
        }

        private static long ActualSize(string path)
        {
            using var info = Qemu.Info(path, "qcow2");
            return info.RootElement.GetProperty("actual-size").GetInt64();
        }

        /// <summary>Where qemu-img check finds the end of the last used cluster.</summary>
        private static long QemuImageEndOffset(string path)
        {
            using var check = System.Text.Json.JsonDocument.Parse(Qemu.Img("check", "--output=json", "-f", "qcow2", path));
            return check.RootElement.GetProperty("image-end-offset").GetInt64();
        }

        private static byte[] Hash(string path)
        {
            using var sha = SHA256.Create();
            return sha.ComputeHash(File.ReadAllBytes(path));
        }

        private static OptimizeResult OptimizeFull(string path)
            => OptimizeOperation.Run(path, new OptimizeOptions { Mode = OptimizeMode.Full });

        [Fact]
        public void TailDiscardedByQemuIsCutFromTheFile()
        {
            using var dir = new TempDir();
            string path = MakeWritten(dir, "a.qcow2");
            Qemu.Io("-f", "qcow2", "-c", "discard 6M 2M", path);
            string raw = TakeRawCopy(dir, path, "before.raw");
            long lengthBefore = new FileInfo(path).Length;

            OptimizeResult result = OptimizeFull(path);

            long lengthAfter = new FileInfo(path).Length;
            Assert.True(lengthAfter <= lengthBefore - 2 * MiB, $"{lengthBefore} -> {lengthAfter}");
            Assert.Equal(QemuImageEndOffset(path), lengthAfter);
            Assert.True(result.BytesReclaimed >= lengthBefore - lengthAfter, $"reclaimed {result.BytesReclaimed}");
            Qcow2TestImages.AssertQemuCheckClean(path);
            AssertSameContent(raw, path);
        }

        [Theory]
        [InlineData("compat=0.10")]
        [InlineData("cluster_size=4096,refcount_bits=1")]
        [InlineData("cluster_size=512,refcount_bits=64")]
        [InlineData("extended_l2=on,cluster_size=128k")]
        public void LayoutVariantsEndAtTheLastUsedClusterAndStayConsistent(string options)
        {
            using var dir = new TempDir();
            string path = MakeWritten(dir, "a.qcow2", options);
            Qemu.Io("-f", "qcow2", "-c", "write -P 0 2M 1M", path);
            using (var layer = Qcow2TestImages.OpenWritable(path))
            {
                ((IDiscardableLayer)layer).Discard(6 * MiB, 2 * MiB);
            }

            string raw = TakeRawCopy(dir, path, "before.raw");
            long lengthBefore = new FileInfo(path).Length;

            OptimizeResult result = OptimizeFull(path);

            // Metadata stays where it is: tiny clusters interleave L2 tables with data up to the old end.
            long lengthAfter = new FileInfo(path).Length;
            Assert.Equal(QemuImageEndOffset(path), lengthAfter);
            Assert.True(result.BytesReclaimed >= lengthBefore - lengthAfter);
            Qcow2TestImages.AssertQemuCheckClean(path);
            AssertSameContent(raw, path);
        }

        [Fact]
        public void ZeroFilledClustersInTheMiddleGiveTheirHostSpaceBack()
        {
            using var dir = new TempDir();
            string path = MakeWritten(dir, "a.qcow2");
            // Zeros written as data: only the full pass finds them, and the clusters lie before the tail.
            Qemu.Io("-f", "qcow2", "-c", "write -P 0 2M 1M", path);
            string raw = TakeRawCopy(dir, path, "before.raw");
            long actualBefore = ActualSize(path);

            OptimizeResult result = OptimizeFull(path);

            long actualAfter = ActualSize(path);
            // The host file system's own accounting (extent blocks) may move by a few KiB either way.
            Assert.True(actualBefore - actualAfter >= MiB - FileSystemSlack, $"{actualBefore} -> {actualAfter}");
            Assert.True(result.BytesReclaimed >= MiB, $"reclaimed {result.BytesReclaimed}");
            Qcow2TestImages.AssertQemuCheckClean(path);
            AssertSameContent(raw, path);
        }

        [Fact]
        public void TailDiscardedByTheLayerIsCutFromTheFile()
        {
            using var dir = new TempDir();
            string path = MakeWritten(dir, "a.qcow2");
            using (var layer = Qcow2TestImages.OpenWritable(path))
            {
                ((IDiscardableLayer)layer).Discard(6 * MiB, 2 * MiB);
                layer.WriteZeroes(2 * MiB, MiB);
            }

            string raw = TakeRawCopy(dir, path, "before.raw");
            long lengthBefore = new FileInfo(path).Length;
            long actualBefore = ActualSize(path);

            OptimizeResult result = OptimizeFull(path);

            Assert.True(new FileInfo(path).Length <= lengthBefore - 2 * MiB);
            Assert.True(ActualSize(path) < actualBefore);
            Assert.True(result.BytesReclaimed >= 2 * MiB);
            Qcow2TestImages.AssertQemuCheckClean(path);
            AssertSameContent(raw, path);
        }

        [Fact]
        public void InternalSnapshotSurvivesWithItsContent()
        {
            using var dir = new TempDir();
            string path = MakeWritten(dir, "a.qcow2");
            Qemu.Img("snapshot", "-c", "base", path);
            Qemu.Io("-f", "qcow2", "-c", "write -P 0x44 7M 1M", path);
            Qemu.Img("resize", "-f", "qcow2", path, (12 * MiB).ToString());
            Qemu.Io("-f", "qcow2", "-c", "write -P 0x66 9M 3M", "-c", "discard 9M 3M", path);
            string raw = TakeRawCopy(dir, path, "before.raw");
            string snapshotBefore = dir.File("snap-before.raw");
            Qemu.Img("convert", "-f", "qcow2", "-l", "snapshot.name=base", "-O", "raw", path, snapshotBefore);
            long lengthBefore = new FileInfo(path).Length;

            OptimizeFull(path);

            Assert.True(new FileInfo(path).Length < lengthBefore);
            Qcow2TestImages.AssertQemuCheckClean(path);
            AssertSameContent(raw, path);
            Assert.Contains("base", Qemu.Img("snapshot", "-l", path));
            string snapshotAfter = dir.File("snap-after.raw");
            Qemu.Img("convert", "-f", "qcow2", "-l", "snapshot.name=base", "-O", "raw", path, snapshotAfter);
            Assert.Equal(File.ReadAllBytes(snapshotBefore), File.ReadAllBytes(snapshotAfter));
        }

        [Fact]
        public void PersistentBitmapSurvives()
        {
            using var dir = new TempDir();
            string path = MakeWritten(dir, "a.qcow2");
            Qemu.Img("bitmap", "--add", path, "b0");
            Qemu.Io("-f", "qcow2", "-c", "write -P 0x77 3M 64k", path);
            // QEMU stores the bitmap at the end of the file on close, so the tail is released here instead.
            using (var layer = Qcow2TestImages.OpenWritable(path))
            {
                ((IDiscardableLayer)layer).Discard(6 * MiB, 2 * MiB);
            }

            string raw = TakeRawCopy(dir, path, "before.raw");
            long lengthBefore = new FileInfo(path).Length;

            OptimizeFull(path);

            Assert.True(new FileInfo(path).Length < lengthBefore);
            Qcow2TestImages.AssertQemuCheckClean(path);
            AssertSameContent(raw, path);
            using var info = Qemu.Info(path, "qcow2");
            string bitmaps = info.RootElement.GetProperty("format-specific").GetProperty("data").GetProperty("bitmaps").ToString();
            Assert.Contains("\"b0\"", bitmaps);
            Assert.DoesNotContain("in-use", bitmaps);
        }

        [Fact]
        public void NothingToReclaimReturnsZeroAndLeavesTheFileAlone()
        {
            using var dir = new TempDir();
            string path = MakeWritten(dir, "a.qcow2");
            byte[] before = Hash(path);

            OptimizeResult result = OptimizeFull(path);

            Assert.Equal(0, result.BytesReclaimed);
            Assert.Equal(before, Hash(path));
        }

        [Fact]
        public void CompressedImageEndingInsideAClusterIsLeftWhole()
        {
            using var dir = new TempDir();
            string written = MakeWritten(dir, "a.qcow2");
            string path = dir.File("c.qcow2");
            Qemu.Img("convert", "-c", "-f", "qcow2", "-O", "qcow2", written, path);
            string raw = TakeRawCopy(dir, path, "before.raw");
            byte[] before = Hash(path);

            OptimizeResult result = OptimizeFull(path);

            Assert.Equal(0, result.BytesReclaimed);
            Assert.Equal(before, Hash(path));
            Qcow2TestImages.AssertQemuCheckClean(path);
            AssertSameContent(raw, path);
        }

        [Fact]
        public void CancelledBeforeStartLeavesTheFileAlone()
        {
            using var dir = new TempDir();
            string path = MakeWritten(dir, "a.qcow2");
            Qemu.Io("-f", "qcow2", "-c", "discard 6M 2M", path);
            byte[] before = Hash(path);
            using var cancel = new CancellationTokenSource();
            cancel.Cancel();

            Assert.ThrowsAny<OperationCanceledException>(() =>
                OptimizeOperation.Run(path, new OptimizeOptions { Mode = OptimizeMode.Full }, null, cancel.Token));

            Assert.Equal(before, Hash(path));
        }

        [Fact]
        public void LayerCancelledBeforeStartLeavesTheFileAlone()
        {
            using var dir = new TempDir();
            string path = MakeWritten(dir, "a.qcow2");
            Qemu.Io("-f", "qcow2", "-c", "discard 6M 2M", path);
            byte[] before = Hash(path);
            using var cancel = new CancellationTokenSource();
            cancel.Cancel();

            using (var layer = Qcow2TestImages.OpenWritable(path))
            {
                Assert.ThrowsAny<OperationCanceledException>(() => ((IOptimizableLayer)layer).Optimize(null, cancel.Token));
            }

            Assert.Equal(before, Hash(path));
        }

        [Fact]
        public void UndercountedRefcountsAreRefusedAndTheFileIsLeftAlone()
        {
            using var dir = new TempDir();
            string path = MakeWritten(dir, "a.qcow2");
            Qemu.Io("-f", "qcow2", "-c", "discard 6M 2M", path);
            ZeroRefcountOfFirstDataCluster(path);
            Assert.NotEqual(0, Qemu.Check(path, "qcow2").ExitCode);
            byte[] before = Hash(path);

            var e = Assert.Throws<ImageCorruptException>(() => OptimizeFull(path));

            Assert.Contains("corruption", e.Message);
            Assert.Equal(before, Hash(path));
        }

        /// <summary>Sets the refcount of the cluster guest offset 0 maps to to 0 (16-bit refcounts, qcow2.rst "Cluster refcounts").</summary>
        private static void ZeroRefcountOfFirstDataCluster(string path)
        {
            using var file = new FileStream(path, FileMode.Open, FileAccess.ReadWrite);
            long l1Offset = ReadBigEndian(file, 40);
            long l2Offset = ReadBigEndian(file, l1Offset) & 0x00FFFFFFFFFFFE00L;
            long dataCluster = (ReadBigEndian(file, l2Offset) & 0x00FFFFFFFFFFFE00L) >> 16;
            long refcountTable = ReadBigEndian(file, 48);
            long refcountBlock = ReadBigEndian(file, refcountTable);
            file.Position = refcountBlock + dataCluster * 2;
            file.Write(new byte[2], 0, 2);
        }

        private static long ReadBigEndian(FileStream file, long offset)
        {
            var bytes = new byte[8];
            file.Position = offset;
            file.ReadExactly(bytes, 0, 8);
            return System.Buffers.Binary.BinaryPrimitives.ReadInt64BigEndian(bytes);
        }

        [Fact]
        public void ProgressIsReportedUnderTheOptimizingPhase()
        {
            using var dir = new TempDir();
            string path = MakeWritten(dir, "a.qcow2");
            Qemu.Io("-f", "qcow2", "-c", "discard 6M 2M", path);
            var phases = new System.Collections.Generic.List<OperationProgress>();
            var progress = new SynchronousProgress(phases.Add);

            OptimizeOperation.Run(path, new OptimizeOptions { Mode = OptimizeMode.Quick }, progress);

            Assert.Contains(phases, p => p.Phase == "Optimizing");
        }

        private sealed class SynchronousProgress : IProgress<OperationProgress>
        {
            private readonly Action<OperationProgress> _report;

            public SynchronousProgress(Action<OperationProgress> report) => _report = report;

            public void Report(OperationProgress value) => _report(value);
        }
    }
}
