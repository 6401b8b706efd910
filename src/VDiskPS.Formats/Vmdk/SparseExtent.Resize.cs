using System;

namespace VDiskPS.Formats.Vmdk
{
    // Changing a sparse extent's capacity. Growing may need a larger grain directory: it grows in place
    // while its last sector has room, else moves (with the redundant one) to the end of the file. New
    // grain tables are allocated on first write. Shrinking drops the entries past the new end.
    internal sealed partial class SparseExtent
    {
        public void Resize(long newCapacitySectors)
        {
            lock (_gate)
            {
                if (_header.Compressed || _streamWriting || _header.IsCowd)
                {
                    throw new ImageNotSupportedException(File.Path, null, null, "a streamOptimized or vmfsSparse extent cannot be resized; convert it to monolithicSparse first");
                }

                Flush();
                long grainSectors = (long)_header.GrainSize;
                long newGrains = (newCapacitySectors + grainSectors - 1) / grainSectors;
                long newTables = (newGrains + GrainsPerTable - 1) / GrainsPerTable;
                if (newTables > MaxDirectoryEntries)
                {
                    throw new ImageNotSupportedException(File.Path, "size", null, $"the extent would need {newTables} grain tables; at most {MaxDirectoryEntries} are supported");
                }

                if (newCapacitySectors < (long)_header.Capacity)
                {
                    DropGrainsFrom(newCapacitySectors, newGrains, newTables);
                }
                else if (newTables > _directory.Length)
                {
                    GrowDirectories(newTables);
                }

                _header.Capacity = (ulong)newCapacitySectors;
                Line.Sectors = newCapacitySectors;
                File.WriteAt(0, _header.ToBytes());
            }
        }

        private void DropGrainsFrom(long newCapacitySectors, long newGrains, long newTables)
        {
            long grainBytes = GrainSizeBytes;
            long newBytes = newCapacitySectors * SparseHeader.SectorSize;

            // The tail of a last, partly kept grain must read as zeros if the disk grows again.
            if (newBytes % grainBytes != 0)
            {
                GrainState last = GetGrainState(newGrains - 1);
                if (last.Kind == ExtentKind.Data)
                {
                    int keep = (int)(newBytes % grainBytes);
                    File.WriteAt(last.HostSector * SparseHeader.SectorSize + keep, new byte[grainBytes - keep]);
                }
            }

            for (long grain = newGrains; grain < GrainCount; grain++)
            {
                long table = grain / GrainsPerTable;
                if (table >= newTables)
                {
                    break;
                }

                if (GetEntry(grain) != 0)
                {
                    SetEntry(grain, 0);
                }
            }

            Flush();
            for (long table = newTables; table < _directory.Length; table++)
            {
                if (_directory[table] != 0)
                {
                    WriteDirectoryEntry(_header.DirectoryOffset, table, 0);
                    _tables.Remove(table);
                }

                if (_redundantDirectory != null && _redundantDirectory[table] != 0)
                {
                    WriteDirectoryEntry(_header.RedundantDirectoryOffset, table, 0);
                }
            }

            Array.Resize(ref _directory, (int)newTables);
            if (_redundantDirectory != null)
            {
                Array.Resize(ref _redundantDirectory, (int)newTables);
            }
        }

        private void GrowDirectories(long newTables)
        {
            long oldSectors = (_directory.Length * 4L + SparseHeader.SectorSize - 1) / SparseHeader.SectorSize;
            long newSectors = (newTables * 4 + SparseHeader.SectorSize - 1) / SparseHeader.SectorSize;
            int oldCount = _directory.Length;
            Array.Resize(ref _directory, (int)newTables);
            if (_redundantDirectory != null)
            {
                Array.Resize(ref _redundantDirectory, (int)newTables);
            }

            if (newSectors <= oldSectors && oldCount > 0)
            {
                // Room in the directory's last sector: the new entries are written as zeros in place.
                for (long table = oldCount; table < newTables; table++)
                {
                    WriteDirectoryEntry(_header.DirectoryOffset, table, 0);
                    if (_redundantDirectory != null)
                    {
                        WriteDirectoryEntry(_header.RedundantDirectoryOffset, table, 0);
                    }
                }

                return;
            }

            // Written in full at the end of the file before the header points to it.
            long directory = AllocateSectors(newSectors);
            File.SetLength(_nextFreeSector * SparseHeader.SectorSize);
            WriteDirectory(File, directory, _directory);
            _header.DirectoryOffset = (ulong)directory;
            if (_redundantDirectory != null)
            {
                long redundant = AllocateSectors(newSectors);
                File.SetLength(_nextFreeSector * SparseHeader.SectorSize);
                WriteDirectory(File, redundant, _redundantDirectory);
                _header.RedundantDirectoryOffset = (ulong)redundant;
            }
        }
    }
}
