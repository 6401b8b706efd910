using System;
using Xunit;

namespace VDiskPS.Formats.Tests.Operations
{
    /// <summary>
    /// The zero test and the first-difference search every convert, compare and commit relies on,
    /// against a byte-by-byte reference (engine-only: no outside tool answers these for a buffer),
    /// at every length around the vector widths and with the odd byte at every position.
    /// </summary>
    public class ZeroDetectorTests
    {
        [Fact]
        public void IsZeroFindsAnyNonZeroByteAtAnyPositionOfAnyLength()
        {
            for (int length = 0; length <= 300; length++)
            {
                var data = new byte[length + 1];
                var span = new ReadOnlySpan<byte>(data, 1, length);
                Assert.True(ZeroDetector.IsZero(span), $"length {length}");
                for (int at = 0; at < length; at++)
                {
                    data[1 + at] = (byte)(at % 255 + 1);
                    Assert.False(ZeroDetector.IsZero(span), $"length {length}, byte at {at}");
                    data[1 + at] = 0;
                }

                // A byte just outside the span is not seen.
                data[0] = 1;
                Assert.True(ZeroDetector.IsZero(span), $"length {length}, byte before");
            }
        }

        [Fact]
        public void IsZeroOfALargeBufferWithOneByteNearTheEnd()
        {
            var data = new byte[1 << 20];
            Assert.True(ZeroDetector.IsZero(data));
            data[data.Length - 3] = 0x80;
            Assert.False(ZeroDetector.IsZero(data));
        }

        [Fact]
        public void FirstDifferenceIsTheFirstDifferingOffsetOrMinusOne()
        {
            var random = new Random(7);
            for (int length = 0; length <= 200; length++)
            {
                var a = new byte[length];
                random.NextBytes(a);
                var b = (byte[])a.Clone();
                Assert.Equal(-1, ZeroDetector.FirstDifference(a, b));
                for (int at = 0; at < length; at++)
                {
                    b[at] ^= 0x10;
                    if (at + 1 < length)
                    {
                        b[length - 1] ^= 0x01;
                    }

                    Assert.Equal(at, ZeroDetector.FirstDifference(a, b));
                    Array.Copy(a, b, length);
                }
            }
        }

        [Fact]
        public void FirstDifferenceOfUnequalLengthsIsTheShorterLengthWhenThePrefixMatches()
        {
            var a = new byte[] { 1, 2, 3, 4, 5, 6, 7, 8, 9 };
            Assert.Equal(5, ZeroDetector.FirstDifference(a, a.AsSpan(0, 5)));
            Assert.Equal(5, ZeroDetector.FirstDifference(a.AsSpan(0, 5), a));
            Assert.Equal(2, ZeroDetector.FirstDifference(a, new byte[] { 1, 2, 0 }));
            Assert.Equal(-1, ZeroDetector.FirstDifference(ReadOnlySpan<byte>.Empty, ReadOnlySpan<byte>.Empty));
        }
    }
}
