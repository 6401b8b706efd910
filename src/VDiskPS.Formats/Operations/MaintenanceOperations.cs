using System;
using System.Collections.Generic;
using System.Linq;
using VDiskPS;

namespace VDiskPS.Formats
{
    /// <summary>qemu-img check (and check -r): Test-VDisk, Repair-VDisk.</summary>
    public static class CheckOperation
    {
        /// <summary>
        /// Checks one image's own metadata, and (when only checking) that its backing chain opens: a missing
        /// backing file, or one whose identity no longer matches, is a check error, as qemu-img check and
        /// Test-VHD report it. A format without consistency metadata (raw) is valid when it opens;
        /// repairing such a format is "not supported".
        /// </summary>
        public static VDiskCheckResult Run(string path, DiskFormat? format, RepairMode repair, bool shareWithWriters = false, bool ignoreParentMismatch = false)
        {
            // The image's own metadata is checked whatever its parent; the chain is judged after.
            bool checkOnly = repair == RepairMode.None;
            var options = new OpenOptions { Writable = !checkOnly, ShareWithWriters = shareWithWriters && checkOnly, IgnoreParentMismatch = checkOnly || ignoreParentMismatch };
            using (ImageLayer layer = FormatRegistry.Default.Open(path, format, options))
            {
                VDiskCheckResult result;
                if (layer is ICheckableLayer checkable)
                {
                    result = checkable.Check(repair);
                }
                else if (repair != RepairMode.None)
                {
                    throw ImageNotSupportedException.Capability(layer.Format, "repair", layer.Path);
                }
                else
                {
                    result = new VDiskCheckResult();
                    result.Messages.Add($"{layer.Format.ToName()} has no metadata to check; the image opens and reads");
                }

                result.Path = layer.Path;
                result.Format = layer.Format.ToName();
                if (checkOnly)
                {
                    CheckBackingChain(layer, shareWithWriters, ignoreParentMismatch, result);
                }

                return result;
            }
        }

        /// <summary>A parent with corruptions or check errors makes the child's chain invalid (one check error per such parent); its leaks are only reported.</summary>
        private static void CheckParent(ImageLayer parent, VDiskCheckResult result)
        {
            result.ParentsChecked++;
            if (!(parent is ICheckableLayer checkable))
            {
                return;
            }

            VDiskCheckResult own = checkable.Check(RepairMode.None);
            if (own.Corruptions > 0 || own.CheckErrors > 0)
            {
                result.CheckErrors++;
                result.Messages.Add($"the parent '{parent.Path}' is not consistent: {own.Corruptions} corruption(s), {own.CheckErrors} check error(s)");
            }
            else if (own.Leaks > 0)
            {
                result.Messages.Add($"the parent '{parent.Path}' has {own.Leaks} leaked cluster(s) (harmless; a leak repair of that image reclaims them)");
            }

            foreach (string message in own.Messages)
            {
                result.Messages.Add($"{parent.Path}: {message}");
            }
        }

        private static void CheckBackingChain(ImageLayer layer, bool shareWithWriters, bool ignoreParentMismatch, VDiskCheckResult result)
        {
            try
            {
                if (layer.Backing == null)
                {
                    return;
                }

                var open = new ChainOptions { Format = layer.Format, ShareWithWriters = shareWithWriters, IgnoreParentMismatch = ignoreParentMismatch };
                using (var chain = ImageChain.Open(layer.Path, open))
                {
                    // Some formats compare the parent's identity on first access.
                    if (chain.Size > 0)
                    {
                        chain.Top.GetBlockStatus(0, 1);
                    }

                    // Test-VHD judges the whole chain: every parent's own metadata is checked too.
                    for (int depth = 1; depth < chain.Layers.Count; depth++)
                    {
                        CheckParent(chain.Layers[depth], result);
                    }
                }
            }
            catch (ImageException e) when (!(e is ImageLockedException))
            {
                result.CheckErrors++;
                result.ParentIdMismatch = e is ImageParentMismatchException;
                result.Messages.Add($"the backing chain cannot be opened: {e.Message}");
            }
        }
    }

    /// <summary>qemu-img snapshot -l/-c/-a/-d over <see cref="ISnapshotLayer"/>.</summary>
    public static class SnapshotOperations
    {
        public static IReadOnlyList<VDiskSnapshotInfo> List(string path, DiskFormat? format = null, bool shareWithWriters = false)
        {
            using (ImageLayer layer = FormatRegistry.Default.Open(path, format, new OpenOptions { ShareWithWriters = shareWithWriters }))
            {
                return Stamp(Capability.Require<ISnapshotLayer>(layer, "internal snapshots").GetSnapshots(), layer.Path);
            }
        }

        public static VDiskSnapshotInfo Create(string path, string name, DiskFormat? format = null)
        {
            if (string.IsNullOrWhiteSpace(name))
            {
                throw new ImageOptionException(path, "Name", "a snapshot needs a name");
            }

            using (ImageLayer layer = FormatRegistry.Default.Open(path, format, new OpenOptions { Writable = true }))
            {
                var snapshots = Capability.Require<ISnapshotLayer>(layer, "internal snapshots");
                if (snapshots.GetSnapshots().Any(s => s.Name == name))
                {
                    throw new ImageOptionException(path, "Name", $"a snapshot named '{name}' exists already");
                }

                var info = snapshots.CreateSnapshot(name);
                info.Path = layer.Path;
                return info;
            }
        }

        /// <summary>Reverts the disk to the snapshot (id or name).</summary>
        public static void Apply(string path, string idOrName, DiskFormat? format = null)
        {
            using (ImageLayer layer = FormatRegistry.Default.Open(path, format, new OpenOptions { Writable = true }))
            {
                Capability.Require<ISnapshotLayer>(layer, "internal snapshots").ApplySnapshot(idOrName);
            }
        }

        public static void Delete(string path, string idOrName, DiskFormat? format = null)
        {
            using (ImageLayer layer = FormatRegistry.Default.Open(path, format, new OpenOptions { Writable = true }))
            {
                Capability.Require<ISnapshotLayer>(layer, "internal snapshots").DeleteSnapshot(idOrName);
            }
        }

        private static IReadOnlyList<VDiskSnapshotInfo> Stamp(IReadOnlyList<VDiskSnapshotInfo> list, string path)
        {
            foreach (var s in list)
            {
                s.Path = path;
            }

            return list;
        }
    }

    /// <summary>qemu-img bitmap over <see cref="IBitmapLayer"/>.</summary>
    public static class BitmapOperations
    {
        public static IReadOnlyList<VDiskBitmapInfo> List(string path, DiskFormat? format = null, bool shareWithWriters = false)
        {
            using (ImageLayer layer = FormatRegistry.Default.Open(path, format, new OpenOptions { ShareWithWriters = shareWithWriters }))
            {
                var list = Capability.Require<IBitmapLayer>(layer, "persistent bitmaps").GetBitmaps();
                foreach (var b in list)
                {
                    b.Path = layer.Path;
                }

                return list;
            }
        }

        /// <summary>Applies one change to a bitmap of the image, opened for writing.</summary>
        public static void Change(string path, DiskFormat? format, Action<IBitmapLayer> change)
        {
            using (ImageLayer layer = FormatRegistry.Default.Open(path, format, new OpenOptions { Writable = true }))
            {
                change(Capability.Require<IBitmapLayer>(layer, "persistent bitmaps"));
            }
        }

        /// <summary>Merges <paramref name="sourceName"/> of <paramref name="sourcePath"/> (or of the image itself) into <paramref name="target"/>.</summary>
        public static void Merge(string path, DiskFormat? format, string target, string sourcePath, DiskFormat? sourceFormat, string sourceName)
        {
            using (ImageLayer layer = FormatRegistry.Default.Open(path, format, new OpenOptions { Writable = true }))
            {
                var bitmaps = Capability.Require<IBitmapLayer>(layer, "persistent bitmaps");
                if (string.IsNullOrEmpty(sourcePath))
                {
                    bitmaps.MergeBitmap(target, layer, sourceName);
                    return;
                }

                using (ImageLayer source = FormatRegistry.Default.Open(sourcePath, sourceFormat, new OpenOptions()))
                {
                    bitmaps.MergeBitmap(target, source, sourceName);
                }
            }
        }
    }
}

namespace VDiskPS.Formats
{
    /// <summary>qemu-img amend: Set-VDisk -Option.</summary>
    public static class AmendOperation
    {
        public static VDiskInfo Run(string path, DiskFormat? format, OptionSet options)
        {
            if (options == null || options.Count == 0)
            {
                throw new ImageOptionException(path, "Option", "no options to change were given");
            }

            using (ImageLayer layer = FormatRegistry.Default.Open(path, format, new OpenOptions { Writable = true }))
            {
                Capability.Require<IAmendableLayer>(layer, "changing options (amend)").Amend(options);
                layer.Flush();
                return ImageInspector.Describe(layer);
            }
        }
    }
}

namespace VDiskPS.Formats
{
    /// <summary>Set-VDisk -ResetDiskIdentifier (Set-VHD -ResetDiskIdentifier) over <see cref="IDiskIdentifierLayer"/>.</summary>
    public static class DiskIdentifierOperation
    {
        /// <summary>
        /// Gives the image a new disk identifier (<paramref name="identifier"/>, or a new random one) so a copy
        /// can be attached beside the original; the data is unchanged. Returns the image's description.
        /// </summary>
        public static VDiskInfo Reset(string path, DiskFormat? format, Guid? identifier = null)
        {
            using (ImageLayer layer = FormatRegistry.Default.Open(path, format, new OpenOptions { Writable = true }))
            {
                Capability.Require<IDiskIdentifierLayer>(layer, "disk identifiers").SetDiskIdentifier(identifier ?? Guid.NewGuid());
                layer.Flush();
                return ImageInspector.Describe(layer);
            }
        }
    }

    /// <summary>Set-VDisk -PhysicalSectorSizeBytes: the sector size the disk reports as physical.</summary>
    public static class SectorSizeOperation
    {
        /// <summary>Records <paramref name="bytes"/> as the image's physical sector size; returns the image's description.</summary>
        public static VDiskInfo SetPhysical(string path, DiskFormat? format, int bytes)
        {
            using (ImageLayer layer = FormatRegistry.Default.Open(path, format, new OpenOptions { Writable = true }))
            {
                Capability.Require<IPhysicalSectorSizeLayer>(layer, "changing the physical sector size").SetPhysicalSectorSize(bytes);
                layer.Flush();
                return ImageInspector.Describe(layer);
            }
        }
    }
}
