using System;
using System.Buffers.Binary;
using System.Collections.Generic;

namespace VDiskPS.Formats.Vmdk
{
    /// <summary>
    /// An ESXi seSparse extent (SESPARSE, the space-efficient delta format of VMFS 6), read-only. VMware
    /// does not publish it; the layout is the one qemu's vmdk driver reads: a constant header, a volatile
    /// header, a directory of 64-bit entries naming grain tables by index, and 64-bit grain entries whose
    /// top nibble says unallocated (0), unmapped or zero (1, 2) or allocated (3).
    /// </summary>
    internal sealed class SeSparseExtent : VmdkExtent
    {
        public const ulong ConstHeaderMagic = 0xCAFEBABE;
        private const ulong VolatileHeaderMagic = 0xCAFECAFE;
        private const ulong SupportedVersion = 0x0000000200000001;
        private const long GrainSectors = 8;
        private const long TableSectors = 64;
        private const int TableEntries = (int)(TableSectors * SparseHeader.SectorSize / 8);
        private const long MaxDirectoryEntries = 1 << 22;
        private const int MaxCachedTables = 256;

        private const int MagicOffset = 0;
        private const int VersionOffset = 8;
        private const int CapacityOffset = 16;
        private const int GrainSizeOffset = 24;
        private const int GrainTableSizeOffset = 32;
        private const int FlagsOffset = 40;
        private const int ReservedOffset = 48;
        private const int VolatileHeaderOffset = 80;
        private const int DirectoryOffsetOffset = 128;
        private const int DirectorySizeOffset = 136;
        private const int TablesOffsetOffset = 144;
        private const int GrainsOffsetOffset = 192;
        private const int ConstPaddingOffset = 208;
        private const int ReplayJournalOffset = 24;
        private const int VolatilePaddingOffset = 32;

        private readonly object _gate = new object();
        private readonly Dictionary<long, ulong[]> _tables = new Dictionary<long, ulong[]>();
        private readonly Queue<long> _tableOrder = new Queue<long>();
        private readonly ulong[] _directory;
        private readonly long _tablesSector;
        private readonly long _grainsSector;
        private readonly long _capacityBytes;

        private SeSparseExtent(ExtentLine line, HostFile file, ulong[] directory, long tablesSector, long grainsSector, long capacitySectors)
            : base(line, file)
        {
            _directory = directory;
            _tablesSector = tablesSector;
            _grainsSector = grainsSector;
            _capacityBytes = capacitySectors * SparseHeader.SectorSize;
        }

        public override int? GrainBytes => (int)(GrainSectors * SparseHeader.SectorSize);

        private static long GrainBytesLong => GrainSectors * SparseHeader.SectorSize;

        public static bool HasMagic(ReadOnlySpan<byte> data) => data.Length >= 8 && BinaryPrimitives.ReadUInt64LittleEndian(data) == ConstHeaderMagic;

        public static SeSparseExtent Open(ExtentLine line, HostFile file)
        {
            byte[] header = new byte[SparseHeader.SectorSize];
            file.ReadExactly(0, header, "seSparse constant header");
            if (!HasMagic(header))
            {
                throw new ImageFormatMismatchException(file.Path, "seSparse constant header magic", MagicOffset, "not an seSparse extent");
            }

            Require(file, Field(header, VersionOffset) == SupportedVersion, "version", VersionOffset, $"version 0x{Field(header, VersionOffset):x16} is not supported");
            Require(file, Field(header, GrainSizeOffset) == GrainSectors, "grain size", GrainSizeOffset, $"grain size {Field(header, GrainSizeOffset)} sectors is not supported (8 is)");
            Require(file, Field(header, GrainTableSizeOffset) == TableSectors, "grain table size", GrainTableSizeOffset, $"grain table size {Field(header, GrainTableSizeOffset)} sectors is not supported (64 is)");
            Require(file, Field(header, FlagsOffset) == 0, "flags", FlagsOffset, "flags are set");
            Require(file, IsZero(header.AsSpan(ReservedOffset, 32)) && IsZero(header.AsSpan(ConstPaddingOffset)), "reserved bytes", ReservedOffset, "reserved bytes are not zero");
            ulong capacity = Field(header, CapacityOffset);
            if (capacity > 1UL << 40)
            {
                throw new ImageCorruptException(file.Path, "seSparse capacity", CapacityOffset, $"capacity of {capacity} sectors is past 2^40");
            }

            long volatileSector = SectorField(file, header, VolatileHeaderOffset, "volatile header offset");
            byte[] volatileHeader = new byte[SparseHeader.SectorSize];
            file.ReadExactly(volatileSector * SparseHeader.SectorSize, volatileHeader, "seSparse volatile header");
            if (Field(volatileHeader, 0) != VolatileHeaderMagic)
            {
                throw new ImageCorruptException(file.Path, "seSparse volatile header magic", volatileSector * SparseHeader.SectorSize, "the volatile header has no magic");
            }

            if (Field(volatileHeader, ReplayJournalOffset) != 0)
            {
                throw new ImageNotSupportedException(file.Path, "seSparse replay journal", volatileSector * SparseHeader.SectorSize + ReplayJournalOffset, "the disk is dirty (its journal needs replaying on ESXi)");
            }

            Require(file, IsZero(volatileHeader.AsSpan(VolatilePaddingOffset)), "volatile header padding", volatileSector * SparseHeader.SectorSize, "the volatile header padding is not zero");
            long directorySector = SectorField(file, header, DirectoryOffsetOffset, "grain directory offset");
            ulong directorySectors = Field(header, DirectorySizeOffset);
            ulong count = directorySectors * SparseHeader.SectorSize / 8;
            if (directorySectors > (ulong)MaxDirectoryEntries || count > (ulong)MaxDirectoryEntries || directorySector * SparseHeader.SectorSize + (long)count * 8 > file.Length)
            {
                throw new ImageCorruptException(file.Path, "seSparse grain directory", DirectorySizeOffset, $"the {directorySectors}-sector grain directory is too large or lies past the end of the file");
            }

            byte[] raw = new byte[count * 8];
            file.ReadExactly(directorySector * SparseHeader.SectorSize, raw, "seSparse grain directory");
            var directory = new ulong[count];
            for (int i = 0; i < directory.Length; i++)
            {
                directory[i] = BinaryPrimitives.ReadUInt64LittleEndian(raw.AsSpan(i * 8));
            }

            long tablesSector = SectorField(file, header, TablesOffsetOffset, "grain tables offset");
            long grainsSector = SectorField(file, header, GrainsOffsetOffset, "grains offset");
            return new SeSparseExtent(line, file, directory, tablesSector, grainsSector, (long)capacity);
        }

        public override BlockStatus GetStatus(long offset, long maxLength)
        {
            if (offset >= _capacityBytes)
            {
                return new BlockStatus(offset, maxLength, ExtentKind.Unallocated);
            }

            long end = Math.Min(offset + maxLength, _capacityBytes);
            lock (_gate)
            {
                (ExtentKind kind, long sector) first = Lookup(offset / GrainBytesLong);
                long position = (offset / GrainBytesLong + 1) * GrainBytesLong;
                long expected = first.sector + GrainSectors;
                while (position < end)
                {
                    (ExtentKind kind, long sector) next = Lookup(position / GrainBytesLong);
                    if (next.kind != first.kind || (first.kind == ExtentKind.Data && next.sector != expected))
                    {
                        break;
                    }

                    expected += GrainSectors;
                    position += GrainBytesLong;
                }

                long host = first.kind == ExtentKind.Data ? first.sector * SparseHeader.SectorSize + offset % GrainBytesLong : -1;
                return new BlockStatus(offset, Math.Min(position, end) - offset, first.kind, host, false, File.Path);
            }
        }

        public override void ReadData(long offset, Span<byte> buffer, BlockStatus status)
            => File.ReadZeroPadded(status.HostOffset + (offset - status.GuestOffset), buffer);

        public override string ReadOnlyReason => "seSparse extents are read-only; convert the disk to write it";

        public override void Write(long offset, ReadOnlySpan<byte> data, ReadBelow below)
            => throw new ImageNotSupportedException(File.Path, null, null, ReadOnlyReason);

        private (ExtentKind Kind, long Sector) Lookup(long grain)
        {
            long table = grain / TableEntries;
            if (table >= _directory.Length)
            {
                throw new ImageCorruptException(File.Path, "seSparse grain directory", null, $"grain {grain} is past the {_directory.Length}-entry grain directory");
            }

            ulong directoryEntry = _directory[table];
            if (directoryEntry == 0)
            {
                return (ExtentKind.Unallocated, -1);
            }

            // An allocated table's entry is 0x10000000 in the top half and its index below.
            if ((directoryEntry & 0xFFFFFFFF00000000) != 0x1000000000000000)
            {
                throw new ImageCorruptException(File.Path, $"seSparse grain directory entry {table}", null, $"0x{directoryEntry:x16} is not an allocated-table entry");
            }

            ulong entry = LoadTable(table, (long)(directoryEntry & 0xFFFFFFFF))[grain % TableEntries];
            switch (entry >> 60)
            {
                case 0:
                    if (entry != 0)
                    {
                        throw new ImageCorruptException(File.Path, $"seSparse grain entry of grain {grain}", null, $"0x{entry:x16} is not a valid unallocated entry");
                    }

                    return (ExtentKind.Unallocated, -1);
                case 1:
                case 2:
                    return (ExtentKind.Zero, -1);
                case 3:
                    long index = (long)(((entry & 0x0FFF000000000000) >> 48) | ((entry & 0x0000FFFFFFFFFFFF) << 12));
                    return (ExtentKind.Data, _grainsSector + index * GrainSectors);
                default:
                    throw new ImageCorruptException(File.Path, $"seSparse grain entry of grain {grain}", null, $"0x{entry:x16} has an unknown type");
            }
        }

        private ulong[] LoadTable(long table, long index)
        {
            if (_tables.TryGetValue(table, out ulong[] cached))
            {
                return cached;
            }

            long position = (_tablesSector + index * TableSectors) * SparseHeader.SectorSize;
            if (position < 0 || position + TableSectors * SparseHeader.SectorSize > File.Length)
            {
                throw new ImageCorruptException(File.Path, $"seSparse grain table {table}", position, "the grain table lies past the end of the file");
            }

            byte[] raw = new byte[TableSectors * SparseHeader.SectorSize];
            File.ReadExactly(position, raw, $"seSparse grain table {table}");
            var entries = new ulong[TableEntries];
            for (int i = 0; i < entries.Length; i++)
            {
                entries[i] = BinaryPrimitives.ReadUInt64LittleEndian(raw.AsSpan(i * 8));
            }

            if (_tables.Count >= MaxCachedTables)
            {
                _tables.Remove(_tableOrder.Dequeue());
            }

            _tables[table] = entries;
            _tableOrder.Enqueue(table);
            return entries;
        }

        private static ulong Field(byte[] header, int offset) => BinaryPrimitives.ReadUInt64LittleEndian(header.AsSpan(offset));

        private static long SectorField(HostFile file, byte[] header, int offset, string name)
        {
            ulong sector = Field(header, offset);
            if (sector == 0 || sector > (ulong)(file.Length / SparseHeader.SectorSize))
            {
                throw new ImageCorruptException(file.Path, "seSparse " + name, offset, $"sector {sector} lies outside the {file.Length}-byte file");
            }

            return (long)sector;
        }

        private static void Require(HostFile file, bool condition, string field, long offset, string message)
        {
            if (!condition)
            {
                throw new ImageNotSupportedException(file.Path, "seSparse " + field, offset, message);
            }
        }

        private static bool IsZero(ReadOnlySpan<byte> data) => ZeroDetector.IsZero(data);
    }
}
