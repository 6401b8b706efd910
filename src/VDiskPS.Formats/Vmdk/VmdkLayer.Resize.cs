using System;
using System.Globalization;

namespace VDiskPS.Formats.Vmdk
{
    // Resize (qemu-img resize, which qemu's vmdk driver lacks): the last extent grows or shrinks; the
    // twoGbMaxExtent subformats fill their last extent to 2 GiB and then add NAME-s/fNNN.vmdk files.
    internal partial class VmdkLayer : IResizableLayer
    {
        public void Resize(long newSize, bool allowShrink, Preallocation preallocation)
        {
            EnsureWritable();
            newSize = (newSize + SparseHeader.SectorSize - 1) / SparseHeader.SectorSize * SparseHeader.SectorSize;
            if (newSize == _size)
            {
                return;
            }

            if (newSize < _size && !allowShrink)
            {
                throw ImageOptionException.ShrinkNotAllowed(Path, _size, newSize);
            }

            if (newSize > (1L << 40) * SparseHeader.SectorSize)
            {
                throw new ImageOptionException(Path, "size", "the size must not exceed 512 TiB");
            }

            if (_extents.Exists(e => e.Compressed || e is ZeroExtent))
            {
                throw ImageNotSupportedException.Capability(VmdkDriver.Id, $"resizing {Descriptor.CreateType} disks", Path);
            }

            MarkContentChanged(0, _size);
            bool split = Descriptor.CreateType == VmdkCreateOptions.TwoGbMaxExtentSparse || Descriptor.CreateType == VmdkCreateOptions.TwoGbMaxExtentFlat;
            long newSectors = newSize / SparseHeader.SectorSize;
            if (newSize < _size)
            {
                Shrink(newSectors);
            }
            else
            {
                Grow(newSectors, split, preallocation);
            }

            long start = 0;
            _extentStarts = new long[_extents.Count];
            for (int i = 0; i < _extents.Count; i++)
            {
                _extentStarts[i] = start;
                start += _extents[i].Length;
            }

            _size = start;
            if (_descriptorCapacity > 0 && Descriptor.Extents.Count == 1)
            {
                Descriptor.Extents[0].Sectors = newSectors;
            }

            long heads = long.TryParse(Descriptor.GetDatabase("ddb.geometry.heads"), NumberStyles.None, CultureInfo.InvariantCulture, out long h) && h > 0 ? h : 16;
            long sectorsPerTrack = long.TryParse(Descriptor.GetDatabase("ddb.geometry.sectors"), NumberStyles.None, CultureInfo.InvariantCulture, out long s) && s > 0 ? s : 63;
            Descriptor.SetDatabase("ddb.geometry.cylinders", (newSectors / (heads * sectorsPerTrack)).ToString(CultureInfo.InvariantCulture));
            WriteDescriptor();
            Flush();
        }

        private void Shrink(long newSectors)
        {
            long start = 0;
            int keep = 0;
            while (keep < _extents.Count && start + _extents[keep].Line.Sectors < newSectors)
            {
                start += _extents[keep].Line.Sectors;
                keep++;
            }

            if (keep < _extents.Count - 1)
            {
                throw ImageNotSupportedException.Capability(VmdkDriver.Id, "shrinking a disk by whole extents", Path);
            }

            ResizeExtent(_extents[keep], newSectors - start, Preallocation.Off);
        }

        private void Grow(long newSectors, bool split, Preallocation preallocation)
        {
            long remaining = newSectors - _size / SparseHeader.SectorSize;
            VmdkExtent last = _extents[_extents.Count - 1];
            long room = split ? Math.Max(0, SplitExtentSectors - last.Line.Sectors) : remaining;
            long growth = Math.Min(room, remaining);
            if (growth > 0)
            {
                ResizeExtent(last, last.Line.Sectors + growth, preallocation);
                remaining -= growth;
            }

            while (remaining > 0)
            {
                long sectors = Math.Min(SplitExtentSectors, remaining);
                AddSplitExtent(sectors, preallocation);
                remaining -= sectors;
            }
        }

        private void ResizeExtent(VmdkExtent extent, long sectors, Preallocation preallocation)
        {
            if (extent is SparseExtent sparse)
            {
                sparse.Resize(sectors);
                return;
            }

            long oldEnd = extent.Line.Offset * SparseHeader.SectorSize + extent.Length;
            long newEnd = extent.Line.Offset * SparseHeader.SectorSize + sectors * SparseHeader.SectorSize;
            extent.Line.Sectors = sectors;
            if (newEnd > extent.File.Length)
            {
                extent.File.Preallocate(oldEnd, newEnd - oldEnd, preallocation);
            }
            else if (newEnd < oldEnd && oldEnd >= extent.File.Length)
            {
                extent.File.SetLength(newEnd);
            }
        }

        private void AddSplitExtent(long sectors, Preallocation preallocation)
        {
            bool sparse = _extents[0] is SparseExtent;
            string directory = System.IO.Path.GetDirectoryName(Path);
            string stem = System.IO.Path.GetFileNameWithoutExtension(Path);
            string extension = System.IO.Path.GetExtension(Path);
            extension = extension.Length == 0 ? ".vmdk" : extension;
            string name = stem + (sparse ? "-s" : "-f") + (_extents.Count + 1).ToString("000", CultureInfo.InvariantCulture) + extension;
            HostFile file = HostFile.Create(System.IO.Path.Combine(directory, name), overwrite: false);
            _files.Add(file);
            var line = new ExtentLine { Sectors = sectors, FileName = name, Type = sparse ? "SPARSE" : "FLAT" };
            VmdkExtent extent;
            if (sparse)
            {
                var first = (SparseExtent)_extents[0];
                extent = SparseExtent.CreateSparse(line, file, sectors, (long)first.Header.GrainSize, first.Header.ZeroedGrainEntries, 0);
            }
            else
            {
                AllocateFlat(file, sectors * SparseHeader.SectorSize, preallocation);
                extent = new FlatExtent(line, file);
            }

            _extents.Add(extent);
            Descriptor.Extents.Add(line);
        }
    }
}
