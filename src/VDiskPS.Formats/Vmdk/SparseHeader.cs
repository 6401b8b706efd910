using System;
using System.Buffers.Binary;

namespace VDiskPS.Formats.Vmdk
{
    /// <summary>
    /// The hosted sparse extent header (VMware Virtual Disk Format 5.0, "Hosted Sparse Extent Header"):
    /// 512 bytes at sector 0 of every SPARSE extent, and again as the footer of a stream-optimized one.
    /// </summary>
    internal sealed class SparseHeader
    {
        public const uint Magic = 0x564D444B; // "KDMV" little-endian
        public const int Size = 512;
        public const int SectorSize = 512;

        /// <summary>gdOffset value meaning "the grain directory is at the end; read the footer" (stream-optimized).</summary>
        public const ulong GrainDirectoryAtEnd = 0xFFFFFFFFFFFFFFFF;

        public const uint FlagValidNewLineTest = 1 << 0;
        public const uint FlagRedundantGrainTable = 1 << 1;
        public const uint FlagZeroedGrainEntries = 1 << 2;
        public const uint FlagCompressed = 1 << 16;
        public const uint FlagMarkers = 1 << 17;

        public const ushort CompressionDeflate = 1;

        /// <summary>"COWD": the ESX vmfsSparse extent header (VMware Virtual Disk Format 5.0, "ESXi Host Sparse Extents").</summary>
        public const uint CowdMagic = 0x44574F43;

        private const int CowdDiskSectorsOffset = 12;
        private const int CowdGranularityOffset = 16;
        private const int CowdDirectoryOffsetOffset = 20;
        private const int CowdDirectorySizeOffset = 24;
        private const uint CowdGrainTableEntries = 4096;

        private const int MagicOffset = 0;
        private const int VersionOffset = 4;
        private const int FlagsOffset = 8;
        private const int CapacityOffset = 12;
        private const int GrainSizeOffset = 20;
        private const int DescriptorOffsetOffset = 28;
        private const int DescriptorSizeOffset = 36;
        private const int GrainTableEntriesOffset = 44;
        private const int RedundantDirectoryField = 48;
        private const int DirectoryField = 56;
        private const int OverheadOffset = 64;
        private const int UncleanShutdownOffset = 72;
        private const int NewLineCharsOffset = 73;
        private const int CompressAlgorithmOffset = 77;

        public uint Version { get; set; } = 1;

        public uint Flags { get; set; } = FlagValidNewLineTest | FlagRedundantGrainTable;

        /// <summary>Extent size in sectors.</summary>
        public ulong Capacity { get; set; }

        /// <summary>Grain size in sectors.</summary>
        public ulong GrainSize { get; set; } = 128;

        public ulong DescriptorOffset { get; set; }

        public ulong DescriptorSize { get; set; }

        public uint GrainTableEntries { get; set; } = 512;

        public ulong RedundantDirectoryOffset { get; set; }

        public ulong DirectoryOffset { get; set; }

        /// <summary>Sectors of metadata before the first grain.</summary>
        public ulong Overhead { get; set; }

        public bool UncleanShutdown { get; set; }

        public ushort CompressAlgorithm { get; set; }

        /// <summary>True for a vmfsSparse (COWD) extent: 4096-entry grain tables, no redundant directory, read-only here.</summary>
        public bool IsCowd { get; private set; }

        /// <summary>Grain directory entries as the header records them (COWD); null to derive them from the capacity.</summary>
        public long? DirectoryEntryCount { get; private set; }

        public bool HasRedundantDirectory => (Flags & FlagRedundantGrainTable) != 0 && RedundantDirectoryOffset != 0;

        public bool ZeroedGrainEntries => (Flags & FlagZeroedGrainEntries) != 0;

        public bool Compressed => CompressAlgorithm == CompressionDeflate || (Flags & FlagCompressed) != 0;

        public bool HasMarkers => (Flags & FlagMarkers) != 0;

        public static bool HasMagic(ReadOnlySpan<byte> data) => data.Length >= 4 && BinaryPrimitives.ReadUInt32LittleEndian(data) == Magic;

        public static bool HasCowdMagic(ReadOnlySpan<byte> data) => data.Length >= 4 && BinaryPrimitives.ReadUInt32LittleEndian(data) == CowdMagic;

        /// <summary>The fields of a COWD header, mapped onto the hosted sparse model.</summary>
        public static SparseHeader ParseCowd(ReadOnlySpan<byte> data)
        {
            return new SparseHeader
            {
                Version = 1,
                Flags = 0,
                Capacity = BinaryPrimitives.ReadUInt32LittleEndian(data.Slice(CowdDiskSectorsOffset)),
                GrainSize = BinaryPrimitives.ReadUInt32LittleEndian(data.Slice(CowdGranularityOffset)),
                GrainTableEntries = CowdGrainTableEntries,
                DirectoryOffset = BinaryPrimitives.ReadUInt32LittleEndian(data.Slice(CowdDirectoryOffsetOffset)),
                DirectoryEntryCount = BinaryPrimitives.ReadUInt32LittleEndian(data.Slice(CowdDirectorySizeOffset)),
                IsCowd = true,
            };
        }

        public static SparseHeader Parse(ReadOnlySpan<byte> data)
        {
            return new SparseHeader
            {
                Version = BinaryPrimitives.ReadUInt32LittleEndian(data.Slice(VersionOffset)),
                Flags = BinaryPrimitives.ReadUInt32LittleEndian(data.Slice(FlagsOffset)),
                Capacity = BinaryPrimitives.ReadUInt64LittleEndian(data.Slice(CapacityOffset)),
                GrainSize = BinaryPrimitives.ReadUInt64LittleEndian(data.Slice(GrainSizeOffset)),
                DescriptorOffset = BinaryPrimitives.ReadUInt64LittleEndian(data.Slice(DescriptorOffsetOffset)),
                DescriptorSize = BinaryPrimitives.ReadUInt64LittleEndian(data.Slice(DescriptorSizeOffset)),
                GrainTableEntries = BinaryPrimitives.ReadUInt32LittleEndian(data.Slice(GrainTableEntriesOffset)),
                RedundantDirectoryOffset = BinaryPrimitives.ReadUInt64LittleEndian(data.Slice(RedundantDirectoryField)),
                DirectoryOffset = BinaryPrimitives.ReadUInt64LittleEndian(data.Slice(DirectoryField)),
                Overhead = BinaryPrimitives.ReadUInt64LittleEndian(data.Slice(OverheadOffset)),
                UncleanShutdown = data[UncleanShutdownOffset] != 0,
                CompressAlgorithm = BinaryPrimitives.ReadUInt16LittleEndian(data.Slice(CompressAlgorithmOffset)),
            };
        }

        public byte[] ToBytes()
        {
            byte[] data = new byte[Size];
            var span = data.AsSpan();
            BinaryPrimitives.WriteUInt32LittleEndian(span.Slice(MagicOffset), Magic);
            BinaryPrimitives.WriteUInt32LittleEndian(span.Slice(VersionOffset), Version);
            BinaryPrimitives.WriteUInt32LittleEndian(span.Slice(FlagsOffset), Flags);
            BinaryPrimitives.WriteUInt64LittleEndian(span.Slice(CapacityOffset), Capacity);
            BinaryPrimitives.WriteUInt64LittleEndian(span.Slice(GrainSizeOffset), GrainSize);
            BinaryPrimitives.WriteUInt64LittleEndian(span.Slice(DescriptorOffsetOffset), DescriptorOffset);
            BinaryPrimitives.WriteUInt64LittleEndian(span.Slice(DescriptorSizeOffset), DescriptorSize);
            BinaryPrimitives.WriteUInt32LittleEndian(span.Slice(GrainTableEntriesOffset), GrainTableEntries);
            BinaryPrimitives.WriteUInt64LittleEndian(span.Slice(RedundantDirectoryField), RedundantDirectoryOffset);
            BinaryPrimitives.WriteUInt64LittleEndian(span.Slice(DirectoryField), DirectoryOffset);
            BinaryPrimitives.WriteUInt64LittleEndian(span.Slice(OverheadOffset), Overhead);
            data[UncleanShutdownOffset] = UncleanShutdown ? (byte)1 : (byte)0;

            // The four line-end bytes let readers detect a file mangled by a text-mode transfer.
            data[NewLineCharsOffset] = (byte)'\n';
            data[NewLineCharsOffset + 1] = (byte)' ';
            data[NewLineCharsOffset + 2] = (byte)'\r';
            data[NewLineCharsOffset + 3] = (byte)'\n';
            BinaryPrimitives.WriteUInt16LittleEndian(span.Slice(CompressAlgorithmOffset), CompressAlgorithm);
            return data;
        }

        public SparseHeader Clone() => (SparseHeader)MemberwiseClone();
    }

    /// <summary>Stream-optimized markers (spec section "Stream-Optimized Compressed Sparse Extents").</summary>
    internal static class StreamMarker
    {
        public const uint EndOfStream = 0;
        public const uint GrainTable = 1;
        public const uint GrainDirectory = 2;
        public const uint Footer = 3;

        /// <summary>A grain marker: lba (8), compressed size (4), then the data.</summary>
        public const int GrainHeaderSize = 12;

        private const int ValueOffset = 0;
        private const int SizeOffset = 8;
        private const int TypeOffset = 12;

        /// <summary>A metadata marker sector: numSectors of what follows, size 0, type.</summary>
        public static byte[] Metadata(ulong sectors, uint type)
        {
            byte[] sector = new byte[SparseHeader.SectorSize];
            BinaryPrimitives.WriteUInt64LittleEndian(sector.AsSpan(ValueOffset), sectors);
            BinaryPrimitives.WriteUInt32LittleEndian(sector.AsSpan(SizeOffset), 0);
            BinaryPrimitives.WriteUInt32LittleEndian(sector.AsSpan(TypeOffset), type);
            return sector;
        }

        public static ulong ReadValue(ReadOnlySpan<byte> marker) => BinaryPrimitives.ReadUInt64LittleEndian(marker.Slice(ValueOffset));

        public static uint ReadSize(ReadOnlySpan<byte> marker) => BinaryPrimitives.ReadUInt32LittleEndian(marker.Slice(SizeOffset));

        public static uint ReadType(ReadOnlySpan<byte> marker) => BinaryPrimitives.ReadUInt32LittleEndian(marker.Slice(TypeOffset));

        public static void WriteGrainHeader(Span<byte> target, ulong lba, uint size)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(target.Slice(ValueOffset), lba);
            BinaryPrimitives.WriteUInt32LittleEndian(target.Slice(SizeOffset), size);
        }
    }
}
