using System.Collections.Generic;
using System.Linq;
using System.Text.Json;
using Xunit;

namespace VDiskPS.Formats.Tests.Operations
{
    public class MapTests
    {
        private const long MiB = 1 << 20;

        private static string MakeHoley(TempDir dir)
            => RawImages.Make(dir, "holes.raw", 4 * MiB,
                (0, TestData.Pattern(64 * 1024, 1)),
                (MiB, TestData.Pattern(4096, 2)),
                (MiB + 4096, TestData.Pattern(8192, 3)),
                (3 * MiB, TestData.Pattern(128 * 1024, 4)));

        private static List<string> QemuMap(string path, params string[] extra)
        {
            var args = new List<string> { "map", "--output=json", "-f", "raw" };
            args.AddRange(extra);
            args.Add(path);
            using var doc = JsonDocument.Parse(Qemu.Img(args.ToArray()));
            return doc.RootElement.EnumerateArray().Select(e =>
                $"{e.GetProperty("start").GetInt64()}+{e.GetProperty("length").GetInt64()} depth={e.GetProperty("depth").GetInt32()} present={e.GetProperty("present").GetBoolean()} zero={e.GetProperty("zero").GetBoolean()} data={e.GetProperty("data").GetBoolean()} offset={(e.TryGetProperty("offset", out var o) ? o.GetInt64().ToString() : "-")}").ToList();
        }

        private static List<string> EngineMap(IReadOnlyList<VDiskExtent> extents)
            => extents.Select(e => $"{e.Start}+{e.Length} depth={e.Depth} present={e.Present} zero={e.Zero} data={e.Data} offset={(e.Offset.HasValue ? e.Offset.Value.ToString() : "-")}").ToList();

        [Fact]
        public void SparseRawMapEqualsQemuImgMap()
        {
            using var dir = new TempDir();
            string path = MakeHoley(dir);
            Assert.Equal(QemuMap(path), EngineMap(MapOperation.Run(path)));
        }

        [Fact]
        public void StartOffsetAndLengthMatchQemuImgMap()
        {
            using var dir = new TempDir();
            string path = MakeHoley(dir);
            var engine = MapOperation.Run(path, new MapOptions { StartOffset = 32 * 1024, Length = 3 * MiB });
            Assert.Equal(QemuMap(path, "--start-offset=32768", "--max-length=" + (3 * MiB)), EngineMap(engine));
        }

        [Fact]
        public void ImageNotAMultipleOfTheHostBlockMapsLikeQemuImg()
        {
            using var dir = new TempDir();
            // 1954 sectors: qemu rounds raw sizes up to whole sectors, so stay on one.
            string path = RawImages.Make(dir, "odd.raw", 1954 * 512, (70000, TestData.Pattern(3000, 1)), (999000, TestData.Pattern(1000, 2)));
            Assert.Equal(QemuMap(path), EngineMap(MapOperation.Run(path)));
        }

        [Fact]
        public void FullyHoleyImageIsOneZeroExtent()
        {
            using var dir = new TempDir();
            string path = RawImages.Make(dir, "empty.raw", 2 * MiB);
            var extent = Assert.Single(MapOperation.Run(path));
            Assert.True(extent.Zero);
            Assert.False(extent.Data);
            Assert.True(extent.Present);
            Assert.Equal(path, extent.File);
            Assert.Equal(QemuMap(path), EngineMap(new[] { extent }));
        }

        [Fact]
        public void LengthPastTheEndStopsAtTheEnd()
        {
            using var dir = new TempDir();
            string path = MakeHoley(dir);
            var extents = MapOperation.Run(path, new MapOptions { StartOffset = 3 * MiB, Length = 100 * MiB });
            Assert.Equal(4 * MiB, extents[^1].Start + extents[^1].Length);
        }
    }
}
