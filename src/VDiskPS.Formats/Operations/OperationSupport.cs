using System;
using System.Collections.Generic;

namespace VDiskPS.Formats
{
    /// <summary>Small pieces every operation shares: buffers, progress, clean-up.</summary>
    internal static class OperationSupport
    {
        /// <summary>Bytes an operation reads or compares at once (qemu-img's IO_BUF_SIZE).</summary>
        public const int IoBufferSize = 2 << 20;

        public static void Report(IProgress<OperationProgress> progress, string phase, long done, long total)
            => progress?.Report(new OperationProgress(phase, done, total));

        public static void DeleteFiles(IEnumerable<string> files)
        {
            foreach (string file in files)
            {
                ConvertOperation.TryDelete(file);
            }
        }

        /// <summary>A chunk length: at most <paramref name="limit"/> bytes and never past <paramref name="end"/>.</summary>
        public static int ChunkLength(long offset, long end, int limit) => (int)Math.Min(limit, end - offset);

        /// <summary>Rounds <paramref name="value"/> down to a multiple of <paramref name="unit"/>.</summary>
        public static long AlignDown(long value, long unit) => value / unit * unit;

        /// <summary>Rounds <paramref name="value"/> up to a multiple of <paramref name="unit"/>.</summary>
        public static long AlignUp(long value, long unit) => (value + unit - 1) / unit * unit;

        /// <summary>Reads the chain's content at <paramref name="offset"/>, zero past its end (for chains of other sizes).</summary>
        public static void ReadPadded(ImageChain chain, long offset, Span<byte> buffer)
        {
            if (chain == null || offset >= chain.Size)
            {
                buffer.Clear();
                return;
            }

            int inside = (int)Math.Min(buffer.Length, chain.Size - offset);
            chain.Read(offset, buffer.Slice(0, inside));
            buffer.Slice(inside).Clear();
        }

        /// <summary>
        /// Where the run from <paramref name="offset"/> (up to <paramref name="limit"/>) that both chains
        /// certainly read as zeros ends; <paramref name="offset"/> itself when either has data there.
        /// A null chain, or the part past a chain's end, reads as zeros.
        /// </summary>
        public static long BothZeroUntil(ImageChain first, ImageChain second, long offset, long limit)
            => Math.Min(ZeroUntil(first, offset, limit), ZeroUntil(second, offset, limit));

        private static long ZeroUntil(ImageChain chain, long offset, long limit)
        {
            if (chain == null || offset >= chain.Size)
            {
                return limit;
            }

            BlockStatus status = chain.GetBlockStatus(offset, Math.Min(limit, chain.Size) - offset);
            if (!status.ReadsAsZero)
            {
                return offset;
            }

            return status.End >= chain.Size ? limit : Math.Min(limit, status.End);
        }

        /// <summary>Whether the chain certainly reads as zeros over [offset, offset+length) (past its end counts as zero).</summary>
        public static bool KnownZero(ImageChain chain, long offset, long length)
        {
            if (chain == null)
            {
                return true;
            }

            long end = Math.Min(offset + length, chain.Size);
            while (offset < end)
            {
                BlockStatus status = chain.GetBlockStatus(offset, end - offset);
                if (!status.ReadsAsZero)
                {
                    return false;
                }

                offset += status.Length;
            }

            return true;
        }
    }
}
