using System;
using System.IO;
using System.Text;
using Xunit;

namespace VDiskPS.Formats.Tests.Vhd
{
    public class VhdDifferencingTests
    {
        private const long DiskSize = 6L << 20;

        private static byte[] MakeBase(string path)
        {
            CreateOperation.Create(path, Fmt.Vhd, new CreateRequest { Size = DiskSize });
            var content = new byte[DiskSize];
            using var layer = FormatRegistry.Default.Open(path, null, new OpenOptions { Writable = true });
            byte[] data = TestData.Pattern(4 << 20, 11);
            layer.Write(0, data);
            data.CopyTo(content, 0);
            return content;
        }

        private static void MakeChild(string child, string recordedParent)
        {
            CreateOperation.Create(child, Fmt.Vhd, new CreateRequest { Backing = new BackingReference(recordedParent, Fmt.Vhd) });
        }

        private static void WriteThrough(string path, byte[] expected, long offset, byte[] data)
        {
            using var chain = ImageChain.Open(path, new ChainOptions { Writable = true });
            chain.Top.Write(offset, data);
            data.CopyTo(expected, offset);
        }

        [Fact]
        public void ChildReadsItsParentUntilWritten()
        {
            using var dir = new TempDir();
            byte[] expected = MakeBase(dir.File("base.vhd"));
            MakeChild(dir.File("child.vhd"), "base.vhd");
            Assert.Equal(expected, TestData.ReadAll(dir.File("child.vhd")));
            Judge.AssertSameContent(dir.File("child.vhd"), Fmt.Vhd, expected);
        }

        [Fact]
        public void PartialSectorWritesKeepTheParentAroundThem()
        {
            using var dir = new TempDir();
            byte[] expected = MakeBase(dir.File("base.vhd"));
            string child = dir.File("child.vhd");
            MakeChild(child, "base.vhd");
            WriteThrough(child, expected, 1000, TestData.Pattern(100, 1));
            WriteThrough(child, expected, (2L << 20) - 7, TestData.Pattern(20, 2));
            WriteThrough(child, expected, 5000, TestData.Pattern(3000, 3));
            WriteThrough(child, expected, (5L << 20) + 1, TestData.Pattern(700, 4));
            Assert.Equal(expected, TestData.ReadAll(child));
            // Engine-judged: libvhdi 20210425 reads a VHD sector bitmap a byte (8 sectors) at a time, so it cannot judge partial sectors; qemu-img opens no VHD child.
        }

        [Fact]
        public void OnlyWrittenSectorsArePresentInTheChild()
        {
            using var dir = new TempDir();
            MakeBase(dir.File("base.vhd"));
            string child = dir.File("child.vhd");
            MakeChild(child, "base.vhd");
            using (var chain = ImageChain.Open(child, new ChainOptions { Writable = true }))
            {
                chain.Top.Write(4096, new byte[1024]);
            }

            using var layer = FormatRegistry.Default.Open(child, null, new OpenOptions());
            Assert.Equal(ExtentKind.Unallocated, layer.GetBlockStatus(0, 4096).Kind);
            var present = layer.GetBlockStatus(4096, layer.Size);
            Assert.Equal(ExtentKind.Data, present.Kind);
            Assert.Equal(1024, present.Length);
            var after = layer.GetBlockStatus(5120, layer.Size);
            Assert.Equal(ExtentKind.Unallocated, after.Kind);
            Assert.Equal(layer.Size - 5120, after.Length);
        }

        [Fact]
        public void GrandchildChainReadsThroughTwoLevels()
        {
            using var dir = new TempDir();
            byte[] expected = MakeBase(dir.File("base.vhd"));
            MakeChild(dir.File("mid.vhd"), "base.vhd");
            WriteThrough(dir.File("mid.vhd"), expected, 3000, TestData.Pattern(5000, 5));
            MakeChild(dir.File("top.vhd"), "mid.vhd");
            WriteThrough(dir.File("top.vhd"), expected, 7000, TestData.Pattern(2 << 20, 6));
            WriteThrough(dir.File("top.vhd"), expected, (6L << 20) - 100, TestData.Pattern(100, 7));
            Assert.Equal(expected, TestData.ReadAll(dir.File("top.vhd")));
            // Engine-judged: libvhdi 20210425 reads a VHD sector bitmap a byte (8 sectors) at a time, and these writes end inside such runs; ChainJudgedTests has a libvhdi-judged VHD chain of whole 4 KiB runs.
            using var chain = ImageChain.Open(dir.File("top.vhd"));
            Assert.Equal(3, chain.Layers.Count);
        }

        [Fact]
        public void ConvertingAChildGivesTheMergedDiskToQemu()
        {
            using var dir = new TempDir();
            byte[] expected = MakeBase(dir.File("base.vhd"));
            MakeChild(dir.File("child.vhd"), "base.vhd");
            WriteThrough(dir.File("child.vhd"), expected, 123456, TestData.Pattern(77777, 8));
            string flat = dir.File("flat.vhd");
            ConvertOperation.Run(dir.File("child.vhd"), flat, new ConvertOptions { TargetFormat = Fmt.Vhd });
            Assert.Equal(expected, Qemu.ToRawBytes(flat, "vpc", dir.Path));
        }

        [Fact]
        public void ChildRecordsWindowsParentLocatorsAndParentName()
        {
            using var dir = new TempDir();
            MakeBase(dir.File("base.vhd"));
            MakeChild(dir.File("child.vhd"), "base.vhd");
            string text = Encoding.Unicode.GetString(File.ReadAllBytes(dir.File("child.vhd")));
            Assert.Contains(".\\base.vhd", text);
            Assert.Contains(dir.File("base.vhd"), text);
            string bigEndian = Encoding.BigEndianUnicode.GetString(File.ReadAllBytes(dir.File("child.vhd")));
            Assert.Contains("base.vhd", bigEndian);
            using var layer = FormatRegistry.Default.Open(dir.File("child.vhd"), null, new OpenOptions());
            Assert.Equal(".\\base.vhd", layer.Backing.RecordedPath);
            Assert.Equal(Fmt.Vhd, layer.Backing.Format);
            Assert.Contains(dir.File("base.vhd"), layer.Backing.AlternatePaths);
            Assert.Equal(DiskType.Differencing, layer.DiskType);
        }

        [Fact]
        public void MovedChainFindsItsParentByRelativePath()
        {
            using var dir = new TempDir();
            byte[] expected = MakeBase(dir.File("base.vhd"));
            MakeChild(dir.File("child.vhd"), "base.vhd");
            string moved = Path.Combine(dir.Path, "moved");
            Directory.CreateDirectory(moved);
            File.Move(dir.File("base.vhd"), Path.Combine(moved, "base.vhd"));
            File.Move(dir.File("child.vhd"), Path.Combine(moved, "child.vhd"));
            Assert.Equal(expected, TestData.ReadAll(Path.Combine(moved, "child.vhd")));
            Judge.AssertSameContent(Path.Combine(moved, "child.vhd"), Fmt.Vhd, expected);
        }

        [Fact]
        public void ReplacedParentIsRefusedUnlessMismatchIsIgnored()
        {
            using var dir = new TempDir();
            MakeBase(dir.File("base.vhd"));
            MakeChild(dir.File("child.vhd"), "base.vhd");
            File.Delete(dir.File("base.vhd"));
            MakeBase(dir.File("base.vhd"));
            var error = Assert.Throws<ImageParentMismatchException>(() => ImageChain.Open(dir.File("child.vhd")));
            Assert.Contains("unique id", error.Message);
            using var chain = ImageChain.Open(dir.File("child.vhd"), new ChainOptions { IgnoreParentMismatch = true });
            Assert.Equal(2, chain.Layers.Count);
        }

        [Fact]
        public void ParentMustBeAVhd()
        {
            using var dir = new TempDir();
            CreateOperation.Create(dir.File("base.raw"), Fmt.Raw, new CreateRequest { Size = 1 << 20 });
            var request = new CreateRequest { Backing = new BackingReference("base.raw", null) };
            Assert.Throws<ImageOptionException>(() => CreateOperation.Create(dir.File("child.vhd"), Fmt.Vhd, request));
            Assert.False(File.Exists(dir.File("child.vhd")));
        }

        [Fact]
        public void UnsafeChildWithoutParentIdentityOpens()
        {
            using var dir = new TempDir();
            byte[] expected = MakeBase(dir.File("base.vhd"));
            CreateOperation.Create(dir.File("child.vhd"), Fmt.Vhd, new CreateRequest { Size = DiskSize, Backing = new BackingReference("base.vhd", Fmt.Vhd) }, unsafeBacking: true);
            Assert.Equal(expected, TestData.ReadAll(dir.File("child.vhd")));
            // No tool judges this: libvhdi refuses a child whose parent identifier does not match its parent (the point of the test).
        }

        [Fact]
        public void ConvertAgainstAParentWritesOnlyTheDifference()
        {
            using var dir = new TempDir();
            byte[] baseContent = MakeBase(dir.File("base.vhd"));
            byte[] changed = (byte[])baseContent.Clone();
            TestData.Pattern(3000, 9).CopyTo(changed, 5L << 20);
            string source = dir.File("changed.raw");
            File.WriteAllBytes(source, changed);
            string delta = dir.File("delta.vhd");
            ConvertOperation.Run(source, delta, new ConvertOptions
            {
                TargetFormat = Fmt.Vhd,
                Target = new CreateRequest { Backing = new BackingReference("base.vhd", Fmt.Vhd) },
            });
            Assert.Equal(changed, TestData.ReadAll(delta));
            Judge.AssertSameContent(delta, Fmt.Vhd, changed);
            using var layer = FormatRegistry.Default.Open(delta, null, new OpenOptions());
            Assert.Equal(DiskType.Differencing, layer.DiskType);
            Assert.True(new FileInfo(delta).Length < (3L << 20), $"the delta is {new FileInfo(delta).Length} bytes");
        }

        [Fact]
        public void DifferencingChainConvertsToAVdiQemuChecksClean()
        {
            using var dir = new TempDir();
            byte[] expected = MakeBase(dir.File("base.vhd"));
            MakeChild(dir.File("child.vhd"), "base.vhd");
            WriteThrough(dir.File("child.vhd"), expected, 99999, TestData.Pattern(12345, 10));
            string vdi = dir.File("out.vdi");
            ConvertOperation.Run(dir.File("child.vhd"), vdi, new ConvertOptions { TargetFormat = Fmt.Vdi });
            Assert.Equal(0, Qemu.Check(vdi, "vdi").ExitCode);
            Assert.Equal(expected, Qemu.ToRawBytes(vdi, "vdi", dir.Path));
        }

        [Fact]
        public void QemuInfoReadsADifferencingChild()
        {
            using var dir = new TempDir();
            MakeBase(dir.File("base.vhd"));
            MakeChild(dir.File("child.vhd"), "base.vhd");
            using var info = Qemu.Info(dir.File("child.vhd"), "vpc");
            Assert.Equal(DiskSize, info.RootElement.GetProperty("virtual-size").GetInt64());
        }
    }
}
