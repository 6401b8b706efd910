using System;
using System.Buffers.Binary;

namespace VDiskPS.Formats.Vmdk
{
    // New hosted sparse extents, laid out as VMware and qemu-img lay them out: header, descriptor area,
    // redundant GD and its grain tables, GD and its grain tables, then grains from a grain-aligned overhead.
    internal sealed partial class SparseExtent
    {
        public static SparseExtent CreateSparse(ExtentLine line, HostFile file, long capacitySectors, long grainSectors, bool zeroedGrain, int descriptorSectors)
        {
            const uint tableEntries = 512;
            long grains = (capacitySectors + grainSectors - 1) / grainSectors;
            long tables = (grains + tableEntries - 1) / tableEntries;
            long tableSectors = tableEntries * 4 / SparseHeader.SectorSize;
            long directorySectors = (tables * 4 + SparseHeader.SectorSize - 1) / SparseHeader.SectorSize;
            long redundantSector = 1 + descriptorSectors;
            long directorySector = redundantSector + directorySectors + tables * tableSectors;
            long end = directorySector + directorySectors + tables * tableSectors;
            long overhead = (end + grainSectors - 1) / grainSectors * grainSectors;
            if (overhead > uint.MaxValue)
            {
                throw new ImageNotSupportedException(file.Path, "size", null, "the extent's grain tables alone would pass the 2 TiB offset limit of a sparse extent");
            }

            var header = new SparseHeader
            {
                Version = zeroedGrain ? 2u : 1u,
                Flags = SparseHeader.FlagValidNewLineTest | SparseHeader.FlagRedundantGrainTable | (zeroedGrain ? SparseHeader.FlagZeroedGrainEntries : 0),
                Capacity = (ulong)capacitySectors,
                GrainSize = (ulong)grainSectors,
                DescriptorOffset = descriptorSectors > 0 ? 1UL : 0UL,
                DescriptorSize = (ulong)descriptorSectors,
                GrainTableEntries = tableEntries,
                RedundantDirectoryOffset = (ulong)redundantSector,
                DirectoryOffset = (ulong)directorySector,
                Overhead = (ulong)overhead,
            };
            file.SetLength(overhead * SparseHeader.SectorSize);
            file.WriteAt(0, header.ToBytes());
            var directory = new uint[tables];
            var redundant = new uint[tables];
            for (long t = 0; t < tables; t++)
            {
                redundant[t] = (uint)(redundantSector + directorySectors + t * tableSectors);
                directory[t] = (uint)(directorySector + directorySectors + t * tableSectors);
            }

            WriteDirectory(file, redundantSector, redundant);
            WriteDirectory(file, directorySector, directory);
            return new SparseExtent(line, file, header, directory, redundant);
        }

        private static void WriteDirectory(HostFile file, long sector, uint[] entries)
        {
            const int chunkEntries = 1 << 16;
            byte[] raw = new byte[Math.Min(entries.Length, chunkEntries) * 4];
            for (int start = 0; start < entries.Length; start += chunkEntries)
            {
                int count = Math.Min(chunkEntries, entries.Length - start);
                for (int i = 0; i < count; i++)
                {
                    BinaryPrimitives.WriteUInt32LittleEndian(raw.AsSpan(i * 4), entries[start + i]);
                }

                file.WriteAt(sector * SparseHeader.SectorSize + start * 4L, raw.AsSpan(0, count * 4));
            }
        }
    }
}
