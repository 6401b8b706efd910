using System;
using System.Threading;
using VDiskPS;

namespace VDiskPS.Formats
{
    /// <summary>Options of Resize-VDisk (qemu-img resize).</summary>
    public sealed class ResizeOptions
    {
        /// <summary>The new size: absolute ("20G") or relative to the current one ("+10G", "-1G").</summary>
        public DiskSize Size { get; set; }

        /// <summary>Allow a smaller size (qemu-img resize --shrink); data past the new end is lost.</summary>
        public bool AllowShrink { get; set; }

        /// <summary>How to allocate the added space; null: the format's default (no allocation).</summary>
        public Preallocation? Preallocation { get; set; }

        /// <summary>The image's format; null to probe.</summary>
        public DiskFormat? Format { get; set; }

        /// <summary>The formats to open the image with.</summary>
        public FormatRegistry Registry { get; set; } = FormatRegistry.Default;
    }

    /// <summary>Changes an image's virtual size through the format's resize capability.</summary>
    public static class ResizeOperation
    {
        /// <summary>Resizes the image and returns its info afterwards.</summary>
        public static VDiskInfo Run(string path, ResizeOptions options, IProgress<OperationProgress> progress = null, CancellationToken cancel = default)
        {
            if (options == null)
            {
                throw new ImageOptionException(path, "size", "a new size is required");
            }

            using (var chain = ImageChain.Open(path, new ChainOptions { Format = options.Format, Writable = true, Registry = options.Registry ?? FormatRegistry.Default }))
            {
                ImageLayer layer = chain.Top;
                var resizable = Capability.Require<IResizableLayer>(layer, "resize");
                long current = layer.Size;
                long target = options.Size.Resolve(current);
                if (target < current && !options.AllowShrink)
                {
                    throw ImageOptionException.ShrinkNotAllowed(layer.Path, current, target);
                }

                cancel.ThrowIfCancellationRequested();
                if (target != current)
                {
                    // The format resizes in one step; progress marks its start and end.
                    OperationSupport.Report(progress, "Resizing", 0, 1);
                    resizable.Resize(target, options.AllowShrink, options.Preallocation ?? VDiskPS.Formats.Preallocation.Off);
                    layer.Flush();
                }

                OperationSupport.Report(progress, "Resizing", 1, 1);

                return ImageInspector.Describe(layer);
            }
        }
    }
}
