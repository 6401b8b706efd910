using System;
using System.Collections.Generic;
using System.IO;
using System.Security.Cryptography;
using VDiskPS.Formats.Vhdx;
using Xunit;

namespace VDiskPS.Formats.Tests.Vhdx
{
    /// <summary>Differencing images: parent locator, linkage, sector bitmaps, copy-on-write.</summary>
    public class VhdxDifferencingTests
    {
        private const long MiB = 1L << 20;

        private static byte[] MakeParent(string path, int sectorSize = 512)
        {
            CreateOperation.Create(path, Fmt.Vhdx, new CreateRequest { Size = 6 * MiB, ClusterSize = MiB, LogicalSectorSize = sectorSize });
            byte[] content = new byte[6 * MiB];
            byte[] data = TestData.Pattern((int)(3 * MiB), 11);
            data.CopyTo(content, (int)MiB);
            using var layer = FormatRegistry.Default.Open(path, null, new OpenOptions { Writable = true });
            layer.Write(MiB, data);
            return content;
        }

        private static void MakeChild(string child, string recordedParent)
            => CreateOperation.Create(child, Fmt.Vhdx, new CreateRequest { Backing = new BackingReference(recordedParent, Fmt.Vhdx) });

        private static void WriteChild(string child, long offset, byte[] data)
        {
            using var chain = ImageChain.Open(child, new ChainOptions { Writable = true });
            chain.Top.Write(offset, data);
        }

        [Fact]
        public void NewChildReadsAsItsParent()
        {
            using var dir = new TempDir();
            byte[] content = MakeParent(dir.File("parent.vhdx"));
            MakeChild(dir.File("child.vhdx"), "parent.vhdx");
            Assert.Equal(content, TestData.ReadAll(dir.File("child.vhdx")));
            // Engine-judged: libvhdi 20210425 misreads a differencing VHDX without a sector bitmap block (a new child has none), and qemu-img opens no VHDX child.
        }

        [Fact]
        public void ChildRecordsRelativeAndAbsoluteParentPaths()
        {
            using var dir = new TempDir();
            MakeParent(dir.File("parent.vhdx"));
            MakeChild(dir.File("child.vhdx"), "parent.vhdx");
            using var layer = FormatRegistry.Default.Open(dir.File("child.vhdx"), null, new OpenOptions());
            Assert.Equal(DiskType.Differencing, layer.DiskType);
            Assert.Equal(".\\parent.vhdx", layer.Backing.RecordedPath);
            Assert.Equal(Fmt.Vhdx, layer.Backing.Format);
            Assert.Contains(dir.File("parent.vhdx"), layer.Backing.AlternatePaths);
            var info = ImageInspector.Describe(layer);
            Assert.Equal("Differencing", info.Type);
            Assert.Equal(dir.File("parent.vhdx"), info.ParentPath);
            Assert.Equal(1 * MiB, info.BlockSize);
        }

        [Fact]
        public void ChildSharesTheParentsDiskIdentifier()
        {
            using var dir = new TempDir();
            MakeParent(dir.File("parent.vhdx"));
            MakeChild(dir.File("child.vhdx"), "parent.vhdx");
            Guid? parentId = ImageInspector.Get(dir.File("parent.vhdx")).DiskIdentifier;
            Assert.NotNull(parentId);
            Assert.Equal(parentId, ImageInspector.Get(dir.File("child.vhdx")).DiskIdentifier);
        }

        [Fact]
        public void PartialWritesInChildMergeWithParentAndLeaveParentAlone()
        {
            using var dir = new TempDir();
            byte[] content = MakeParent(dir.File("parent.vhdx"));
            byte[] parentHash = SHA256.HashData(File.ReadAllBytes(dir.File("parent.vhdx")));
            MakeChild(dir.File("child.vhdx"), "parent.vhdx");
            foreach (var (offset, length, seed) in new[] { (MiB + 1000, 3000, 1), ((2 * MiB) - 100, 200, 2), (5 * MiB, 4096, 3), (3, 5, 4) })
            {
                byte[] data = TestData.Pattern(length, seed);
                WriteChild(dir.File("child.vhdx"), offset, data);
                data.CopyTo(content, offset);
            }

            Assert.Equal(content, TestData.ReadAll(dir.File("child.vhdx")));
            Judge.AssertSameContent(dir.File("child.vhdx"), Fmt.Vhdx, content);
            Assert.Equal(parentHash, SHA256.HashData(File.ReadAllBytes(dir.File("parent.vhdx"))));
        }

        [Fact]
        public void PartiallyPresentBlockReportsSectorRuns()
        {
            using var dir = new TempDir();
            MakeParent(dir.File("parent.vhdx"));
            MakeChild(dir.File("child.vhdx"), "parent.vhdx");
            WriteChild(dir.File("child.vhdx"), MiB + 4096, new byte[8192]);
            using var layer = FormatRegistry.Default.Open(dir.File("child.vhdx"), null, new OpenOptions { IgnoreParentMismatch = true });
            var before = layer.GetBlockStatus(MiB, MiB);
            Assert.Equal(ExtentKind.Unallocated, before.Kind);
            Assert.Equal(4096, before.Length);
            var written = layer.GetBlockStatus(MiB + 4096, MiB);
            Assert.Equal(ExtentKind.Data, written.Kind);
            Assert.Equal(8192, written.Length);
            Assert.Equal(BatState.PartiallyPresent, BatState.StateOf(VhdxSurgery.ReadBatEntry(dir.File("child.vhdx"), 1)));
        }

        [Fact]
        public void WholeBlockWriteInChildIsFullyPresent()
        {
            using var dir = new TempDir();
            byte[] content = MakeParent(dir.File("parent.vhdx"));
            MakeChild(dir.File("child.vhdx"), "parent.vhdx");
            byte[] data = TestData.Pattern((int)MiB, 5);
            WriteChild(dir.File("child.vhdx"), 2 * MiB, data);
            data.CopyTo(content, (int)(2 * MiB));
            Assert.Equal(content, TestData.ReadAll(dir.File("child.vhdx")));
            // Engine-judged: libvhdi 20210425 misreads a differencing VHDX without a sector bitmap block (a fully present block needs none), and qemu-img opens no VHDX child.
            Assert.Equal(BatState.FullyPresent, BatState.StateOf(VhdxSurgery.ReadBatEntry(dir.File("child.vhdx"), 2)));
        }

        [Fact]
        public void ManySectorBitmapsStayCorrectBeyondTheCache()
        {
            using var dir = new TempDir();
            const long chunk = 4L << 30;
            CreateOperation.Create(dir.File("parent.vhdx"), Fmt.Vhdx, new CreateRequest { Size = 80 * chunk, ClusterSize = MiB });
            MakeChild(dir.File("child.vhdx"), "parent.vhdx");
            using (var chain = ImageChain.Open(dir.File("child.vhdx"), new ChainOptions { Writable = true }))
            {
                for (int i = 0; i < 80; i++)
                {
                    chain.Top.Write((i * chunk) + 512, new[] { (byte)(i + 1) });
                }

                chain.Top.Flush();
                var one = new byte[1];
                for (int i = 79; i >= 0; i--)
                {
                    chain.Top.Read((i * chunk) + 512, one);
                    Assert.Equal((byte)(i + 1), one[0]);
                }
            }

            using var reader = ImageChain.Open(dir.File("child.vhdx"));
            var two = new byte[2];
            for (int i = 0; i < 80; i++)
            {
                reader.Read((i * chunk) + 511, two);
                Assert.Equal(new byte[] { 0, (byte)(i + 1) }, two);
            }
        }

        [Fact]
        public void FourKibSectorChildFillsPartialSectorsFromParent()
        {
            using var dir = new TempDir();
            byte[] content = MakeParent(dir.File("parent.vhdx"), 4096);
            MakeChild(dir.File("child.vhdx"), "parent.vhdx");
            byte[] data = TestData.Pattern(100, 6);
            WriteChild(dir.File("child.vhdx"), MiB + 5000, data);
            data.CopyTo(content, (int)MiB + 5000);
            Assert.Equal(content, TestData.ReadAll(dir.File("child.vhdx")));
            Judge.AssertSameContent(dir.File("child.vhdx"), Fmt.Vhdx, content);
            Assert.Equal(4096, ImageInspector.Get(dir.File("child.vhdx")).LogicalSectorSize);
        }

        [Fact]
        public void ChangedParentBreaksTheLinkage()
        {
            using var dir = new TempDir();
            MakeParent(dir.File("parent.vhdx"));
            MakeChild(dir.File("child.vhdx"), "parent.vhdx");
            using (var parent = FormatRegistry.Default.Open(dir.File("parent.vhdx"), null, new OpenOptions { Writable = true }))
            {
                parent.Write(0, new byte[] { 1 });
            }

            var e = Assert.Throws<ImageParentMismatchException>(() => TestData.ReadAll(dir.File("child.vhdx")));
            Assert.Equal("parent_linkage", e.Field);
            using var chain = ImageChain.Open(dir.File("child.vhdx"), new ChainOptions { IgnoreParentMismatch = true });
            Assert.Equal(2, chain.Layers.Count);
        }

        [Fact]
        public void UnsafeCreateStillRecordsTheParentsIdentity()
        {
            using var dir = new TempDir();
            byte[] content = MakeParent(dir.File("parent.vhdx"));
            CreateOperation.Create(dir.File("child.vhdx"), Fmt.Vhdx, new CreateRequest { Size = 6 * MiB, Backing = new BackingReference("parent.vhdx", Fmt.Vhdx) }, unsafeBacking: true);
            Assert.Equal(content, TestData.ReadAll(dir.File("child.vhdx")));
            // Engine-judged: libvhdi 20210425 misreads a differencing VHDX without a sector bitmap block (this child has none yet), and qemu-img opens no VHDX child.
        }

        [Fact]
        public void ParentThatIsNotVhdxIsRefused()
        {
            using var dir = new TempDir();
            CreateOperation.Create(dir.File("base.raw"), Fmt.Raw, new CreateRequest { Size = MiB });
            Assert.Throws<ImageNotSupportedException>(() => CreateOperation.Create(dir.File("child.vhdx"), Fmt.Vhdx, new CreateRequest { Backing = new BackingReference("base.raw", Fmt.Raw) }));
            Assert.False(File.Exists(dir.File("child.vhdx")));
        }

        [Fact]
        public void ParentFoundByAbsolutePathWhenRelativeIsStale()
        {
            using var dir = new TempDir();
            byte[] content = MakeParent(dir.File("parent.vhdx"));
            Directory.CreateDirectory(dir.File("sub"));
            MakeChild(dir.File("child.vhdx"), "parent.vhdx");
            File.Move(dir.File("child.vhdx"), dir.File("sub/child.vhdx"));
            Assert.Equal(content, TestData.ReadAll(dir.File("sub/child.vhdx")));
            // Engine-judged: libvhdi 20210425 misreads a differencing VHDX without a sector bitmap block (this child has none yet), and qemu-img opens no VHDX child.
        }

        [Fact]
        public void WritingAChildFoundThroughAStalePathUpdatesTheLocator()
        {
            using var dir = new TempDir();
            MakeParent(dir.File("parent.vhdx"));
            Directory.CreateDirectory(dir.File("sub"));
            MakeChild(dir.File("child.vhdx"), "parent.vhdx");
            File.Move(dir.File("child.vhdx"), dir.File("sub/child.vhdx"));
            WriteChild(dir.File("sub/child.vhdx"), 0, new byte[] { 1 });
            using var layer = FormatRegistry.Default.Open(dir.File("sub/child.vhdx"), null, new OpenOptions());
            Assert.Equal("..\\parent.vhdx", layer.Backing.RecordedPath);
            Assert.Contains(dir.File("parent.vhdx"), layer.Backing.AlternatePaths);
        }

        [Fact]
        public void ReadingAChildFoundThroughAStalePathLeavesItAlone()
        {
            using var dir = new TempDir();
            MakeParent(dir.File("parent.vhdx"));
            Directory.CreateDirectory(dir.File("sub"));
            MakeChild(dir.File("child.vhdx"), "parent.vhdx");
            File.Move(dir.File("child.vhdx"), dir.File("sub/child.vhdx"));
            byte[] before = File.ReadAllBytes(dir.File("sub/child.vhdx"));
            using (ImageChain.Open(dir.File("sub/child.vhdx"), new ChainOptions { Writable = true }))
            {
            }

            Assert.Equal(before, File.ReadAllBytes(dir.File("sub/child.vhdx")));
        }

        [Fact]
        public void SetBackingRewritesLocatorAndLinkage()
        {
            using var dir = new TempDir();
            byte[] content = MakeParent(dir.File("parent.vhdx"));
            MakeChild(dir.File("child.vhdx"), "parent.vhdx");
            Directory.CreateDirectory(dir.File("moved"));
            File.Move(dir.File("parent.vhdx"), dir.File("moved/p2.vhdx"));
            using (var child = FormatRegistry.Default.Open(dir.File("child.vhdx"), null, new OpenOptions { Writable = true, IgnoreParentMismatch = true }))
            using (var parent = FormatRegistry.Default.Open(dir.File("moved/p2.vhdx"), null, new OpenOptions()))
            {
                ((IParentChangeableLayer)child).SetBacking(new BackingReference("moved/p2.vhdx", Fmt.Vhdx), parent);
            }

            Assert.Equal(content, TestData.ReadAll(dir.File("child.vhdx")));
            // Engine-judged: libvhdi 20210425 misreads a differencing VHDX without a sector bitmap block (this child has none), and qemu-img opens no VHDX child.
            using var layer = FormatRegistry.Default.Open(dir.File("child.vhdx"), null, new OpenOptions());
            Assert.Equal(".\\moved\\p2.vhdx", layer.Backing.RecordedPath);
        }

        [Fact]
        public void SetBackingInAnOpenChainRecordsTheNewParent()
        {
            using var dir = new TempDir();
            byte[] content = MakeParent(dir.File("parent.vhdx"));
            File.Copy(dir.File("parent.vhdx"), dir.File("copy.vhdx"));
            MakeChild(dir.File("child.vhdx"), "parent.vhdx");
            using (var chain = ImageChain.Open(dir.File("child.vhdx"), new ChainOptions { Writable = true }))
            using (var copy = FormatRegistry.Default.Open(dir.File("copy.vhdx"), null, new OpenOptions()))
            {
                chain.Top.Write(0, new byte[] { 9 });
                ((IParentChangeableLayer)chain.Top).SetBacking(new BackingReference("copy.vhdx", Fmt.Vhdx), copy);
            }

            using var layer = FormatRegistry.Default.Open(dir.File("child.vhdx"), null, new OpenOptions());
            Assert.Equal(".\\copy.vhdx", layer.Backing.RecordedPath);
            content[0] = 9;
            Assert.Equal(content, TestData.ReadAll(dir.File("child.vhdx")));
            Judge.AssertSameContent(dir.File("child.vhdx"), Fmt.Vhdx, content);
        }

        [Fact]
        public void ChainConvertsToADynamicImageQemuAgreesWith()
        {
            using var dir = new TempDir();
            byte[] content = MakeParent(dir.File("parent.vhdx"));
            MakeChild(dir.File("child.vhdx"), "parent.vhdx");
            byte[] data = TestData.Pattern(300000, 7);
            WriteChild(dir.File("child.vhdx"), (2 * MiB) + 77, data);
            data.CopyTo(content, (int)(2 * MiB) + 77);
            ConvertOperation.Run(dir.File("child.vhdx"), dir.File("flat.vhdx"), new ConvertOptions { TargetFormat = Fmt.Vhdx });
            Assert.Equal(content, Qemu.ToRawBytes(dir.File("flat.vhdx"), "vhdx", dir.Path));
            var check = Qemu.Check(dir.File("flat.vhdx"), "vhdx");
            Assert.True(check.ExitCode == 0, check.Output);
        }

        [Fact]
        public void GrandchildReadsThroughTwoLevels()
        {
            using var dir = new TempDir();
            byte[] content = MakeParent(dir.File("base.vhdx"));
            MakeChild(dir.File("mid.vhdx"), "base.vhdx");
            byte[] a = TestData.Pattern(5000, 8);
            WriteChild(dir.File("mid.vhdx"), MiB + 100, a);
            a.CopyTo(content, (int)MiB + 100);
            MakeChild(dir.File("top.vhdx"), "mid.vhdx");
            byte[] b = TestData.Pattern(700, 9);
            WriteChild(dir.File("top.vhdx"), MiB + 4000, b);
            b.CopyTo(content, (int)MiB + 4000);
            Assert.Equal(content, TestData.ReadAll(dir.File("top.vhdx")));
            Judge.AssertSameContent(dir.File("top.vhdx"), Fmt.Vhdx, content);
        }

        [Fact]
        public void HyperVExtendedLengthParentPathShowsWithoutItsPrefix()
        {
            using var dir = new TempDir();
            MakeParent(dir.File("parent.vhdx"));
            MakeChild(dir.File("child.vhdx"), "parent.vhdx");
            ReplaceLocator(dir.File("child.vhdx"), VhdxLayer.AbsolutePathKey, "\\\\?\\D:\\vms\\parent.vhdx");
            using var layer = FormatRegistry.Default.Open(dir.File("child.vhdx"), null, new OpenOptions());
            Assert.Equal("D:\\vms\\parent.vhdx", ImageInspector.Describe(layer).ParentPath);
            Assert.Equal(".\\parent.vhdx", layer.Backing.RecordedPath);
        }

        [Theory]
        [InlineData("bad\0name.vhdx")]
        [InlineData("a|b.vhdx")]
        public void HostileParentPathIsCorruption(string hostile)
        {
            using var dir = new TempDir();
            MakeParent(dir.File("parent.vhdx"));
            MakeChild(dir.File("child.vhdx"), "parent.vhdx");
            ReplaceLocator(dir.File("child.vhdx"), VhdxLayer.RelativePathKey, hostile);
            var e = Assert.Throws<ImageCorruptException>(() => FormatRegistry.Default.Open(dir.File("child.vhdx"), null, new OpenOptions()).Dispose());
            Assert.Contains("relative_path", e.Field);
        }

        [Fact]
        public void DuplicateLocatorKeyIsCorruption()
        {
            using var dir = new TempDir();
            MakeParent(dir.File("parent.vhdx"));
            MakeChild(dir.File("child.vhdx"), "parent.vhdx");
            ReplaceLocator(dir.File("child.vhdx"), VhdxLayer.AbsolutePathKey, null);
            var e = Assert.Throws<ImageCorruptException>(() => FormatRegistry.Default.Open(dir.File("child.vhdx"), null, new OpenOptions()).Dispose());
            Assert.Contains("appears twice", e.Message);
        }

        [Fact]
        public void ExternalParentPathIsRefusedWhenNotAllowed()
        {
            using var dir = new TempDir();
            MakeParent(dir.File("parent.vhdx"));
            MakeChild(dir.File("child.vhdx"), "parent.vhdx");
            ReplaceLocator(dir.File("child.vhdx"), VhdxLayer.RelativePathKey, "..\\..\\etc\\parent.vhdx");
            Assert.Throws<ImageChainException>(() => FormatRegistry.Default.Open(dir.File("child.vhdx"), null, new OpenOptions { AllowExternalPaths = false, IgnoreParentMismatch = true }).Dispose());
        }

        /// <summary>Rewrites the child's metadata region in place with one locator value changed.</summary>
        internal static void ReplaceLocator(string path, string key, string value)
        {
            long offset = VhdxSurgery.RegionOffset(path, VhdxConstants.MetadataRegion);
            byte[] region = VhdxSurgery.ReadBytes(path, offset, (int)MiB);
            VhdxMetadata metadata = VhdxMetadata.Parse(region, offset, path);
            // A null value turns the entry into a second relative_path entry.
            var pairs = new List<KeyValuePair<string, string>>();
            foreach (var kv in metadata.ParentLocator)
            {
                pairs.Add(kv.Key != key ? kv : value == null ? new KeyValuePair<string, string>(VhdxLayer.RelativePathKey, kv.Value) : new KeyValuePair<string, string>(key, value));
            }

            metadata.ParentLocator = pairs;
            VhdxSurgery.WriteBytes(path, offset, metadata.Build(MiB));
        }
    }
}
