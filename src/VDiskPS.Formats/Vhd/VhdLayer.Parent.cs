using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text;

namespace VDiskPS.Formats.Vhd
{
    /// <summary>Differencing disks: parent locators, parent identity, and rebase.</summary>
    public sealed partial class VhdLayer : IParentChangeableLayer
    {
        /// <summary>Longest locator data read (a Windows long path is at most 32767 UTF-16 units).</summary>
        private const int MaxLocatorBytes = 65536;

        /// <summary>The paths a differencing disk records: relative (W2ru) and absolute (W2ku), Windows style.</summary>
        internal sealed class ParentPaths
        {
            public ParentPaths(string childPath, BackingReference backing)
            {
                Absolute = backing.Resolve(childPath);
                string recorded = backing.RecordedPath.Replace('/', '\\');
                Relative = IsRooted(backing.RecordedPath) ? RelativeTo(childPath, Absolute) : recorded;
                if (!Relative.StartsWith(".", StringComparison.Ordinal) && !IsRooted(Relative))
                {
                    Relative = ".\\" + Relative;
                }

                FileName = System.IO.Path.GetFileName(Absolute);
            }

            public string Absolute { get; }

            public string Relative { get; }

            public string FileName { get; }
        }

        public void SetBacking(BackingReference backing, ImageLayer parent)
        {
            EnsureWritable();
            if (IsFixed)
            {
                throw new ImageNotSupportedException(Path, "disk type", null, "a fixed VHD cannot have a parent; convert it to a differencing VHD instead");
            }

            if (backing == null)
            {
                // Dropping the parent makes the disk dynamic; present sectors stay as they are.
                _footer.DiskType = VhdDiskType.Dynamic;
                _header.ParentUniqueId = new byte[16];
                _header.ParentTimestamp = 0;
                _header.ParentName = string.Empty;
                foreach (var locator in _header.Locators)
                {
                    locator.PlatformCode = 0;
                    locator.DataSpace = 0;
                    locator.DataLength = 0;
                    locator.DataOffset = 0;
                }

                _backing = null;
            }
            else
            {
                if (parent != null && !(parent is VhdLayer))
                {
                    throw new ImageNotSupportedException(Path, "parent", null, $"the parent of a differencing VHD must be a VHD, not {parent.Format.ToName()}");
                }

                var paths = new ParentPaths(Path, backing);
                _footer.DiskType = VhdDiskType.Differencing;
                _nextFree = WriteParentLocators(_file, _header, paths, (VhdLayer)parent, _nextFree);
                _backing = BackingFrom(paths);
            }

            WriteMetadata();
        }

        /// <summary>Fills the header's parent fields and writes the locator data at <paramref name="dataOffset"/>; returns the end.</summary>
        internal static long WriteParentLocators(HostFile file, VhdDynamicHeader header, ParentPaths paths, VhdLayer parent, long dataOffset)
        {
            header.ParentUniqueId = parent?.UniqueIdBytes ?? new byte[16];
            header.ParentTimestamp = parent != null ? VhdFooter.FromDateTime(File.GetLastWriteTimeUtc(parent.Path)) : 0;
            header.ParentName = paths.FileName;
            foreach (var locator in header.Locators)
            {
                locator.PlatformCode = 0;
                locator.DataSpace = 0;
                locator.DataLength = 0;
                locator.DataOffset = 0;
            }

            var entries = new[] { (VhdParentLocator.WindowsRelative, paths.Relative), (VhdParentLocator.WindowsAbsolute, paths.Absolute) };
            for (int i = 0; i < entries.Length; i++)
            {
                byte[] data = Encoding.Unicode.GetBytes(entries[i].Item2);
                long space = RoundUp(Math.Max(data.Length, 1), SectorSize);
                var padded = new byte[space];
                data.CopyTo(padded, 0);
                file.WriteAt(dataOffset, padded);
                header.Locators[i].PlatformCode = entries[i].Item1;
                header.Locators[i].DataSpace = (uint)space;
                header.Locators[i].DataLength = (uint)data.Length;
                header.Locators[i].DataOffset = (ulong)dataOffset;
                dataOffset += space;
            }

            return dataOffset;
        }

        internal static BackingReference BackingFrom(ParentPaths paths)
            => new BackingReference(paths.Relative, VhdDriver.Id) { AlternatePaths = new[] { paths.Absolute } };

        private BackingReference ReadBacking(OpenOptions options)
        {
            string relative = null;
            string absolute = null;
            string mac = null;
            long length = _file.Length;
            for (int i = 0; i < _header.Locators.Length; i++)
            {
                VhdParentLocator locator = _header.Locators[i];
                bool known = locator.PlatformCode == VhdParentLocator.WindowsRelative || locator.PlatformCode == VhdParentLocator.WindowsAbsolute || locator.PlatformCode == VhdParentLocator.MacX;
                if (!known || locator.DataLength == 0)
                {
                    continue;
                }

                long entryOffset = (long)_footer.DataOffset + 576 + (i * 24);
                if (locator.DataLength > MaxLocatorBytes || locator.DataOffset > (ulong)(length - locator.DataLength))
                {
                    throw new ImageCorruptException(Path, $"parent locator {i}", entryOffset, $"{locator.DataLength} bytes at {locator.DataOffset} are outside the file or longer than a path can be");
                }

                var data = new byte[locator.DataLength];
                _file.ReadExactly((long)locator.DataOffset, data, $"parent locator {i} data");
                string text = VhdDynamicHeader.TrimAtNul(locator.PlatformCode == VhdParentLocator.MacX ? Encoding.UTF8.GetString(data) : Encoding.Unicode.GetString(data));
                if (text.Any(c => c < 0x20 || c == '\uFFFD'))
                {
                    throw new ImageCorruptException(Path, $"parent locator {i}", entryOffset, "the recorded parent path contains control characters or invalid text");
                }

                if (locator.PlatformCode == VhdParentLocator.WindowsRelative)
                {
                    relative = relative ?? text;
                }
                else if (locator.PlatformCode == VhdParentLocator.WindowsAbsolute)
                {
                    absolute = absolute ?? text;
                }
                else
                {
                    mac = mac ?? (text.StartsWith("file://", StringComparison.OrdinalIgnoreCase) ? Uri.UnescapeDataString(text.Substring(7)) : text);
                }
            }

            string name = _header.ParentName;
            if (name.Any(c => c < 0x20))
            {
                name = string.Empty;
            }

            var all = new[] { relative, absolute, mac, name }.Where(p => !string.IsNullOrEmpty(p)).Distinct().ToList();
            if (all.Count == 0)
            {
                throw new ImageCorruptException(Path, "parent locators", (long)_footer.DataOffset + 576, "this differencing disk records no parent path");
            }

            var allowed = options.AllowExternalPaths ? all : all.Where(p => !IsRooted(p) && !HasParentSegment(p)).ToList();
            if (allowed.Count == 0)
            {
                throw new ImageChainException(Path, "parent locators", $"the recorded parent paths ({string.Join(", ", all)}) lie outside the image's directory, which is not allowed here");
            }

            return new BackingReference(allowed[0], VhdDriver.Id) { AlternatePaths = allowed.Skip(1).ToArray() };
        }

        /// <summary>The parent found on disk must be the one this disk was made from (its footer unique id).</summary>
        private void VerifyParentIdentity(OpenOptions options)
        {
            // An all-zero parent id was recorded without the parent at hand (unsafe create): nothing to compare.
            string parentPath = _backing.ResolveExisting(Path);
            if (_header.ParentUniqueId.All(b => b == 0) || !File.Exists(parentPath) || ImageChain.PathComparer.Equals(parentPath, Path))
            {
                return;
            }

            byte[] id;
            try
            {
                using (var parentFile = HostFile.Open(parentPath, HostAccess.ReadIgnoringWriters))
                {
                    id = ReadFooter(parentFile).UniqueId;
                }
            }
            catch (ImageException e) when (!(e is ImageLockedException))
            {
                throw new ImageChainException(Path, "parent", $"the parent '{parentPath}' is not a readable VHD: {e.Reason}", e);
            }

            if (!id.AsSpan().SequenceEqual(_header.ParentUniqueId) && !options.IgnoreParentMismatch)
            {
                throw new ImageParentMismatchException(Path, "parent unique id", parentPath,
                    $"the parent '{parentPath}' has unique id {VhdFooter.ToGuid(id)}, but this differencing disk was made from {VhdFooter.ToGuid(_header.ParentUniqueId)}; its content may have changed");
            }
        }

        /// <summary>The footer of any VHD: at the end for fixed disks, the copy at 0 for dynamic ones.</summary>
        internal static VhdFooter ReadFooter(HostFile file)
        {
            long length = file.Length;
            if (length < VhdFooter.Length)
            {
                throw new ImageFormatMismatchException(file.Path, "footer", 0, "not a VHD: the file is shorter than a footer");
            }

            var buffer = new byte[VhdFooter.Length];
            file.ReadExactly(length - VhdFooter.Length, buffer, "footer");
            if (VhdFooter.HasCookie(buffer))
            {
                return VhdFooter.Parse(buffer, file.Path, length - VhdFooter.Length);
            }

            file.ReadExactly(0, buffer, "footer copy");
            return VhdFooter.Parse(buffer, file.Path, 0);
        }

        private static bool IsRooted(string path)
        {
            string p = path.Replace('\\', '/');
            return p.StartsWith("/", StringComparison.Ordinal) || (p.Length >= 2 && p[1] == ':') || System.IO.Path.IsPathRooted(p);
        }

        private static bool HasParentSegment(string path) => path.Replace('\\', '/').Split('/').Any(s => s == "..");

        private static string RelativeTo(string childPath, string target)
        {
            string dir = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(childPath)) ?? string.Empty;
            return (PathPlanner.RelativePath(dir, target) ?? target).Replace('/', '\\');
        }
    }
}
