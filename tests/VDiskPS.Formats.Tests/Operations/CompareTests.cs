using System;
using System.Collections.Generic;
using System.Text.RegularExpressions;
using System.Threading;
using Xunit;

namespace VDiskPS.Formats.Tests.Operations
{
    public class CompareTests
    {
        private const long MiB = 1 << 20;

        public static IEnumerable<object[]> MismatchCases()
        {
            // name, size a, writes a, size b, writes b
            yield return new object[] { "byte in a hole", 4 * MiB, Array.Empty<(long, byte[])>(), 4 * MiB, new[] { (MiB + 1000, new byte[] { 7 }) } };
            yield return new object[] { "byte inside data", 4 * MiB, new[] { (0L, TestData.Pattern(256 * 1024, 1)) }, 4 * MiB, new[] { (0L, TestData.Pattern(256 * 1024, 1)), (70000L, new byte[] { 1 }) } };
            yield return new object[] { "data against explicit zeros", 4 * MiB, new[] { (2 * MiB, new byte[64 * 1024]) }, 4 * MiB, new[] { (2 * MiB + 4096, RawImages.Fill(100, 9)) } };
            yield return new object[] { "non-zero tail of the larger", 4 * MiB, new[] { (0L, TestData.Pattern(4096, 2)) }, 6 * MiB, new[] { (0L, TestData.Pattern(4096, 2)), (5 * MiB + 777, new byte[] { 3 }) } };
            yield return new object[] { "odd sizes", 1000000L, new[] { (999000L, TestData.Pattern(1000, 5)) }, 1000001L, new[] { (999000L, TestData.Pattern(1000, 5)), (999999L, new byte[] { 1, 2 }) } };
            yield return new object[] { "late difference beyond a chunk", 6 * MiB, new[] { (0L, TestData.Pattern((int)(5 * MiB), 4)) }, 6 * MiB, new[] { (0L, TestData.Pattern((int)(5 * MiB), 4)), (4 * MiB + 3 * 512 + 5, new byte[] { 0 }) } };
        }

        [Theory]
        [MemberData(nameof(MismatchCases))]
        public void MismatchOffsetIsTheOneQemuImgReports(string name, long sizeA, (long, byte[])[] writesA, long sizeB, (long, byte[])[] writesB)
        {
            using var dir = new TempDir();
            string a = RawImages.Make(dir, "a.raw", sizeA, writesA);
            string b = RawImages.Make(dir, "b.raw", sizeB, writesB);
            var (identical, output) = Qemu.Compare(a, "raw", b, "raw");
            VDiskComparison result = CompareOperation.Run(a, b);
            Assert.False(identical, name);
            Assert.False(result.Identical, name);
            Assert.Equal(RawImages.QemuMismatchOffset(output), result.FirstMismatchOffset);
        }

        [Fact]
        public void ExplicitZerosEqualAHole()
        {
            using var dir = new TempDir();
            string a = RawImages.Make(dir, "a.raw", 2 * MiB, (0, TestData.Pattern(4096, 1)));
            string b = RawImages.Make(dir, "b.raw", 2 * MiB, (0, TestData.Pattern(4096, 1)), (MiB, new byte[256 * 1024]));
            Assert.True(Qemu.Compare(a, "raw", b, "raw").Identical);
            Assert.True(CompareOperation.Run(a, b).Identical);
        }

        [Fact]
        public void ZeroTailOfTheLargerImageIsIgnored()
        {
            using var dir = new TempDir();
            string a = RawImages.Make(dir, "a.raw", 2 * MiB, (4096, TestData.Pattern(8192, 1)));
            string b = RawImages.Make(dir, "b.raw", 3 * MiB, (4096, TestData.Pattern(8192, 1)), (2 * MiB, new byte[4096]));
            Assert.True(Qemu.Compare(a, "raw", b, "raw").Identical);
            VDiskComparison result = CompareOperation.Run(a, b);
            Assert.True(result.Identical);
            Assert.Null(result.FirstMismatchOffset);
        }

        [Fact]
        public void StrictModeFailsOnSizeDifference()
        {
            using var dir = new TempDir();
            string a = RawImages.Make(dir, "a.raw", 2 * MiB);
            string b = RawImages.Make(dir, "b.raw", 3 * MiB);
            Assert.False(Qemu.Compare(a, "raw", b, "raw", strict: true).Identical);
            VDiskComparison result = CompareOperation.Run(a, b, new CompareOptions { Strict = true });
            Assert.False(result.Identical);
            Assert.Null(result.FirstMismatchOffset);
        }

        [Fact]
        public void StrictModeReportsTheAllocationMismatchWhereQemuDoes()
        {
            using var dir = new TempDir();
            string a = RawImages.Make(dir, "a.raw", 2 * MiB, (0, TestData.Pattern(4096, 1)));
            string b = RawImages.Make(dir, "b.raw", 2 * MiB, (0, TestData.Pattern(4096, 1)), (MiB, new byte[4096]));
            var (identical, output) = Qemu.Compare(a, "raw", b, "raw", strict: true);
            Assert.False(identical);
            long qemuOffset = long.Parse(Regex.Match(output, @"Offset (\d+) block status mismatch").Groups[1].Value);
            VDiskComparison result = CompareOperation.Run(a, b, new CompareOptions { Strict = true });
            Assert.False(result.Identical);
            Assert.Equal(qemuOffset, result.FirstMismatchOffset);
        }

        [Fact]
        public void StrictModeAcceptsIdenticalLayouts()
        {
            using var dir = new TempDir();
            string a = RawImages.Make(dir, "a.raw", 2 * MiB, (MiB, TestData.Pattern(8192, 1)));
            string b = RawImages.Make(dir, "b.raw", 2 * MiB, (MiB, TestData.Pattern(8192, 1)));
            Assert.True(Qemu.Compare(a, "raw", b, "raw", strict: true).Identical);
            Assert.True(CompareOperation.Run(a, b, new CompareOptions { Strict = true }).Identical);
        }

        [Fact]
        public void CancelledCompareThrows()
        {
            using var dir = new TempDir();
            string a = RawImages.Make(dir, "a.raw", MiB, (0, TestData.Pattern(4096, 1)));
            using var cts = new CancellationTokenSource();
            cts.Cancel();
            Assert.ThrowsAny<OperationCanceledException>(() => CompareOperation.Run(a, a, null, null, cts.Token));
        }
    }
}
