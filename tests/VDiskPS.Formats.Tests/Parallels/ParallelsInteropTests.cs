using System;
using System.Buffers.Binary;
using System.IO;
using System.Linq;
using System.Text;
using Xunit;

namespace VDiskPS.Formats.Tests.Parallels
{
    /// <summary>Parallels images qemu-img makes, read bit-exact; images the engine makes, judged by qemu-img check and compare.</summary>
    public class ParallelsInteropTests
    {
        internal static void FillWithQemu(string path)
        {
            Qemu.Io("-f", "parallels", "-c", "write -P 0x11 0 64k", "-c", "write -P 0x22 1M 1536k", "-c", "write -P 0x33 3000k 4k", "-c", "write -P 0x44 4095k 1k", path);
        }

        /// <summary>A qemu-made image with data in its first clusters and near its end.</summary>
        internal static string MakeQemuImage(TempDir dir, string cluster = "64k", string name = "q.hds")
        {
            string path = dir.File(name);
            Qemu.Img("create", "-f", "parallels", "-o", "cluster_size=" + cluster, path, "4M");
            FillWithQemu(path);
            return path;
        }

        [Theory]
        [InlineData("1M", "4M")]
        [InlineData("64k", "4M")]
        [InlineData("4k", "4608K")]
        [InlineData("1536k", "4194816")]
        public void QemuMadeImageReadsBitExact(string cluster, string size)
        {
            using var dir = new TempDir();
            string path = dir.File("q.hds");
            Qemu.Img("create", "-f", "parallels", "-o", "cluster_size=" + cluster, path, size);
            FillWithQemu(path);
            Assert.Equal(Fmt.Parallels, FormatRegistry.Default.Probe(path));
            Assert.Equal(Qemu.ToRawBytes(path, "parallels", dir.Path), TestData.ReadAll(path));
            using var info = Qemu.Info(path, "parallels");
            Assert.Equal(info.RootElement.GetProperty("virtual-size").GetInt64(), ImageInspector.Get(path).Size);
        }

        /// <summary>
        /// The first header ("WithoutFreeSpace"), which qemu reads but does not write: made from a qemu image
        /// by changing the magic and the BAT entries from clusters to sectors. High bits of the sector count
        /// are ignored in this header, by qemu and the engine.
        /// </summary>
        [Fact]
        public void OriginalHeaderWithSectorOffsetsReadsAsQemuReadsIt()
        {
            using var dir = new TempDir();
            string path = MakeQemuImage(dir);
            byte[] expected = Qemu.ToRawBytes(path, "parallels", dir.Path);
            byte[] image = File.ReadAllBytes(path);
            Encoding.ASCII.GetBytes("WithoutFreeSpace").CopyTo(image, 0);
            uint tracks = BinaryPrimitives.ReadUInt32LittleEndian(image.AsSpan(28));
            uint entries = BinaryPrimitives.ReadUInt32LittleEndian(image.AsSpan(32));
            for (int i = 0; i < entries; i++)
            {
                uint entry = BinaryPrimitives.ReadUInt32LittleEndian(image.AsSpan(64 + (i * 4)));
                BinaryPrimitives.WriteUInt32LittleEndian(image.AsSpan(64 + (i * 4)), entry * tracks);
            }

            BinaryPrimitives.WriteUInt32LittleEndian(image.AsSpan(40), 0x5A5A);
            File.WriteAllBytes(path, image);
            Assert.Equal(expected, Qemu.ToRawBytes(path, "parallels", dir.Path));
            Assert.Equal(expected, TestData.ReadAll(path));
            Assert.Equal("original", ImageInspector.Get(path).Subformat);

            // New clusters of this header are recorded in sectors too, and qemu reads them so.
            using (var layer = FormatRegistry.Default.Open(path, null, new OpenOptions { Writable = true }))
            {
                layer.Write(2L << 20, TestData.Pattern(70_000, 7));
                layer.Write(30_000, TestData.Pattern(100, 8));
            }

            TestData.Pattern(70_000, 7).CopyTo(expected, 2L << 20);
            TestData.Pattern(100, 8).CopyTo(expected, 30_000);
            Assert.Equal(0, Qemu.Check(path, "parallels").ExitCode);
            Assert.Equal(expected, Qemu.ToRawBytes(path, "parallels", dir.Path));
            Assert.Equal(expected, TestData.ReadAll(path));
        }

        [Theory]
        [InlineData("")]
        [InlineData("cluster_size=64k")]
        [InlineData("cluster_size=4k")]
        public void ConvertedImagePassesQemuCheckAndCompare(string options)
        {
            using var dir = new TempDir();
            string raw = TestData.WriteRaw(dir, "src.raw", (5L << 20) + 3584);
            string image = dir.File("dst.hds");
            ConvertOperation.Run(raw, image, new ConvertOptions { TargetFormat = Fmt.Parallels, Target = new CreateRequest { Options = OptionSet.Parse(options) } });
            var check = Qemu.Check(image, "parallels");
            Assert.True(check.ExitCode == 0, check.Output);
            var (identical, output) = Qemu.Compare(raw, "raw", image, "parallels");
            Assert.True(identical, output);
            Assert.Equal(File.ReadAllBytes(raw), TestData.ReadAll(image));
        }

        [Theory]
        [InlineData("1M", "4M")]
        [InlineData("64k", "10M")]
        [InlineData("4k", "3000K")]
        [InlineData("1000", "1000001")]
        public void CreatedImageIsByteIdenticalToQemuImgCreate(string cluster, string size)
        {
            using var dir = new TempDir();
            string theirs = dir.File("theirs.hds");
            Qemu.Img("create", "-f", "parallels", "-o", "cluster_size=" + cluster, theirs, size);
            string ours = dir.File("ours.hds");
            long bytes = DiskSize.Parse(size).Bytes;
            CreateOperation.Create(ours, Fmt.Parallels, new CreateRequest { Size = bytes, ClusterSize = DiskSize.Parse(cluster).Bytes });

            Assert.Equal(File.ReadAllBytes(theirs), File.ReadAllBytes(ours));
        }

        [Fact]
        public void UnalignedWritesMatchQemu()
        {
            using var dir = new TempDir();
            string path = dir.File("w.hds");
            CreateOperation.Create(path, Fmt.Parallels, new CreateRequest { Size = 6L << 20, ClusterSize = 256 << 10 });
            var expected = new byte[6L << 20];
            using (var layer = FormatRegistry.Default.Open(path, null, new OpenOptions { Writable = true }))
            {
                void Write(long offset, byte[] data)
                {
                    layer.Write(offset, data);
                    data.CopyTo(expected, offset);
                }

                Write(100, TestData.Pattern(1000, 1));
                Write((2L << 20) - 300, TestData.Pattern(5000, 2));
                Write(3L << 20, TestData.Pattern(3 << 20, 3));
                Write(777, TestData.Pattern(10, 4));
                layer.WriteZeroes(4L << 20, 4096);
                Array.Clear(expected, 4 << 20, 4096);
                layer.WriteZeroes(1L << 20, 8192);
            }

            var check = Qemu.Check(path, "parallels");
            Assert.True(check.ExitCode == 0, check.Output);
            Assert.Equal(expected, Qemu.ToRawBytes(path, "parallels", dir.Path));
            Assert.Equal(expected, TestData.ReadAll(path));
            // Zeros over an unallocated cluster allocate nothing: the header cluster, clusters 0, 7, 8 and the 12 of the 3 MiB write.
            Assert.Equal((256L << 10) * (1 + 1 + 2 + 12), new FileInfo(path).Length);
        }

        [Fact]
        public void QemuWritesIntoAnImageTheEngineMadeAndTheEngineReadsIt()
        {
            using var dir = new TempDir();
            string path = dir.File("shared.hds");
            CreateOperation.Create(path, Fmt.Parallels, new CreateRequest { Size = 4L << 20 });
            using (var layer = FormatRegistry.Default.Open(path, null, new OpenOptions { Writable = true }))
            {
                layer.Write(2L << 20, TestData.Pattern(4096, 5));
            }

            FillWithQemu(path);
            Assert.Equal(0, Qemu.Check(path, "parallels").ExitCode);
            Assert.Equal(Qemu.ToRawBytes(path, "parallels", dir.Path), TestData.ReadAll(path));
        }

        [Fact]
        public void TheInUseMarkerIsSetWhileWritingAndClearedOnClose()
        {
            using var dir = new TempDir();
            string path = MakeQemuImage(dir);
            string opened = dir.File("opened.hds");
            string snapshot = dir.File("mid-write.hds");
            using (var layer = FormatRegistry.Default.Open(path, null, new OpenOptions { Writable = true }))
            {
                // The open image is locked against this process's own FileStreams; cp reads it as any other process would.
                Qemu.Run("cp", new[] { path, opened }, expectSuccess: true);
                layer.Write(5000, TestData.Pattern(3000, 6));
                layer.Flush();
                Qemu.Run("cp", new[] { path, snapshot }, expectSuccess: true);
            }

            // Opening alone changes nothing; the first write sets the marker.
            Assert.Equal(0, Qemu.Check(opened, "parallels").ExitCode);

            // A copy taken while the layer was open is one qemu must not trust: "not closed correctly".
            var mid = Qemu.Check(snapshot, "parallels");
            Assert.NotEqual(0, mid.ExitCode);
            Assert.Contains("not closed correctly", mid.Output);
            Assert.Equal(0, Qemu.Check(path, "parallels").ExitCode);
        }

        [Fact]
        public void MeasureCoversWhatConvertWrites()
        {
            // qemu-img measure does not support parallels; the engine's figure is checked against the file convert makes.
            using var dir = new TempDir();
            string raw = TestData.WriteRaw(dir, "src.raw", 5L << 20);
            string image = dir.File("m.hds");
            ConvertOperation.Run(raw, image, new ConvertOptions { TargetFormat = Fmt.Parallels });
            var driver = (ICreatableDriver)FormatRegistry.Default.Get(Fmt.Parallels);
            VDiskMeasurement measured = driver.Measure(new CreateRequest { Size = 5L << 20 }, 3L << 20);
            Assert.Equal(new FileInfo(image).Length, measured.Required);
            Assert.Equal(6L << 20, measured.FullyAllocated);
        }

        [Theory]
        [InlineData("preallocation=full", "preallocation")]
        [InlineData("cluster_size=0", "cluster_size")]
        [InlineData("cluster_size=4G", "cluster_size")]
        [InlineData("subformat=x", "subformat")]
        public void CreateOptionsQemuWouldNotHonourAreRefused(string options, string field)
        {
            using var dir = new TempDir();
            string path = dir.File("bad.hds");
            var error = Assert.Throws<ImageOptionException>(() => CreateOperation.Create(path, Fmt.Parallels, new CreateRequest { Size = 1L << 20, Options = OptionSet.Parse(options) }));
            Assert.Equal(field, error.Field);
            Assert.False(File.Exists(path));
        }
    }
}
