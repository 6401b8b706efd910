using System;
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
                FileSize = HostSize(layer, f => new FileInfo(f).Length),
                AllocatedSize = HostSize(layer, f => LocalFile.AllocatedBytes(f) ?? new FileInfo(f).Length),
                ClusterSize = layer.ClusterSize,
                LogicalSectorSize = layer.LogicalSectorSize,
                PhysicalSectorSize = layer.PhysicalSectorSize,
                Depth = depth,
            };
            BackingReference backing = layer.Backing;
            if (backing != null)
            {
                info.BackingFile = backing.RecordedPath;
                info.ParentFullPath = layer.Parent?.Path ?? backing.ResolveExisting(layer.Path);
                info.ParentPath = info.ParentFullPath;
                info.ParentFormat = backing.Format?.ToName() ?? layer.Parent?.Format.ToName();
            }

            // A stream is described from its header: its block map and partition table lie ahead in it,
            // and reading them would use up the one pass a copy has.
            if (!layer.IsStreamed)
            {
                DescribeLayout(layer, info);
                if (backing == null || layer.Parent != null)
                {
                    info.MinimumSize = MinimumSize(layer);
                }
            }

            layer.Describe(info);
            return info;
        }

        /// <summary>The end of the guest's last partition plus what its table needs after it; null without a readable table.</summary>
        public static long? MinimumSize(ImageLayer disk)
        {
            try
            {
                return PartitionTable.Read(disk, disk.LogicalSectorSize)?.MinimumSize;
            }
            catch (ImageException)
            {
                return null;
            }
        }

        /// <summary>Fragmentation and alignment from the layer's own block map, walked in guest order.</summary>
        private static void DescribeLayout(ImageLayer layer, VDiskInfo info)
        {
            bool blockBased = FormatRegistry.Default.Find(layer.Format)?.IsPlainData != true;
            long cluster = Math.Max(1, (long)layer.ClusterSize);
            long blockAlignment = blockBased ? Math.Min(MiB, cluster) : 1;
            long physical = Math.Max(1, layer.PhysicalSectorSize);
            long blocks = 0;
            long outOfOrder = 0;
            bool aligned = true;
            string previousFile = null;
            long previousEnd = -1;
            try
            {
                long offset = 0;
                while (offset < layer.Size)
                {
                    BlockStatus status = layer.GetBlockStatus(offset, layer.Size - offset);
                    if (status.Length <= 0)
                    {
                        return;
                    }

                    offset = status.End;
                    if (status.Kind != ExtentKind.Data || status.HostOffset < 0 || status.Compressed)
                    {
                        continue;
                    }

                    blocks += (status.Length + cluster - 1) / cluster;
                    if (previousEnd >= 0 && string.Equals(previousFile, status.HostFile, StringComparison.Ordinal) && status.HostOffset != previousEnd)
                    {
                        outOfOrder++;
                    }

                    if (status.HostOffset % physical != 0 || (status.GuestOffset % cluster == 0 && status.HostOffset % blockAlignment != 0))
                    {
                        aligned = false;
                    }

                    previousFile = status.HostFile;
                    previousEnd = status.HostOffset + status.Length;
                }
            }
            catch (ImageException)
            {
                return;
            }

            info.Alignment = aligned ? 1 : 0;
            info.FragmentationPercentage = !blockBased ? (int?)null : blocks == 0 ? 0 : (int)Math.Min(100, (outOfOrder * 100 + (blocks / 2)) / blocks);
        }

        /// <summary>One image, without opening its parents.</summary>
        public static VDiskInfo Get(string path, DiskFormat? format = null, bool shareWithWriters = false, bool ignoreParentMismatch = false)
        {
            // With its parents open the guest's partition table can be read through a differencing image;
            // a chain that does not open (a parent missing or changed) still describes the image itself.
            try
            {
                using (var chain = ImageChain.Open(path, new ChainOptions { Format = format, ShareWithWriters = shareWithWriters, IgnoreParentMismatch = ignoreParentMismatch }))
                {
                    return Describe(chain.Top);
                }
            }
            catch (ImageException) when (HasBacking(path, format, shareWithWriters))
            {
            }

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

        private const long MiB = 1024 * 1024;

        /// <summary>Whether the image names a parent (so a chain that failed to open may still describe the image alone).</summary>
        private static bool HasBacking(string path, DiskFormat? format, bool shareWithWriters)
        {
            try
            {
                using (var layer = FormatRegistry.Default.Open(path, format, new OpenOptions { ShareWithWriters = shareWithWriters, IgnoreParentMismatch = true }))
                {
                    return layer.Backing != null;
                }
            }
            catch (ImageException)
            {
                return false;
            }
        }

        private static long HostSize(ImageLayer layer, Func<string, long> size)
        {
            long total = 0;
            foreach (string file in layer.HostFiles)
            {
                if (Transports.IsRemote(file))
                {
                    // A remote source has no size on this host (qemu-img info leaves actual-size out for it).
                    continue;
                }

                if (File.Exists(file))
                {
                    total += size(file);
                }
            }

            return total;
        }
    }
}
