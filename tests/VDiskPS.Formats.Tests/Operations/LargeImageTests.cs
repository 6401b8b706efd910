using System.Diagnostics;
using Xunit;

namespace VDiskPS.Formats.Tests.Operations
{
    /// <summary>Operations walk block status, so a sparse 1 TiB image costs what its data costs.</summary>
    public class LargeImageTests
    {
        private const long TiB = 1L << 40;

        [Fact]
        public void SparseTerabyteImagesAreComparedMappedAndSyncedQuickly()
        {
            using var dir = new TempDir();
            string a = RawImages.Make(dir, "a.raw", TiB, (TiB / 2, TestData.Pattern(65536, 1)));
            string b = RawImages.Make(dir, "b.raw", TiB);
            var watch = Stopwatch.StartNew();
            VDiskComparison before = CompareOperation.Run(a, b);
            Assert.Equal(TiB / 2, before.FirstMismatchOffset);
            Assert.Equal(3, MapOperation.Run(a).Count);
            VDiskSyncResult sync = SyncOperation.Run(a, b);
            Assert.Equal(65536, sync.Written);
            Assert.True(CompareOperation.Run(a, b).Identical);
            Assert.True(watch.Elapsed.TotalSeconds < 20, $"took {watch.Elapsed}");
        }
    }
}
