using System;
using System.Collections.Generic;
using System.IO;

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
                StagedOutput.TryDelete(file);
            }
        }

        /// <summary>
        /// After a failed or cancelled write of <paramref name="destination"/>: closes the target (whose own
        /// closing writes may fail too, as on a full disk, without stopping the clean-up), deletes the
        /// staged files, and returns the error to report instead of <paramref name="failure"/> (a full
        /// disk named as such, a temporary file named by its final name), or null to rethrow it.
        /// </summary>
        public static ImageException AbandonOutput(ImageLayer target, StagedOutput staging, string destination, Exception failure)
        {
            try
            {
                target?.Dispose();
            }
            catch (Exception)
            {
            }

            staging?.Abandon();
            if (IsDiskFull(failure))
            {
                return new ImageIOException(destination, "no space left on device" + (staging != null ? "; the partial output was removed" : string.Empty), failure);
            }

            string stagedFile = staging?.FinalPathOf((failure as ImageException)?.FilePath);
            return stagedFile != null && failure is ImageIOException io ? new ImageIOException(stagedFile, io.Reason, failure) : null;
        }

        /// <summary>Whether the failure, or one beneath it, is the host volume running out of space.</summary>
        private static bool IsDiskFull(Exception exception)
        {
            const int UnixNoSpace = 28;
            const int UnixQuota = 122;
            const int WindowsHandleDiskFull = unchecked((int)0x80070027);
            const int WindowsDiskFull = unchecked((int)0x80070070);
            for (Exception e = exception; e != null; e = e.InnerException)
            {
                if (e is IOException io && (io.HResult == UnixNoSpace || io.HResult == UnixQuota || io.HResult == WindowsHandleDiskFull || io.HResult == WindowsDiskFull))
                {
                    return true;
                }
            }

            return false;
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
