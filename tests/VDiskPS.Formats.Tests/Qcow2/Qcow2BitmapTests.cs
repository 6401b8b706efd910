using System;
using System.Linq;
using System.Text.Json;
using Xunit;

namespace VDiskPS.Formats.Tests.Qcow2
{
    public class Qcow2BitmapTests
    {
        private static string[] QemuBitmapNames(string path)
        {
            using var info = Qemu.Info(path, "qcow2");
            var data = info.RootElement.GetProperty("format-specific").GetProperty("data");
            if (!data.TryGetProperty("bitmaps", out var bitmaps))
            {
                return Array.Empty<string>();
            }

            return bitmaps.EnumerateArray().Select(b => b.GetProperty("name").GetString()).ToArray();
        }

        [Fact]
        public void QemuTrackedWritesAreCountedHere()
        {
            using var dir = new TempDir();
            string path = dir.File("b.qcow2");
            Qemu.Img("create", "-q", "-f", "qcow2", path, "8M");
            Qemu.Img("bitmap", "--add", "-g", "65536", path, "tracked");
            Qemu.Io("-f", "qcow2", "-c", "write 100000 200000", "-c", "write 4194304 65536", path);
            using var layer = Qcow2TestImages.OpenRead(path);
            var bitmap = Assert.Single(((IBitmapLayer)layer).GetBitmaps());
            Assert.Equal("tracked", bitmap.Name);
            Assert.Equal(65536, bitmap.Granularity);
            Assert.True(bitmap.Enabled);
            Assert.False(bitmap.InUse);

            // Granules 1..4 (100000..299999) and granule 64.
            Assert.Equal(5 * 65536, bitmap.DirtyBytes);
        }

        [Fact]
        public void BitmapsAddedHereTrackWritesAndPassQemuCheck()
        {
            using var dir = new TempDir();
            string path = dir.File("t.qcow2");
            Qemu.Img("create", "-q", "-f", "qcow2", path, "8M");
            using (var layer = Qcow2TestImages.OpenWritable(path))
            {
                var bitmaps = (IBitmapLayer)layer;
                bitmaps.AddBitmap("on", 65536, disabled: false);
                bitmaps.AddBitmap("off", 4096, disabled: true);
                layer.Write(70000, new byte[10000]);
            }

            Qcow2TestImages.AssertQemuCheckClean(path);
            Assert.Equal(new[] { "on", "off" }, QemuBitmapNames(path));
            using (var layer = Qcow2TestImages.OpenRead(path))
            {
                var list = ((IBitmapLayer)layer).GetBitmaps();
                Assert.Equal(65536, list[0].DirtyBytes);
                Assert.Equal(0, list[1].DirtyBytes);
                Assert.False(list[0].InUse);
            }

            // qemu keeps tracking the bitmap written here.
            Qemu.Io("-f", "qcow2", "-c", "write 6291456 4096", path);
            using (var layer = Qcow2TestImages.OpenRead(path))
            {
                Assert.Equal(2 * 65536, ((IBitmapLayer)layer).GetBitmaps()[0].DirtyBytes);
            }
        }

        [Fact]
        public void ClearDisableMergeAndRemove()
        {
            using var dir = new TempDir();
            string path = dir.File("m.qcow2");
            Qemu.Img("create", "-q", "-f", "qcow2", path, "8M");
            Qemu.Img("bitmap", "--add", "-g", "65536", path, "a");
            Qemu.Img("bitmap", "--add", "-g", "65536", path, "b");
            Qemu.Io("-f", "qcow2", "-c", "write 0 65536", path);
            using (var layer = Qcow2TestImages.OpenWritable(path))
            {
                var bitmaps = (IBitmapLayer)layer;
                bitmaps.ClearBitmap("b");
                bitmaps.SetBitmapEnabled("b", false);
                layer.Write(1 << 20, new byte[512]);
                Assert.Equal(0, bitmaps.GetBitmaps()[1].DirtyBytes);
                bitmaps.MergeBitmap("b", layer, "a");
                Assert.Equal(2 * 65536, bitmaps.GetBitmaps()[1].DirtyBytes);
                bitmaps.RemoveBitmap("a");
            }

            Qcow2TestImages.AssertQemuCheckClean(path);
            Assert.Equal(new[] { "b" }, QemuBitmapNames(path));
            using (var layer = Qcow2TestImages.OpenWritable(path))
            {
                ((IBitmapLayer)layer).RemoveBitmap("b");
            }

            Qcow2TestImages.AssertQemuCheckClean(path);
            Assert.Empty(QemuBitmapNames(path));
        }

        [Fact]
        public void InconsistentBitmapStaysInUse()
        {
            using var dir = new TempDir();
            string path = dir.File("crash.qcow2");
            Qemu.Img("create", "-q", "-f", "qcow2", path, "4M");
            Qemu.Img("bitmap", "--add", path, "left");
            Qemu.Run("qemu-io", new[] { "-f", "qcow2", "-c", "write 0 4096", "-c", "sigraise 9", path });
            using (var layer = Qcow2TestImages.OpenWritable(path))
            {
                Assert.True(((IBitmapLayer)layer).GetBitmaps()[0].InUse);
                layer.Write(65536, new byte[512]);
            }

            using (var layer = Qcow2TestImages.OpenRead(path))
            {
                Assert.True(((IBitmapLayer)layer).GetBitmaps()[0].InUse);
            }
        }

        [Fact]
        public void BitmapsFollowResize()
        {
            using var dir = new TempDir();
            string path = dir.File("r.qcow2");
            Qemu.Img("create", "-q", "-f", "qcow2", path, "8M");
            Qemu.Img("bitmap", "--add", "-g", "65536", path, "b");
            Qemu.Io("-f", "qcow2", "-c", "write 0 65536", "-c", "write 7M 65536", path);
            using (var layer = Qcow2TestImages.OpenWritable(path))
            {
                ((IResizableLayer)layer).Resize(16L << 20, false, Preallocation.Off);
                Assert.Equal(2 * 65536, ((IBitmapLayer)layer).GetBitmaps()[0].DirtyBytes);
                ((IResizableLayer)layer).Resize(4L << 20, true, Preallocation.Off);
                Assert.Equal(65536, ((IBitmapLayer)layer).GetBitmaps()[0].DirtyBytes);
            }

            Qcow2TestImages.AssertQemuCheckClean(path);
            Assert.Equal(new[] { "b" }, QemuBitmapNames(path));
            Qemu.Io("-f", "qcow2", "-c", "write 3M 4096", path);
            using (var layer = Qcow2TestImages.OpenRead(path))
            {
                Assert.Equal(2 * 65536, ((IBitmapLayer)layer).GetBitmaps()[0].DirtyBytes);
            }
        }

        [Fact]
        public void Version2ImagesRefuseBitmaps()
        {
            using var dir = new TempDir();
            string path = dir.File("v2.qcow2");
            Qemu.Img("create", "-q", "-f", "qcow2", "-o", "compat=0.10", path, "1M");
            using var layer = Qcow2TestImages.OpenWritable(path);
            Assert.Throws<ImageNotSupportedException>(() => ((IBitmapLayer)layer).AddBitmap("x", 65536, false));
        }
    }
}
