using System.IO;
using Xunit;

namespace VDiskPS.Formats.Tests.Operations
{
    public class ResizeTests
    {
        private const long MiB = 1 << 20;

        [Fact]
        public void RelativeGrowAddsToTheCurrentSize()
        {
            using var dir = new TempDir();
            string path = RawImages.Make(dir, "a.raw", MiB, (0, TestData.Pattern(4096, 1)));
            VDiskInfo info = ResizeOperation.Run(path, new ResizeOptions { Size = DiskSize.Parse("+1M") });
            Assert.Equal(2 * MiB, info.Size);
            Assert.Equal(2 * MiB, new FileInfo(path).Length);
        }

        [Fact]
        public void ShrinkWithoutPermissionIsRefused()
        {
            using var dir = new TempDir();
            string path = RawImages.Make(dir, "a.raw", 2 * MiB);
            Assert.Throws<ImageOptionException>(() => ResizeOperation.Run(path, new ResizeOptions { Size = DiskSize.Parse("-1M") }));
            Assert.Equal(2 * MiB, new FileInfo(path).Length);
        }

        [Fact]
        public void ShrinkWithPermissionCutsTheImage()
        {
            using var dir = new TempDir();
            string path = RawImages.Make(dir, "a.raw", 2 * MiB);
            VDiskInfo info = ResizeOperation.Run(path, new ResizeOptions { Size = DiskSize.Parse("1M"), AllowShrink = true });
            Assert.Equal(MiB, info.Size);
        }

        [Fact]
        public void FullPreallocationAllocatesTheNewSpace()
        {
            using var dir = new TempDir();
            string path = RawImages.Make(dir, "a.raw", MiB);
            ResizeOperation.Run(path, new ResizeOptions { Size = DiskSize.Parse("2M"), Preallocation = Preallocation.Full });
            using var layer = FormatRegistry.Default.Open(path, Fmt.Raw, new OpenOptions());
            Assert.Equal(ExtentKind.Data, layer.GetBlockStatus(MiB, MiB).Kind);
        }
    }
}
