using System.IO;
using System.Text.Json;
using Xunit;

namespace VDiskPS.Formats.Tests.Operations
{
    /// <summary>Measure-VDisk against qemu-img measure, for the targets qemu can measure.</summary>
    public class MeasureInteropTests
    {
        private static string ScatteredRaw(TempDir dir)
        {
            string raw = dir.File("scattered.raw");
            using (var file = new FileStream(raw, FileMode.Create))
            {
                file.SetLength(200L << 20);
                foreach (long offset in new[] { 0L, 3_000_000L, 17_000_123L, 64L << 20, (150L << 20) + 4096 })
                {
                    file.Position = offset;
                    file.Write(TestData.Pattern(300_000, (int)(offset % 97)));
                }
            }

            return raw;
        }

        [Theory]
        [InlineData("raw", "qcow2", null)]
        [InlineData("raw", "qcow2", "cluster_size=2M")]
        [InlineData("raw", "qcow2", "cluster_size=4k,refcount_bits=64")]
        [InlineData("raw", "raw", null)]
        [InlineData("qcow2", "qcow2", null)]
        public void MatchesQemuImgMeasure(string sourceFormat, string targetFormat, string options)
        {
            using var dir = new TempDir();
            string source = ScatteredRaw(dir);
            if (sourceFormat == "qcow2")
            {
                string qcow2 = dir.File("scattered.qcow2");
                Qemu.Img("convert", "-f", "raw", "-O", "qcow2", source, qcow2);
                source = qcow2;
            }

            var args = new System.Collections.Generic.List<string> { "measure", "--output=json", "-f", sourceFormat, "-O", targetFormat };
            if (options != null)
            {
                args.Add("-o");
                args.Add(options);
            }

            args.Add(source);
            using var expected = JsonDocument.Parse(Qemu.Img(args.ToArray()));
            var measured = MeasureOperation.Run(source, new MeasureOptions
            {
                TargetFormat = DiskFormat.Parse(targetFormat),
                Target = new CreateRequest { Options = OptionSet.Parse(options) },
            });
            Assert.Equal(expected.RootElement.GetProperty("required").GetInt64(), measured.Required);
            Assert.Equal(expected.RootElement.GetProperty("fully-allocated").GetInt64(), measured.FullyAllocated);
        }
    }
}
