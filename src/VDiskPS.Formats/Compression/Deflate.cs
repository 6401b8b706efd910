using System;
using System.Buffers;
using System.IO;
using System.IO.Compression;

namespace VDiskPS.Formats.Compression
{
    /// <summary>
    /// Deflate for compressed clusters: raw deflate (RFC 1951, qcow2's zlib type) and the zlib
    /// wrapper (RFC 1950, VMDK stream grains). Decompression is bounded by the output buffer, so a
    /// hostile stream cannot expand past one cluster.
    /// </summary>
    public static class Deflate
    {
        /// <summary>Raw deflate of <paramref name="input"/>.</summary>
        public static byte[] CompressRaw(ReadOnlySpan<byte> input, CompressionLevel level = CompressionLevel.Fastest)
        {
            using (var output = new MemoryStream(input.Length / 2 + 64))
            {
                using (var deflate = new DeflateStream(output, level, leaveOpen: true))
                {
                    WriteSpan(deflate, input);
                }

                return output.ToArray();
            }
        }

        /// <summary>
        /// Inflates raw deflate data into <paramref name="output"/>; returns the bytes produced. Throws
        /// <see cref="InvalidDataException"/> on a malformed stream or one that would expand past the output.
        /// </summary>
        public static int DecompressRaw(ReadOnlySpan<byte> input, Span<byte> output, bool allowTrailingData = true)
        {
            byte[] compressed = ArrayPool<byte>.Shared.Rent(Math.Max(1, input.Length));
            try
            {
                input.CopyTo(compressed);
                using (var source = new MemoryStream(compressed, 0, input.Length, writable: false))
                using (var inflate = new DeflateStream(source, CompressionMode.Decompress))
                {
                    int total = 0;
                    byte[] chunk = ArrayPool<byte>.Shared.Rent(Math.Min(Math.Max(output.Length, 1), 1 << 16));
                    try
                    {
                        while (true)
                        {
                            int want = Math.Min(chunk.Length, output.Length - total);
                            if (want == 0)
                            {
                                // Output is full: one more byte would be an expansion past the cluster.
                                int extra = inflate.Read(chunk, 0, 1);
                                if (extra > 0)
                                {
                                    throw new InvalidDataException($"the compressed data expands past {output.Length} bytes");
                                }

                                return total;
                            }

                            int n = inflate.Read(chunk, 0, want);
                            if (n == 0)
                            {
                                return total;
                            }

                            chunk.AsSpan(0, n).CopyTo(output.Slice(total));
                            total += n;
                        }
                    }
                    finally
                    {
                        ArrayPool<byte>.Shared.Return(chunk);
                    }
                }
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(compressed);
            }
        }

        /// <summary>zlib-wrapped deflate (RFC 1950): 2-byte header, raw deflate, Adler-32.</summary>
        public static byte[] CompressZlib(ReadOnlySpan<byte> input, CompressionLevel level = CompressionLevel.Fastest)
        {
            byte[] raw = CompressRaw(input, level);
            byte[] result = new byte[raw.Length + 6];
            result[0] = 0x78;
            result[1] = 0x9C;
            Buffer.BlockCopy(raw, 0, result, 2, raw.Length);
            uint adler = Adler32(input);
            result[result.Length - 4] = (byte)(adler >> 24);
            result[result.Length - 3] = (byte)(adler >> 16);
            result[result.Length - 2] = (byte)(adler >> 8);
            result[result.Length - 1] = (byte)adler;
            return result;
        }

        /// <summary>Inflates zlib-wrapped data into <paramref name="output"/>, bounded like <see cref="DecompressRaw"/>.</summary>
        public static int DecompressZlib(ReadOnlySpan<byte> input, Span<byte> output)
        {
            if (input.Length < 2 || (input[0] & 0x0F) != 8 || ((input[0] << 8) | input[1]) % 31 != 0)
            {
                throw new InvalidDataException("not a zlib stream (bad header)");
            }

            if ((input[1] & 0x20) != 0)
            {
                throw new InvalidDataException("zlib stream needs a preset dictionary");
            }

            return DecompressRaw(input.Slice(2), output);
        }

        public static uint Adler32(ReadOnlySpan<byte> data)
        {
            const uint Mod = 65521;
            uint a = 1, b = 0;
            int i = 0;
            while (i < data.Length)
            {
                int n = Math.Min(5552, data.Length - i);
                for (int end = i + n; i < end; i++)
                {
                    a += data[i];
                    b += a;
                }

                a %= Mod;
                b %= Mod;
            }

            return (b << 16) | a;
        }

        private static void WriteSpan(Stream stream, ReadOnlySpan<byte> data)
        {
            byte[] rented = ArrayPool<byte>.Shared.Rent(data.Length);
            try
            {
                data.CopyTo(rented);
                stream.Write(rented, 0, data.Length);
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(rented);
            }
        }
    }
}
