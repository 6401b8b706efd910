using System;
using System.IO;
using VDiskPS.Formats.Tests.Operations.TestFormat;
using Xunit;

namespace VDiskPS.Formats.Tests.Operations
{
    /// <remarks>
    /// Engine unit tests on the in-memory test format (the engine reads its own output back: no tool
    /// reads that format). ChainJudgedTests runs these operations on qcow2, vmdk, VHD and VHDX chains
    /// judged by qemu-img, libvhdi and libvmdk.
    /// </remarks>
    public class RebaseTests
    {
        private static RebaseOptions Options(string newParent, Action<RebaseOptions> change = null)
        {
            var options = new RebaseOptions { NewParentPath = newParent, Registry = OverlayTestDriver.Registry };
            change?.Invoke(options);
            return options;
        }

        [Fact]
        public void SafeRebaseOntoTheGrandparentKeepsTheContent()
        {
            using var dir = new TempDir();
            var (_, _, top) = Chains.ThreeLayers(dir);
            byte[] before = Chains.ReadAll(top);
            RebaseOperation.Run(top, Options("base.tdbl"));
            Assert.Equal("base.tdbl", Chains.RecordedParent(top));
            Assert.Equal(2, Chains.Depth(top));
            Assert.Equal(before, Chains.ReadAll(top));
        }

        [Fact]
        public void SafeRebaseCopiesOnlyClustersWhereTheParentsDiffer()
        {
            using var dir = new TempDir();
            var (_, _, top) = Chains.ThreeLayers(dir);
            int clustersBefore = Chains.DataClusters(top);
            RebaseResult result = RebaseOperation.Run(top, Options("base.tdbl"));
            // mid.tdbl differs from base.tdbl in clusters 2-3, 21 and 40-42; the top already holds 3 and 41.
            Assert.Equal(4 * Chains.Cluster, result.BytesCopied);
            Assert.True(Chains.DataClusters(top) <= clustersBefore + 4);
        }

        [Fact]
        public void SafeRebaseOntoAnUnrelatedRawImageKeepsTheContent()
        {
            using var dir = new TempDir();
            var (_, _, top) = Chains.ThreeLayers(dir);
            byte[] before = Chains.ReadAll(top);
            RawImages.Make(dir, "other.raw", Chains.Size / 2, (0, TestData.Pattern(Chains.Cluster * 5, 9)));
            RebaseOperation.Run(top, Options("other.raw", o => o.NewParentFormat = Fmt.Raw));
            Assert.Equal(before, Chains.ReadAll(top));
        }

        [Fact]
        public void UnsafeRebaseRewritesOnlyThePointer()
        {
            using var dir = new TempDir();
            var (basePath, mid, top) = Chains.ThreeLayers(dir);
            int clusters = Chains.DataClusters(top);
            File.Delete(mid);
            RebaseOperation.Run(top, Options("base.tdbl", o => o.Unsafe = true));
            Assert.Equal(clusters, Chains.DataClusters(top));
            Assert.Equal("base.tdbl", Chains.RecordedParent(top));
            Assert.Equal(Chains.ReadAll(basePath).AsSpan(0, Chains.Cluster).ToArray(), Chains.ReadAll(top).AsSpan(0, Chains.Cluster).ToArray());
        }

        [Fact]
        public void EmptyParentFlattensTheOverlay()
        {
            using var dir = new TempDir();
            var (_, _, top) = Chains.ThreeLayers(dir);
            byte[] before = Chains.ReadAll(top);
            RebaseOperation.Run(top, Options(string.Empty));
            Assert.Null(Chains.RecordedParent(top));
            Assert.Equal(1, Chains.Depth(top));
            Assert.Equal(before, Chains.ReadAll(top));
        }

        [Fact]
        public void DeduplicateDropsClustersEqualToTheNewParent()
        {
            using var dir = new TempDir();
            string basePath = OverlayTestDriver.CreateBase(dir.File("base.tdbl"), Chains.Size, (0, TestData.Pattern(4 * Chains.Cluster, 1)));
            string top = OverlayTestDriver.CreateOverlay(dir.File("top.tdbl"), basePath, Fmt.Qcow2);
            // Cluster 0 rewritten with the same bytes, cluster 1 changed.
            OverlayTestDriver.WriteInto(top, (0, TestData.Pattern(4 * Chains.Cluster, 1).AsSpan(0, 2 * Chains.Cluster).ToArray()), (Chains.Cluster + 5, new byte[] { 1, 2, 3 }));
            byte[] before = Chains.ReadAll(top);
            RebaseResult result = RebaseOperation.Run(top, Options("base.tdbl", o => o.Deduplicate = true));
            Assert.Equal(Chains.Cluster, result.BytesDeduplicated);
            Assert.Equal(1, Chains.DataClusters(top));
            Assert.Equal(before, Chains.ReadAll(top));
        }

        [Fact]
        public void WithoutDeduplicateDuplicateClustersStay()
        {
            using var dir = new TempDir();
            string basePath = OverlayTestDriver.CreateBase(dir.File("base.tdbl"), Chains.Size, (0, TestData.Pattern(Chains.Cluster, 1)));
            string top = OverlayTestDriver.CreateOverlay(dir.File("top.tdbl"), basePath, Fmt.Qcow2);
            OverlayTestDriver.WriteInto(top, (0, TestData.Pattern(Chains.Cluster, 1)));
            RebaseOperation.Run(top, Options("base.tdbl"));
            Assert.Equal(1, Chains.DataClusters(top));
        }

        [Fact]
        public void DeduplicateWithUnsafeIsRefused()
        {
            using var dir = new TempDir();
            var (_, _, top) = Chains.ThreeLayers(dir);
            byte[] before = File.ReadAllBytes(top);
            Assert.Throws<ImageOptionException>(() => RebaseOperation.Run(top, Options("base.tdbl", o => { o.Unsafe = true; o.Deduplicate = true; })));
            Assert.Equal(before, File.ReadAllBytes(top));
        }

        [Fact]
        public void RebasingOntoAChildOfTheOverlayIsRefused()
        {
            using var dir = new TempDir();
            var (basePath, _, _) = Chains.ThreeLayers(dir);
            Assert.Throws<ImageChainException>(() => RebaseOperation.Run(basePath, Options("top.tdbl")));
            Assert.Null(Chains.RecordedParent(basePath));
        }

        [Fact]
        public void RawCannotChangeItsParent()
        {
            using var dir = new TempDir();
            string raw = RawImages.Make(dir, "a.raw", Chains.Size);
            Assert.Throws<ImageNotSupportedException>(() => RebaseOperation.Run(raw, Options(string.Empty)));
        }
    }
}
