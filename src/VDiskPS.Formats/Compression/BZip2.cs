using System;
using System.IO;
using ICSharpCode.SharpZipLib.BZip2;

namespace VDiskPS.Formats.Compression
{
    /// <summary>
    /// bzip2 decompression (SharpZipLib, managed) for compressed chunks: bounded by the output buffer,
    /// so a hostile stream cannot expand past one chunk.
    /// </summary>
    public static class BZip2
    {
        /// <summary>
        /// Decompresses the bzip2 stream in <paramref name="input"/> into <paramref name="output"/>; returns
        /// the bytes produced. Throws <see cref="InvalidDataException"/> on a malformed stream or one that
        /// would expand past the output.
        /// </summary>
        public static int Decompress(byte[] input, int inputLength, Span<byte> output)
        {
            try
            {
                using (var source = new MemoryStream(input, 0, inputLength, writable: false))
                using (var bzip = new BZip2InputStream(source) { IsStreamOwner = false })
                {
                    byte[] chunk = new byte[Math.Min(Math.Max(output.Length, 1), 1 << 16)];
                    int total = 0;
                    while (true)
                    {
                        int want = Math.Min(chunk.Length, output.Length - total);
                        int n = bzip.Read(chunk, 0, want == 0 ? 1 : want);
                        if (n == 0)
                        {
                            return total;
                        }

                        if (want == 0)
                        {
                            throw new InvalidDataException($"the compressed data expands past {output.Length} bytes");
                        }

                        chunk.AsSpan(0, n).CopyTo(output.Slice(total));
                        total += n;
                    }
                }
            }
            catch (Exception e) when (!(e is InvalidDataException) && !(e is OutOfMemoryException))
            {
                // The library signals damage with its own exceptions, and with .NET ones (an index out of
                // range on a bad Huffman table): every one of them is a malformed stream.
                throw new InvalidDataException("malformed bzip2 stream: " + e.Message, e);
            }
        }
    }
}
