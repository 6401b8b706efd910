using System.IO;
using VDiskPS.Formats.Tests.Operations.TestFormat;
using Xunit;

namespace VDiskPS.Formats.Tests.Operations
{
    public class OptimizeTests
    {
        private const long MiB = 1 << 20;

        [Fact]
        public void RawZeroBlocksBecomeHoles()
        {
            using var dir = new TempDir();
            string path = RawImages.Make(dir, "a.raw", 2 * MiB, (0, TestData.Pattern(4096, 1)), (4096, new byte[MiB]), (MiB + 4096, TestData.Pattern(100, 2)));
            byte[] before = File.ReadAllBytes(path);
            OptimizeResult result = OptimizeOperation.Run(path);
            Assert.Equal(MiB, result.BytesReclaimed);
            Assert.Equal(before, File.ReadAllBytes(path));
            using var layer = FormatRegistry.Default.Open(path, Fmt.Raw, new OpenOptions());
            Assert.Equal(ExtentKind.Zero, layer.GetBlockStatus(4096, MiB).Kind);
        }

        [Fact]
        public void OptimizedRawStillComparesIdenticalInQemu()
        {
            using var dir = new TempDir();
            string path = RawImages.Make(dir, "a.raw", MiB, (8192, new byte[65536]), (100000, TestData.Pattern(5000, 3)));
            string copy = dir.File("copy.raw");
            File.Copy(path, copy);
            OptimizeOperation.Run(path, new OptimizeOptions { Mode = OptimizeMode.Full });
            Assert.True(Qemu.Compare(copy, "raw", path, "raw").Identical);
        }

        [Fact]
        public void FullModeReleasesZeroClustersOfAnOverlay()
        {
            using var dir = new TempDir();
            const int Cluster = Chains.Cluster;
            string basePath = OverlayTestDriver.CreateBase(dir.File("base.tdbl"), Chains.Size, (0, TestData.Pattern(Cluster, 1)));
            string top = OverlayTestDriver.CreateOverlay(dir.File("top.tdbl"), basePath, Fmt.Qcow2);
            // Zeros over parent data must stay zeros; zeros over parent zeros can fall through.
            OverlayTestDriver.WriteInto(top, (0, new byte[Cluster]), (5 * Cluster, new byte[2 * Cluster]), (9 * Cluster, TestData.Pattern(10, 2)));
            byte[] before = Chains.ReadAll(top);
            OptimizeResult result = OptimizeOperation.Run(top, new OptimizeOptions { Mode = OptimizeMode.Full, Registry = OverlayTestDriver.Registry });
            Assert.Equal(3 * Cluster, result.ZeroBytesReleased);
            Assert.Equal(1, Chains.DataClusters(top));
            Assert.Equal(before, Chains.ReadAll(top));
        }

        [Fact]
        public void QuickModeLeavesZeroDataClusters()
        {
            using var dir = new TempDir();
            string path = OverlayTestDriver.CreateBase(dir.File("a.tdbl"), Chains.Size, (0, new byte[Chains.Cluster]));
            OptimizeResult result = OptimizeOperation.Run(path, new OptimizeOptions { Registry = OverlayTestDriver.Registry });
            Assert.Equal(0, result.ZeroBytesReleased);
            Assert.Equal(1, Chains.DataClusters(path));
        }
    }
}
