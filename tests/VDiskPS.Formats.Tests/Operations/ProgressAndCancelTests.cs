using System;
using System.Threading;
using VDiskPS.Formats.Tests.Operations.TestFormat;
using Xunit;

namespace VDiskPS.Formats.Tests.Operations
{
    public class ProgressAndCancelTests
    {
        private sealed class LastProgress : IProgress<OperationProgress>
        {
            public OperationProgress Last { get; private set; }

            public void Report(OperationProgress value) => Last = value;
        }

        [Fact]
        public void SyncProgressReachesTheTotal()
        {
            using var dir = new TempDir();
            string source = RawImages.Make(dir, "src.raw", 1 << 20, (0, TestData.Pattern(4096, 1)));
            string target = RawImages.Make(dir, "dst.raw", 1 << 20);
            var progress = new LastProgress();
            SyncOperation.Run(source, target, null, progress);
            Assert.Equal(1 << 20, progress.Last.BytesTotal);
            Assert.Equal(100, progress.Last.Percent);
        }

        [Fact]
        public void CommitProgressReachesTheTotal()
        {
            using var dir = new TempDir();
            var (_, _, top) = Chains.ThreeLayers(dir);
            var progress = new LastProgress();
            CommitOperation.Run(top, new CommitOptions { Registry = OverlayTestDriver.Registry }, progress);
            Assert.Equal("Committing", progress.Last.Phase);
            Assert.Equal(Chains.Size, progress.Last.BytesDone);
        }

        [Fact]
        public void CancelledRebaseKeepsTheOldParent()
        {
            using var dir = new TempDir();
            var (_, _, top) = Chains.ThreeLayers(dir);
            byte[] before = Chains.ReadAll(top);
            using var cts = new CancellationTokenSource();
            cts.Cancel();
            Assert.ThrowsAny<OperationCanceledException>(() => RebaseOperation.Run(top, new RebaseOptions { NewParentPath = "base.tdbl", Registry = OverlayTestDriver.Registry }, null, cts.Token));
            Assert.Equal("mid.tdbl", Chains.RecordedParent(top));
            Assert.Equal(before, Chains.ReadAll(top));
        }

        [Fact]
        public void CancelledSyncLeavesTheDestinationReadable()
        {
            using var dir = new TempDir();
            string source = RawImages.Make(dir, "src.raw", 1 << 20, (0, TestData.Pattern(4096, 1)));
            string target = RawImages.Make(dir, "dst.raw", 1 << 20);
            using var cts = new CancellationTokenSource();
            cts.Cancel();
            Assert.ThrowsAny<OperationCanceledException>(() => SyncOperation.Run(source, target, null, null, cts.Token));
            Assert.Equal(new byte[1 << 20], System.IO.File.ReadAllBytes(target));
        }

        [Fact]
        public void DdReadsThroughTheSourceChain()
        {
            using var dir = new TempDir();
            var (_, _, top) = Chains.ThreeLayers(dir);
            string output = dir.File("out.raw");
            DdOperation.Run(top, output, new DdOptions { BlockSize = Chains.Cluster, Skip = 2, Count = 4, Registry = OverlayTestDriver.Registry });
            Assert.Equal(Chains.ReadAll(top).AsSpan(2 * Chains.Cluster, 4 * Chains.Cluster).ToArray(), System.IO.File.ReadAllBytes(output));
        }
    }
}
