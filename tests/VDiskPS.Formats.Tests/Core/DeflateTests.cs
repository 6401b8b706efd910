using System.IO;
using VDiskPS.Formats.Compression;
using Xunit;

namespace VDiskPS.Formats.Tests.Core
{
    public class DeflateTests
    {
        [Fact]
        public void RawDeflateRoundTrips()
        {
            byte[] data = new byte[65536];
            for (int i = 0; i < data.Length; i++)
            {
                data[i] = (byte)(i / 100);
            }

            byte[] packed = Deflate.CompressRaw(data);
            var output = new byte[65536];
            Assert.Equal(data.Length, Deflate.DecompressRaw(packed, output));
            Assert.Equal(data, output);
        }

        [Fact]
        public void ZlibRoundTripsAndCarriesAdler()
        {
            byte[] data = TestData.Pattern(4096, 3);
            byte[] packed = Deflate.CompressZlib(data);
            var output = new byte[4096];
            Assert.Equal(4096, Deflate.DecompressZlib(packed, output));
            Assert.Equal(data, output);
        }

        [Fact]
        public void ExpansionPastTheOutputIsRefused()
        {
            byte[] packed = Deflate.CompressRaw(new byte[1 << 20]);
            Assert.Throws<InvalidDataException>(() => Deflate.DecompressRaw(packed, new byte[65536]));
        }

        [Fact]
        public void GarbageIsRefused()
        {
            Assert.Throws<InvalidDataException>(() => Deflate.DecompressZlib(new byte[] { 1, 2, 3, 4 }, new byte[512]));
        }
    }
}
