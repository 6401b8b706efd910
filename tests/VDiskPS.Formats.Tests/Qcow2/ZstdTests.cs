using System;
using System.IO;
using VDiskPS.Formats.Compression;
using Xunit;

namespace VDiskPS.Formats.Tests.Qcow2
{
    public class ZstdTests
    {
        [Fact]
        public void RoundTripsOneCluster()
        {
            byte[] data = TestData.Pattern(65536, 1);
            System.Array.Clear(data, 0, 30000);
            byte[] compressed = Zstd.Compress(data);
            Assert.True(compressed.Length < data.Length);
            var output = new byte[65536];
            Assert.Equal(65536, Zstd.Decompress(compressed, output));
            Assert.Equal(data, output);
        }

        [Fact]
        public void TrailingBytesAfterTheFrameAreIgnored()
        {
            // qcow2 rounds compressed clusters up to 512-byte sectors, so garbage follows the frame.
            byte[] compressed = Zstd.Compress(new byte[4096]);
            var padded = new byte[compressed.Length + 300];
            compressed.CopyTo(padded, 0);
            padded.AsSpan(compressed.Length).Fill(0xAB);
            Assert.Equal(4096, Zstd.Decompress(padded, new byte[4096]));
        }

        [Fact]
        public void OutputIsBoundedByTheBuffer()
        {
            byte[] compressed = Zstd.Compress(new byte[1 << 20]);
            var output = new byte[65536];
            Assert.Equal(65536, Zstd.Decompress(compressed, output));
        }

        [Fact]
        public void GarbageIsInvalidData()
        {
            Assert.Throws<InvalidDataException>(() => Zstd.Decompress(TestData.Pattern(1000, 2), new byte[65536]));
        }

        [Fact]
        public void TruncatedFrameIsInvalidData()
        {
            byte[] compressed = Zstd.Compress(TestData.Pattern(65536, 3));
            Assert.Throws<InvalidDataException>(() => Zstd.Decompress(compressed.AsSpan(0, compressed.Length / 2), new byte[65536]));
        }
    }
}
