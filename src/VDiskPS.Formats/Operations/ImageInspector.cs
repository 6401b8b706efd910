using System.Collections.Generic;
using System.IO;
using VDiskPS;

namespace VDiskPS.Formats
{
    /// <summary>Builds <see cref="VDiskInfo"/> objects (qemu-img info, Get-VDisk, Get-VDiskChain).</summary>
    public static class ImageInspector
    {
        public static VDiskInfo Describe(ImageLayer layer, int depth = 0)
        {
            var info = new VDiskInfo
            {
                Path = layer.Path,
                Format = layer.Format.ToName(),
                Type = layer.DiskType.ToString(),
                Size = layer.Size,
                FileSize = HostSize(layer),
                ClusterSize = layer.ClusterSize,
                LogicalSectorSize = layer.LogicalSectorSize,
                PhysicalSectorSize = layer.PhysicalSectorSize,
                Depth = depth,
            };
            BackingReference backing = layer.Backing;
            if (backing != null)
            {
                info.ParentPath = backing.RecordedPath;
                info.ParentFullPath = layer.Parent?.Path ?? backing.ResolveExisting(layer.Path);
                info.ParentFormat = backing.Format?.ToName() ?? layer.Parent?.Format.ToName();
            }

            layer.Describe(info);
            return info;
        }

        /// <summary>One image, without opening its parents.</summary>
        public static VDiskInfo Get(string path, DiskFormat? format = null, bool shareWithWriters = false, bool ignoreParentMismatch = false)
        {
            using (var layer = FormatRegistry.Default.Open(path, format, new OpenOptions { ShareWithWriters = shareWithWriters, IgnoreParentMismatch = ignoreParentMismatch }))
            {
                return Describe(layer);
            }
        }

        /// <summary>The image and each of its backing files, top first, with Depth set.</summary>
        public static IReadOnlyList<VDiskInfo> GetChain(string path, DiskFormat? format = null, bool shareWithWriters = false, bool ignoreParentMismatch = false)
        {
            using (var chain = ImageChain.Open(path, new ChainOptions { Format = format, ShareWithWriters = shareWithWriters, IgnoreParentMismatch = ignoreParentMismatch }))
            {
                var result = new List<VDiskInfo>();
                for (int i = 0; i < chain.Layers.Count; i++)
                {
                    result.Add(Describe(chain.Layers[i], i));
                }

                return result;
            }
        }

        private static long HostSize(ImageLayer layer)
        {
            long total = 0;
            foreach (string file in layer.HostFiles)
            {
                // A remote source (an NBD export) has no size on this host; .NET Framework also refuses a URL as a path.
                if (Transports.IsRemote(file))
                {
                    continue;
                }

                var fi = new FileInfo(file);
                if (fi.Exists)
                {
                    total += fi.Length;
                }
            }

            return total;
        }
    }
}
