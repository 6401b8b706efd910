using System;
using System.Collections.Generic;
using System.IO;
using System.Text;

namespace VDiskPS.Formats.Vmdk
{
    // Opening: a file starting with the sparse magic is a monolithic disk (its own single extent, with
    // the descriptor embedded); anything else is a descriptor file naming its extents, resolved against
    // the descriptor's directory.
    internal partial class VmdkLayer
    {
        private static readonly string[] s_unsupportedExtentTypes = { "VMFSRDM", "VMFSRAW" };

        internal static VmdkLayer Open(string path, OpenOptions options) => Open(HostFile.Open(Transports.GetFullLocation(path), options.Access), options);

        internal static VmdkLayer Open(HostFile main, OpenOptions options)
        {
            string path = Transports.GetFullLocation(main.Path);
            var files = new List<HostFile> { main };
            try
            {
                byte[] head = new byte[4];
                int n = main.ReadAt(0, head);
                if (n == 4 && (SparseHeader.HasMagic(head) || SparseHeader.HasCowdMagic(head)))
                {
                    return OpenMonolithic(path, main, files, options);
                }

                return OpenDescriptorFile(path, main, files, options);
            }
            catch
            {
                foreach (var file in files)
                {
                    file.Dispose();
                }

                throw;
            }
        }

        private static VmdkLayer OpenMonolithic(string path, HostFile main, List<HostFile> files, OpenOptions options)
        {
            SparseHeader header = SparseExtent.ReadHeader(main);
            VmdkDescriptor descriptor = null;
            long descriptorOffset = 0;
            long descriptorCapacity = 0;
            if (header.DescriptorOffset > 0 && header.DescriptorSize > 0)
            {
                if (header.DescriptorSize > VmdkDescriptor.MaxSize / SparseHeader.SectorSize || header.DescriptorOffset > (ulong)(main.Length / SparseHeader.SectorSize))
                {
                    throw new ImageCorruptException(path, "sparse header descriptorSize", 36, $"the embedded descriptor ({header.DescriptorSize} sectors at sector {header.DescriptorOffset}) is out of bounds");
                }

                descriptorOffset = (long)header.DescriptorOffset * SparseHeader.SectorSize;
                descriptorCapacity = (long)header.DescriptorSize * SparseHeader.SectorSize;
                byte[] raw = new byte[descriptorCapacity];
                main.ReadExactly(descriptorOffset, raw, "embedded descriptor");
                int end = Array.IndexOf(raw, (byte)0);
                string text = Encoding.UTF8.GetString(raw, 0, end < 0 ? raw.Length : end);
                if (text.Trim().Length > 0)
                {
                    descriptor = VmdkDescriptor.Parse(text, path, descriptorOffset);
                }
            }

            bool embedded = descriptor != null;
            if (!embedded)
            {
                // A bare sparse extent (one piece of a twoGbMaxExtentSparse disk) opened on its own: it
                // has no descriptor of its own to update.
                descriptor = new VmdkDescriptor { CreateType = DefaultCreateType(header) };
                descriptorCapacity = 0;
            }

            var line = new ExtentLine { Sectors = (long)header.Capacity, Type = "SPARSE", FileName = System.IO.Path.GetFileName(path) };
            VmdkExtent extent = OpenSparse(line, main, header);
            extent.DescribedType = string.Empty;
            descriptor.CreateType = descriptor.CreateType ?? DefaultCreateType(header);
            return new VmdkLayer(path, options.Writable, descriptor, new List<VmdkExtent> { extent }, files, embedded ? main : null, descriptorOffset, descriptorCapacity, options.IgnoreParentMismatch);
        }

        private static VmdkLayer OpenDescriptorFile(string path, HostFile main, List<HostFile> files, OpenOptions options)
        {
            long length = main.Length;
            if (length > VmdkDescriptor.MaxSize)
            {
                throw new ImageFormatMismatchException(path, "descriptor", 0, $"a {length}-byte file without the sparse magic is too large to be a VMDK descriptor");
            }

            byte[] raw = new byte[length];
            main.ReadExactly(0, raw, "descriptor");
            if (!VmdkDescriptor.LooksLikeDescriptor(raw))
            {
                throw new ImageFormatMismatchException(path, "descriptor", 0, "the file is neither a VMDK sparse extent nor a VMDK descriptor");
            }

            int textEnd = Array.IndexOf(raw, (byte)0);
            VmdkDescriptor descriptor = VmdkDescriptor.Parse(Encoding.UTF8.GetString(raw, 0, textEnd < 0 ? raw.Length : textEnd), path, 0);
            if (descriptor.Extents.Count == 0)
            {
                throw new ImageCorruptException(path, "descriptor extents", 0, "the descriptor lists no extents");
            }

            long totalSectors = 0;
            foreach (var line in descriptor.Extents)
            {
                totalSectors += line.Sectors;
                if (totalSectors > (1L << 40))
                {
                    throw new ImageCorruptException(path, "descriptor extents", 0, "the extents add up to more than 2^40 sectors");
                }
            }

            string directory = System.IO.Path.GetDirectoryName(path);
            var byPath = new Dictionary<string, HostFile>(ImageChain.PathComparer) { [path] = main };
            var extents = new List<VmdkExtent>();
            foreach (var line in descriptor.Extents)
            {
                extents.Add(OpenExtent(path, directory, line, byPath, files, options));
            }

            return new VmdkLayer(path, options.Writable, descriptor, extents, files, main, 0, 0, options.IgnoreParentMismatch);
        }

        private static VmdkExtent OpenExtent(string descriptorPath, string directory, ExtentLine line, Dictionary<string, HostFile> byPath, List<HostFile> files, OpenOptions options)
        {
            if (line.Type == "ZERO")
            {
                return new ZeroExtent(line);
            }

            if (Array.IndexOf(s_unsupportedExtentTypes, line.Type) >= 0)
            {
                throw new ImageNotSupportedException(descriptorPath, "extent type", null, $"{line.Type} extents ('{line.FileName}', raw device mappings) are not supported: they name a device, not a file");
            }

            string full = Transports.IsRemote(descriptorPath)
                ? ResolveRemoteExtent(descriptorPath, line.FileName, options.AllowExternalExtents)
                : ResolveExtentPath(descriptorPath, directory, line.FileName, options.AllowExternalExtents);
            if (!byPath.TryGetValue(full, out HostFile file))
            {
                if (!Transports.Exists(full))
                {
                    throw new ImageIOException(full, $"extent file '{line.FileName}' named by the descriptor {descriptorPath} does not exist");
                }

                file = HostFile.Open(full, options.Access);
                files.Add(file);
                byPath[full] = file;
            }

            if (file.IsSequential && line.Type != "SPARSE")
            {
                throw file.RandomAccessRefused();
            }

            if (line.Type == "SESPARSE")
            {
                return SeSparseExtent.Open(line, file);
            }

            if (line.Type == "SPARSE" || line.Type == "VMFSSPARSE")
            {
                SparseHeader header = SparseExtent.ReadHeader(file);
                return OpenSparse(line, file, header);
            }

            return new FlatExtent(line, file);
        }

        /// <summary>A sparse extent; from a source read front to back only, a streamOptimized one read by its markers (<see cref="SparseExtent.ReadHeader"/> has refused every other header there).</summary>
        private static VmdkExtent OpenSparse(ExtentLine line, HostFile file, SparseHeader header)
            => file.IsSequential ? new StreamReadExtent(line, file, header) : (VmdkExtent)SparseExtent.Open(line, file, header);

        private static string DefaultCreateType(SparseHeader header)
            => header.IsCowd ? "vmfsSparse" : header.Compressed ? VmdkCreateOptions.StreamOptimized : VmdkCreateOptions.MonolithicSparse;

        /// <summary>An extent file name against a remote descriptor's location (a URL beside it); names that leave its folder are refused unless allowed.</summary>
        private static string ResolveRemoteExtent(string descriptorPath, string fileName, bool allowExternal)
        {
            string full = Transports.Resolve(descriptorPath, fileName, BackingReference.ResolveAgainst);
            string folder = Transports.Resolve(descriptorPath, ".", BackingReference.ResolveAgainst);
            if (!allowExternal && !full.StartsWith(folder, StringComparison.Ordinal))
            {
                throw new ImageNotSupportedException(descriptorPath, "extent file name", null,
                    $"the extent '{fileName}' lies outside the descriptor's folder; such paths are refused unless AllowExternalExtents is set");
            }

            return full;
        }

        /// <summary>Resolves an extent file name; names that leave the descriptor's directory are refused unless allowed.</summary>
        internal static string ResolveExtentPath(string descriptorPath, string directory, string fileName, bool allowExternal)
        {
            string full = BackingReference.ResolveAgainst(directory, fileName);
            if (allowExternal)
            {
                return full;
            }

            string root = directory.EndsWith(System.IO.Path.DirectorySeparatorChar.ToString(), StringComparison.Ordinal) ? directory : directory + System.IO.Path.DirectorySeparatorChar;
            string normalized = System.IO.Path.DirectorySeparatorChar == '/' ? fileName.Replace('\\', '/') : fileName;
            if (System.IO.Path.IsPathRooted(normalized) || !full.StartsWith(root, ImageChain.PathComparer == StringComparer.Ordinal ? StringComparison.Ordinal : StringComparison.OrdinalIgnoreCase))
            {
                throw new ImageNotSupportedException(descriptorPath, "extent file name", null,
                    $"the extent '{fileName}' lies outside the descriptor's directory; such paths are refused unless AllowExternalExtents is set");
            }

            return full;
        }
    }
}
