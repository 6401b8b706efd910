using System;
using System.IO;

namespace VDiskPS.Formats
{
    /// <summary>The decisions about paths and formats the cmdlets make, kept where tests can reach them.</summary>
    public static class PathPlanner
    {
        /// <summary>The format of a file to be created: the explicit one, else the extension's.</summary>
        public static DiskFormat FormatForNewFile(string path, DiskFormat? explicitFormat, FormatRegistry registry = null)
        {
            registry = registry ?? FormatRegistry.Default;
            DiskFormat? fromExtension = registry.FromExtension(path);
            if (explicitFormat.HasValue)
            {
                // .img and .raw hold any format by custom (qemu-img create -f qcow2 disk.img); a
                // format's own extension does not.
                if (fromExtension.HasValue && !registry.Get(fromExtension.Value).IsPlainData && fromExtension.Value != explicitFormat.Value)
                {
                    throw new ImageOptionException(path, "format", $"the format {explicitFormat.Value.ToName()} contradicts the extension '{Path.GetExtension(path)}', which names {fromExtension.Value.ToName()}")
                    {
                        Kind = ImageErrorKind.FormatContradictsExtension,
                    };
                }

                return explicitFormat.Value;
            }

            if (fromExtension.HasValue)
            {
                return fromExtension.Value;
            }

            if (Transports.IsRemote(path))
            {
                // Remote bytes (an NBD export) are raw unless named otherwise.
                return registry.PlainDataFormat;
            }

            string ext = Path.GetExtension(path);
            if (ForeignFormats.FromExtension(ext) == ForeignFormats.VhdSetName)
            {
                throw ForeignFormats.NotSupported(path, ForeignFormats.VhdSetName);
            }

            throw new ImageOptionException(path, "format", string.IsNullOrEmpty(ext)
                ? "the file name has no extension to tell the format by"
                : $"the extension '{ext}' does not name a format ({string.Join(", ", registry.CreatableNames)})")
            {
                Kind = ImageErrorKind.FormatNotNamed,
            };
        }

        /// <summary>
        /// The parent path a child at <paramref name="childPath"/> records for the parent at
        /// <paramref name="parentFullPath"/>: relative to the child's folder when <paramref name="relative"/>
        /// (the user named the parent relatively, so the pair can be moved together) and the two share a root,
        /// else absolute. Separators are '/', which qemu, VMware and Windows all follow; VHD and VHDX
        /// derive their locators' own relative and absolute forms from it.
        /// </summary>
        public static string RecordedParentPath(string childPath, string parentFullPath, bool relative)
        {
            string parent = Path.GetFullPath(parentFullPath);
            if (relative)
            {
                string fromDirectory = Path.GetDirectoryName(Path.GetFullPath(childPath)) ?? string.Empty;
                string relativePath = RelativePath(fromDirectory, parent);
                if (relativePath != null)
                {
                    return relativePath;
                }
            }

            return BackingReference.ToPortable(parent);
        }

        /// <summary>The path of <paramref name="toFile"/> relative to <paramref name="fromDirectory"/>, with '/' separators; null across roots.</summary>
        internal static string RelativePath(string fromDirectory, string toFile)
        {
            string separator = Path.DirectorySeparatorChar.ToString();
            var from = new Uri(fromDirectory.EndsWith(separator, StringComparison.Ordinal) ? fromDirectory : fromDirectory + separator);
            var to = new Uri(toFile);
            if (from.Scheme != to.Scheme || !string.Equals(from.Host, to.Host, StringComparison.OrdinalIgnoreCase))
            {
                return null;
            }

            string relative = Uri.UnescapeDataString(from.MakeRelativeUri(to).ToString());
            return Path.IsPathRooted(relative) || relative.StartsWith("file:", StringComparison.OrdinalIgnoreCase) ? null : relative;
        }

        /// <summary>
        /// Where Convert-VDisk writes: <paramref name="destination"/> as a file; inside it when it is an
        /// existing folder; beside the source when omitted. A folder or omitted destination takes the
        /// source's name with the target format's extension.
        /// </summary>
        public static string ConvertDestination(string sourcePath, string destination, DiskFormat? explicitFormat, out DiskFormat targetFormat, FormatRegistry registry = null)
        {
            registry = registry ?? FormatRegistry.Default;
            if (Transports.IsRemote(destination))
            {
                // An existing export or resource: its bytes are raw unless the format is given or named.
                targetFormat = FormatForNewFile(destination, explicitFormat, registry);
                return destination;
            }

            string source = Transports.GetFullLocation(sourcePath);
            string folder = null;
            if (string.IsNullOrEmpty(destination))
            {
                if (Transports.IsRemote(source))
                {
                    throw new ImageOptionException(source, "destination", "a remote source has no folder to write the output beside; a destination is required");
                }

                folder = Path.GetDirectoryName(source);
            }
            else if (Directory.Exists(destination) || destination.EndsWith("/", StringComparison.Ordinal) || destination.EndsWith("\\", StringComparison.Ordinal))
            {
                folder = Path.GetFullPath(destination);
            }

            if (folder == null)
            {
                string target = Path.GetFullPath(destination);
                targetFormat = FormatForNewFile(target, explicitFormat, registry);
                return target;
            }

            if (!explicitFormat.HasValue)
            {
                throw new ImageOptionException(source, "format", "a format is required when the destination is a folder or omitted") { Kind = ImageErrorKind.FormatNotNamed };
            }

            targetFormat = explicitFormat.Value;
            string stem = Path.GetFileNameWithoutExtension(Transports.FileNameOf(source));
            if (stem.Length == 0)
            {
                throw new ImageOptionException(source, "destination", "the source location has no file name to name the output by; name the destination file");
            }

            string name = stem + registry.DefaultExtension(targetFormat);
            string result = Path.Combine(folder, name);
            if (ImageChain.PathComparer.Equals(Path.GetFullPath(result), source))
            {
                throw new ImageOptionException(source, "destination", "the destination would overwrite the source") { Kind = ImageErrorKind.OutputIsSource };
            }

            return result;
        }
    }
}
