using System;
using System.IO;
using System.Threading;
using Xunit;

namespace VDiskPS.Formats.Tests.Operations
{
    public class ConvertRawTests
    {
        private static string MakeMixedRaw(TempDir dir, string name)
        {
            string path = dir.File(name);
            CreateOperation.Create(path, Fmt.Raw, new CreateRequest { Size = 32L << 20 });
            using var layer = FormatRegistry.Default.Open(path, null, new OpenOptions { Writable = true });
            layer.Write(0, TestData.Pattern(1 << 20, 1));
            layer.Write(5L << 20, new byte[2 << 20]); // explicit zeros
            layer.Write((9L << 20) + 123, TestData.Pattern(70000, 2)); // unaligned
            layer.Write((32L << 20) - 4096, TestData.Pattern(4096, 3)); // last block
            return path;
        }

        [Fact]
        public void RawToRawIsIdenticalAndSparse()
        {
            using var dir = new TempDir();
            string source = MakeMixedRaw(dir, "src.raw");
            string target = dir.File("dst.raw");
            ConvertOperation.Run(source, target, new ConvertOptions { TargetFormat = Fmt.Raw });
            Assert.Equal(File.ReadAllBytes(source), File.ReadAllBytes(target));
            using var layer = FormatRegistry.Default.Open(target, null, new OpenOptions());
            // The explicit zero run stayed a hole.
            Assert.Equal(ExtentKind.Zero, layer.GetBlockStatus(5L << 20, 1 << 20).Kind);
        }

        [Fact]
        public void QemuImgComparesTheResultIdentical()
        {
            Assert.True(Qemu.Available, "qemu-img is required (apt-get install qemu-utils)");
            using var dir = new TempDir();
            string source = MakeMixedRaw(dir, "src.raw");
            string target = dir.File("dst.img");
            ConvertOperation.Run(source, target, new ConvertOptions { TargetFormat = Fmt.Raw });
            var (identical, output) = Qemu.Compare(source, "raw", target, "raw", strict: false);
            Assert.True(identical, output);
        }

        [Fact]
        public void SparseSizeZeroAllocatesEverything()
        {
            using var dir = new TempDir();
            string source = MakeMixedRaw(dir, "src.raw");
            string target = dir.File("full.raw");
            ConvertOperation.Run(source, target, new ConvertOptions { TargetFormat = Fmt.Raw, SparseSize = 0 });
            using var layer = FormatRegistry.Default.Open(target, null, new OpenOptions());
            var status = layer.GetBlockStatus(0, layer.Size);
            Assert.Equal(ExtentKind.Data, status.Kind);
            Assert.Equal(layer.Size, status.Length);
        }

        [Fact]
        public void ProgressReachesTheTotal()
        {
            using var dir = new TempDir();
            string source = MakeMixedRaw(dir, "src.raw");
            long last = -1, total = 0;
            var progress = new SyncProgress(p => { last = p.BytesDone; total = p.BytesTotal; });
            ConvertOperation.Run(source, dir.File("p.raw"), new ConvertOptions { TargetFormat = Fmt.Raw }, progress);
            Assert.Equal(32L << 20, total);
            Assert.Equal(total, last);
        }

        [Fact]
        public void CancelledConversionLeavesNoOutput()
        {
            using var dir = new TempDir();
            string source = MakeMixedRaw(dir, "src.raw");
            string target = dir.File("cancel.raw");
            using var cts = new CancellationTokenSource();
            cts.Cancel();
            Assert.ThrowsAny<OperationCanceledException>(() => ConvertOperation.Run(source, target, new ConvertOptions { TargetFormat = Fmt.Raw }, null, cts.Token));
            Assert.False(File.Exists(target));
        }

        [Fact]
        public void ExistingDestinationIsNotOverwrittenWithoutOverwrite()
        {
            using var dir = new TempDir();
            string source = MakeMixedRaw(dir, "src.raw");
            string target = dir.File("exists.raw");
            File.WriteAllText(target, "keep me");
            Assert.Throws<ImageIOException>(() => ConvertOperation.Run(source, target, new ConvertOptions { TargetFormat = Fmt.Raw }));
            Assert.Equal("keep me", File.ReadAllText(target));
        }

        [Fact]
        public void ConvertingOntoTheSourceIsRefused()
        {
            using var dir = new TempDir();
            string source = MakeMixedRaw(dir, "src.raw");
            Assert.Throws<ImageOptionException>(() => ConvertOperation.Run(source, source, new ConvertOptions { TargetFormat = Fmt.Raw, Target = new CreateRequest { Overwrite = true } }));
        }

        private sealed class SyncProgress : IProgress<OperationProgress>
        {
            private readonly Action<OperationProgress> _report;

            public SyncProgress(Action<OperationProgress> report) => _report = report;

            public void Report(OperationProgress value) => _report(value);
        }
    }
}
