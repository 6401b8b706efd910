using System;
using System.Buffers.Binary;
using System.Collections.Generic;

namespace VDiskPS.Formats.Vmdk
{
    /// <summary>
    /// A hosted sparse extent (SPARSE; VMware Virtual Disk Format 5.0, "Hosted Sparse Extents"): a header,
    /// a grain directory (GD) of grain table (GT) sector offsets, grain tables of grain sector offsets,
    /// and the grains. Also reads stream-optimized extents (compressed grains behind markers, GD at the end).
    /// </summary>
    internal sealed partial class SparseExtent : VmdkExtent
    {
        /// <summary>GTE value of a grain that reads as zeros (with <see cref="SparseHeader.FlagZeroedGrainEntries"/>).</summary>
        public const uint ZeroedGrain = 1;

        private const long MaxCapacitySectors = 1L << 40;
        private const ulong MaxGrainSectors = 1 << 15;
        private const uint MaxGrainTableEntries = 1 << 16;
        private const long MaxDirectoryEntries = 1 << 22;
        private const long GrainTableCacheBytes = 16 << 20;

        private readonly object _gate = new object();
        private readonly Dictionary<long, GrainTable> _tables = new Dictionary<long, GrainTable>();
        private readonly Queue<long> _tableOrder = new Queue<long>();
        private readonly int _maxCachedTables;
        private SparseHeader _header;
        private uint[] _directory;
        private uint[] _redundantDirectory;
        private long _nextFreeSector;

        private SparseExtent(ExtentLine line, HostFile file, SparseHeader header, uint[] directory, uint[] redundantDirectory)
            : base(line, file)
        {
            _header = header;
            _directory = directory;
            _redundantDirectory = redundantDirectory;
            GrainSizeBytes = (int)(header.GrainSize * SparseHeader.SectorSize);
            _maxCachedTables = (int)Math.Max(16, GrainTableCacheBytes / ((long)header.GrainTableEntries * 4));
            _nextFreeSector = (file.Length + SparseHeader.SectorSize - 1) / SparseHeader.SectorSize;
        }

        public override int? GrainBytes => GrainSizeBytes;

        public override bool Compressed => _header.Compressed;

        public int GrainSizeBytes { get; }

        public SparseHeader Header => _header;

        public long CapacityBytes => (long)_header.Capacity * SparseHeader.SectorSize;

        private long GrainsPerTable => _header.GrainTableEntries;

        private long GrainCount => ((long)_header.Capacity + (long)_header.GrainSize - 1) / (long)_header.GrainSize;

        /// <summary>Reads and validates the header (and the footer of a stream) of a sparse extent file.</summary>
        public static SparseHeader ReadHeader(HostFile file)
        {
            byte[] sector = new byte[SparseHeader.Size];
            file.ReadExactly(0, sector, "sparse header");
            if (SparseHeader.HasCowdMagic(sector))
            {
                if (file.IsSequential)
                {
                    throw file.RandomAccessRefused();
                }

                SparseHeader cowd = SparseHeader.ParseCowd(sector);
                Validate(file, cowd);
                return cowd;
            }

            if (!SparseHeader.HasMagic(sector))
            {
                throw new ImageFormatMismatchException(file.Path, "sparse header magic", 0, "not a VMDK sparse extent (no KDMV magic)");
            }

            SparseHeader header = SparseHeader.Parse(sector);
            if (header.Version < 1 || header.Version > 3)
            {
                throw new ImageNotSupportedException(file.Path, "sparse header version", 4, $"sparse extent version {header.Version} is not supported (1, 2 and 3 are)");
            }

            if (file.IsSequential && !StreamReadExtent.CanStream(header))
            {
                throw file.RandomAccessRefused();
            }

            // A stream read front to back reaches its footer last: the header gives what opening needs.
            if (header.DirectoryOffset == SparseHeader.GrainDirectoryAtEnd && !file.IsSequential)
            {
                header = ReadFooter(file, header);
            }

            Validate(file, header);
            return header;
        }

        public static SparseExtent Open(ExtentLine line, HostFile file, SparseHeader header)
        {
            uint[] directory = ReadDirectory(file, header, header.DirectoryOffset, "grain directory");
            uint[] redundant = header.HasRedundantDirectory && !header.Compressed
                ? ReadDirectory(file, header, header.RedundantDirectoryOffset, "redundant grain directory")
                : null;
            return new SparseExtent(line, file, header, directory, redundant);
        }

        public override BlockStatus GetStatus(long offset, long maxLength)
        {
            long end = offset + maxLength;
            if (offset >= CapacityBytes)
            {
                return new BlockStatus(offset, maxLength, ExtentKind.Unallocated);
            }

            end = Math.Min(end, CapacityBytes);
            long grainBytes = GrainSizeBytes;
            lock (_gate)
            {
                long grain = offset / grainBytes;
                GrainState first = GetGrainState(grain);
                long position = (grain + 1) * grainBytes;
                long expectedHost = first.HostSector >= 0 ? (first.HostSector + (long)_header.GrainSize) : -1;
                while (position < end)
                {
                    long next = position / grainBytes;
                    if (first.Kind != ExtentKind.Data && next % GrainsPerTable == 0 && DirectoryEntry(next / GrainsPerTable) == 0 && !IsStreamTable(next / GrainsPerTable))
                    {
                        // A whole missing grain table is one unallocated run.
                        if (first.Kind != ExtentKind.Unallocated)
                        {
                            break;
                        }

                        position += GrainsPerTable * grainBytes;
                        continue;
                    }

                    GrainState state = GetGrainState(next);
                    if (state.Kind != first.Kind || state.Compressed != first.Compressed)
                    {
                        break;
                    }

                    if (first.Kind == ExtentKind.Data && !first.Compressed)
                    {
                        if (state.HostSector != expectedHost)
                        {
                            break;
                        }

                        expectedHost += (long)_header.GrainSize;
                    }

                    position += grainBytes;
                }

                long length = Math.Min(position, end) - offset;
                long host = first.Kind == ExtentKind.Data && !first.Compressed ? first.HostSector * SparseHeader.SectorSize + offset % grainBytes : -1;
                return new BlockStatus(offset, length, first.Kind, host, first.Compressed, File.Path);
            }
        }

        public override void ReadData(long offset, Span<byte> buffer, BlockStatus status)
        {
            if (status.HostOffset >= 0 && !status.Compressed)
            {
                File.ReadZeroPadded(status.HostOffset + (offset - status.GuestOffset), buffer);
                return;
            }

            long grainBytes = GrainSizeBytes;
            while (buffer.Length > 0)
            {
                long grain = offset / grainBytes;
                int inGrain = (int)(offset % grainBytes);
                int n = (int)Math.Min(buffer.Length, grainBytes - inGrain);
                GrainState state;
                lock (_gate)
                {
                    state = GetGrainState(grain);
                }

                Span<byte> part = buffer.Slice(0, n);
                if (state.Kind != ExtentKind.Data)
                {
                    part.Clear();
                }
                else if (state.Compressed)
                {
                    ReadCompressedGrain(grain, state.HostSector, inGrain, part);
                }
                else
                {
                    File.ReadZeroPadded(state.HostSector * SparseHeader.SectorSize + inGrain, part);
                }

                offset += n;
                buffer = buffer.Slice(n);
            }
        }

        private static SparseHeader ReadFooter(HostFile file, SparseHeader header)
        {
            // Stream-optimized: footer marker, footer (a header copy with the real gdOffset), end-of-stream marker.
            long length = file.Length;
            long footerMarker = length - 3 * SparseHeader.SectorSize;
            if ((header.Flags & SparseHeader.FlagMarkers) == 0 || footerMarker < SparseHeader.SectorSize)
            {
                throw new ImageCorruptException(file.Path, "footer", footerMarker, "the header puts the grain directory at the end, but the file has no stream footer");
            }

            byte[] tail = new byte[3 * SparseHeader.SectorSize];
            file.ReadExactly(footerMarker, tail, "footer");
            if (StreamMarker.ReadType(tail) != StreamMarker.Footer || StreamMarker.ReadSize(tail) != 0)
            {
                throw new ImageCorruptException(file.Path, "footer marker", footerMarker, "the sector before the footer is not a footer marker");
            }

            ReadOnlySpan<byte> footer = tail.AsSpan(SparseHeader.SectorSize, SparseHeader.Size);
            if (!SparseHeader.HasMagic(footer))
            {
                throw new ImageCorruptException(file.Path, "footer", footerMarker + SparseHeader.SectorSize, "the footer has no KDMV magic");
            }

            ReadOnlySpan<byte> eos = tail.AsSpan(2 * SparseHeader.SectorSize);
            if (StreamMarker.ReadType(eos) != StreamMarker.EndOfStream || StreamMarker.ReadValue(eos) != 0 || StreamMarker.ReadSize(eos) != 0)
            {
                throw new ImageCorruptException(file.Path, "end-of-stream marker", length - SparseHeader.SectorSize, "the file does not end with an end-of-stream marker");
            }

            SparseHeader parsed = SparseHeader.Parse(footer);
            if (parsed.DirectoryOffset == SparseHeader.GrainDirectoryAtEnd)
            {
                throw new ImageCorruptException(file.Path, "footer gdOffset", footerMarker + SparseHeader.SectorSize, "the footer does not give the grain directory's offset either");
            }

            return parsed;
        }

        private static void Validate(HostFile file, SparseHeader header)
        {
            if (header.Capacity > (ulong)MaxCapacitySectors)
            {
                throw new ImageCorruptException(file.Path, "sparse header capacity", 12, $"capacity of {header.Capacity} sectors is past 2^40");
            }

            if (header.GrainSize == 0 || header.GrainSize > MaxGrainSectors || (header.GrainSize & (header.GrainSize - 1)) != 0)
            {
                throw new ImageCorruptException(file.Path, "sparse header grainSize", 20, $"grain size of {header.GrainSize} sectors is not a power of two up to {MaxGrainSectors}");
            }

            if (header.GrainTableEntries == 0 || header.GrainTableEntries > MaxGrainTableEntries)
            {
                throw new ImageCorruptException(file.Path, "sparse header numGTEsPerGT", 44, $"{header.GrainTableEntries} grain table entries is outside 1..{MaxGrainTableEntries}");
            }

            long tables = DirectoryLength(header);
            if (tables > MaxDirectoryEntries)
            {
                throw new ImageNotSupportedException(file.Path, "sparse header capacity", 12, $"the extent needs {tables} grain tables; at most {MaxDirectoryEntries} are supported");
            }

            if (header.Compressed && header.CompressAlgorithm != SparseHeader.CompressionDeflate)
            {
                throw new ImageNotSupportedException(file.Path, "sparse header compressAlgorithm", 77, $"compression algorithm {header.CompressAlgorithm} is not deflate (1)");
            }
        }

        private static uint[] ReadDirectory(HostFile file, SparseHeader header, ulong sector, string field)
        {
            long count = DirectoryLength(header);
            long bytes = count * 4;
            if (sector == 0 || sector > (ulong)(file.Length / SparseHeader.SectorSize) || (long)sector * SparseHeader.SectorSize + bytes > file.Length)
            {
                throw new ImageCorruptException(file.Path, field, (long)Math.Min(sector, long.MaxValue / 1024) * SparseHeader.SectorSize, $"the {count}-entry directory at sector {sector} lies outside the {file.Length}-byte file");
            }

            byte[] raw = new byte[bytes];
            file.ReadExactly((long)sector * SparseHeader.SectorSize, raw, field);
            var entries = new uint[count];
            for (long i = 0; i < count; i++)
            {
                entries[i] = BinaryPrimitives.ReadUInt32LittleEndian(raw.AsSpan((int)(i * 4)));
            }

            return entries;
        }

        private static long DirectoryLength(SparseHeader header)
        {
            long grains = (long)((header.Capacity + header.GrainSize - 1) / header.GrainSize);
            long needed = (grains + header.GrainTableEntries - 1) / header.GrainTableEntries;

            // A COWD directory shorter than the capacity needs leaves the rest unallocated.
            return header.DirectoryEntryCount.HasValue ? Math.Min(needed, header.DirectoryEntryCount.Value) : needed;
        }

        private uint DirectoryEntry(long table) => table < _directory.Length ? _directory[table] : 0;

        /// <summary>The state of one grain; call under the lock.</summary>
        private GrainState GetGrainState(long grain)
        {
            if (IsPendingStreamGrain(grain))
            {
                return new GrainState(ExtentKind.Data, -1, true);
            }

            uint entry = GetEntry(grain);
            if (entry == 0)
            {
                return new GrainState(ExtentKind.Unallocated, -1, false);
            }

            if (entry == ZeroedGrain && _header.ZeroedGrainEntries)
            {
                return new GrainState(ExtentKind.Zero, -1, false);
            }

            return new GrainState(ExtentKind.Data, entry, _header.Compressed);
        }

        /// <summary>The grain table entry of a grain, 0 when its table is missing; call under the lock.</summary>
        private uint GetEntry(long grain)
        {
            long table = grain / GrainsPerTable;
            int index = (int)(grain % GrainsPerTable);
            if (IsStreamTable(table))
            {
                return StreamTableEntry(index);
            }

            if (DirectoryEntry(table) == 0)
            {
                return 0;
            }

            return LoadTable(table).Entries[index];
        }

        private GrainTable LoadTable(long table)
        {
            if (_tables.TryGetValue(table, out GrainTable cached))
            {
                return cached;
            }

            if (_tables.Count >= _maxCachedTables)
            {
                EvictOne();
            }

            long sector = _directory[table];
            int bytes = (int)GrainsPerTable * 4;
            long position = sector * SparseHeader.SectorSize;
            if (position + bytes > File.Length)
            {
                throw new ImageCorruptException(File.Path, $"grain table {table}", position, $"the grain table at sector {sector} lies past the end of the {File.Length}-byte file");
            }

            byte[] raw = new byte[bytes];
            File.ReadExactly(position, raw, $"grain table {table}");
            var entries = new uint[GrainsPerTable];
            for (int i = 0; i < entries.Length; i++)
            {
                entries[i] = BinaryPrimitives.ReadUInt32LittleEndian(raw.AsSpan(i * 4));
            }

            var loaded = new GrainTable(entries);
            _tables[table] = loaded;
            _tableOrder.Enqueue(table);
            return loaded;
        }

        private void EvictOne()
        {
            // Oldest first; a dirty table is written out before it leaves the cache.
            while (_tableOrder.Count > 0)
            {
                long victim = _tableOrder.Dequeue();
                if (_tables.TryGetValue(victim, out GrainTable gt))
                {
                    if (gt.Dirty)
                    {
                        WriteTable(victim, gt);
                    }

                    _tables.Remove(victim);
                    return;
                }
            }
        }

        private readonly struct GrainState
        {
            public GrainState(ExtentKind kind, long hostSector, bool compressed)
            {
                Kind = kind;
                HostSector = hostSector;
                Compressed = compressed;
            }

            public ExtentKind Kind { get; }

            public long HostSector { get; }

            public bool Compressed { get; }
        }

        private sealed class GrainTable
        {
            public GrainTable(uint[] entries)
            {
                Entries = entries;
            }

            public uint[] Entries { get; }

            public bool Dirty { get; set; }
        }
    }
}
