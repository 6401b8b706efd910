using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.IO;

namespace VDiskPS.Formats.Vhdx
{
    // The parent of a differencing image: the parent locator ([MS-VHDX] 2.6.2.6) and its linkage check.
    public sealed partial class VhdxLayer : IParentChangeableLayer, IParentIdentityLayer
    {
        internal const string RelativePathKey = "relative_path";
        internal const string VolumePathKey = "volume_path";
        internal const string AbsolutePathKey = "absolute_win32_path";
        internal const string LinkageKey = "parent_linkage";
        internal const string Linkage2Key = "parent_linkage2";

        private const int MaxLocatorPathLength = 32767;

        private bool _parentPathsSettled;
        private const string ExtendedPrefix = "\\\\?\\";

        public void SetBacking(BackingReference backing, ImageLayer parent)
        {
            EnsureWritable();
            if (!_metadata.HasParent)
            {
                throw ImageNotSupportedException.Capability(VhdxDriver.Id, "adding a parent to a fixed or dynamic image", Path);
            }

            if (backing == null)
            {
                throw ImageNotSupportedException.Capability(VhdxDriver.Id, "removing the parent of a differencing image (convert it instead)", Path);
            }

            Guid linkage = ParentLinkageFor(backing, parent, Path);

            // The opened Parent (if any) is the old one: its path must not be written back.
            _parentPathsSettled = true;
            CommitParentLocator(BuildParentLocator(backing.RecordedPath, Path, linkage));
            _backing = ReadParentLocator(new OpenOptions());
        }

        /// <summary>
        /// Records the DataWriteGuid the parent takes for the change as parent_linkage, which the parent then
        /// writes at once, and its current one as parent_linkage2, which [MS-VHDX] 2.6.2.6.3 keeps "to recover
        /// from a failed merge". The linkage check accepts either; libvhdi, which compares parent_linkage alone,
        /// reads the chain at every moment but the one between the two writes.
        /// </summary>
        public void AcceptParentChange(ImageLayer parent)
        {
            EnsureWritable();
            if (!_metadata.HasParent)
            {
                return;
            }

            if (parent == null)
            {
                throw new ArgumentNullException(nameof(parent));
            }

            Guid current = ParentLinkageFor(_backing, parent, Path);
            var vhdxParent = (VhdxLayer)parent;
            var locator = new List<KeyValuePair<string, string>>
            {
                new KeyValuePair<string, string>(LinkageKey, vhdxParent.PrepareDataWriteGuid().ToString("B")),
                new KeyValuePair<string, string>(Linkage2Key, current.ToString("B")),
            };
            locator.AddRange(_metadata.ParentLocator.FindAll(entry => entry.Key != LinkageKey && entry.Key != Linkage2Key));
            CommitParentLocator(locator);
            vhdxParent.BeginModification(userVisible: true);
        }

        /// <summary>Pins the parent's DataWriteGuid from before the change (parent_linkage2) again: this image did not follow it.</summary>
        public void AbandonParentChange()
        {
            EnsureWritable();
            string previous = _metadata.HasParent ? _metadata.GetLocator(Linkage2Key) : null;
            if (previous != null)
            {
                var locator = new List<KeyValuePair<string, string>> { new KeyValuePair<string, string>(LinkageKey, previous) };
                locator.AddRange(_metadata.ParentLocator.FindAll(entry => entry.Key != LinkageKey && entry.Key != Linkage2Key));
                CommitParentLocator(locator);
            }
        }

        private void CommitParentLocator(List<KeyValuePair<string, string>> locator)
        {
            _metadata.ParentLocator = locator;
            BeginModification(userVisible: false);
            QueueMetadataRewrite();
            CommitMetadata();
        }

        /// <summary>The DataWriteGuid a child of <paramref name="parent"/> records; the parent must be VHDX.</summary>
        internal static Guid ParentLinkageFor(BackingReference backing, ImageLayer parent, string childPath)
        {
            if (backing.Format.HasValue && backing.Format.Value != VhdxDriver.Id)
            {
                throw new ImageNotSupportedException(childPath, "parent format", null, $"the parent of a differencing VHDX must be a VHDX image, not {backing.Format.Value.ToName()}");
            }

            if (parent != null)
            {
                if (!(parent is VhdxLayer vhdxParent))
                {
                    throw new ImageNotSupportedException(childPath, "parent format", null, $"the parent of a differencing VHDX must be a VHDX image, not {parent.Format.ToName()}");
                }

                return vhdxParent.DataWriteGuid;
            }

            // Without an opened parent (unsafe create), record the parent's identity when it can be read.
            string resolved = backing.Resolve(childPath);
            return File.Exists(resolved) ? ReadDataWriteGuid(resolved, HostAccess.Read, childPath) : Guid.Empty;
        }

        /// <summary>The locator Hyper-V writes: parent_linkage, relative_path and absolute_win32_path.</summary>
        internal static List<KeyValuePair<string, string>> BuildParentLocator(string recordedPath, string childPath, Guid linkage)
        {
            string childDirectory = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(childPath)) ?? string.Empty;
            string absolute = BackingReference.ResolveAgainst(childDirectory, recordedPath);
            return new List<KeyValuePair<string, string>>
            {
                new KeyValuePair<string, string>(LinkageKey, linkage.ToString("B")),
                new KeyValuePair<string, string>(RelativePathKey, RelativeWindowsPath(childDirectory, absolute)),
                new KeyValuePair<string, string>(AbsolutePathKey, ExtendedLengthPath(absolute)),
            };
        }

        /// <summary>absolute_win32_path is an extended-length path ("\\?\d:\dir\file.vhdx") on Windows; elsewhere the plain full path.</summary>
        private static string ExtendedLengthPath(string fullPath)
        {
            if (System.IO.Path.DirectorySeparatorChar != '\\' || fullPath.StartsWith(ExtendedPrefix, StringComparison.Ordinal))
            {
                return fullPath;
            }

            return fullPath.StartsWith("\\\\", StringComparison.Ordinal) ? ExtendedPrefix + "UNC\\" + fullPath.Substring(2) : ExtendedPrefix + fullPath;
        }

        /// <summary>The path as a Hyper-V user reads it, without the extended-length prefix.</summary>
        internal static string WithoutExtendedPrefix(string path)
        {
            if (!path.StartsWith(ExtendedPrefix, StringComparison.Ordinal))
            {
                return path;
            }

            string rest = path.Substring(ExtendedPrefix.Length);
            return rest.StartsWith("UNC\\", StringComparison.OrdinalIgnoreCase) ? "\\\\" + rest.Substring(4) : rest;
        }

        /// <summary>".\name.vhdx" or "..\dir\name.vhdx", as Hyper-V records relative_path.</summary>
        private static string RelativeWindowsPath(string fromDirectory, string toFile)
        {
            string relative = PathPlanner.RelativePath(fromDirectory, toFile)?.Replace('/', '\\');
            if (relative == null)
            {
                return toFile;
            }

            return relative.StartsWith("..", StringComparison.Ordinal) ? relative : ".\\" + relative;
        }

        private BackingReference ReadParentLocator(OpenOptions options)
        {
            long locatorOffset = _metadataRegion.FileOffset;
            if (_metadata.ParentLocatorType != VhdxConstants.VhdxParentLocatorType)
            {
                throw new ImageNotSupportedException(Path, "parent locator type", locatorOffset, $"locator type {_metadata.ParentLocatorType} is not the VHDX parent locator");
            }

            string relative = LocatorPath(RelativePathKey);
            string absolute = LocatorPath(AbsolutePathKey);
            string volume = LocatorPath(VolumePathKey);
            string main = relative ?? absolute ?? volume;
            if (main == null)
            {
                throw new ImageCorruptException(Path, "parent locator", locatorOffset, "the locator records no relative_path, absolute_win32_path or volume_path");
            }

            var alternates = new List<string>();
            if (!options.AllowExternalPaths)
            {
                if (relative == null || !IsInsideTree(relative))
                {
                    throw new ImageChainException(Path, RelativePathKey, $"the parent path '{relative ?? main}' leads outside the image's directory, which is not allowed here");
                }

                main = relative;
            }
            else
            {
                foreach (string candidate in new[] { volume, absolute })
                {
                    if (candidate != null && candidate != main)
                    {
                        alternates.Add(candidate);
                    }
                }
            }

            return new BackingReference(main, VhdxDriver.Id) { AlternatePaths = alternates };
        }

        private string LocatorPath(string key)
        {
            string value = _metadata.GetLocator(key);
            if (value == null)
            {
                return null;
            }

            if (value.Length > MaxLocatorPathLength)
            {
                throw new ImageCorruptException(Path, $"parent locator {key}", _metadataRegion.FileOffset, $"the path is {value.Length} characters long");
            }

            foreach (char c in value)
            {
                if (c < ' ' || c == '"' || c == '<' || c == '>' || c == '|' || c == '*')
                {
                    throw new ImageCorruptException(Path, $"parent locator {key}", _metadataRegion.FileOffset, $"the path contains the character U+{(int)c:X4}, which no file name may hold");
                }
            }

            return value;
        }

        private static bool IsInsideTree(string relative)
        {
            string normalized = relative.Replace('\\', '/');
            if (normalized.StartsWith("/", StringComparison.Ordinal) || normalized.Contains(":"))
            {
                return false;
            }

            foreach (string segment in normalized.Split('/'))
            {
                if (segment == "..")
                {
                    return false;
                }
            }

            return true;
        }

        private void CheckParentLinkage(OpenOptions options)
        {
            string stored = _metadata.GetLocator(LinkageKey);
            if (stored == null || !Guid.TryParse(stored, out Guid linkage))
            {
                throw new ImageCorruptException(Path, "parent locator parent_linkage", _metadataRegion.FileOffset, stored == null ? "the entry is missing" : $"'{stored}' is not a GUID");
            }

            Guid? linkage2 = Guid.TryParse(_metadata.GetLocator(Linkage2Key) ?? string.Empty, out Guid second) ? second : (Guid?)null;
            string parentPath;
            try
            {
                parentPath = _backing.ResolveExisting(Path);
            }
            catch (Exception e) when (e is ArgumentException || e is NotSupportedException || e is PathTooLongException)
            {
                throw new ImageChainException(Path, RelativePathKey, $"the parent path '{_backing.RecordedPath}' is not a valid path: {e.Message}", e);
            }

            if (!File.Exists(parentPath))
            {
                // A missing parent is the chain's error to report, with the path it looked for.
                return;
            }

            Guid actual = ReadDataWriteGuid(parentPath, options.ShareWithWriters ? HostAccess.ReadIgnoringWriters : HostAccess.Read, Path);
            if (actual != linkage && actual != linkage2)
            {
                throw new ImageParentMismatchException(Path, LinkageKey, parentPath,
                    $"the parent '{parentPath}' has DataWriteGuid {actual:B} but this image was made from {linkage:B}: the parent changed since");
            }
        }

        /// <summary>Reads the current header's DataWriteGuid of a VHDX file (the parent linkage a child records).</summary>
        internal static Guid ReadDataWriteGuid(string path, HostAccess access, string childPath)
        {
            using (HostFile file = HostFile.Open(path, access))
            {
                Span<byte> signature = stackalloc byte[8];
                if (file.ReadAt(0, signature) != 8 || BinaryPrimitives.ReadUInt64LittleEndian(signature) != VhdxConstants.FileSignature)
                {
                    throw new ImageChainException(childPath, "parent", $"the parent '{path}' is not a VHDX image");
                }

                var block = new byte[VhdxConstants.HeaderLength];
                VhdxHeader best = null;
                foreach (long at in new[] { VhdxConstants.Header1Offset, VhdxConstants.Header2Offset })
                {
                    if (file.ReadAt(at, block) == block.Length)
                    {
                        VhdxHeader header = VhdxHeader.TryParse(block, out _);
                        if (header != null && (best == null || header.SequenceNumber > best.SequenceNumber))
                        {
                            best = header;
                        }
                    }
                }

                return best?.DataWriteGuid ?? throw new ImageCorruptException(path, "header", VhdxConstants.Header1Offset, "neither header is valid");
            }
        }

        /// <summary>
        /// When the chain found the parent somewhere other than the recorded relative path, relative_path (and,
        /// on Windows, absolute_win32_path) is brought up to date with the next metadata commit ([MS-VHDX]
        /// 2.6.2.6.3: "update any existing stale path entries"). Other entries stay as they are, so a Win32 path
        /// recorded by Hyper-V survives a write on another system. Only images already being changed are touched.
        /// </summary>
        private void RefreshStaleParentPaths()
        {
            if (!_metadata.HasParent || Parent == null || _parentPathsSettled)
            {
                return;
            }

            _parentPathsSettled = true;
            string childDirectory = System.IO.Path.GetDirectoryName(Path) ?? string.Empty;
            string relative = _metadata.GetLocator(RelativePathKey);
            if (relative != null && SamePath(BackingReference.ResolveAgainst(childDirectory, relative), Parent.Path))
            {
                return;
            }

            var locator = new List<KeyValuePair<string, string>>();
            bool onWindows = System.IO.Path.DirectorySeparatorChar == '\\';
            foreach (var entry in _metadata.ParentLocator)
            {
                if (entry.Key != RelativePathKey && !(onWindows && entry.Key == AbsolutePathKey))
                {
                    locator.Add(entry);
                }
            }

            locator.Add(new KeyValuePair<string, string>(RelativePathKey, RelativeWindowsPath(childDirectory, Parent.Path)));
            if (onWindows)
            {
                locator.Add(new KeyValuePair<string, string>(AbsolutePathKey, ExtendedLengthPath(Parent.Path)));
            }

            _metadata.ParentLocator = locator;
            QueueMetadataRewrite();
            _backing = ReadParentLocator(new OpenOptions());
        }

        private static bool SamePath(string a, string b)
            => string.Equals(System.IO.Path.GetFullPath(a), System.IO.Path.GetFullPath(b), System.IO.Path.DirectorySeparatorChar == '\\' ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal);

        /// <summary>Queues the whole metadata table and items for the next commit.</summary>
        private void QueueMetadataRewrite()
        {
            byte[] region = _metadata.Build(_metadataRegion.Length);
            for (int at = 0; at < region.Length; at += VhdxConstants.LogSectorLength)
            {
                _pendingPages[_metadataRegion.FileOffset + at] = region.AsSpan(at, VhdxConstants.LogSectorLength).ToArray();
            }
        }
    }
}
