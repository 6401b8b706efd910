using System;
using System.Numerics;
using System.Runtime.InteropServices;

namespace VDiskPS.Formats
{
    /// <summary>Fast checks for all-zero buffers.</summary>
    public static class ZeroDetector
    {
        public static bool IsZero(ReadOnlySpan<byte> data)
        {
#if NET8_0_OR_GREATER
            // The framework's own vectorized search, precompiled and soon optimized by the runtime;
            // the loop below uses Vector<T>, whose width is the machine's, so no ReadyToRun image can
            // hold it and every first call of a session would run it unoptimized.
            return data.IndexOfAnyExcept((byte)0) < 0;
#else
            int i = 0;
            if (Vector.IsHardwareAccelerated && data.Length >= Vector<byte>.Count * 4)
            {
                ReadOnlySpan<Vector<byte>> vectors = MemoryMarshal.Cast<byte, Vector<byte>>(data);
                int v = 0;
                for (; v + 4 <= vectors.Length; v += 4)
                {
                    if (!(vectors[v] | vectors[v + 1] | vectors[v + 2] | vectors[v + 3]).Equals(Vector<byte>.Zero))
                    {
                        return false;
                    }
                }

                for (; v < vectors.Length; v++)
                {
                    if (!vectors[v].Equals(Vector<byte>.Zero))
                    {
                        return false;
                    }
                }

                i = vectors.Length * Vector<byte>.Count;
            }

            ReadOnlySpan<ulong> words = MemoryMarshal.Cast<byte, ulong>(data.Slice(i));
            foreach (ulong w in words)
            {
                if (w != 0)
                {
                    return false;
                }
            }

            for (int j = i + words.Length * 8; j < data.Length; j++)
            {
                if (data[j] != 0)
                {
                    return false;
                }
            }

            return true;
#endif
        }

        /// <summary>The offset of the first differing byte of two equal-length spans, or -1.</summary>
        public static int FirstDifference(ReadOnlySpan<byte> a, ReadOnlySpan<byte> b)
        {
            int length = Math.Min(a.Length, b.Length);
#if NET8_0_OR_GREATER
            int common = a.Slice(0, length).CommonPrefixLength(b.Slice(0, length));
            return common < length ? common : a.Length == b.Length ? -1 : length;
#else
            int i = 0;
            ReadOnlySpan<ulong> wa = MemoryMarshal.Cast<byte, ulong>(a.Slice(0, length));
            ReadOnlySpan<ulong> wb = MemoryMarshal.Cast<byte, ulong>(b.Slice(0, length));
            for (int w = 0; w < wa.Length; w++)
            {
                if (wa[w] != wb[w])
                {
                    i = w * 8;
                    break;
                }

                i = (w + 1) * 8;
            }

            for (; i < length; i++)
            {
                if (a[i] != b[i])
                {
                    return i;
                }
            }

            return a.Length == b.Length ? -1 : length;
#endif
        }
    }
}
