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
    public class ConvertDeltaTests
    {
        private const int Cluster = Chains.Cluster;

        [Fact]
        public void ConvertWithAParentWritesOnlyTheDifferingClusters()
        {
            using var dir = new TempDir();
            byte[] content = TestData.Pattern((int)Chains.Size, 1);
            string parent = Chains.SaveRaw(dir, "parent.raw", content);
            byte[] changed = (byte[])content.Clone();
            changed[5 * Cluster + 17] ^= 0xFF;
            Array.Clear(changed, 9 * Cluster, Cluster);
            string source = Chains.SaveRaw(dir, "disk.raw", changed);
            string delta = dir.File("delta.tdbl");
            ConvertOperation.Run(source, delta, new ConvertOptions
            {
                TargetFormat = Fmt.Qcow2,
                Registry = OverlayTestDriver.Registry,
                Target = new CreateRequest { Backing = new BackingReference("parent.raw", Fmt.Raw) },
            });
            Assert.Equal(changed, Chains.ReadAll(delta));
            Assert.Equal(1, Chains.DataClusters(delta));
            Assert.True(CompareOperation.Run(source, delta, new CompareOptions { Registry = OverlayTestDriver.Registry }).Identical);
        }

        [Fact]
        public void DeleteSourceRemovesTheSourceAfterAVerifiedConversion()
        {
            using var dir = new TempDir();
            string source = RawImages.Make(dir, "src.raw", 1 << 20, (4096, TestData.Pattern(70000, 1)));
            byte[] content = File.ReadAllBytes(source);
            string target = dir.File("dst.raw");
            ConvertOperation.Run(source, target, new ConvertOptions { TargetFormat = Fmt.Raw, DeleteSource = true });
            Assert.False(File.Exists(source));
            Assert.Equal(content, File.ReadAllBytes(target));
        }

        [Fact]
        public void DeleteSourceKeepsTheBackingFilesOfTheSource()
        {
            using var dir = new TempDir();
            var (basePath, mid, top) = Chains.ThreeLayers(dir);
            byte[] content = Chains.ReadAll(top);
            string target = dir.File("flat.raw");
            ConvertOperation.Run(top, target, new ConvertOptions { TargetFormat = Fmt.Raw, DeleteSource = true, Registry = OverlayTestDriver.Registry });
            Assert.False(File.Exists(top));
            Assert.True(File.Exists(mid));
            Assert.True(File.Exists(basePath));
            Assert.Equal(content, File.ReadAllBytes(target));
        }

        [Fact]
        public void DeleteSourceKeepsTheSourceWhenTheOutputDiffers()
        {
            using var dir = new TempDir();
            string source = RawImages.Make(dir, "src.raw", 1 << 20, (0, TestData.Pattern(4096, 1)));
            // An existing, larger destination whose tail holds data cannot read the same as the source.
            string target = RawImages.Make(dir, "dst.raw", 2 << 20, ((1 << 20) + 10, new byte[] { 5 }));
            Assert.Throws<ImageIOException>(() => ConvertOperation.Run(source, target, new ConvertOptions { TargetFormat = Fmt.Raw, NoCreate = true, DeleteSource = true }));
            Assert.True(File.Exists(source));
            Assert.True(File.Exists(target));
        }

        [Fact]
        public void DeleteSourceWithASnapshotIsRefused()
        {
            using var dir = new TempDir();
            string source = RawImages.Make(dir, "src.raw", 1 << 20);
            Assert.Throws<ImageOptionException>(() => ConvertOperation.Run(source, dir.File("dst.raw"), new ConvertOptions { DeleteSource = true, Snapshot = "s1" }));
            Assert.True(File.Exists(source));
        }

        [Fact]
        public void SyncIntoAnOverlayKeepsItMinimal()
        {
            using var dir = new TempDir();
            byte[] content = TestData.Pattern((int)Chains.Size, 3);
            string parent = Chains.SaveRaw(dir, "parent.raw", content);
            string overlay = OverlayTestDriver.CreateOverlay(dir.File("overlay.tdbl"), parent, Fmt.Raw);
            byte[] changed = (byte[])content.Clone();
            changed[7 * Cluster] ^= 1;
            changed[30 * Cluster + 4000] ^= 1;
            string source = Chains.SaveRaw(dir, "new.raw", changed);
            VDiskSyncResult result = SyncOperation.Run(source, overlay, new SyncOptions { BlockSize = Cluster, Registry = OverlayTestDriver.Registry });
            Assert.Equal(2 * Cluster, result.Written);
            Assert.Equal(2, Chains.DataClusters(overlay));
            Assert.Equal(changed, Chains.ReadAll(overlay));
        }
    }
}
