using System;
using System.IO;
using Xunit;

namespace VDiskPS.Formats.Tests.Vhd
{
    public class VhdInteropTests
    {
        private static void FillWithQemu(string path, string format)
        {
            Qemu.Io("-f", format, "-c", "write -P 0x11 0 64k", "-c", "write -P 0x22 1M 1536k", "-c", "write -P 0x33 3000k 4k", "-c", "write -P 0x44 5119k 1k", path);
        }

        [Theory]
        [InlineData("subformat=dynamic")]
        [InlineData("subformat=fixed")]
        [InlineData("subformat=dynamic,force_size=on")]
        [InlineData("subformat=fixed,force_size=on")]
        public void QemuMadeVhdReadsBitExact(string options)
        {
            using var dir = new TempDir();
            string path = dir.File("q.vhd");
            Qemu.Img("create", "-f", "vpc", "-o", options, path, "5M");
            FillWithQemu(path, "vpc");
            byte[] expected = Qemu.ToRawBytes(path, "vpc", dir.Path);
            Assert.Equal(expected, TestData.ReadAll(path));
            Judge.AssertSameContent(path, Fmt.Vhd, expected);
        }

        [Fact]
        public void QemuMadeFixedVhdIsProbedAsVhdNotRaw()
        {
            using var dir = new TempDir();
            string path = dir.File("fixed.img");
            Qemu.Img("create", "-f", "vpc", "-o", "subformat=fixed", path, "3M");
            Assert.Equal(Fmt.Vhd, FormatRegistry.Default.Probe(path));
        }

        [Fact]
        public void QemuMadeDynamicVhdReportsQemuSize()
        {
            using var dir = new TempDir();
            string path = dir.File("chs.vhd");
            Qemu.Img("create", "-f", "vpc", path, "10000000");
            using var info = Qemu.Info(path, "vpc");
            using var layer = FormatRegistry.Default.Open(path, null, new OpenOptions());
            Assert.Equal(info.RootElement.GetProperty("virtual-size").GetInt64(), layer.Size);
        }

        [Theory]
        [InlineData("dynamic")]
        [InlineData("fixed")]
        public void CreatedVhdHasExactlyTheRequestedSizeForQemu(string subformat)
        {
            using var dir = new TempDir();
            string path = dir.File("exact.vhd");
            long size = 10_000_384;
            CreateOperation.Create(path, Fmt.Vhd, new CreateRequest { Size = size, Options = OptionSet.Parse("subformat=" + subformat) });
            using var info = Qemu.Info(path, "vpc");
            Assert.Equal(size, info.RootElement.GetProperty("virtual-size").GetInt64());
        }

        [Theory]
        [InlineData("subformat=dynamic")]
        [InlineData("subformat=fixed")]
        public void ConvertedVhdComparesIdenticalInQemu(string options)
        {
            using var dir = new TempDir();
            string raw = TestData.WriteRaw(dir, "src.raw", 6L << 20);
            string vhd = dir.File("dst.vhd");
            ConvertOperation.Run(raw, vhd, new ConvertOptions { TargetFormat = Fmt.Vhd, Target = new CreateRequest { Options = OptionSet.Parse(options) } });
            var (identical, output) = Qemu.Compare(raw, "raw", vhd, "vpc");
            Assert.True(identical, output);
            Assert.Equal(File.ReadAllBytes(raw), TestData.ReadAll(vhd));
            Judge.AssertSameContent(vhd, Fmt.Vhd, File.ReadAllBytes(raw));
        }

        [Fact]
        public void UnalignedWritesIntoDynamicVhdMatchQemu()
        {
            using var dir = new TempDir();
            string path = dir.File("w.vhd");
            CreateOperation.Create(path, Fmt.Vhd, new CreateRequest { Size = 8L << 20 });
            var expected = new byte[8L << 20];
            using (var layer = FormatRegistry.Default.Open(path, null, new OpenOptions { Writable = true }))
            {
                void Write(long offset, byte[] data)
                {
                    layer.Write(offset, data);
                    data.CopyTo(expected, offset);
                }

                Write(100, TestData.Pattern(1000, 1));
                Write((2L << 20) - 300, TestData.Pattern(5000, 2));
                Write(5L << 20, TestData.Pattern(3 << 20, 3));
                Write(777, TestData.Pattern(10, 4));
            }

            Assert.Equal(expected, Qemu.ToRawBytes(path, "vpc", dir.Path));
            Assert.Equal(expected, TestData.ReadAll(path));
            Judge.AssertSameContent(path, Fmt.Vhd, expected);
        }

        [Fact]
        public void QemuCanWriteIntoAVhdWeCreated()
        {
            using var dir = new TempDir();
            string path = dir.File("shared.vhd");
            CreateOperation.Create(path, Fmt.Vhd, new CreateRequest { Size = 5L << 20 });
            using (var layer = FormatRegistry.Default.Open(path, null, new OpenOptions { Writable = true }))
            {
                layer.Write(3L << 20, TestData.Pattern(4096, 5));
            }

            FillWithQemu(path, "vpc");
            Assert.Equal(Qemu.ToRawBytes(path, "vpc", dir.Path), TestData.ReadAll(path));
        }

        [Fact]
        public void FixedVhdFileIsDataThenFooter()
        {
            using var dir = new TempDir();
            string path = dir.File("f.vhd");
            CreateOperation.Create(path, Fmt.Vhd, new CreateRequest { Size = 3L << 20, Type = DiskType.Fixed });
            Assert.Equal((3L << 20) + 512, new FileInfo(path).Length);
            Assert.Equal(Fmt.Vhd, FormatRegistry.Default.Probe(path));
        }

        [Fact]
        public void BlockStatusMergesUnallocatedBlocks()
        {
            using var dir = new TempDir();
            string path = dir.File("sparse.vhd");
            CreateOperation.Create(path, Fmt.Vhd, new CreateRequest { Size = 64L << 20 });
            using (var layer = FormatRegistry.Default.Open(path, null, new OpenOptions { Writable = true }))
            {
                layer.Write(40L << 20, TestData.Pattern(4096, 1));
            }

            using var reader = FormatRegistry.Default.Open(path, null, new OpenOptions());
            var first = reader.GetBlockStatus(0, reader.Size);
            Assert.Equal(ExtentKind.Unallocated, first.Kind);
            Assert.Equal(40L << 20, first.Length);
            var data = reader.GetBlockStatus(40L << 20, reader.Size - (40L << 20));
            Assert.Equal(ExtentKind.Data, data.Kind);
            Assert.Equal(2L << 20, data.Length);
        }

        [Fact]
        public void SubformatFieldAndOptionMustAgree()
        {
            using var dir = new TempDir();
            var info = CreateOperation.Create(dir.File("a.vhd"), Fmt.Vhd, new CreateRequest { Size = 1 << 20, Subformat = "fixed" });
            Assert.Equal("Fixed", info.Type);
            Assert.Throws<ImageOptionException>(() => CreateOperation.Create(dir.File("b.vhd"), Fmt.Vhd, new CreateRequest { Size = 1 << 20, Subformat = "fixed", Options = OptionSet.Parse("subformat=dynamic") }));
            Assert.Throws<ImageOptionException>(() => CreateOperation.Create(dir.File("c.vhd"), Fmt.Vhd, new CreateRequest { Size = 1 << 20, Options = OptionSet.Parse("cluster_size=64k") }));
        }

        [Fact]
        public void LargestDynamicVhdIsCreatedSparseAndReadByQemu()
        {
            using var dir = new TempDir();
            string path = dir.File("max.vhd");
            long size = 2040L << 30;
            CreateOperation.Create(path, Fmt.Vhd, new CreateRequest { Size = size });
            using (var layer = FormatRegistry.Default.Open(path, null, new OpenOptions { Writable = true }))
            {
                layer.Write(size - 4096, TestData.Pattern(4096, 1));
                var status = layer.GetBlockStatus(0, size);
                Assert.Equal(ExtentKind.Unallocated, status.Kind);
                Assert.Equal(size - (2L << 20), status.Length);
            }

            Assert.True(new FileInfo(path).Length < (8L << 20));
            using var info = Qemu.Info(path, "vpc");
            Assert.Equal(size, info.RootElement.GetProperty("virtual-size").GetInt64());
        }

        [Fact]
        public void DescribeShowsHyperVFields()
        {
            using var dir = new TempDir();
            string path = dir.File("d.vhd");
            var info = CreateOperation.Create(path, Fmt.Vhd, new CreateRequest { Size = 4L << 20 });
            Assert.Equal("Dynamic", info.Type);
            Assert.Equal(2L << 20, info.BlockSize);
            Assert.NotNull(info.DiskIdentifier);
            Assert.Equal("win", info.FormatSpecific["creator-app"]);
            var fixedInfo = CreateOperation.Create(dir.File("f.vhd"), Fmt.Vhd, new CreateRequest { Size = 4L << 20, Type = DiskType.Fixed });
            Assert.Equal("Fixed", fixedInfo.Type);
            Assert.Equal(0, fixedInfo.BlockSize);
        }
    }
}
