using System;
using System.Threading;
using VDiskPS.Formats.Tests.Operations.TestFormat;
using Xunit;

namespace VDiskPS.Formats.Tests.Operations
{
    /// <remarks>
    /// Engine unit tests on the in-memory test format (the engine reads its own output back: no tool
    /// reads that format). ChainJudgedTests runs these operations on qcow2, vmdk, VHD and VHDX chains
    /// judged by qemu-img, libvhdi and libvmdk.
    /// </remarks>
    public class CommitTests
    {
        private static CommitOptions Options(Action<CommitOptions> change = null)
        {
            var options = new CommitOptions { Registry = OverlayTestDriver.Registry };
            change?.Invoke(options);
            return options;
        }

        [Fact]
        public void CommitIntoTheParentKeepsTheContentAndEmptiesTheTop()
        {
            using var dir = new TempDir();
            var (_, mid, top) = Chains.ThreeLayers(dir);
            byte[] before = Chains.ReadAll(top);
            CommitResult result = CommitOperation.Run(top, Options());
            Assert.True(result.TopEmptied);
            Assert.Equal(0, Chains.DataClusters(top));
            Assert.Equal(before, Chains.ReadAll(mid));
            Assert.Equal(before, Chains.ReadAll(top));
        }

        [Fact]
        public void CommitIntoTheGrandparentRepointsTheTop()
        {
            using var dir = new TempDir();
            var (basePath, _, top) = Chains.ThreeLayers(dir);
            byte[] before = Chains.ReadAll(top);
            CommitResult result = CommitOperation.Run(top, Options(o => o.BasePath = basePath));
            Assert.Equal(basePath, result.Base.Path);
            Assert.Equal(before, Chains.ReadAll(basePath));
            Assert.Equal("base.tdbl", Chains.RecordedParent(top));
            Assert.Equal(2, Chains.Depth(top));
            Assert.Equal(before, Chains.ReadAll(top));
        }

        [Fact]
        public void BaseDepthTwoIsTheGrandparent()
        {
            using var dir = new TempDir();
            var (basePath, _, top) = Chains.ThreeLayers(dir);
            byte[] before = Chains.ReadAll(top);
            CommitOperation.Run(top, Options(o => o.BaseDepth = 2));
            Assert.Equal(before, Chains.ReadAll(basePath));
        }

        [Fact]
        public void KeepTopLeavesTheTopsData()
        {
            using var dir = new TempDir();
            var (_, mid, top) = Chains.ThreeLayers(dir);
            int clusters = Chains.DataClusters(top);
            byte[] before = Chains.ReadAll(top);
            CommitResult result = CommitOperation.Run(top, Options(o => o.KeepTop = true));
            Assert.False(result.TopEmptied);
            Assert.Equal(clusters, Chains.DataClusters(top));
            Assert.Equal(before, Chains.ReadAll(mid));
        }

        [Fact]
        public void OnlyRunsAllocatedAboveTheBaseAreCopied()
        {
            using var dir = new TempDir();
            var (_, _, top) = Chains.ThreeLayers(dir);
            CommitResult result = CommitOperation.Run(top, Options());
            // top.tdbl allocates clusters 3, 41 and 50-51.
            Assert.Equal(4 * Chains.Cluster, result.BytesCommitted);
        }

        [Fact]
        public void CommitIntoARawBaseGrowsItForALargerTop()
        {
            using var dir = new TempDir();
            string basePath = RawImages.Make(dir, "base.raw", Chains.Size, (0, TestData.Pattern(Chains.Cluster, 1)));
            string top = dir.File("top.tdbl");
            using (var parent = ImageChain.Open(basePath))
            {
                new OverlayTestDriver().Create(top, new CreateRequest { Size = 2 * Chains.Size, Backing = new BackingReference("base.raw", Fmt.Raw), BackingLayer = parent.Top }).Dispose();
            }

            OverlayTestDriver.WriteInto(top, (Chains.Size + 512, TestData.Pattern(600, 2)), (10, TestData.Pattern(10, 3)));
            byte[] before = Chains.ReadAll(top);
            CommitOperation.Run(top, Options());
            Assert.Equal(before, System.IO.File.ReadAllBytes(basePath));
        }

        [Fact]
        public void RateLimitSlowsTheCopy()
        {
            using var dir = new TempDir();
            var (_, _, top) = Chains.ThreeLayers(dir);
            var watch = System.Diagnostics.Stopwatch.StartNew();
            // 16 KiB at 64 KiB/s: about a quarter of a second.
            CommitOperation.Run(top, Options(o => o.RateLimit = 64 * 1024));
            Assert.True(watch.ElapsedMilliseconds >= 200, $"took {watch.ElapsedMilliseconds} ms");
        }

        [Fact]
        public void ImageWithoutParentIsRefused()
        {
            using var dir = new TempDir();
            string alone = RawImages.Make(dir, "alone.raw", Chains.Size);
            Assert.Throws<ImageChainException>(() => CommitOperation.Run(alone, Options()));
        }

        [Fact]
        public void BaseOutsideTheChainIsRefused()
        {
            using var dir = new TempDir();
            var (_, _, top) = Chains.ThreeLayers(dir);
            string other = RawImages.Make(dir, "other.raw", Chains.Size);
            Assert.Throws<ImageChainException>(() => CommitOperation.Run(top, Options(o => o.BasePath = other)));
        }

        [Fact]
        public void CancelledCommitLeavesTheChainReadingTheSame()
        {
            using var dir = new TempDir();
            var (_, _, top) = Chains.ThreeLayers(dir);
            byte[] before = Chains.ReadAll(top);
            using var cts = new CancellationTokenSource();
            cts.Cancel();
            Assert.ThrowsAny<OperationCanceledException>(() => CommitOperation.Run(top, Options(), null, cts.Token));
            Assert.Equal(before, Chains.ReadAll(top));
        }
    }
}
