using System;
using System.IO;
using VDiskPS.Formats.Vhdx;
using Xunit;

namespace VDiskPS.Formats.Tests.Vhdx
{
    /// <summary>Resize (grow, shrink, BAT relocation), check and measure.</summary>
    public class VhdxResizeCheckTests
    {
        private const long MiB = 1L << 20;

        private static byte[] MakeImage(string path, long size, DiskType type = DiskType.Dynamic)
        {
            CreateOperation.Create(path, Fmt.Vhdx, new CreateRequest { Size = size, Type = type, ClusterSize = MiB });
            var content = new byte[size];
            byte[] data = TestData.Pattern((int)Math.Min(size - 1000, 3 * MiB), 21);
            data.CopyTo(content, 1000);
            using var layer = FormatRegistry.Default.Open(path, null, new OpenOptions { Writable = true });
            layer.Write(1000, data);
            return content;
        }

        private static void Resize(string path, long size, bool shrink = false)
        {
            using var layer = FormatRegistry.Default.Open(path, null, new OpenOptions { Writable = true });
            ((IResizableLayer)layer).Resize(size, shrink, Preallocation.Off);
        }

        private static void AssertQemuClean(string path)
        {
            var check = Qemu.Check(path, "vhdx");
            Assert.True(check.ExitCode == 0, check.Output);
        }

        [Theory]
        [InlineData(DiskType.Dynamic)]
        [InlineData(DiskType.Fixed)]
        public void GrowKeepsDataAndReadsZerosBeyond(DiskType type)
        {
            using var dir = new TempDir();
            string path = dir.File("g.vhdx");
            byte[] content = MakeImage(path, 4 * MiB, type);
            Resize(path, (12 * MiB) + 512);
            Array.Resize(ref content, (int)(12 * MiB) + 512);
            AssertQemuClean(path);
            Assert.Equal(content, Qemu.ToRawBytes(path, "vhdx", dir.Path));
            Assert.Equal(type.ToString(), ImageInspector.Get(path).Type);
        }

        [Fact]
        public void GrowPastTheBatRegionMovesTheBat()
        {
            using var dir = new TempDir();
            string path = dir.File("big.vhdx");
            CreateOperation.Create(path, Fmt.Vhdx, new CreateRequest { Size = 100L << 30, ClusterSize = MiB });
            long oldBat = VhdxSurgery.BatOffset(path);
            using (var layer = FormatRegistry.Default.Open(path, null, new OpenOptions { Writable = true }))
            {
                layer.Write(99L << 30, TestData.Pattern(4096, 1));
                ((IResizableLayer)layer).Resize(300L << 30, false, Preallocation.Off);
                layer.Write(299L << 30, TestData.Pattern(4096, 2));
            }

            Assert.NotEqual(oldBat, VhdxSurgery.BatOffset(path));
            AssertQemuClean(path);
            using var info = Qemu.Info(path, "vhdx");
            Assert.Equal(300L << 30, info.RootElement.GetProperty("virtual-size").GetInt64());
            using var layer2 = FormatRegistry.Default.Open(path, null, new OpenOptions());
            var buffer = new byte[4096];
            layer2.Read(99L << 30, buffer);
            Assert.Equal(TestData.Pattern(4096, 1), buffer);
            layer2.Read(299L << 30, buffer);
            Assert.Equal(TestData.Pattern(4096, 2), buffer);
            string io = Qemu.Io("-r", "-f", "vhdx", "-c", $"read -P 0 {200L << 30} 65536", path);
            Assert.DoesNotContain("fail", io, StringComparison.OrdinalIgnoreCase);
        }

        [Fact]
        public void ShrinkNeedsPermission()
        {
            using var dir = new TempDir();
            string path = dir.File("s.vhdx");
            MakeImage(path, 4 * MiB);
            var e = Assert.Throws<ImageOptionException>(() => Resize(path, 2 * MiB));
            Assert.Equal("size", e.Field);
            Assert.Equal(4 * MiB, ImageInspector.Get(path).Size);
        }

        [Fact]
        public void ShrinkDropsTheTailAndGivesSpaceBack()
        {
            using var dir = new TempDir();
            string path = dir.File("s.vhdx");
            byte[] content = MakeImage(path, 6 * MiB);
            long before = new FileInfo(path).Length;
            Resize(path, (2 * MiB) + 4096, shrink: true);
            Assert.True(new FileInfo(path).Length < before);
            AssertQemuClean(path);
            Assert.Equal(content.AsSpan(0, (int)(2 * MiB) + 4096).ToArray(), Qemu.ToRawBytes(path, "vhdx", dir.Path));

            // Growing again shows zeros, not the data that was cut off.
            Resize(path, 6 * MiB);
            byte[] expected = new byte[6 * MiB];
            content.AsSpan(0, (int)(2 * MiB) + 4096).CopyTo(expected);
            Assert.Equal(expected, Qemu.ToRawBytes(path, "vhdx", dir.Path));
            AssertQemuClean(path);
        }

        [Fact]
        public void CleanImageChecksValid()
        {
            using var dir = new TempDir();
            string path = dir.File("c.vhdx");
            MakeImage(path, 8 * MiB);
            using var layer = FormatRegistry.Default.Open(path, null, new OpenOptions());
            var result = ((ICheckableLayer)layer).Check(RepairMode.None);
            Assert.True(result.IsValid);
            Assert.Equal(8, result.TotalClusters);
            Assert.Equal(4, result.AllocatedClusters);
        }

        [Fact]
        public void BatEntryPastEndOfFileIsReportedAndRepaired()
        {
            using var dir = new TempDir();
            string path = dir.File("c.vhdx");
            MakeImage(path, 8 * MiB);
            long batOffset = VhdxSurgery.BatOffset(path);
            VhdxSurgery.WriteBytes(path, batOffset + 8, BitConverter.GetBytes(BatState.Make(BatState.FullyPresent, 1L << 40)));
            Assert.NotEqual(0, Qemu.Check(path, "vhdx").ExitCode);

            using (var layer = FormatRegistry.Default.Open(path, null, new OpenOptions()))
            {
                Assert.True(ImageInspector.Describe(layer).Corrupt);
                var result = ((ICheckableLayer)layer).Check(RepairMode.None);
                Assert.Equal(1, result.Corruptions);
                Assert.Contains(result.Messages, m => m.Contains("BAT entry 1") && m.Contains("past the end"));
                var e = Assert.Throws<ImageCorruptException>(() => layer.Read(MiB, new byte[16]));
                Assert.Equal("BAT entry 1", e.Field);
                Assert.Equal(batOffset + 8, e.Offset);
            }

            using (var layer = FormatRegistry.Default.Open(path, null, new OpenOptions { Writable = true }))
            {
                var result = ((ICheckableLayer)layer).Check(RepairMode.All);
                Assert.Equal(1, result.CorruptionsFixed);
                Assert.True(result.IsValid);
            }

            AssertQemuClean(path);
        }

        [Fact]
        public void BatEntryInsideTheMetadataRegionIsReported()
        {
            using var dir = new TempDir();
            string path = dir.File("c.vhdx");
            MakeImage(path, 8 * MiB);
            long metadata = VhdxSurgery.RegionOffset(path, VhdxConstants.MetadataRegion);
            VhdxSurgery.WriteBytes(path, VhdxSurgery.BatOffset(path) + 16, BitConverter.GetBytes(BatState.Make(BatState.FullyPresent, metadata)));
            using var layer = FormatRegistry.Default.Open(path, null, new OpenOptions());
            var result = ((ICheckableLayer)layer).Check(RepairMode.None);
            Assert.Contains(result.Messages, m => m.Contains("BAT entry 2") && m.Contains("metadata"));
        }

        [Fact]
        public void BlocksSharingSpaceAreReported()
        {
            using var dir = new TempDir();
            string path = dir.File("c.vhdx");
            MakeImage(path, 8 * MiB);
            ulong first = VhdxSurgery.ReadBatEntry(path, 0);
            VhdxSurgery.WriteBytes(path, VhdxSurgery.BatOffset(path) + 40, BitConverter.GetBytes(first));
            using var layer = FormatRegistry.Default.Open(path, null, new OpenOptions());
            var result = ((ICheckableLayer)layer).Check(RepairMode.None);
            Assert.False(result.IsValid);
            Assert.Contains(result.Messages, m => m.Contains("overlaps"));
        }

        [Fact]
        public void PendingLogIsACorruptionForReadersAndFixedForWriters()
        {
            using var dir = new TempDir();
            string path = dir.File("l.vhdx");
            MakeImage(path, 4 * MiB);
            var guid = Guid.NewGuid();
            long length = new FileInfo(path).Length;
            VhdxSurgery.InjectLog(path, guid, (0, VhdxSurgery.Entry(guid, 1, length, length, VhdxSurgery.BatPageWith(path, 3, BatState.Make(BatState.Zero, 0)))));
            using (var reader = FormatRegistry.Default.Open(path, null, new OpenOptions()))
            {
                Assert.Equal(1, ((ICheckableLayer)reader).Check(RepairMode.None).Corruptions);
            }

            using (var writer = FormatRegistry.Default.Open(path, null, new OpenOptions { Writable = true }))
            {
                var result = ((ICheckableLayer)writer).Check(RepairMode.All);
                Assert.Equal(1, result.CorruptionsFixed);
                Assert.True(result.IsValid);
            }

            // qemu-img refuses an image with a pending log; after the replay it checks it clean.
            Judge.AssertClean(path, Fmt.Vhdx);
        }

        [Fact]
        public void DamagedRegionTableCopyIsReportedAndRewritten()
        {
            using var dir = new TempDir();
            string path = dir.File("r.vhdx");
            byte[] content = MakeImage(path, 4 * MiB);
            VhdxSurgery.WriteBytes(path, VhdxConstants.RegionTable1Offset + 100, new byte[] { 0x42 });
            using (var layer = FormatRegistry.Default.Open(path, null, new OpenOptions { Writable = true }))
            {
                var result = ((ICheckableLayer)layer).Check(RepairMode.All);
                Assert.Equal(1, result.CorruptionsFixed);
                Assert.True(result.IsValid);
            }

            using (var layer = FormatRegistry.Default.Open(path, null, new OpenOptions()))
            {
                var result = ((ICheckableLayer)layer).Check(RepairMode.None);
                Assert.True(result.IsValid);
                Assert.Empty(result.Messages);
            }

            Assert.Equal(content, Qemu.ToRawBytes(path, "vhdx", dir.Path));
        }

        [Fact]
        public void LogGuidWithoutASequenceIsReportedAndCleared()
        {
            using var dir = new TempDir();
            string path = dir.File("l.vhdx");
            byte[] content = MakeImage(path, 4 * MiB);
            VhdxSurgery.InjectLog(path, Guid.NewGuid());
            using (var reader = FormatRegistry.Default.Open(path, null, new OpenOptions()))
            {
                Assert.Equal(1, ((ICheckableLayer)reader).Check(RepairMode.None).Corruptions);
            }

            using (var writer = FormatRegistry.Default.Open(path, null, new OpenOptions { Writable = true }))
            {
                Assert.True(((ICheckableLayer)writer).Check(RepairMode.All).IsValid);
            }

            Assert.Equal(Guid.Empty, VhdxSurgery.ReadHeader(path).LogGuid);
            Judge.AssertClean(path, Fmt.Vhdx);
            Assert.Equal(content, Qemu.ToRawBytes(path, "vhdx", dir.Path));
        }

        [Fact]
        public void MeasureCountsMetadataAndBlocks()
        {
            var driver = FormatRegistry.Default.GetCreatable(Fmt.Vhdx);
            var dynamic = driver.Measure(new CreateRequest { Size = 64 * MiB, ClusterSize = MiB }, 3 * MiB);
            var fixedSize = driver.Measure(new CreateRequest { Size = 64 * MiB, ClusterSize = MiB, Type = DiskType.Fixed }, 3 * MiB);
            Assert.Equal(fixedSize.FullyAllocated, dynamic.FullyAllocated);
            Assert.Equal(dynamic.FullyAllocated - (61 * MiB), dynamic.Required);
            Assert.Equal(fixedSize.FullyAllocated, fixedSize.Required);

            using var dir = new TempDir();
            string path = dir.File("m.vhdx");
            CreateOperation.Create(path, Fmt.Vhdx, new CreateRequest { Size = 64 * MiB, ClusterSize = MiB, Type = DiskType.Fixed });
            Assert.Equal(fixedSize.Required, new FileInfo(path).Length);
        }
    }
}
