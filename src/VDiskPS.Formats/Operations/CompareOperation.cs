using System;
using System.Buffers;
using System.Threading;
using VDiskPS;

namespace VDiskPS.Formats
{
    /// <summary>Options of Compare-VDisk (qemu-img compare).</summary>
    public sealed class CompareOptions : EngineOptions
    {
        /// <summary>Format of the reference image; null to probe.</summary>
        public DiskFormat? ReferenceFormat { get; set; }

        /// <summary>Format of the difference image; null to probe.</summary>
        public DiskFormat? DifferenceFormat { get; set; }

        /// <summary>
        /// qemu-img compare -s: images of different sizes, and runs whose block status differs (data in
        /// one, a zero marker or nothing in the other, compression, or where the run ends: qemu's
        /// status includes an end-of-image flag) are mismatches even where the content agrees.
        /// </summary>
        public bool Strict { get; set; }
    }

    /// <summary>
    /// Compares the guest-visible content of two images (each with its backing chain), of any formats,
    /// the way qemu-img compare does: runs both sides know to be zero are skipped by block status,
    /// the rest is read in chunks; a mismatch is reported at the first differing 512-byte sector
    /// of the chunk, counted from the chunk's start, exactly as qemu reports it.
    /// </summary>
    public static class CompareOperation
    {
        private const int SectorSize = 512;

        public static VDiskComparison Run(string referencePath, string differencePath, CompareOptions options = null, IProgress<OperationProgress> progress = null, CancellationToken cancel = default)
        {
            options = options ?? new CompareOptions();
            var open = options.OpenChain(null);
            open.Format = options.ReferenceFormat;
            using (var reference = ImageChain.Open(referencePath, open))
            {
                open.Format = options.DifferenceFormat;
                using (var difference = ImageChain.Open(differencePath, open))
                {
                    return Compare(reference, difference, options.Strict, progress, cancel);
                }
            }
        }

        /// <summary>Compares two open chains.</summary>
        public static VDiskComparison Compare(ImageChain reference, ImageChain difference, bool strict, IProgress<OperationProgress> progress = null, CancellationToken cancel = default)
        {
            var result = new VDiskComparison { ReferencePath = reference.Top.Path, DifferencePath = difference.Top.Path, Identical = true };
            long size1 = reference.Size;
            long size2 = difference.Size;
            if (strict && size1 != size2)
            {
                return Mismatch(result, null, $"Strict mode: image size mismatch ({size1} and {size2} bytes)");
            }

            long common = Math.Min(size1, size2);
            long total = Math.Max(size1, size2);
            byte[] buffer1 = ArrayPool<byte>.Shared.Rent(OperationSupport.IoBufferSize);
            byte[] buffer2 = ArrayPool<byte>.Shared.Rent(OperationSupport.IoBufferSize);
            try
            {
                long offset = 0;
                while (offset < common)
                {
                    cancel.ThrowIfCancellationRequested();
                    BlockStatus status1 = reference.GetBlockStatus(offset, common - offset);
                    BlockStatus status2 = difference.GetBlockStatus(offset, common - offset);
                    long chunk = Math.Min(status1.Length, status2.Length);
                    bool allocated1 = status1.Kind != ExtentKind.Unallocated;
                    bool allocated2 = status2.Kind != ExtentKind.Unallocated;
                    // qemu compares the whole status word, whose EOF flag marks a run reaching the end.
                    bool end1 = status1.End >= size1;
                    bool end2 = status2.End >= size2;
                    if (strict && (status1.Kind != status2.Kind || status1.Compressed != status2.Compressed || end1 != end2))
                    {
                        return Mismatch(result, offset, $"Strict mode: block status mismatch at offset {offset} ({Describe(status1)} and {Describe(status2)})");
                    }

                    if (!(status1.ReadsAsZero && status2.ReadsAsZero))
                    {
                        int n = (int)Math.Min(chunk, OperationSupport.IoBufferSize);
                        chunk = n;
                        if (allocated1 == allocated2)
                        {
                            reference.Read(offset, buffer1.AsSpan(0, n));
                            difference.Read(offset, buffer2.AsSpan(0, n));
                            long sector = FirstDifferentSector(buffer1.AsSpan(0, n), buffer2.AsSpan(0, n));
                            if (sector >= 0)
                            {
                                return ContentMismatch(result, offset + sector);
                            }
                        }
                        else
                        {
                            // Only one side has the run; the other reads as zeros there.
                            ImageChain allocated = allocated1 ? reference : difference;
                            allocated.Read(offset, buffer1.AsSpan(0, n));
                            long sector = FirstNonZeroSector(buffer1.AsSpan(0, n));
                            if (sector >= 0)
                            {
                                return ContentMismatch(result, offset + sector);
                            }
                        }
                    }

                    offset += chunk;
                    OperationSupport.Report(progress, "Comparing", offset, total);
                }

                if (size1 != size2)
                {
                    // The larger image's tail must read as zeros.
                    ImageChain over = size1 > size2 ? reference : difference;
                    while (offset < total)
                    {
                        cancel.ThrowIfCancellationRequested();
                        BlockStatus status = over.GetBlockStatus(offset, total - offset);
                        long chunk = status.Length;
                        if (!status.ReadsAsZero)
                        {
                            int n = (int)Math.Min(chunk, OperationSupport.IoBufferSize);
                            chunk = n;
                            over.Read(offset, buffer1.AsSpan(0, n));
                            long sector = FirstNonZeroSector(buffer1.AsSpan(0, n));
                            if (sector >= 0)
                            {
                                return ContentMismatch(result, offset + sector);
                            }
                        }

                        offset += chunk;
                        OperationSupport.Report(progress, "Comparing", offset, total);
                    }

                    result.Reason = $"image size mismatch ({size1} and {size2} bytes); the larger image's tail reads as zeros";
                }

                OperationSupport.Report(progress, "Comparing", total, total);
                return result;
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(buffer1);
                ArrayPool<byte>.Shared.Return(buffer2);
            }
        }

        /// <summary>The offset (a multiple of 512 from the buffer's start) of the first sector that differs, or -1.</summary>
        internal static long FirstDifferentSector(ReadOnlySpan<byte> a, ReadOnlySpan<byte> b)
        {
            int index = ZeroDetector.FirstDifference(a, b);
            return index < 0 ? -1 : index / SectorSize * SectorSize;
        }

        /// <summary>The offset (a multiple of 512 from the buffer's start) of the first sector holding a non-zero byte, or -1.</summary>
        internal static long FirstNonZeroSector(ReadOnlySpan<byte> data)
        {
            for (int start = 0; start < data.Length; start += SectorSize)
            {
                if (!ZeroDetector.IsZero(data.Slice(start, Math.Min(SectorSize, data.Length - start))))
                {
                    return start;
                }
            }

            return -1;
        }

        private static VDiskComparison ContentMismatch(VDiskComparison result, long offset)
            => Mismatch(result, offset, $"Content mismatch at offset {offset}");

        private static VDiskComparison Mismatch(VDiskComparison result, long? offset, string reason)
        {
            result.Identical = false;
            result.FirstMismatchOffset = offset;
            result.Reason = reason;
            return result;
        }

        private static string Describe(BlockStatus status)
            => (status.Kind == ExtentKind.Unallocated ? "unallocated" : status.Kind == ExtentKind.Zero ? "zero" : "data") + (status.Compressed ? ", compressed" : string.Empty);
    }
}
