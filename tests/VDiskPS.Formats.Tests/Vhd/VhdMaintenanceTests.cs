using System;
using System.IO;
using System.Threading;
using VDiskPS.Formats.Vhd;
using Xunit;

namespace VDiskPS.Formats.Tests.Vhd
{
    public class VhdMaintenanceTests
    {
        private static byte[] MakeDisk(string path, long size, DiskType type = DiskType.Dynamic)
        {
            CreateOperation.Create(path, Fmt.Vhd, new CreateRequest { Size = size, Type = type });
            var content = new byte[size];
            using var layer = FormatRegistry.Default.Open(path, null, new OpenOptions { Writable = true });
            byte[] head = TestData.Pattern(1 << 20, 31);
            layer.Write(0, head);
            head.CopyTo(content, 0);
            layer.Write(2L << 20, new byte[2 << 20]);
            byte[] tail = TestData.Pattern(4096, 32);
            layer.Write(size - 4096, tail);
            tail.CopyTo(content, size - 4096);
            return content;
        }

        private static ImageLayer OpenWritable(string path) => FormatRegistry.Default.Open(path, null, new OpenOptions { Writable = true });

        private static byte[] Grown(byte[] content, long size)
        {
            var grown = new byte[size];
            Array.Copy(content, grown, Math.Min(content.Length, size));
            return grown;
        }

        [Theory]
        [InlineData(DiskType.Dynamic, 20L << 20)]
        [InlineData(DiskType.Dynamic, 300L << 20)]
        [InlineData(DiskType.Fixed, 9L << 20)]
        public void GrowingKeepsDataAndQemuSeesTheNewSize(DiskType type, long newSize)
        {
            using var dir = new TempDir();
            string path = dir.File("g.vhd");
            byte[] content = MakeDisk(path, 6L << 20, type);
            using (var layer = OpenWritable(path))
            {
                ((IResizableLayer)layer).Resize(newSize, false, Preallocation.Off);
            }

            using var info = Qemu.Info(path, "vpc");
            Assert.Equal(newSize, info.RootElement.GetProperty("virtual-size").GetInt64());
            Assert.Equal(Grown(content, newSize), TestData.ReadAll(path));
            Assert.Equal(Grown(content, newSize), Qemu.ToRawBytes(path, "vpc", dir.Path));
        }

        [Fact]
        public void ShrinkingNeedsPermission()
        {
            using var dir = new TempDir();
            string path = dir.File("s.vhd");
            MakeDisk(path, 6L << 20);
            using var layer = OpenWritable(path);
            Assert.Throws<ImageOptionException>(() => ((IResizableLayer)layer).Resize(4L << 20, false, Preallocation.Off));
        }

        [Theory]
        [InlineData(DiskType.Dynamic)]
        [InlineData(DiskType.Fixed)]
        public void ShrinkThenGrowReadsZerosPastTheCut(DiskType type)
        {
            using var dir = new TempDir();
            string path = dir.File("sg.vhd");
            byte[] content = MakeDisk(path, 6L << 20, type);
            using (var layer = OpenWritable(path))
            {
                ((IResizableLayer)layer).Resize((1L << 20) - 512 * 3, true, Preallocation.Off);
                ((IResizableLayer)layer).Resize(6L << 20, false, Preallocation.Off);
            }

            var expected = new byte[6L << 20];
            Array.Copy(content, expected, (1L << 20) - 512 * 3);
            Assert.Equal(expected, TestData.ReadAll(path));
            Assert.Equal(expected, Qemu.ToRawBytes(path, "vpc", dir.Path));
        }

        [Fact]
        public void CleanImageChecksClean()
        {
            using var dir = new TempDir();
            string path = dir.File("c.vhd");
            MakeDisk(path, 6L << 20);
            using var layer = FormatRegistry.Default.Open(path, null, new OpenOptions());
            var result = ((ICheckableLayer)layer).Check(RepairMode.None);
            Assert.True(result.IsValid);
            Assert.Equal(0, result.Leaks);
            Assert.Equal(3, result.TotalClusters);
            Assert.Equal(3, result.AllocatedClusters);
        }

        [Fact]
        public void OptimizeReclaimsZeroBlocksAndKeepsContent()
        {
            using var dir = new TempDir();
            string path = dir.File("o.vhd");
            byte[] content = MakeDisk(path, 8L << 20);
            long before = new FileInfo(path).Length;
            long reclaimed;
            using (var layer = OpenWritable(path))
            {
                reclaimed = ((IOptimizableLayer)layer).Optimize(null, CancellationToken.None);
            }

            Assert.True(reclaimed >= 2L << 20, $"reclaimed {reclaimed}");
            Assert.Equal(before - reclaimed, new FileInfo(path).Length);
            Assert.Equal(content, TestData.ReadAll(path));
            Assert.Equal(content, Qemu.ToRawBytes(path, "vpc", dir.Path));
        }

        [Fact]
        public void DiscardedBlockLeaksUntilRepaired()
        {
            using var dir = new TempDir();
            string path = dir.File("d.vhd");
            byte[] content = MakeDisk(path, 8L << 20);
            using (var layer = OpenWritable(path))
            {
                ((IDiscardableLayer)layer).Discard(0, 2L << 20);
                Array.Clear(content, 0, 2 << 20);
                Assert.Equal(ExtentKind.Unallocated, layer.GetBlockStatus(0, 1).Kind);
                var check = ((ICheckableLayer)layer).Check(RepairMode.None);
                Assert.True(check.IsValid);
                Assert.True(check.Leaks > 0);
                var repaired = ((ICheckableLayer)layer).Check(RepairMode.Leaks);
                Assert.Equal(repaired.Leaks, repaired.LeaksFixed);
            }

            using (var layer = FormatRegistry.Default.Open(path, null, new OpenOptions()))
            {
                Assert.Equal(0, ((ICheckableLayer)layer).Check(RepairMode.None).Leaks);
            }

            Assert.Equal(content, TestData.ReadAll(path));
            Assert.Equal(content, Qemu.ToRawBytes(path, "vpc", dir.Path));
        }

        [Fact]
        public void RebaseRecordsTheNewParentsIdentity()
        {
            using var dir = new TempDir();
            MakeDisk(dir.File("base.vhd"), 6L << 20);
            CreateOperation.Create(dir.File("child.vhd"), Fmt.Vhd, new CreateRequest { Backing = new BackingReference("base.vhd", Fmt.Vhd) });
            byte[] other = MakeDisk(dir.File("other.vhd"), 6L << 20);
            using (var chain = ImageChain.Open(dir.File("other.vhd")))
            using (var child = FormatRegistry.Default.Open(dir.File("child.vhd"), null, new OpenOptions { Writable = true }))
            {
                ((IParentChangeableLayer)child).SetBacking(new BackingReference("other.vhd", Fmt.Vhd), chain.Top);
            }

            using (var layer = FormatRegistry.Default.Open(dir.File("child.vhd"), null, new OpenOptions()))
            {
                Assert.Equal(".\\other.vhd", layer.Backing.RecordedPath);
            }

            Assert.Equal(other, TestData.ReadAll(dir.File("child.vhd")));
        }

        [Fact]
        public void RemovingTheParentMakesADynamicDisk()
        {
            using var dir = new TempDir();
            MakeDisk(dir.File("base.vhd"), 6L << 20);
            CreateOperation.Create(dir.File("child.vhd"), Fmt.Vhd, new CreateRequest { Backing = new BackingReference("base.vhd", Fmt.Vhd) });
            using (var child = FormatRegistry.Default.Open(dir.File("child.vhd"), null, new OpenOptions { Writable = true }))
            {
                child.Write(512, TestData.Pattern(512, 3));
                ((IParentChangeableLayer)child).SetBacking(null, null);
            }

            using var layer = FormatRegistry.Default.Open(dir.File("child.vhd"), null, new OpenOptions());
            Assert.Equal(DiskType.Dynamic, layer.DiskType);
            Assert.Null(layer.Backing);
            using var info = Qemu.Info(dir.File("child.vhd"), "vpc");
            Assert.Equal(6L << 20, info.RootElement.GetProperty("virtual-size").GetInt64());
        }

        [Fact]
        public void MeasureMatchesWhatConvertWrites()
        {
            using var dir = new TempDir();
            string path = dir.File("m.vhd");
            MakeDisk(path, 8L << 20);
            var driver = FormatRegistry.Default.GetCreatable(Fmt.Vhd);
            var measured = driver.Measure(new CreateRequest { Size = 8L << 20 }, 3L << 20);
            string converted = dir.File("conv.vhd");
            ConvertOperation.Run(path, converted, new ConvertOptions { TargetFormat = Fmt.Vhd });
            Assert.True(new FileInfo(converted).Length <= measured.Required, $"{new FileInfo(converted).Length} > {measured.Required}");
            var full = driver.Measure(new CreateRequest { Size = 8L << 20, Type = DiskType.Fixed }, 0);
            Assert.Equal((8L << 20) + 512, full.Required);
        }

        [Fact]
        public void AzureSizeRoundsUpToWholeMebibytesWithAWarning()
        {
            Assert.Equal(3L << 20, VhdDriver.AzureSize((2L << 20) + 1, true, out string warning));
            Assert.NotNull(warning);
            Assert.Equal(2L << 20, VhdDriver.AzureSize(2L << 20, true, out string none));
            Assert.Null(none);
            Assert.Throws<ImageOptionException>(() => VhdDriver.AzureSize((2L << 20) + 512, false, out _));
        }

        [Fact]
        public void AzureOptionMakesAFixedDiskOfWholeMebibytes()
        {
            using var dir = new TempDir();
            string path = dir.File("azure.vhd");
            var info = CreateOperation.Create(path, Fmt.Vhd, new CreateRequest { Size = 5_000_000, Options = OptionSet.Parse("azure=on") });
            Assert.Equal("Fixed", info.Type);
            Assert.Equal(5L << 20, info.Size);
            Assert.Equal((5L << 20) + 512, new FileInfo(path).Length);
            using var qemuInfo = Qemu.Info(path, "vpc");
            Assert.Equal(5L << 20, qemuInfo.RootElement.GetProperty("virtual-size").GetInt64());
            Assert.Throws<ImageOptionException>(() => CreateOperation.Create(dir.File("refuse.vhd"), Fmt.Vhd, new CreateRequest { Size = 5_000_000, Options = OptionSet.Parse("azure=on,azure_round=refuse") }));
        }

        [Fact]
        public void SizesBeyond2040GiBAreRefused()
        {
            using var dir = new TempDir();
            var error = Assert.Throws<ImageOptionException>(() => CreateOperation.Create(dir.File("big.vhd"), Fmt.Vhd, new CreateRequest { Size = 2041L << 30 }));
            Assert.Contains("2040 GiB", error.Message);
            Assert.False(File.Exists(dir.File("big.vhd")));
        }

        [Fact]
        public void ForceSizeOffRoundsToTheGeometryLikeQemu()
        {
            using var dir = new TempDir();
            string ours = dir.File("ours.vhd");
            string theirs = dir.File("theirs.vhd");
            CreateOperation.Create(ours, Fmt.Vhd, new CreateRequest { Size = 10_000_000, Options = OptionSet.Parse("force_size=off") });
            Qemu.Img("create", "-f", "vpc", theirs, "10000000");
            using var a = Qemu.Info(ours, "vpc");
            using var b = Qemu.Info(theirs, "vpc");
            Assert.Equal(b.RootElement.GetProperty("virtual-size").GetInt64(), a.RootElement.GetProperty("virtual-size").GetInt64());
        }
    }
}
