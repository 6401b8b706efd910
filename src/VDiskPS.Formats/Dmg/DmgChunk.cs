namespace VDiskPS.Formats.Dmg
{
    /// <summary>How a chunk's sectors are stored.</summary>
    internal enum DmgChunkKind
    {
        /// <summary>Zeros (UDZE 0x00000000) or ignored sectors (UDIG 0x00000002, read as zeros as qemu does).</summary>
        Zero,

        /// <summary>Stored as they are (UDRW 0x00000001).</summary>
        Raw,

        /// <summary>One zlib stream (UDZO 0x80000005).</summary>
        Zlib,

        /// <summary>One bzip2 stream (UDBZ 0x80000006).</summary>
        Bzip2,

        /// <summary>A type this build cannot decompress (lzfse, ADC, LZMA, unknown): refused when read.</summary>
        Unsupported,

        /// <summary>Sectors no chunk describes: refused when read, as qemu fails them with an I/O error.</summary>
        Gap,
    }

    /// <summary>One run of sectors of the disk and where its bytes are.</summary>
    internal readonly struct DmgChunk
    {
        public DmgChunk(long sector, long sectorCount, DmgChunkKind kind, uint type, long offset, long length, string name)
        {
            Sector = sector;
            SectorCount = sectorCount;
            Kind = kind;
            Type = type;
            Offset = offset;
            Length = length;
            Name = name;
        }

        /// <summary>The first sector of the disk the chunk holds.</summary>
        public long Sector { get; }

        public long SectorCount { get; }

        public long EndSector => Sector + SectorCount;

        public DmgChunkKind Kind { get; }

        /// <summary>The chunk type as recorded.</summary>
        public uint Type { get; }

        /// <summary>Where the chunk's (compressed) bytes start in the file.</summary>
        public long Offset { get; }

        /// <summary>How many (compressed) bytes it has there.</summary>
        public long Length { get; }

        /// <summary>Which block table entry recorded it ("blkx entry 0, chunk 3"), for messages.</summary>
        public string Name { get; }

        public bool IsCompressed => Kind != DmgChunkKind.Zero && Kind != DmgChunkKind.Raw;
    }
}
