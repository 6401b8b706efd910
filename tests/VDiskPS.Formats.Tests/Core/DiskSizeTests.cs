using Xunit;

namespace VDiskPS.Formats.Tests.Core
{
    public class DiskSizeTests
    {
        [Theory]
        [InlineData("512", 512L)]
        [InlineData("64k", 65536L)]
        [InlineData("64K", 65536L)]
        [InlineData("512M", 512L << 20)]
        [InlineData("20G", 20L << 30)]
        [InlineData("20GB", 20L << 30)]
        [InlineData("20GiB", 20L << 30)]
        [InlineData("1.5G", 3L << 29)]
        [InlineData("2T", 2L << 40)]
        [InlineData("1P", 1L << 50)]
        [InlineData("1E", 1L << 60)]
        [InlineData("100b", 100L)]
        public void AbsoluteSizesParseAsBinaryUnits(string text, long expected)
        {
            var size = DiskSize.Parse(text);
            Assert.False(size.IsRelative);
            Assert.Equal(expected, size.Bytes);
        }

        [Fact]
        public void PlusSizeGrowsFromTheCurrentSize()
        {
            Assert.Equal((30L << 30), DiskSize.Parse("+10G").Resolve(20L << 30));
        }

        [Fact]
        public void MinusSizeShrinksFromTheCurrentSize()
        {
            Assert.Equal((19L << 30), DiskSize.Parse("-1G").Resolve(20L << 30));
        }

        [Fact]
        public void ShrinkingBelowZeroIsRefused()
        {
            Assert.Throws<ImageOptionException>(() => DiskSize.Parse("-30G").Resolve(20L << 30));
        }

        [Theory]
        [InlineData("")]
        [InlineData("G")]
        [InlineData("12Q")]
        [InlineData("1.5")]
        [InlineData("16E")]
        [InlineData("abc")]
        public void MalformedSizesAreRefusedWithTheField(string text)
        {
            var e = Assert.Throws<ImageOptionException>(() => DiskSize.Parse(text, "SizeBytes"));
            Assert.Equal("SizeBytes", e.Field);
        }

        [Theory]
        [InlineData(512L, "512 B")]
        [InlineData(1L << 30, "1 GiB")]
        [InlineData(3L << 29, "1.5 GiB")]
        [InlineData(500_000_000_000L, "465.66 GiB")]
        [InlineData((1L << 20) - 1, "1024 KiB")]
        public void FormatUsesBinaryUnits(long bytes, string expected)
        {
            Assert.Equal(expected, DiskSize.Format(bytes));
        }
    }
}
