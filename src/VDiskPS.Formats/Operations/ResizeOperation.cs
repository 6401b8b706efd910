using System;
using System.Threading;
using VDiskPS;

namespace VDiskPS.Formats
{
    /// <summary>Options of Resize-VDisk (qemu-img resize).</summary>
    public sealed class ResizeOptions : EngineOptions
    {
        /// <summary>The new size: absolute ("20G") or relative to the current one ("+10G", "-1G").</summary>
        public DiskSize Size { get; set; }

        /// <summary>Allow a smaller size (qemu-img resize --shrink); data past the new end is lost.</summary>
        public bool AllowShrink { get; set; }

        /// <summary>Shrink to the end of the guest's last partition (plus the backup GPT) instead of to <see cref="Size"/>.</summary>
        public bool ToMinimumSize { get; set; }

        /// <summary>Allow a size that cuts into the guest's partitions.</summary>
        public bool AllowBelowMinimum { get; set; }

        /// <summary>How to allocate the added space; null: the format's default (no allocation).</summary>
        public Preallocation? Preallocation { get; set; }

        /// <summary>The image's format; null to probe.</summary>
        public DiskFormat? Format { get; set; }
    }

    /// <summary>Changes an image's virtual size through the format's resize capability.</summary>
    public static class ResizeOperation
    {
        /// <summary>The field of the error refusing a size below the guest's partitions.</summary>
        public const string MinimumSizeField = "MinimumSize";

        /// <summary>Resizes the image and returns its info afterwards.</summary>
        public static VDiskInfo Run(string path, ResizeOptions options, IProgress<OperationProgress> progress = null, CancellationToken cancel = default)
        {
            if (options == null)
            {
                throw new ImageOptionException(path, "size", "a new size is required");
            }

            using (var chain = ImageChain.Open(path, options.OpenChain(options.Format, writable: true)))
            {
                ImageLayer layer = chain.Top;
                var resizable = Capability.Require<IResizableLayer>(layer, "resize");
                long current = layer.Size;
                PartitionTable table = PartitionTable.Read(layer, layer.LogicalSectorSize);
                long target;
                if (options.ToMinimumSize)
                {
                    if (table == null)
                    {
                        throw new ImageOptionException(layer.Path, "size", "the disk's first sectors hold no MBR or GPT partition table, so it has no minimum size to shrink to");
                    }

                    target = Math.Min(current, table.MinimumSize);
                }
                else
                {
                    target = options.Size.Resolve(current);
                }

                bool shrinking = target < current;
                if (shrinking && !options.AllowShrink && !options.ToMinimumSize)
                {
                    throw ImageOptionException.ShrinkNotAllowed(layer.Path, current, target);
                }

                bool cutsPartitions = shrinking && table != null && target < table.MinimumSize;
                if (cutsPartitions && !options.AllowBelowMinimum)
                {
                    throw new ImageOptionException(layer.Path, MinimumSizeField, $"{target} bytes is below the disk's minimum size of {table.MinimumSize} bytes: its {table.Kind} partitions end at byte {table.LastPartitionEnd}, and a smaller disk cuts them; allow it to cut partitions to do it anyway");
                }

                cancel.ThrowIfCancellationRequested();
                if (target != current)
                {
                    // The format resizes in one step; progress marks its start and end.
                    OperationSupport.Report(progress, "Resizing", 0, 1);
                    resizable.Resize(target, shrinking, options.Preallocation ?? VDiskPS.Formats.Preallocation.Off);
                    if (shrinking && table != null && !cutsPartitions)
                    {
                        // The backup GPT lived at the old end; without it at the new end the table is invalid.
                        table.MoveBackupToEnd(layer, layer.Size);
                    }

                    layer.Flush();
                }

                OperationSupport.Report(progress, "Resizing", 1, 1);

                return ImageInspector.Describe(layer);
            }
        }
    }
}
