using System;
using System.IO;
using Xunit;

namespace VDiskPS.Formats.Tests.Operations
{
    public class SyncTests
    {
        private const long MiB = 1 << 20;

        [Fact]
        public void OnlyDifferingBlocksAreWritten()
        {
            using var dir = new TempDir();
            byte[] common = TestData.Pattern(256 * 1024, 1);
            string source = RawImages.Make(dir, "src.raw", 2 * MiB, (0, common), (MiB, TestData.Pattern(4096, 2)));
            string target = RawImages.Make(dir, "dst.raw", 2 * MiB, (0, common));
            VDiskSyncResult result = SyncOperation.Run(source, target, new SyncOptions { BlockSize = 64 * 1024 });
            Assert.Equal(2 * MiB, result.Compared);
            Assert.Equal(64 * 1024, result.Written);
            Assert.Equal(2 * MiB - 64 * 1024, result.Skipped);
            Assert.Equal(File.ReadAllBytes(source), File.ReadAllBytes(target));
        }

        [Fact]
        public void DataThatBecameZeroIsWrittenAsZeroes()
        {
            using var dir = new TempDir();
            string source = RawImages.Make(dir, "src.raw", MiB);
            string target = RawImages.Make(dir, "dst.raw", MiB, (128 * 1024, TestData.Pattern(1000, 3)));
            VDiskSyncResult result = SyncOperation.Run(source, target, new SyncOptions { BlockSize = 64 * 1024 });
            Assert.Equal(64 * 1024, result.Written);
            Assert.True(CompareOperation.Run(source, target).Identical);
        }

        [Fact]
        public void SecondRunWritesNothing()
        {
            using var dir = new TempDir();
            string source = RawImages.Make(dir, "src.raw", MiB, (4096, TestData.Pattern(70000, 4)));
            string target = RawImages.Make(dir, "dst.raw", MiB);
            SyncOperation.Run(source, target);
            VDiskSyncResult again = SyncOperation.Run(source, target);
            Assert.Equal(0, again.Written);
            Assert.Equal(MiB, again.Skipped);
            Assert.True(Qemu.Compare(source, "raw", target, "raw").Identical);
        }

        [Fact]
        public void SmallerDestinationIsRefused()
        {
            using var dir = new TempDir();
            string source = RawImages.Make(dir, "src.raw", 2 * MiB);
            string target = RawImages.Make(dir, "dst.raw", MiB);
            Assert.Throws<ImageOptionException>(() => SyncOperation.Run(source, target));
            Assert.Equal(MiB, new FileInfo(target).Length);
        }

        [Fact]
        public void SmallerDestinationGrowsWhenAllowed()
        {
            using var dir = new TempDir();
            string source = RawImages.Make(dir, "src.raw", 2 * MiB, (MiB + 512, TestData.Pattern(512, 5)));
            string target = RawImages.Make(dir, "dst.raw", MiB);
            SyncOperation.Run(source, target, new SyncOptions { ResizeDestination = true });
            Assert.Equal(File.ReadAllBytes(source), File.ReadAllBytes(target));
        }
    }
}
