using System;
using System.Buffers.Binary;
using System.Text;

namespace VDiskPS.Formats.Bochs
{
    /// <summary>
    /// The 512-byte header of a Bochs redolog image (Bochs iodev/hdimage/hdimage.h redolog_header_t,
    /// QEMU block/bochs.c struct bochs_header), little-endian: NUL-terminated magic, type and subtype
    /// strings, the version, the header size (where the catalog starts), the catalog's entry count,
    /// the bitmap and extent sizes in bytes, and the disk size (at 84 in version 1, at 88 in version 2).
    /// </summary>
    internal sealed class BochsHeader
    {
        public const int Length = 512;
        public const uint Version1 = 0x00010000;
        public const uint Version2 = 0x00020000;

        public const int TypeOffset = 32;
        public const int SubtypeOffset = 48;
        public const int VersionOffset = 64;
        public const int HeaderSizeOffset = 68;
        public const int CatalogOffset = 72;
        public const int BitmapOffset = 76;
        public const int ExtentOffset = 80;
        public const int DiskV1Offset = 84;
        public const int DiskV2Offset = 88;

        public const string Magic = "Bochs Virtual HD Image";
        public const string RedologType = "Redolog";
        public const string GrowingSubtype = "Growing";

        private readonly byte[] _raw;

        private BochsHeader(byte[] raw)
        {
            _raw = raw;
        }

        public static BochsHeader FromBytes(byte[] raw) => new BochsHeader((byte[])raw.Clone());

        /// <summary>The magic and redolog type, with a version QEMU knows: a Bochs image of some subtype.</summary>
        public static bool IsRedolog(ReadOnlySpan<byte> buffer)
        {
            if (buffer.Length < Length || Text(buffer, 0, 32) != Magic || Text(buffer, TypeOffset, 16) != RedologType)
            {
                return false;
            }

            uint version = BinaryPrimitives.ReadUInt32LittleEndian(buffer.Slice(VersionOffset));
            return version == Version1 || version == Version2;
        }

        public string Subtype => Text(_raw, SubtypeOffset, 16);

        public uint Version => GetUInt32(VersionOffset);

        /// <summary>The header's size in bytes: where the catalog starts.</summary>
        public uint HeaderSize => GetUInt32(HeaderSizeOffset);

        public uint CatalogEntries => GetUInt32(CatalogOffset);

        public uint BitmapBytes => GetUInt32(BitmapOffset);

        public uint ExtentBytes => GetUInt32(ExtentOffset);

        public int DiskFieldOffset => Version == Version1 ? DiskV1Offset : DiskV2Offset;

        public ulong DiskBytes => BinaryPrimitives.ReadUInt64LittleEndian(_raw.AsSpan(DiskFieldOffset));

        /// <summary>A NUL-terminated string in a fixed field (strcmp semantics: no NUL in the field is no match).</summary>
        private static string Text(ReadOnlySpan<byte> buffer, int offset, int length)
        {
            ReadOnlySpan<byte> field = buffer.Slice(offset, length);
            int nul = field.IndexOf((byte)0);
            return nul < 0 ? null : Encoding.ASCII.GetString(field.Slice(0, nul).ToArray());
        }

        private uint GetUInt32(int offset) => BinaryPrimitives.ReadUInt32LittleEndian(_raw.AsSpan(offset));
    }
}
