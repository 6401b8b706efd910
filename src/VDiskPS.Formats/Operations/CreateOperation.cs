using System;
using System.Threading;
using VDiskPS;

namespace VDiskPS.Formats
{
    /// <summary>qemu-img create / New-VDisk.</summary>
    public static class CreateOperation
    {
        /// <summary>
        /// Creates an image. With a backing file and without <paramref name="unsafeBacking"/> the parent
        /// is opened (it must exist; its size is the default size). Returns the new image's info.
        /// </summary>
        public static VDiskInfo Create(string path, DiskFormat format, CreateRequest request, bool unsafeBacking = false)
        {
            request = request ?? new CreateRequest();
            ImageChain parent = null;
            try
            {
                if (request.Backing != null && !unsafeBacking)
                {
                    parent = ImageChain.Open(request.Backing.Resolve(path), new ChainOptions { Format = request.Backing.Format });
                    request.BackingLayer = parent.Top;
                    if (request.Backing.Format == null)
                    {
                        // Creating an overlay records the backing format.
                        request.Backing = new BackingReference(request.Backing.RecordedPath, parent.Top.Format);
                    }

                    if (request.Size == 0)
                    {
                        request.Size = parent.Size;
                    }
                }
                else if (request.Backing != null && request.Size == 0)
                {
                    throw new ImageOptionException(path, "size", "a size is required when the backing file is not opened (-Unsafe)");
                }

                if (request.Size < 0)
                {
                    throw new ImageOptionException(path, "size", "the size must not be negative");
                }

                using (ImageLayer layer = FormatRegistry.Default.Get(format).Create(path, request))
                {
                    if (parent != null)
                    {
                        layer.Parent = parent.Top;
                    }

                    layer.Flush();
                    return ImageInspector.Describe(layer);
                }
            }
            finally
            {
                parent?.Dispose();
            }
        }
    }
}
