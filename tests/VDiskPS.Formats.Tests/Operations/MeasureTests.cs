using System.Text.Json;
using Xunit;

namespace VDiskPS.Formats.Tests.Operations
{
    public class MeasureTests
    {
        private const long MiB = 1 << 20;

        private static (long Required, long FullyAllocated) QemuMeasure(params string[] args)
        {
            var all = new System.Collections.Generic.List<string> { "measure", "--output=json" };
            all.AddRange(args);
            using var doc = JsonDocument.Parse(Qemu.Img(all.ToArray()));
            return (doc.RootElement.GetProperty("required").GetInt64(), doc.RootElement.GetProperty("fully-allocated").GetInt64());
        }

        [Fact]
        public void RawFromASparseImageMatchesQemuImgMeasure()
        {
            using var dir = new TempDir();
            string path = RawImages.Make(dir, "a.raw", 3 * MiB, (4096, TestData.Pattern(4096, 1)));
            var expected = QemuMeasure("-O", "raw", "-f", "raw", path);
            VDiskMeasurement result = MeasureOperation.Run(path, new MeasureOptions { TargetFormat = Fmt.Raw });
            Assert.Equal(expected, (result.Required, result.FullyAllocated));
        }

        [Fact]
        public void RawFromASizeMatchesQemuImgMeasure()
        {
            var expected = QemuMeasure("-O", "raw", "--size", "1000");
            VDiskMeasurement result = MeasureOperation.Run(null, new MeasureOptions { TargetFormat = Fmt.Raw, Target = new CreateRequest { Size = 1000 } });
            Assert.Equal(expected, (result.Required, result.FullyAllocated));
        }

        [Fact]
        public void AllocatedBytesCountWholeTargetClustersHoldingData()
        {
            using var dir = new TempDir();
            // Data in cluster 0 (twice), straddling clusters 2 and 3, and in the last partial cluster.
            string path = RawImages.Make(dir, "a.raw", MiB + 8192,
                (4096, TestData.Pattern(4096, 1)),
                (40960, TestData.Pattern(4096, 2)),
                (3 * 65536 - 4096, TestData.Pattern(8192, 3)),
                (MiB, TestData.Pattern(4096, 4)));
            using var chain = ImageChain.Open(path);
            Assert.Equal(3 * 65536 + 8192, MeasureOperation.AllocatedBytes(chain, 65536));
        }
    }
}
