using System;
using System.IO;
using System.Threading;
using Xunit;

namespace VDiskPS.Formats.Tests.Operations
{
    public class DdTests
    {
        private const long MiB = 1 << 20;

        private static string MakeSource(TempDir dir)
            => RawImages.Make(dir, "in.raw", 3 * MiB, (0, TestData.Pattern(300000, 1)), (2 * MiB + 100, TestData.Pattern(5000, 2)));

        [Theory]
        [InlineData("65536", null, null)]
        [InlineData("4096", "100", null)]
        [InlineData("4096", null, "300")]
        [InlineData("1M", null, "1")]
        [InlineData("3M", null, null)]
        public void OutputEqualsQemuImgDd(string bs, string count, string skip)
        {
            using var dir = new TempDir();
            string input = MakeSource(dir);
            string qemuOut = dir.File("qemu.raw");
            var args = new System.Collections.Generic.List<string> { "dd", "-f", "raw", "-O", "raw", "bs=" + bs, "if=" + input, "of=" + qemuOut };
            if (count != null)
            {
                args.Add("count=" + count);
            }

            if (skip != null)
            {
                args.Add("skip=" + skip);
            }

            Qemu.Img(args.ToArray());
            string ours = dir.File("ours.raw");
            DdOperation.Run(input, ours, new DdOptions
            {
                BlockSize = DiskSize.Parse(bs).Bytes,
                Count = count == null ? null : long.Parse(count),
                Skip = skip == null ? 0 : long.Parse(skip),
            });
            Assert.Equal(File.ReadAllBytes(qemuOut), File.ReadAllBytes(ours));
        }

        [Fact]
        public void CountCountsBlocksAfterSkip()
        {
            using var dir = new TempDir();
            string input = MakeSource(dir);
            string output = dir.File("out.raw");
            DdOperation.Run(input, output, new DdOptions { BlockSize = 4096, Skip = 2, Count = 3 });
            byte[] all = File.ReadAllBytes(input);
            Assert.Equal(all.AsSpan(8192, 3 * 4096).ToArray(), File.ReadAllBytes(output));
        }

        [Fact]
        public void ZeroBlocksStayHolesInANewOutput()
        {
            using var dir = new TempDir();
            string input = MakeSource(dir);
            string output = dir.File("out.raw");
            DdOperation.Run(input, output, new DdOptions { BlockSize = 65536 });
            using var layer = FormatRegistry.Default.Open(output, Fmt.Raw, new OpenOptions());
            Assert.Equal(ExtentKind.Zero, layer.GetBlockStatus(MiB, MiB).Kind);
        }

        [Fact]
        public void ExistingOutputIsWrittenInPlaceWithNoCreate()
        {
            using var dir = new TempDir();
            string input = MakeSource(dir);
            string output = RawImages.Make(dir, "out.raw", 4 * MiB, (0, RawImages.Fill(8192, 0xAA)), (3 * MiB, RawImages.Fill(512, 0xBB)));
            DdOperation.Run(input, output, new DdOptions { BlockSize = 4096, Count = 2, Skip = 512, NoCreate = true });
            byte[] result = File.ReadAllBytes(output);
            Assert.Equal(4 * MiB, result.Length);
            Assert.Equal(File.ReadAllBytes(input).AsSpan(2 * (int)MiB, 8192).ToArray(), result.AsSpan(0, 8192).ToArray());
            Assert.Equal(0xBB, result[3 * MiB]);
        }

        [Fact]
        public void CancelledDdLeavesNoOutput()
        {
            using var dir = new TempDir();
            string input = MakeSource(dir);
            string output = dir.File("out.raw");
            using var cts = new CancellationTokenSource();
            cts.Cancel();
            Assert.ThrowsAny<OperationCanceledException>(() => DdOperation.Run(input, output, new DdOptions(), null, cts.Token));
            Assert.False(File.Exists(output));
        }
    }
}
