using System;
using System.IO;
using System.Linq;
using System.Threading;
using Xunit;

namespace VDiskPS.Formats.Tests.Vmdk
{
    /// <summary>Compaction of hosted sparse extents, with the default window of placements (see the subclass for a tiny one).</summary>
    [Collection(nameof(VmdkOptimizeTests))]
    public class VmdkOptimizeTests
    {
        private const long Grain = 65536;
        private const long MiB = 1 << 20;

        [Theory]
        [InlineData("monolithicSparse", null)]
        [InlineData("twoGbMaxExtentSparse", null)]
        [InlineData("monolithicSparse", "zeroed_grain=on")]
        public void FullOptimizeMovesGrainsIntoFreedSlotsAndShrinksTheExtent(string subformat, string extraOptions)
        {
            using var dir = new TempDir();
            string path = HoledImage(dir, subformat, extraOptions);
            string raw = RawCopy(dir, path);
            long before = ExtentBytes(path);

            var result = OptimizeOperation.Run(path, new OptimizeOptions { Mode = OptimizeMode.Full });

            // 16 zero grains in the middle and 8 before the last grain leave 24 free slots.
            Assert.Equal(24 * Grain, result.BytesReclaimed);
            Assert.Equal(before - result.BytesReclaimed, ExtentBytes(path));
            AssertCleanAndIdentical(path, raw);
        }

        [Fact]
        public void EveryExtentOfASplitImageIsCompacted()
        {
            using var dir = new TempDir();
            string path = dir.File("split.vmdk");
            Qemu.Img("create", "-q", "-f", "vmdk", "-o", "subformat=twoGbMaxExtentSparse", path, (4L << 30).ToString());
            Qemu.Io("-f", "vmdk",
                "-c", "write -P 0x71 0 128k", "-c", "write -P 0 128k 256k", "-c", "write -P 0x72 384k 64k",
                "-c", "write -P 0x73 3G 128k", "-c", "write -P 0 3221356544 128k", "-c", "write -P 0x74 3221487616 64k",
                path);
            string[] extents = { dir.File("split-s001.vmdk"), dir.File("split-s002.vmdk") };
            long[] before = extents.Select(f => new FileInfo(f).Length).ToArray();
            string raw = RawCopy(dir, path);

            var result = OptimizeOperation.Run(path, new OptimizeOptions { Mode = OptimizeMode.Full });

            Assert.Equal(before[0] - 4 * Grain, new FileInfo(extents[0]).Length);
            Assert.Equal(before[1] - 2 * Grain, new FileInfo(extents[1]).Length);
            Assert.Equal(6 * Grain, result.BytesReclaimed);
            AssertCleanAndIdentical(path, raw);
        }

        [Fact]
        public void DiscardedGrainsAreReclaimedByAQuickOptimize()
        {
            using var dir = new TempDir();
            string path = dir.File("d.vmdk");
            Qemu.Img("create", "-q", "-f", "vmdk", path, (4 * MiB).ToString());
            Qemu.Io("-f", "vmdk", "-c", "write -P 0x31 0 2M", path);
            using (var layer = FormatRegistry.Default.Open(path, Fmt.Vmdk, new OpenOptions { Writable = true }))
            {
                ((IDiscardableLayer)layer).Discard(0, MiB);
            }

            string raw = RawCopy(dir, path);
            long before = new FileInfo(path).Length;

            var result = OptimizeOperation.Run(path, new OptimizeOptions { Mode = OptimizeMode.Quick });

            Assert.Equal(MiB, result.BytesReclaimed);
            Assert.Equal(before - MiB, new FileInfo(path).Length);
            AssertCleanAndIdentical(path, raw);
        }

        [Fact]
        public void GrainTablesAfterTheGrainsMoveDownToo()
        {
            using var dir = new TempDir();
            string path = dir.File("t.vmdk");
            Qemu.Img("create", "-q", "-f", "vmdk", path, (32 * MiB).ToString());
            Qemu.Io("-f", "vmdk", "-c", "write -P 0x61 0 2M", path);
            using (var layer = FormatRegistry.Default.Open(path, Fmt.Vmdk, new OpenOptions { Writable = true }))
            {
                // The grain at 40 MiB is allocated after the 32 grains, then its new grain table and redundant table.
                ((IResizableLayer)layer).Resize(64 * MiB, false, Preallocation.Off);
                layer.Write(40 * MiB, TestData.Pattern((int)Grain, 7));
                ((IDiscardableLayer)layer).Discard(0, MiB);
            }

            string raw = RawCopy(dir, path);
            long before = new FileInfo(path).Length;

            var result = OptimizeOperation.Run(path, new OptimizeOptions { Mode = OptimizeMode.Quick });

            // Both 4 KiB tables and 15 grains fill the 16 free slots; the 60 KiB left over stay below the last
            // grain as a hole, so the file shrinks by 15 grains and 4 KiB and releases 16 grains in all.
            Assert.Equal(before - 15 * Grain - 4096, new FileInfo(path).Length);
            Assert.Equal(16 * Grain, result.BytesReclaimed);
            Assert.True(IsHole(path, 1052672, 61440), "the 60 KiB left over are a hole");
            AssertCleanAndIdentical(path, raw);
        }

        [Fact]
        public void GrainDirectoryMovedToTheEndStaysAndTheFreeSlotsBelowBecomeAHole()
        {
            using var dir = new TempDir();
            string path = dir.File("g.vmdk");
            Qemu.Img("create", "-q", "-f", "vmdk", path, (32 * MiB).ToString());
            Qemu.Io("-f", "vmdk", "-c", "write -P 0x62 0 2M", path);
            using (var layer = FormatRegistry.Default.Open(path, Fmt.Vmdk, new OpenOptions { Writable = true }))
            {
                // 256 grain tables no longer fit the directory's sector: both directories move to the end of the file.
                ((IResizableLayer)layer).Resize(8L << 30, false, Preallocation.Off);
                ((IDiscardableLayer)layer).Discard(0, MiB);
            }

            string raw = RawCopy(dir, path);
            long before = new FileInfo(path).Length;

            var result = OptimizeOperation.Run(path, new OptimizeOptions { Mode = OptimizeMode.Quick });

            Assert.Equal(before, new FileInfo(path).Length);
            Assert.Equal(16 * Grain, result.BytesReclaimed);
            Assert.True(IsHole(path, Grain, 16 * Grain), "the 16 discarded grains' slots are a hole");
            AssertCleanAndIdentical(path, raw);
        }

        [Fact]
        public void ImageWithNothingToFreeReturnsZeroAndIsByteUnchanged()
        {
            using var dir = new TempDir();
            string path = VmdkFixtures.QemuImage(dir, "monolithicSparse");
            byte[] before = File.ReadAllBytes(path);

            var result = OptimizeOperation.Run(path, new OptimizeOptions { Mode = OptimizeMode.Full });

            Assert.Equal(0, result.BytesReclaimed);
            Assert.Equal(before, File.ReadAllBytes(path));
        }

        [Fact]
        public void FlatImageIsRefusedAsPreallocatedAndUnchanged()
        {
            using var dir = new TempDir();
            string path = dir.File("flat.vmdk");
            Qemu.Img("create", "-q", "-f", "vmdk", "-o", "subformat=monolithicFlat", path, (2 * MiB).ToString());
            Qemu.Io("-f", "vmdk", "-c", "write -P 0x44 0 64k", "-c", "write -P 0 64k 64k", path);
            string[] files = Directory.GetFiles(dir.Path, "flat*").OrderBy(f => f, StringComparer.Ordinal).ToArray();
            byte[][] before = files.Select(File.ReadAllBytes).ToArray();

            var error = Assert.Throws<ImageNotSupportedException>(() => OptimizeOperation.Run(path, new OptimizeOptions { Mode = OptimizeMode.Full }));

            Assert.Contains("vmdk monolithicFlat extents are preallocated; there is nothing to optimize", error.Message);
            Assert.Equal(before, files.Select(File.ReadAllBytes).ToArray());
        }

        [Fact]
        public void StreamOptimizedImageIsRefusedAsReadOnly()
        {
            using var dir = new TempDir();
            string path = VmdkFixtures.QemuConverted(dir, VmdkFixtures.MixedRaw(dir), "streamOptimized");
            byte[] before = File.ReadAllBytes(path);

            var error = Assert.Throws<ImageNotSupportedException>(() => OptimizeOperation.Run(path, new OptimizeOptions { Mode = OptimizeMode.Quick }));

            Assert.Contains("streamOptimized extents are read-only", error.Message);
            Assert.Equal(before, File.ReadAllBytes(path));
        }

        [Fact]
        public void GrainsSharingASlotAreRefusedAsCorruptWithoutChangingTheFile()
        {
            using var dir = new TempDir();
            string path = VmdkFixtures.QemuImage(dir, "monolithicSparse");
            long entry = VmdkOperationTests.FirstGrainTableEntryOffset(path);
            VmdkOperationTests.PatchUInt32(path, entry + 4, VmdkOperationTests.ReadUInt32(path, entry));
            byte[] before = File.ReadAllBytes(path);

            var error = Assert.Throws<ImageCorruptException>(() => OptimizeOperation.Run(path, new OptimizeOptions { Mode = OptimizeMode.Quick }));

            Assert.Contains("overlap", error.Message);
            Assert.Equal(before, File.ReadAllBytes(path));
        }

        [Fact]
        public void CancelledOptimizeLeavesAConsistentImageThatALaterRunFinishes()
        {
            using var dir = new TempDir();
            string path = HoledImage(dir, "monolithicSparse");
            string raw = RawCopy(dir, path);
            long before = new FileInfo(path).Length;
            using var cancel = new CancellationTokenSource();
            var progress = new CancelAfterFirstMove(cancel);

            Assert.ThrowsAny<OperationCanceledException>(() => OptimizeOperation.Run(path, new OptimizeOptions { Mode = OptimizeMode.Full }, progress, cancel.Token));

            long partial = new FileInfo(path).Length;
            Assert.True(partial < before, $"the grain moved before the cancellation is given back ({partial} of {before})");
            AssertCleanAndIdentical(path, raw);

            var result = OptimizeOperation.Run(path, new OptimizeOptions { Mode = OptimizeMode.Quick });

            Assert.Equal(before - 24 * Grain, new FileInfo(path).Length);
            Assert.Equal(partial - new FileInfo(path).Length, result.BytesReclaimed);
            AssertCleanAndIdentical(path, raw);
        }

        /// <summary>
        /// An 8 MiB image whose grains lie in write order: 0-1M data (slots 0-15), 2-3M zeros (16-31),
        /// 6-6.5M data (32-39), 6.5-7M zeros (40-47), the last grain data (48).
        /// With zeroed_grain=on, the grain at 4 MiB is also a zeroed-grain entry (no space, not data).
        /// </summary>
        private static string HoledImage(TempDir dir, string subformat, string extraOptions = null)
        {
            string path = dir.File(subformat + ".vmdk");
            string options = "subformat=" + subformat + (extraOptions == null ? string.Empty : "," + extraOptions);
            Qemu.Img("create", "-q", "-f", "vmdk", "-o", options, path, (8 * MiB).ToString());
            Qemu.Io("-f", "vmdk",
                "-c", "write -P 0x51 0 1M",
                "-c", "write -P 0 2M 1M",
                "-c", "write -P 0x52 6M 512k",
                "-c", "write -P 0 6656k 512k",
                "-c", "write -P 0x53 8128k 64k",
                path);
            if (extraOptions != null)
            {
                Qemu.Io("-f", "vmdk", "-c", "write -z 4M 64k", path);
            }

            return path;
        }

        private static string RawCopy(TempDir dir, string path)
        {
            string raw = dir.File(Path.GetFileNameWithoutExtension(path) + "-before.raw");
            Qemu.Img("convert", "-f", "vmdk", "-O", "raw", path, raw);
            return raw;
        }

        /// <summary>Bytes of the image's sparse extent files: the split ones (name-s001.vmdk...), else the image itself.</summary>
        private static long ExtentBytes(string path)
        {
            string[] split = Directory.GetFiles(Path.GetDirectoryName(path), Path.GetFileNameWithoutExtension(path) + "-s*.vmdk");
            return (split.Length > 0 ? split : new[] { path }).Sum(f => new FileInfo(f).Length);
        }

        /// <summary>Whether the whole run of the file is a hole of the host file system.</summary>
        private static bool IsHole(string path, long offset, long length)
        {
            using var file = HostFile.Open(path, HostAccess.Read);
            var run = file.QueryAllocation(offset, length);
            return run.HasValue && !run.Value.IsData && run.Value.Length == length;
        }

        private static void AssertCleanAndIdentical(string path, string raw)
        {
            var check = Qemu.Check(path, "vmdk");
            Assert.True(check.ExitCode == 0, check.Output);

            // The engine's check also compares the redundant grain tables with the primary ones.
            using (var layer = FormatRegistry.Default.Open(path, Fmt.Vmdk, new OpenOptions()))
            {
                var own = ((ICheckableLayer)layer).Check(RepairMode.None);
                Assert.True(own.IsValid && own.Leaks == 0, string.Join("\n", own.Messages));
            }

            var compare = Qemu.Compare(path, "vmdk", raw, "raw");
            Assert.True(compare.Identical, compare.Output);
        }

        private sealed class CancelAfterFirstMove : IProgress<OperationProgress>
        {
            private readonly CancellationTokenSource _cancel;

            public CancelAfterFirstMove(CancellationTokenSource cancel)
            {
                _cancel = cancel;
            }

            public void Report(OperationProgress value)
            {
                if (value.Phase == "Optimizing" && value.BytesDone > 0)
                {
                    _cancel.Cancel();
                }
            }
        }
    }
}
