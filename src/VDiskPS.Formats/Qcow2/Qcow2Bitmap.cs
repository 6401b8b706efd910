using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.Text;

namespace VDiskPS.Formats.Qcow2
{
    /// <summary>One entry of the bitmap directory (qcow2.rst "Bitmaps extension" and "Bitmap directory").</summary>
    internal sealed class Qcow2Bitmap
    {
        // Field offsets of a bitmap directory entry.
        private const int TableOffsetField = 0;
        private const int TableSizeField = 8;
        private const int FlagsField = 12;
        private const int TypeField = 16;
        private const int GranularityBitsField = 17;
        private const int NameSizeField = 18;
        private const int ExtraDataSizeField = 20;
        private const int FixedLength = 24;

        public const uint FlagInUse = 1;
        public const uint FlagAuto = 2;
        public const int MaxBitmaps = 65535;
        public const long MaxDirectoryBytes = 64L << 20;

        public long TableOffset { get; set; }

        public int TableSize { get; set; }

        public uint Flags { get; set; }

        public int GranularityBits { get; set; }

        public string Name { get; set; }

        public byte[] ExtraData { get; set; } = Array.Empty<byte>();

        public bool InUse => (Flags & FlagInUse) != 0;

        public bool Auto => (Flags & FlagAuto) != 0;

        public static List<Qcow2Bitmap> ReadDirectory(HostFile file, Qcow2Header header)
        {
            var list = new List<Qcow2Bitmap>();
            if (!header.HasBitmapsExtension || header.BitmapCount == 0)
            {
                return list;
            }

            if (header.BitmapCount > MaxBitmaps || header.BitmapDirectorySize > MaxDirectoryBytes || header.BitmapDirectorySize < FixedLength * (long)header.BitmapCount)
            {
                throw new ImageCorruptException(file.Path, "bitmaps extension", null, $"{header.BitmapCount} bitmaps in a {header.BitmapDirectorySize}-byte directory is invalid");
            }

            if ((header.BitmapDirectoryOffset & (header.ClusterSize - 1)) != 0 || header.BitmapDirectoryOffset == 0)
            {
                throw new ImageCorruptException(file.Path, "bitmap_directory_offset", null, $"0x{header.BitmapDirectoryOffset:x} is not cluster aligned");
            }

            var raw = new byte[header.BitmapDirectorySize];
            file.ReadExactly(header.BitmapDirectoryOffset, raw, "bitmap directory");
            int at = 0;
            for (int i = 0; i < header.BitmapCount; i++)
            {
                if (at + FixedLength > raw.Length)
                {
                    throw new ImageCorruptException(file.Path, "bitmap directory", header.BitmapDirectoryOffset + at, "the directory ends inside an entry");
                }

                var span = raw.AsSpan(at);
                var b = new Qcow2Bitmap
                {
                    TableOffset = (long)(BinaryPrimitives.ReadUInt64BigEndian(span.Slice(TableOffsetField)) & 0x7FFFFFFFFFFFFFFFUL),
                    Flags = BinaryPrimitives.ReadUInt32BigEndian(span.Slice(FlagsField)),
                    GranularityBits = span[GranularityBitsField],
                };
                uint tableSize = BinaryPrimitives.ReadUInt32BigEndian(span.Slice(TableSizeField));
                int nameSize = BinaryPrimitives.ReadUInt16BigEndian(span.Slice(NameSizeField));
                uint extraSize = BinaryPrimitives.ReadUInt32BigEndian(span.Slice(ExtraDataSizeField));
                if (span[TypeField] != 1 || b.GranularityBits < 9 || b.GranularityBits > 31 || extraSize > 1024 || tableSize > Qcow2Header.MaxL1Bytes / 8)
                {
                    throw new ImageCorruptException(file.Path, $"bitmap directory entry {i}", header.BitmapDirectoryOffset + at, "the type, granularity, table size or extra data size is invalid");
                }

                long length = (FixedLength + extraSize + nameSize + 7) & ~7L;
                if (at + length > raw.Length)
                {
                    throw new ImageCorruptException(file.Path, $"bitmap directory entry {i}", header.BitmapDirectoryOffset + at, "the entry runs past the directory");
                }

                b.TableSize = (int)tableSize;
                b.ExtraData = span.Slice(FixedLength, (int)extraSize).ToArray();
                b.Name = Encoding.UTF8.GetString(raw, at + FixedLength + (int)extraSize, nameSize);
                list.Add(b);
                at += (int)length;
            }

            return list;
        }

        public static byte[] SerializeDirectory(IReadOnlyList<Qcow2Bitmap> bitmaps)
        {
            var parts = new List<byte[]>();
            int total = 0;
            foreach (var b in bitmaps)
            {
                byte[] name = Encoding.UTF8.GetBytes(b.Name);
                int length = (FixedLength + b.ExtraData.Length + name.Length + 7) & ~7;
                var entry = new byte[length];
                BinaryPrimitives.WriteUInt64BigEndian(entry.AsSpan(TableOffsetField), (ulong)b.TableOffset);
                BinaryPrimitives.WriteUInt32BigEndian(entry.AsSpan(TableSizeField), (uint)b.TableSize);
                BinaryPrimitives.WriteUInt32BigEndian(entry.AsSpan(FlagsField), b.Flags);
                entry[TypeField] = 1;
                entry[GranularityBitsField] = (byte)b.GranularityBits;
                BinaryPrimitives.WriteUInt16BigEndian(entry.AsSpan(NameSizeField), (ushort)name.Length);
                BinaryPrimitives.WriteUInt32BigEndian(entry.AsSpan(ExtraDataSizeField), (uint)b.ExtraData.Length);
                b.ExtraData.CopyTo(entry, FixedLength);
                name.CopyTo(entry, FixedLength + b.ExtraData.Length);
                parts.Add(entry);
                total += length;
            }

            var raw = new byte[total];
            int at = 0;
            foreach (var p in parts)
            {
                p.CopyTo(raw, at);
                at += p.Length;
            }

            return raw;
        }
    }
}
