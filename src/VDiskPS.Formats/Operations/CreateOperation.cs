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
                    throw new ImageOptionException(path, "size", "a size is required when the backing file is not opened") { Kind = ImageErrorKind.SizeNeededUnopenedParent };
                }

                if (request.Size < 0)
                {
                    throw new ImageOptionException(path, "size", "the size must not be negative");
                }

                // Written under a temporary name and renamed into place once complete (a full
                // preallocation can take long), so an interrupted create leaves no image under the name.
                var staging = new StagedOutput(path, request.Overwrite);
                request.Staging = staging;
                ImageLayer layer = null;
                try
                {
                    layer = FormatRegistry.Default.GetCreatable(format, path).Create(path, request);
                    ImageChain.Stack(layer, parent);

                    layer.Flush();
                    layer.Dispose();
                    layer = null;
                    staging.Commit();
                }
                catch (Exception e)
                {
                    ImageException reported = OperationSupport.AbandonOutput(layer, staging, path, e);
                    if (reported != null)
                    {
                        throw reported;
                    }

                    throw;
                }
            }
            finally
            {
                request.Staging = null;
                parent?.Dispose();
            }

            return ImageInspector.Get(path, format);
        }
    }
}
