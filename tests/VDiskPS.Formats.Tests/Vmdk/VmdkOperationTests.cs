using System;
using System.Buffers.Binary;
using System.IO;
using Xunit;

namespace VDiskPS.Formats.Tests.Vmdk
{
    public class VmdkOperationTests
    {
        [Theory]
        [InlineData("monolithicSparse")]
        [InlineData("twoGbMaxExtentSparse")]
        public void QemuImageChecksClean(string subformat)
        {
            using var dir = new TempDir();
            string path = VmdkFixtures.QemuImage(dir, subformat);
            var result = Check(path, RepairMode.None);
            Assert.True(result.IsValid, string.Join("\n", result.Messages));
            Assert.Equal(0, result.Leaks);
            Assert.Equal(7, result.AllocatedClusters);
        }

        [Fact]
        public void StreamOptimizedChecksClean()
        {
            using var dir = new TempDir();
            string path = VmdkFixtures.QemuConverted(dir, VmdkFixtures.MixedRaw(dir), "streamOptimized");
            var result = Check(path, RepairMode.None);
            Assert.True(result.IsValid, string.Join("\n", result.Messages));
            Assert.True(result.CompressedClusters > 0);
        }

        [Fact]
        public void GrainPastEndOfFileIsCorruptionAndRepairDropsIt()
        {
            using var dir = new TempDir();
            string path = VmdkFixtures.QemuImage(dir, "monolithicSparse");
            long entry = FirstGrainTableEntryOffset(path);
            PatchUInt32(path, entry, 0x7FFFFF00);
            var found = Check(path, RepairMode.None);
            Assert.Contains(found.Messages, m => m.Contains("past the end of the file"));
            var repaired = Check(path, RepairMode.All);
            Assert.Equal(found.Corruptions, repaired.CorruptionsFixed);
            Assert.True(Check(path, RepairMode.None).IsValid);
            Assert.Equal(0, Qemu.Check(path, "vmdk").ExitCode);
        }

        [Fact]
        public void TwoEntriesSharingAGrainAreAnOverlap()
        {
            using var dir = new TempDir();
            string path = VmdkFixtures.QemuImage(dir, "monolithicSparse");
            long entry = FirstGrainTableEntryOffset(path);
            uint first = ReadUInt32(path, entry);
            PatchUInt32(path, entry + 4, first);
            var result = Check(path, RepairMode.None);
            Assert.False(result.IsValid);
            Assert.Contains(result.Messages, m => m.Contains("overlaps"));
        }

        [Fact]
        public void LeakedGrainsAtTheEndAreReportedAndTrimmed()
        {
            using var dir = new TempDir();
            string path = VmdkFixtures.QemuImage(dir, "monolithicSparse");
            byte[] content = Qemu.ToRawBytes(path, "vmdk", dir.Path);
            long length = new FileInfo(path).Length;
            using (var file = File.OpenWrite(path))
            {
                file.SetLength(length + 3 * 65536);
            }

            Assert.Equal(3, Check(path, RepairMode.None).Leaks);
            Assert.Equal(3, Check(path, RepairMode.Leaks).LeaksFixed);
            Assert.Equal(length, new FileInfo(path).Length);
            Assert.Equal(0, Qemu.Check(path, "vmdk").ExitCode);
            Assert.Equal(content, Qemu.ToRawBytes(path, "vmdk", dir.Path));
        }

        [Fact]
        public void RedundantTableMismatchIsRepairedFromThePrimary()
        {
            using var dir = new TempDir();
            string path = VmdkFixtures.QemuImage(dir, "monolithicSparse");
            byte[] content = Qemu.ToRawBytes(path, "vmdk", dir.Path);
            byte[] header = new byte[512];
            using (var file = File.OpenRead(path))
            {
                file.ReadExactly(header);
            }

            long rgd = (long)BinaryPrimitives.ReadUInt64LittleEndian(header.AsSpan(48)) * 512;
            uint redundantTable = ReadUInt32(path, rgd);
            PatchUInt32(path, (long)redundantTable * 512, 12345);
            Assert.Equal(1, Check(path, RepairMode.None).Corruptions);
            Assert.Equal(1, Check(path, RepairMode.All).CorruptionsFixed);
            Assert.True(Check(path, RepairMode.None).IsValid);
            // qemu-img check reads only the primary directory: the redundant table is judged by its
            // bytes, which now equal the primary table's again.
            long gd = (long)BinaryPrimitives.ReadUInt64LittleEndian(header.AsSpan(56)) * 512;
            Assert.Equal(ReadUInt32(path, (long)ReadUInt32(path, gd) * 512), ReadUInt32(path, (long)redundantTable * 512));
            Assert.Equal(0, Qemu.Check(path, "vmdk").ExitCode);
            Assert.Equal(content, Qemu.ToRawBytes(path, "vmdk", dir.Path));
        }

        [Fact]
        public void GrowingASparseDiskPastItsDirectoryMovesTheDirectory()
        {
            using var dir = new TempDir();
            string path = VmdkFixtures.QemuImage(dir, "monolithicSparse");
            byte[] before = Qemu.ToRawBytes(path, "vmdk", dir.Path);
            long newSize = 5L << 30;
            using (var layer = FormatRegistry.Default.Open(path, Fmt.Vmdk, new OpenOptions { Writable = true }))
            {
                ((IResizableLayer)layer).Resize(newSize, false, Preallocation.Off);
                layer.Write(newSize - 65536, TestData.Pattern(65536, 5));
            }

            Assert.Equal(0, Qemu.Check(path, "vmdk").ExitCode);
            using var json = Qemu.Info(path, "vmdk");
            Assert.Equal(newSize, json.RootElement.GetProperty("virtual-size").GetInt64());
            byte[] tail = new byte[65536];
            Qemu.Io("-f", "vmdk", "-c", $"read -P 0 {VmdkFixtures.SmallSize} 65536", path);
            using var reopened = FormatRegistry.Default.Open(path, Fmt.Vmdk, new OpenOptions());
            reopened.Read(newSize - 65536, tail);
            Assert.Equal(TestData.Pattern(65536, 5), tail);
            var head = new byte[before.Length];
            reopened.Read(0, head);
            Assert.Equal(before, head);
        }

        [Fact]
        public void GrowingASplitFlatDiskAddsExtentFiles()
        {
            using var dir = new TempDir();
            string path = dir.File("split.vmdk");
            CreateOperation.Create(path, Fmt.Vmdk, new CreateRequest { Size = 1L << 30, Subformat = "twoGbMaxExtentFlat", Preallocation = Preallocation.Off });
            using (var layer = FormatRegistry.Default.Open(path, Fmt.Vmdk, new OpenOptions { Writable = true }))
            {
                ((IResizableLayer)layer).Resize(3L << 30, false, Preallocation.Off);
                layer.Write((3L << 30) - 512, TestData.Pattern(512, 6));
            }

            Assert.True(File.Exists(dir.File("split-f002.vmdk")));
            Assert.Equal(0, Qemu.Check(path, "vmdk").ExitCode);
            Qemu.Io("-f", "vmdk", "-c", $"read -v {(3L << 30) - 512} 512", path);
            using var json = Qemu.Info(path, "vmdk");
            Assert.Equal(3L << 30, json.RootElement.GetProperty("virtual-size").GetInt64());
        }

        [Fact]
        public void GrowingASplitSparseDiskFillsTheLastExtentAndAddsOne()
        {
            using var dir = new TempDir();
            string path = dir.File("ss.vmdk");
            CreateOperation.Create(path, Fmt.Vmdk, new CreateRequest { Size = 1L << 20, Subformat = "twoGbMaxExtentSparse" });
            long newSize = (2L << 30) + (1L << 20);
            using (var layer = FormatRegistry.Default.Open(path, Fmt.Vmdk, new OpenOptions { Writable = true }))
            {
                layer.Write(0, TestData.Pattern(4096, 8));
                ((IResizableLayer)layer).Resize(newSize, false, Preallocation.Off);
                layer.Write((2L << 30) - 4096, TestData.Pattern(8192, 9));
            }

            Assert.True(File.Exists(dir.File("ss-s002.vmdk")));
            Assert.Equal(0, Qemu.Check(path, "vmdk").ExitCode);
            string raw = dir.File("ss.raw");
            ConvertOperation.Run(path, raw, new ConvertOptions { TargetFormat = Fmt.Raw });
            var (identical, output) = Qemu.Compare(path, "vmdk", raw, "raw");
            Assert.True(identical, output);
            using var check = FormatRegistry.Default.Open(path, Fmt.Vmdk, new OpenOptions());
            var buffer = new byte[8192];
            check.Read((2L << 30) - 4096, buffer);
            Assert.Equal(TestData.Pattern(8192, 9), buffer);
        }

        [Fact]
        public void ShrinkNeedsPermissionAndKeepsTheHead()
        {
            using var dir = new TempDir();
            string path = VmdkFixtures.QemuImage(dir, "monolithicSparse");
            byte[] before = Qemu.ToRawBytes(path, "vmdk", dir.Path);
            using (var layer = FormatRegistry.Default.Open(path, Fmt.Vmdk, new OpenOptions { Writable = true }))
            {
                Assert.Throws<ImageOptionException>(() => ((IResizableLayer)layer).Resize(1L << 20, false, Preallocation.Off));
                ((IResizableLayer)layer).Resize(1L << 20, true, Preallocation.Off);
            }

            Assert.Equal(before.AsSpan(0, 1 << 20).ToArray(), Qemu.ToRawBytes(path, "vmdk", dir.Path));
            Assert.Equal(0, Qemu.Check(path, "vmdk").ExitCode);
        }

        [Fact]
        public void DiscardedGrainsReadFromTheParentAgain()
        {
            using var dir = new TempDir();
            string parent = dir.File("p.vmdk");
            CreateOperation.Create(parent, Fmt.Vmdk, new CreateRequest { Size = 1L << 20 });
            string child = dir.File("c.vmdk");
            CreateOperation.Create(child, Fmt.Vmdk, new CreateRequest { Backing = new BackingReference("p.vmdk", Fmt.Vmdk) });
            using (var chain = ImageChain.Open(child, new ChainOptions { Writable = true }))
            {
                chain.Top.Write(0, TestData.Pattern(131072, 7));
                ((IDiscardableLayer)chain.Top).Discard(0, 65536);
                Assert.Equal(ExtentKind.Unallocated, chain.Top.GetBlockStatus(0, 65536).Kind);
                Assert.Equal(ExtentKind.Data, chain.Top.GetBlockStatus(65536, 65536).Kind);
            }

            Assert.Equal(0, Qemu.Check(child, "vmdk").ExitCode);
        }

        [Theory]
        [InlineData("monolithicSparse")]
        [InlineData("monolithicFlat")]
        [InlineData("streamOptimized")]
        public void MeasureCoversWhatConvertWrites(string subformat)
        {
            using var dir = new TempDir();
            string raw = VmdkFixtures.MixedRaw(dir);
            string target = dir.File("m.vmdk");
            var request = new CreateRequest { Size = VmdkFixtures.SmallSize, Subformat = subformat };
            var measured = FormatRegistry.Default.GetCreatable(Fmt.Vmdk).Measure(request, 1L << 20);
            ConvertOperation.Run(raw, target, new ConvertOptions { TargetFormat = Fmt.Vmdk, Target = new CreateRequest { Subformat = subformat } });
            long written = 0;
            foreach (string file in Directory.GetFiles(dir.Path, "m*.vmdk"))
            {
                written += new FileInfo(file).Length;
            }

            Assert.True(measured.FullyAllocated >= VmdkFixtures.SmallSize);
            Assert.True(measured.Required >= written - 4096 || subformat == "monolithicFlat", $"measured {measured.Required}, written {written}");
        }

        private static VDiskCheckResult Check(string path, RepairMode repair)
        {
            using var layer = FormatRegistry.Default.Open(path, Fmt.Vmdk, new OpenOptions { Writable = repair != RepairMode.None });
            return ((ICheckableLayer)layer).Check(repair);
        }

        internal static long FirstGrainTableEntryOffset(string path)
        {
            byte[] header = new byte[512];
            using (var file = File.OpenRead(path))
            {
                file.ReadExactly(header);
            }

            long gd = (long)BinaryPrimitives.ReadUInt64LittleEndian(header.AsSpan(56)) * 512;
            return (long)ReadUInt32(path, gd) * 512;
        }

        internal static uint ReadUInt32(string path, long offset)
        {
            using var file = File.OpenRead(path);
            file.Position = offset;
            var buffer = new byte[4];
            file.ReadExactly(buffer);
            return BinaryPrimitives.ReadUInt32LittleEndian(buffer);
        }

        internal static void PatchUInt32(string path, long offset, uint value)
        {
            using var file = File.OpenWrite(path);
            file.Position = offset;
            var buffer = new byte[4];
            BinaryPrimitives.WriteUInt32LittleEndian(buffer, value);
            file.Write(buffer);
        }
    }
}
