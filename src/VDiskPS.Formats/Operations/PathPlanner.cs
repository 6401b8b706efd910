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
            if (explicitFormat.HasValue)
            {
                return explicitFormat.Value;
            }

            registry = registry ?? FormatRegistry.Default;
            DiskFormat? fromExtension = registry.FromExtension(path);
            if (fromExtension.HasValue)
            {
                return fromExtension.Value;
            }

            string ext = Path.GetExtension(path);
            throw new ImageOptionException(path, "format", string.IsNullOrEmpty(ext)
                ? "the file name has no extension to tell the format by; use -Format"
                : $"the extension '{ext}' does not name a format; use -Format ({string.Join(", ", DiskFormatNames.AllNames)})");
        }

        /// <summary>
        /// Where Convert-VDisk writes: <paramref name="destination"/> as a file; inside it when it is an
        /// existing folder; beside the source when omitted. A folder or omitted destination takes the
        /// source's name with the target format's extension.
        /// </summary>
        public static string ConvertDestination(string sourcePath, string destination, DiskFormat? explicitFormat, out DiskFormat targetFormat, FormatRegistry registry = null)
        {
            registry = registry ?? FormatRegistry.Default;
            string source = Path.GetFullPath(sourcePath);
            string folder = null;
            if (string.IsNullOrEmpty(destination))
            {
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
                throw new ImageOptionException(source, "format", "-Format is required when the destination is a folder or omitted");
            }

            targetFormat = explicitFormat.Value;
            string name = Path.GetFileNameWithoutExtension(source) + registry.DefaultExtension(targetFormat);
            string result = Path.Combine(folder, name);
            if (ImageChain.PathComparer.Equals(Path.GetFullPath(result), source))
            {
                throw new ImageOptionException(source, "destination", "the destination would overwrite the source; give -Destination");
            }

            return result;
        }
    }
}
