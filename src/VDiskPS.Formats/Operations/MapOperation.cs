using System;
using System.Collections.Generic;
using System.Threading;
using VDiskPS;

namespace VDiskPS.Formats
{
    /// <summary>Options of Get-VDiskMap (qemu-img map --output=json).</summary>
    public sealed class MapOptions : EngineOptions
    {
        /// <summary>The image's format; null to probe.</summary>
        public DiskFormat? Format { get; set; }

        /// <summary>First guest offset to map (qemu-img map --start-offset).</summary>
        public long StartOffset { get; set; }

        /// <summary>Bytes to map from <see cref="StartOffset"/>, or null for the rest of the image (--max-length).</summary>
        public long? Length { get; set; }
    }

    /// <summary>
    /// The allocation map of an image chain as qemu-img map --output=json gives it: for each run, the
    /// layer that answers (depth), whether any layer has it (present), whether it reads as zeros,
    /// whether data is stored, and where. Adjacent runs are merged when every flag, the depth and the
    /// file agree and their host offsets are contiguous (qemu's entry_mergeable).
    /// </summary>
    public static class MapOperation
    {
        public static IReadOnlyList<VDiskExtent> Run(string path, MapOptions options = null, CancellationToken cancel = default)
        {
            options = options ?? new MapOptions();
            var open = options.OpenChain(options.Format);
            using (var chain = ImageChain.Open(path, open))
            {
                return Map(chain, options.StartOffset, options.Length, cancel);
            }
        }

        /// <summary>Maps an open chain from <paramref name="start"/> for <paramref name="length"/> bytes (null: to the end).</summary>
        public static IReadOnlyList<VDiskExtent> Map(ImageChain chain, long start, long? length, CancellationToken cancel = default)
        {
            if (start < 0)
            {
                throw new ImageOptionException(chain.Top.Path, "start offset", "the start offset must not be negative");
            }

            if (length < 0)
            {
                throw new ImageOptionException(chain.Top.Path, "length", "the length must not be negative");
            }

            long end = chain.Size;
            if (length.HasValue && length.Value < end - Math.Min(start, end))
            {
                end = start + length.Value;
            }

            var extents = new List<VDiskExtent>();
            VDiskExtent current = null;
            long offset = start;
            while (offset < end)
            {
                cancel.ThrowIfCancellationRequested();
                BlockStatus status = chain.GetBlockStatus(offset, end - offset);
                VDiskExtent next = ToExtent(chain, status);
                if (current != null && Mergeable(current, next))
                {
                    current.Length += next.Length;
                }
                else
                {
                    if (current != null)
                    {
                        extents.Add(current);
                    }

                    current = next;
                }

                offset += status.Length;
            }

            if (current != null)
            {
                extents.Add(current);
            }

            return extents;
        }

        private static VDiskExtent ToExtent(ImageChain chain, BlockStatus status)
        {
            ImageLayer layer = chain.Layers[status.Depth];
            bool hasOffset = status.HostOffset >= 0;
            return new VDiskExtent
            {
                Start = status.GuestOffset,
                Length = status.Length,
                Depth = status.Depth,
                Present = status.Kind != ExtentKind.Unallocated,
                Zero = status.Kind != ExtentKind.Data,
                Data = status.Kind == ExtentKind.Data,
                Compressed = status.Compressed,
                Offset = hasOffset ? status.HostOffset : (long?)null,
                File = hasOffset ? status.HostFile ?? layer.Path : null,
                Path = chain.Top.Path,
            };
        }

        private static bool Mergeable(VDiskExtent current, VDiskExtent next)
        {
            if (current.Zero != next.Zero || current.Data != next.Data || current.Compressed != next.Compressed
                || current.Depth != next.Depth || current.Present != next.Present
                || current.Offset.HasValue != next.Offset.HasValue
                || !string.Equals(current.File, next.File, StringComparison.Ordinal))
            {
                return false;
            }

            return !current.Offset.HasValue || current.Offset.Value + current.Length == next.Offset.Value;
        }
    }
}
