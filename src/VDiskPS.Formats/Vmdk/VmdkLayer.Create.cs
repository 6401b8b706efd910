using System;
using System.Collections.Generic;
using System.IO;
using System.Text;

namespace VDiskPS.Formats.Vmdk
{
    // Creation of every subformat qemu-img writes, plus the ESXi-native vmfs descriptors. File names
    // follow qemu-img and VMware: NAME-flat.vmdk, NAME-s001.vmdk, NAME-f001.vmdk beside NAME.vmdk.
    internal partial class VmdkLayer
    {
        /// <summary>Sectors of the descriptor area embedded in a monolithic sparse file (as qemu-img and VMware reserve).</summary>
        private const int EmbeddedDescriptorSectors = 20;

        /// <summary>Extent size of the twoGbMaxExtent subformats, in sectors.</summary>
        private const long SplitExtentSectors = 4194304;

        internal static VmdkLayer Create(string path, CreateRequest request)
        {
            path = System.IO.Path.GetFullPath(path);
            VmdkCreateOptions options = VmdkCreateOptions.Parse(path, request);
            var descriptor = new VmdkDescriptor
            {
                Cid = NewCid(),
                ParentCid = options.Backing != null ? ParentCidFor(path, options.Backing, request.BackingLayer) : VmdkDescriptor.NoParentCid,
                CreateType = options.IsVmfs ? VmdkCreateOptions.Vmfs : options.Subformat,
                ParentFileNameHint = options.Backing?.PortablePath,
            };
            if (options.Subformat == VmdkCreateOptions.StreamOptimized || options.IsVmfs)
            {
                descriptor.Encoding = "UTF-8";
                descriptor.IsNativeSnapshot = "no";
            }

            foreach (var entry in options.DatabaseEntries())
            {
                descriptor.Database.Add(entry);
            }

            var files = new List<HostFile>();
            var created = new List<string>();
            try
            {
                VmdkLayer layer = CreateFiles(path, request, options, descriptor, files, created);
                layer.WriteDescriptor();
                layer.SetCidFresh();
                return layer;
            }
            catch
            {
                foreach (var file in files)
                {
                    file.Dispose();
                }

                foreach (string file in created)
                {
                    StagedOutput.TryDelete(file);
                }

                throw;
            }
        }

        private static VmdkLayer CreateFiles(string path, CreateRequest request, VmdkCreateOptions options, VmdkDescriptor descriptor, List<HostFile> files, List<string> created)
        {
            long sectors = options.Size / SparseHeader.SectorSize;
            string fileName = System.IO.Path.GetFileName(path);
            HostFile main = CreateFile(path, request, files, created);
            switch (options.Subformat)
            {
                case VmdkCreateOptions.MonolithicSparse:
                case VmdkCreateOptions.StreamOptimized:
                {
                    var line = new ExtentLine { Sectors = sectors, Type = "SPARSE", FileName = fileName };
                    descriptor.Extents.Add(line);
                    long descriptorBytes = (long)EmbeddedDescriptorSectors * SparseHeader.SectorSize;
                    if (options.Subformat == VmdkCreateOptions.StreamOptimized)
                    {
                        SparseExtent stream = SparseExtent.CreateStream(line, main, sectors, EmbeddedDescriptorSectors);
                        stream.DescribedType = string.Empty;
                        return new VmdkStreamLayer(path, descriptor, stream, files, main, SparseHeader.SectorSize, descriptorBytes);
                    }

                    SparseExtent extent = SparseExtent.CreateSparse(line, main, sectors, options.GrainSectors, options.ZeroedGrain, EmbeddedDescriptorSectors);
                    extent.DescribedType = string.Empty;
                    return new VmdkLayer(path, true, descriptor, new List<VmdkExtent> { extent }, files, main, SparseHeader.SectorSize, descriptorBytes, false);
                }

                default:
                {
                    var extents = new List<VmdkExtent>();
                    string directory = System.IO.Path.GetDirectoryName(path);
                    string stem = System.IO.Path.GetFileNameWithoutExtension(path);
                    string extension = System.IO.Path.GetExtension(path);
                    extension = extension.Length == 0 ? ".vmdk" : extension;
                    long pieceSectors = options.IsSplit ? SplitExtentSectors : Math.Max(sectors, 0);
                    int count = options.IsSplit ? (int)Math.Max(1, (sectors + SplitExtentSectors - 1) / SplitExtentSectors) : 1;
                    for (int i = 0; i < count; i++)
                    {
                        long extentSectors = Math.Min(pieceSectors, sectors - i * pieceSectors);
                        string suffix = options.IsSplit
                            ? (options.IsSparse ? "-s" : "-f") + (i + 1).ToString("000", System.Globalization.CultureInfo.InvariantCulture)
                            : "-flat";
                        string extentName = stem + suffix + extension;
                        HostFile file = CreateFile(System.IO.Path.Combine(directory, extentName), request, files, created);
                        var line = new ExtentLine { Sectors = extentSectors, FileName = extentName };
                        if (options.IsSparse)
                        {
                            line.Type = "SPARSE";
                            extents.Add(SparseExtent.CreateSparse(line, file, extentSectors, options.GrainSectors, options.ZeroedGrain, 0));
                        }
                        else
                        {
                            line.Type = options.IsVmfs ? "VMFS" : "FLAT";
                            AllocateFlat(file, extentSectors * SparseHeader.SectorSize, options.Preallocation);
                            extents.Add(new FlatExtent(line, file));
                        }

                        descriptor.Extents.Add(line);
                    }

                    return new VmdkLayer(path, true, descriptor, extents, files, main, 0, 0, false);
                }
            }
        }

        private static HostFile CreateFile(string path, CreateRequest request, List<HostFile> files, List<string> created)
        {
            HostFile file = request.CreateFile(path);
            files.Add(file);
            created.Add(file.Path);
            return file;
        }

        private static void AllocateFlat(HostFile file, long length, Preallocation preallocation)
        {
            file.Preallocate(0, length, preallocation);
        }

        /// <summary>The parent's CID, read from the opened parent or, without one, from the parent file.</summary>
        private static uint ParentCidFor(string path, BackingReference backing, ImageLayer parent)
        {
            if (parent != null)
            {
                return parent is VmdkLayer vmdk
                    ? vmdk.Cid
                    : throw new ImageOptionException(path, "backing_fmt", $"the parent '{parent.Path}' is {parent.Format.ToName()}; a VMDK delta disk's parent must be a VMDK");
            }

            string parentPath = backing.Resolve(path);
            if (!File.Exists(parentPath))
            {
                // An unsafe create records the name only; the CID is checked once the parent exists.
                return VmdkDescriptor.NoParentCid;
            }

            using (VmdkLayer opened = Open(parentPath, new OpenOptions()))
            {
                return opened.Cid;
            }
        }
    }
}
