using System;
using System.Buffers.Binary;
using System.Text;

namespace VDiskPS.Formats.Vhd
{
    /// <summary>One of the eight parent locator entries (VHD spec, "Dynamic Disk Header Format", Parent Locator Entries).</summary>
    internal sealed class VhdParentLocator
    {
        /// <summary>"W2ku": absolute Windows path, UTF-16LE.</summary>
        public const uint WindowsAbsolute = 0x57326B75;

        /// <summary>"W2ru": Windows path relative to the child, UTF-16LE.</summary>
        public const uint WindowsRelative = 0x57327275;

        /// <summary>"MacX": file URL, UTF-8.</summary>
        public const uint MacX = 0x4D616358;

        public uint PlatformCode { get; set; }

        /// <summary>Space reserved at <see cref="DataOffset"/>, in bytes as Windows writes it.</summary>
        public uint DataSpace { get; set; }

        /// <summary>Bytes of locator data.</summary>
        public uint DataLength { get; set; }

        public ulong DataOffset { get; set; }

        public bool IsUsed => PlatformCode != 0;
    }

    /// <summary>The 1024-byte dynamic disk header, big-endian (VHD spec "Dynamic Disk Header Format").</summary>
    internal sealed class VhdDynamicHeader
    {
        public const int Length = 1024;
        public const string Cookie = "cxsparse";
        public const uint HeaderVersion = 0x00010000;
        public const int LocatorCount = 8;
        public const int ParentNameBytes = 512;

        private const int CookieOffset = 0;
        private const int DataOffsetOffset = 8;
        private const int TableOffsetOffset = 16;
        private const int VersionOffset = 24;
        private const int MaxTableEntriesOffset = 28;
        private const int BlockSizeOffset = 32;
        private const int ChecksumOffset = 36;
        private const int ParentUniqueIdOffset = 40;
        private const int ParentTimestampOffset = 56;
        private const int ParentNameOffset = 64;
        private const int LocatorsOffset = 576;
        private const int LocatorLength = 24;

        public ulong TableOffset { get; set; }

        public uint MaxTableEntries { get; set; }

        public uint BlockSize { get; set; }

        public byte[] ParentUniqueId { get; set; } = new byte[16];

        public uint ParentTimestamp { get; set; }

        /// <summary>The parent's file name (UTF-16BE on disk).</summary>
        public string ParentName { get; set; } = string.Empty;

        public VhdParentLocator[] Locators { get; } = CreateLocators();

        public static VhdDynamicHeader Parse(ReadOnlySpan<byte> buffer, string path, long fileOffset)
        {
            if (!buffer.Slice(0, 8).SequenceEqual(Encoding.ASCII.GetBytes(Cookie)))
            {
                throw new ImageCorruptException(path, "dynamic header cookie", fileOffset, "the 'cxsparse' cookie is missing");
            }

            uint stored = BinaryPrimitives.ReadUInt32BigEndian(buffer.Slice(ChecksumOffset));
            uint computed = VhdFooter.ComputeChecksum(buffer.Slice(0, Length), ChecksumOffset);
            if (stored != computed)
            {
                throw new ImageCorruptException(path, "dynamic header checksum", fileOffset + ChecksumOffset, $"stored 0x{stored:x8}, computed 0x{computed:x8}");
            }

            var header = new VhdDynamicHeader
            {
                TableOffset = BinaryPrimitives.ReadUInt64BigEndian(buffer.Slice(TableOffsetOffset)),
                MaxTableEntries = BinaryPrimitives.ReadUInt32BigEndian(buffer.Slice(MaxTableEntriesOffset)),
                BlockSize = BinaryPrimitives.ReadUInt32BigEndian(buffer.Slice(BlockSizeOffset)),
                ParentUniqueId = buffer.Slice(ParentUniqueIdOffset, 16).ToArray(),
                ParentTimestamp = BinaryPrimitives.ReadUInt32BigEndian(buffer.Slice(ParentTimestampOffset)),
                ParentName = TrimAtNul(Encoding.BigEndianUnicode.GetString(buffer.Slice(ParentNameOffset, ParentNameBytes).ToArray())),
            };
            for (int i = 0; i < LocatorCount; i++)
            {
                ReadOnlySpan<byte> entry = buffer.Slice(LocatorsOffset + (i * LocatorLength), LocatorLength);
                header.Locators[i].PlatformCode = BinaryPrimitives.ReadUInt32BigEndian(entry);
                header.Locators[i].DataSpace = BinaryPrimitives.ReadUInt32BigEndian(entry.Slice(4));
                header.Locators[i].DataLength = BinaryPrimitives.ReadUInt32BigEndian(entry.Slice(8));
                header.Locators[i].DataOffset = BinaryPrimitives.ReadUInt64BigEndian(entry.Slice(16));
            }

            return header;
        }

        public byte[] ToBytes()
        {
            var buffer = new byte[Length];
            Encoding.ASCII.GetBytes(Cookie).CopyTo(buffer, CookieOffset);
            BinaryPrimitives.WriteUInt64BigEndian(buffer.AsSpan(DataOffsetOffset), ulong.MaxValue);
            BinaryPrimitives.WriteUInt64BigEndian(buffer.AsSpan(TableOffsetOffset), TableOffset);
            BinaryPrimitives.WriteUInt32BigEndian(buffer.AsSpan(VersionOffset), HeaderVersion);
            BinaryPrimitives.WriteUInt32BigEndian(buffer.AsSpan(MaxTableEntriesOffset), MaxTableEntries);
            BinaryPrimitives.WriteUInt32BigEndian(buffer.AsSpan(BlockSizeOffset), BlockSize);
            ParentUniqueId.AsSpan(0, 16).CopyTo(buffer.AsSpan(ParentUniqueIdOffset));
            BinaryPrimitives.WriteUInt32BigEndian(buffer.AsSpan(ParentTimestampOffset), ParentTimestamp);
            byte[] name = Encoding.BigEndianUnicode.GetBytes(ParentName ?? string.Empty);
            name.AsSpan(0, Math.Min(name.Length, ParentNameBytes - 2) & ~1).CopyTo(buffer.AsSpan(ParentNameOffset));
            for (int i = 0; i < LocatorCount; i++)
            {
                Span<byte> entry = buffer.AsSpan(LocatorsOffset + (i * LocatorLength), LocatorLength);
                BinaryPrimitives.WriteUInt32BigEndian(entry, Locators[i].PlatformCode);
                BinaryPrimitives.WriteUInt32BigEndian(entry.Slice(4), Locators[i].DataSpace);
                BinaryPrimitives.WriteUInt32BigEndian(entry.Slice(8), Locators[i].DataLength);
                BinaryPrimitives.WriteUInt64BigEndian(entry.Slice(16), Locators[i].DataOffset);
            }

            BinaryPrimitives.WriteUInt32BigEndian(buffer.AsSpan(ChecksumOffset), VhdFooter.ComputeChecksum(buffer, ChecksumOffset));
            return buffer;
        }

        internal static string TrimAtNul(string text)
        {
            int nul = text.IndexOf('\0');
            return nul >= 0 ? text.Substring(0, nul) : text;
        }

        private static VhdParentLocator[] CreateLocators()
        {
            var locators = new VhdParentLocator[LocatorCount];
            for (int i = 0; i < LocatorCount; i++)
            {
                locators[i] = new VhdParentLocator();
            }

            return locators;
        }
    }
}
