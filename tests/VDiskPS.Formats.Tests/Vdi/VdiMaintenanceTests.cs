using System;
using System.Buffers.Binary;
using System.IO;
using System.Threading;
using Xunit;

namespace VDiskPS.Formats.Tests.Vdi
{
    public class VdiMaintenanceTests
    {
        private static byte[] MakeDisk(string path, long size, DiskType type = DiskType.Dynamic)
        {
            CreateOperation.Create(path, Fmt.Vdi, new CreateRequest { Size = size, Type = type });
            var content = new byte[size];
            using var layer = FormatRegistry.Default.Open(path, null, new OpenOptions { Writable = true });
            byte[] tail = TestData.Pattern(4096, 42);
            layer.Write(size - 4096, tail);
            tail.CopyTo(content, size - 4096);
            layer.Write(1L << 20, new byte[2 << 20]);
            byte[] head = TestData.Pattern(1 << 20, 41);
            layer.Write(0, head);
            head.CopyTo(content, 0);
            return content;
        }

        private static ImageLayer OpenWritable(string path) => FormatRegistry.Default.Open(path, null, new OpenOptions { Writable = true });

        private static void AssertQemuClean(string path)
        {
            var check = Qemu.Check(path, "vdi");
            Assert.True(check.ExitCode == 0, check.Output);
        }

        private static byte[] Resized(byte[] content, long size)
        {
            var result = new byte[size];
            Array.Copy(content, result, Math.Min(content.Length, size));
            return result;
        }

        [Theory]
        [InlineData(DiskType.Dynamic, 100L << 20)]
        [InlineData(DiskType.Dynamic, 130L << 20)]
        [InlineData(DiskType.Fixed, 9L << 20)]
        [InlineData(DiskType.Fixed, 130L << 20)]
        public void GrowingKeepsDataAndPassesQemuCheck(DiskType type, long newSize)
        {
            using var dir = new TempDir();
            string path = dir.File("g.vdi");
            byte[] content = MakeDisk(path, 5L << 20, type);
            using (var layer = OpenWritable(path))
            {
                ((IResizableLayer)layer).Resize(newSize, false, Preallocation.Off);
            }

            AssertQemuClean(path);
            using (var info = Qemu.Info(path, "vdi"))
            {
                Assert.Equal(newSize, info.RootElement.GetProperty("virtual-size").GetInt64());
            }

            Assert.Equal(Resized(content, newSize), TestData.ReadAll(path));
            Assert.Equal(Resized(content, newSize), Qemu.ToRawBytes(path, "vdi", dir.Path));
        }

        [Fact]
        public void ShrinkingCompactsAndPassesQemuCheck()
        {
            using var dir = new TempDir();
            string path = dir.File("s.vdi");
            byte[] content = MakeDisk(path, 6L << 20);
            using (var layer = OpenWritable(path))
            {
                ((IResizableLayer)layer).Resize((2L << 20) + 512, true, Preallocation.Off);
                ((IResizableLayer)layer).Resize(6L << 20, false, Preallocation.Off);
            }

            AssertQemuClean(path);
            Assert.Equal(Resized(Resized(content, (2L << 20) + 512), 6L << 20), Qemu.ToRawBytes(path, "vdi", dir.Path));
        }

        [Fact]
        public void OptimizeReclaimsZeroBlocks()
        {
            using var dir = new TempDir();
            string path = dir.File("o.vdi");
            byte[] content = MakeDisk(path, 6L << 20);
            long reclaimed;
            using (var layer = OpenWritable(path))
            {
                reclaimed = ((IOptimizableLayer)layer).Optimize(null, CancellationToken.None);
            }

            Assert.Equal(2L << 20, reclaimed);
            AssertQemuClean(path);
            Assert.Equal(content, Qemu.ToRawBytes(path, "vdi", dir.Path));
            Assert.Equal(content, TestData.ReadAll(path));
        }

        [Fact]
        public void StaticVdiCannotBeOptimized()
        {
            using var dir = new TempDir();
            string path = dir.File("st.vdi");
            MakeDisk(path, 3L << 20, DiskType.Fixed);
            using var layer = OpenWritable(path);
            Assert.Throws<ImageNotSupportedException>(() => ((IOptimizableLayer)layer).Optimize(null, CancellationToken.None));
        }

        [Fact]
        public void WrongAllocatedCountIsACorruptionLikeQemuSays()
        {
            using var dir = new TempDir();
            string path = dir.File("bad.vdi");
            MakeDisk(path, 4L << 20);
            using (var stream = File.Open(path, FileMode.Open))
            {
                var count = new byte[4];
                BinaryPrimitives.WriteUInt32LittleEndian(count, 1);
                stream.Position = 0x184;
                stream.Write(count);
            }

            Assert.NotEqual(0, Qemu.Check(path, "vdi").ExitCode);
            using (var layer = OpenWritable(path))
            {
                var result = ((ICheckableLayer)layer).Check(RepairMode.None);
                Assert.Equal(1, result.Corruptions);
                var repaired = ((ICheckableLayer)layer).Check(RepairMode.All);
                Assert.Equal(1, repaired.CorruptionsFixed);
            }

            AssertQemuClean(path);
        }

        [Fact]
        public void QemuMadeVdiChecksCleanHere()
        {
            using var dir = new TempDir();
            string path = dir.File("q.vdi");
            Qemu.Img("create", "-f", "vdi", path, "4M");
            Qemu.Io("-f", "vdi", "-c", "write -P 0x5a 1M 1M", path);
            using var layer = FormatRegistry.Default.Open(path, null, new OpenOptions());
            var result = ((ICheckableLayer)layer).Check(RepairMode.None);
            Assert.True(result.IsValid);
            Assert.Equal(0, result.Leaks);
            Assert.Equal(1, result.AllocatedClusters);
        }

        [Fact]
        public void RebaseRecordsTheNewParentsUuid()
        {
            using var dir = new TempDir();
            MakeDisk(dir.File("base.vdi"), 4L << 20);
            CreateOperation.Create(dir.File("child.vdi"), Fmt.Vdi, new CreateRequest { Backing = new BackingReference("base.vdi", Fmt.Vdi) });
            byte[] other = MakeDisk(dir.File("other.vdi"), 4L << 20);
            using (var parent = FormatRegistry.Default.Open(dir.File("other.vdi"), null, new OpenOptions()))
            using (var child = OpenWritable(dir.File("child.vdi")))
            {
                ((IParentChangeableLayer)child).SetBacking(new BackingReference("other.vdi", Fmt.Vdi), parent);
            }

            using (var layer = FormatRegistry.Default.Open(dir.File("child.vdi"), null, new OpenOptions()))
            {
                Assert.Equal("other.vdi", layer.Backing.RecordedPath);
            }

            Assert.Equal(other, TestData.ReadAll(dir.File("child.vdi")));
        }

        [Fact]
        public void RemovingTheParentMakesADynamicImageQemuReads()
        {
            using var dir = new TempDir();
            MakeDisk(dir.File("base.vdi"), 4L << 20);
            CreateOperation.Create(dir.File("child.vdi"), Fmt.Vdi, new CreateRequest { Backing = new BackingReference("base.vdi", Fmt.Vdi) });
            using (var child = OpenWritable(dir.File("child.vdi")))
            {
                ((IParentChangeableLayer)child).SetBacking(null, null);
            }

            AssertQemuClean(dir.File("child.vdi"));
        }

        [Fact]
        public void MeasureCoversWhatConvertWrites()
        {
            using var dir = new TempDir();
            string path = dir.File("m.vdi");
            MakeDisk(path, 6L << 20);
            var measured = FormatRegistry.Default.GetCreatable(Fmt.Vdi).Measure(new CreateRequest { Size = 6L << 20 }, 2L << 20);
            string converted = dir.File("conv.vdi");
            ConvertOperation.Run(path, converted, new ConvertOptions { TargetFormat = Fmt.Vdi });
            Assert.True(new FileInfo(converted).Length <= measured.Required, $"{new FileInfo(converted).Length} > {measured.Required}");
            var full = FormatRegistry.Default.GetCreatable(Fmt.Vdi).Measure(new CreateRequest { Size = 6L << 20, Type = DiskType.Fixed }, 0);
            Assert.Equal(1024 + (6L << 20), full.Required);
        }
    }
}
