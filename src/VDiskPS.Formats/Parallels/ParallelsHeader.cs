using System;
using System.Buffers.Binary;
using System.Text;

namespace VDiskPS.Formats.Parallels
{
    /// <summary>
    /// The 64-byte header of a Parallels expandable image (QEMU docs/interop/parallels.txt, block/parallels.c
    /// ParallelsHeader), little-endian. The BAT follows at offset 64. Kept as its raw bytes so that fields
    /// this module does not interpret (geometry, flags) survive a rewrite.
    /// </summary>
    internal sealed class ParallelsHeader
    {
        public const int Length = 64;
        public const int SectorSize = 512;
        public const uint Version2 = 2;

        /// <summary>The in-use marker: the image was opened for writing and not closed (HEADER_INUSE_MAGIC).</summary>
        public const uint InUseMagic = 0x746F6E59;

        public const int MagicOffset = 0;
        public const int VersionOffset = 16;
        public const int TracksOffset = 28;
        public const int BatEntriesOffset = 32;
        public const int NbSectorsOffset = 36;
        public const int InUseOffset = 44;
        public const int DataOffOffset = 48;
        public const int ExtOffOffset = 56;

        private const int HeadsOffset = 20;
        private const int CylindersOffset = 24;

        /// <summary>The first header: BAT entries are sector offsets, and the sector count is 32 bits.</summary>
        private static readonly byte[] s_magic1 = Encoding.ASCII.GetBytes("WithoutFreeSpace");

        /// <summary>The extended header: BAT entries count clusters, and the sector count is 64 bits.</summary>
        private static readonly byte[] s_magic2 = Encoding.ASCII.GetBytes("WithouFreSpacExt");

        private readonly byte[] _raw;

        private ParallelsHeader(byte[] raw)
        {
            _raw = raw;
        }

        /// <summary>A new extended (version 2 magic) header, as qemu's parallels_co_create writes it.</summary>
        public static ParallelsHeader CreateNew(long size, uint tracks, uint batEntries, uint dataOff)
        {
            var header = new ParallelsHeader(new byte[Length]);
            s_magic2.CopyTo(header._raw, MagicOffset);
            header.SetUInt32(VersionOffset, Version2);

            // Geometry is not used at the image level; qemu records 16 heads and 32 sectors a cylinder.
            header.SetUInt32(HeadsOffset, 16);
            header.SetUInt32(CylindersOffset, (uint)Math.Min(uint.MaxValue, size / SectorSize / 16 / 32));
            header.SetUInt32(TracksOffset, tracks);
            header.SetUInt32(BatEntriesOffset, batEntries);
            BinaryPrimitives.WriteUInt64LittleEndian(header._raw.AsSpan(NbSectorsOffset), (ulong)(size / SectorSize));
            header.SetUInt32(DataOffOffset, dataOff);
            return header;
        }

        public static ParallelsHeader FromBytes(byte[] raw) => new ParallelsHeader((byte[])raw.Clone());

        /// <summary>Either magic, then version 2 (qemu parallels_probe).</summary>
        public static bool HasSignature(ReadOnlySpan<byte> buffer)
            => buffer.Length >= Length && (IsMagic(buffer, s_magic1) || IsMagic(buffer, s_magic2))
            && BinaryPrimitives.ReadUInt32LittleEndian(buffer.Slice(VersionOffset)) == Version2;

        public static bool HasAnyMagic(ReadOnlySpan<byte> buffer) => buffer.Length >= Length && (IsMagic(buffer, s_magic1) || IsMagic(buffer, s_magic2));

        /// <summary>The extended header (BAT entries in clusters); false for the first one (in sectors).</summary>
        public bool IsExtended => IsMagic(_raw, s_magic2);

        public uint Version => GetUInt32(VersionOffset);

        /// <summary>Sectors per cluster.</summary>
        public uint Tracks => GetUInt32(TracksOffset);

        public uint BatEntries => GetUInt32(BatEntriesOffset);

        /// <summary>The disk size in sectors; the first header has only the low 32 bits.</summary>
        public ulong NbSectors => IsExtended ? BinaryPrimitives.ReadUInt64LittleEndian(_raw.AsSpan(NbSectorsOffset)) : GetUInt32(NbSectorsOffset);

        public uint InUse
        {
            get => GetUInt32(InUseOffset);
            set => SetUInt32(InUseOffset, value);
        }

        /// <summary>Where the data area starts, in sectors; 0 means right after the BAT.</summary>
        public uint DataOff => GetUInt32(DataOffOffset);

        /// <summary>The format extension cluster, in sectors; 0 without one.</summary>
        public ulong ExtOff => BinaryPrimitives.ReadUInt64LittleEndian(_raw.AsSpan(ExtOffOffset));

        public byte[] ToBytes() => (byte[])_raw.Clone();

        private static bool IsMagic(ReadOnlySpan<byte> buffer, byte[] magic) => buffer.Slice(MagicOffset, magic.Length).SequenceEqual(magic);

        private uint GetUInt32(int offset) => BinaryPrimitives.ReadUInt32LittleEndian(_raw.AsSpan(offset));

        private void SetUInt32(int offset, uint value) => BinaryPrimitives.WriteUInt32LittleEndian(_raw.AsSpan(offset), value);
    }
}
