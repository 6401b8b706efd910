using System;
using System.IO;
using Xunit;

namespace VDiskPS.Formats.Tests.Vhdx
{
    /// <summary>Images qemu-img writes read bit-exact.</summary>
    public class VhdxReadTests
    {
        [Theory]
        [InlineData("subformat=dynamic")]
        [InlineData("subformat=fixed")]
        [InlineData("subformat=dynamic,block_size=1M")]
        [InlineData("subformat=dynamic,block_size=256M")]
        [InlineData("subformat=fixed,block_size=2M,block_state_zero=off")]
        [InlineData("subformat=dynamic,block_state_zero=off,log_size=4M")]
        public void QemuImageReadsBitExact(string options)
        {
            using var dir = new TempDir();
            string path = dir.File("q.vhdx");
            Qemu.Img("create", "-q", "-f", "vhdx", "-o", options, path, "6M");
            Qemu.Io("-f", "vhdx", "-c", "write -P 0x5a 512 100k", "-c", "write -P 0xa5 3M 1536k", "-c", "write -P 0x11 6143k 1k", path);
            byte[] expected = Qemu.ToRawBytes(path, "vhdx", dir.Path);
            Assert.Equal(expected, TestData.ReadAll(path));
        }

        [Fact]
        public void QemuImageDescribesGeometry()
        {
            using var dir = new TempDir();
            string path = dir.File("q.vhdx");
            Qemu.Img("create", "-q", "-f", "vhdx", "-o", "block_size=4M", path, "10M");
            var info = ImageInspector.Get(path);
            Assert.Equal("vhdx", info.Format);
            Assert.Equal("Dynamic", info.Type);
            Assert.Equal(10L << 20, info.Size);
            Assert.Equal(4L << 20, info.BlockSize);
            Assert.Equal(512, info.LogicalSectorSize);
            Assert.NotNull(info.DiskIdentifier);
            Assert.NotEqual(Guid.Empty, info.DiskIdentifier.Value);
        }

        [Fact]
        public void QemuFixedImageIsFixed()
        {
            using var dir = new TempDir();
            string path = dir.File("f.vhdx");
            Qemu.Img("create", "-q", "-f", "vhdx", "-o", "subformat=fixed,block_state_zero=off", path, "3M");
            Assert.Equal("Fixed", ImageInspector.Get(path).Type);
        }

        [Fact]
        public void BlockStatusMergesBlocksOfOneKind()
        {
            using var dir = new TempDir();
            string path = dir.File("q.vhdx");
            Qemu.Img("create", "-q", "-f", "vhdx", "-o", "block_size=1M", path, "16M");
            Qemu.Io("-f", "vhdx", "-c", "write -P 1 2M 3M", path);
            using var layer = FormatRegistry.Default.Open(path, null, new OpenOptions());
            var zero = layer.GetBlockStatus(0, layer.Size);
            Assert.Equal(2L << 20, zero.Length);
            var data = layer.GetBlockStatus(2L << 20, layer.Size - (2L << 20));
            Assert.Equal(ExtentKind.Data, data.Kind);
            Assert.Equal(3L << 20, data.Length);
            Assert.True(data.HostOffset > 0);
        }
    }
}
