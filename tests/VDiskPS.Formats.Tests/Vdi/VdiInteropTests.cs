using System;
using System.IO;
using Xunit;

namespace VDiskPS.Formats.Tests.Vdi
{
    public class VdiInteropTests
    {
        private static void FillWithQemu(string path)
        {
            Qemu.Io("-f", "vdi", "-c", "write -P 0x11 0 64k", "-c", "write -P 0x22 1M 1536k", "-c", "write -P 0x33 3000k 4k", "-c", "write -P 0x44 4095k 1k", path);
        }

        [Theory]
        [InlineData("static=off", "4M")]
        [InlineData("static=on", "4M")]
        [InlineData("static=off", "4608K")]
        [InlineData("static=on", "4194816")]
        public void QemuMadeVdiReadsBitExact(string options, string size)
        {
            using var dir = new TempDir();
            string path = dir.File("q.vdi");
            Qemu.Img("create", "-f", "vdi", "-o", options, path, size);
            FillWithQemu(path);
            Assert.Equal(Qemu.ToRawBytes(path, "vdi", dir.Path), TestData.ReadAll(path));
        }

        [Theory]
        [InlineData("static=off")]
        [InlineData("static=on")]
        public void ConvertedVdiPassesQemuCheckAndCompare(string options)
        {
            using var dir = new TempDir();
            string raw = TestData.WriteRaw(dir, "src.raw", (5L << 20) + 3584);
            string vdi = dir.File("dst.vdi");
            ConvertOperation.Run(raw, vdi, new ConvertOptions { TargetFormat = Fmt.Vdi, Target = new CreateRequest { Options = OptionSet.Parse(options) } });
            var check = Qemu.Check(vdi, "vdi");
            Assert.True(check.ExitCode == 0, check.Output);
            var (identical, output) = Qemu.Compare(raw, "raw", vdi, "vdi");
            Assert.True(identical, output);
            Assert.Equal(File.ReadAllBytes(raw), TestData.ReadAll(vdi));
        }

        [Fact]
        public void UnalignedWritesIntoDynamicVdiMatchQemu()
        {
            using var dir = new TempDir();
            string path = dir.File("w.vdi");
            CreateOperation.Create(path, Fmt.Vdi, new CreateRequest { Size = 6L << 20 });
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
            }

            var check = Qemu.Check(path, "vdi");
            Assert.True(check.ExitCode == 0, check.Output);
            Assert.Equal(expected, Qemu.ToRawBytes(path, "vdi", dir.Path));
            Assert.Equal(expected, TestData.ReadAll(path));
        }

        [Fact]
        public void QemuCanWriteIntoAVdiWeCreated()
        {
            using var dir = new TempDir();
            string path = dir.File("shared.vdi");
            CreateOperation.Create(path, Fmt.Vdi, new CreateRequest { Size = 4L << 20 });
            using (var layer = FormatRegistry.Default.Open(path, null, new OpenOptions { Writable = true }))
            {
                layer.Write(2L << 20, TestData.Pattern(4096, 5));
            }

            FillWithQemu(path);
            Assert.True(Qemu.Check(path, "vdi").ExitCode == 0);
            Assert.Equal(Qemu.ToRawBytes(path, "vdi", dir.Path), TestData.ReadAll(path));
        }

        [Fact]
        public void StaticVdiIsFixedWithEveryBlockAllocated()
        {
            using var dir = new TempDir();
            string path = dir.File("s.vdi");
            var info = CreateOperation.Create(path, Fmt.Vdi, new CreateRequest { Size = 3L << 20, Type = DiskType.Fixed });
            Assert.Equal("Fixed", info.Type);
            using var layer = FormatRegistry.Default.Open(path, null, new OpenOptions());
            var status = layer.GetBlockStatus(0, layer.Size);
            Assert.Equal(ExtentKind.Data, status.Kind);
            Assert.Equal(layer.Size, status.Length);
            using var qemuInfo = Qemu.Info(path, "vdi");
            Assert.Equal(3L << 20, qemuInfo.RootElement.GetProperty("virtual-size").GetInt64());
        }

        [Fact]
        public void TebibyteDynamicVdiStaysSmallAndChecksClean()
        {
            using var dir = new TempDir();
            string path = dir.File("big.vdi");
            long size = 1L << 40;
            CreateOperation.Create(path, Fmt.Vdi, new CreateRequest { Size = size });
            using (var layer = FormatRegistry.Default.Open(path, null, new OpenOptions { Writable = true }))
            {
                layer.Write(size / 2, Operations.RawImages.Fill(4096, 0x5A));
            }

            Assert.True(new FileInfo(path).Length < (8L << 20));
            var check = Qemu.Check(path, "vdi");
            Assert.True(check.ExitCode == 0, check.Output);
            // qemu-io verifies the written block and the zeros around it (exit 1 on a mismatch).
            var read = Qemu.Run("qemu-io", new[] { "-f", "vdi", "-r", "-c", $"read -P 0x5a {size / 2} 4096", "-c", $"read -P 0 {(size / 2) - (1 << 20)} 1M", "-c", $"read -P 0 {(size / 2) + 4096} 1M", path });
            Assert.True(read.ExitCode == 0 && !read.Output.Contains("failed"), read.Output);
        }

        [Fact]
        public void DescribeShowsTheImageUuid()
        {
            using var dir = new TempDir();
            string path = dir.File("d.vdi");
            var info = CreateOperation.Create(path, Fmt.Vdi, new CreateRequest { Size = 4L << 20 });
            Assert.Equal("Dynamic", info.Type);
            Assert.Equal(1L << 20, info.BlockSize);
            Assert.NotNull(info.DiskIdentifier);
            Assert.Equal(info.DiskIdentifier.ToString(), info.FormatSpecific["uuid"]);
        }

        [Fact]
        public void VdiIsProbedBySignature()
        {
            using var dir = new TempDir();
            string path = dir.File("p.img");
            Qemu.Img("create", "-f", "vdi", path, "1M");
            Assert.Equal(Fmt.Vdi, FormatRegistry.Default.Probe(path));
        }
    }
}
