using System;
using System.Buffers.Binary;

namespace VDiskPS.Formats
{
    /// <summary>
    /// The guest's partition table, read from its first sectors: where the last partition ends (Hyper-V's
    /// MinimumSize) and, for GPT, moving the backup table to a new end of disk after a shrink. MBR layout
    /// from the "Master Boot Record" description of UEFI 2.10 section 5.2.1; GPT from section 5.3.
    /// </summary>
    public sealed class PartitionTable
    {
        private const int MbrSignatureOffset = 510;
        private const int MbrEntriesOffset = 446;
        private const int MbrEntrySize = 16;
        private const byte ProtectiveMbrType = 0xEE;
        private const ulong GptSignature = 0x5452415020494645; // "EFI PART"
        private const int GptHeaderCrcOffset = 16;
        private const int GptMyLbaOffset = 24;
        private const int GptAlternateLbaOffset = 32;
        private const int GptFirstUsableOffset = 40;
        private const int GptLastUsableOffset = 48;
        private const int GptEntriesLbaOffset = 72;
        private const int GptEntryCountOffset = 80;
        private const int GptEntrySizeOffset = 84;
        private const int GptEntriesCrcOffset = 88;
        private const int MaxEntryArrayBytes = 4 * 1024 * 1024;

        private readonly byte[] _gptHeader;
        private readonly byte[] _gptEntries;
        private readonly byte[] _mbr;

        private PartitionTable(string kind, long sectorSize, long lastPartitionEnd, byte[] mbr, byte[] gptHeader, byte[] gptEntries)
        {
            Kind = kind;
            SectorSize = sectorSize;
            LastPartitionEnd = lastPartitionEnd;
            _mbr = mbr;
            _gptHeader = gptHeader;
            _gptEntries = gptEntries;
        }

        /// <summary>"MBR" or "GPT".</summary>
        public string Kind { get; }

        public long SectorSize { get; }

        /// <summary>Byte offset just past the last partition; without partitions, just past the table itself (the MBR sector, or GPT's first usable LBA).</summary>
        public long LastPartitionEnd { get; }

        /// <summary>Bytes the table itself needs after the last partition: GPT's backup entries and header.</summary>
        public long TrailingBytes => _gptHeader == null ? 0 : (EntrySectors + 1) * SectorSize;

        /// <summary>The smallest disk that keeps every partition and the table whole.</summary>
        public long MinimumSize => OperationSupport.AlignUp(LastPartitionEnd, SectorSize) + TrailingBytes;

        private long EntrySectors => (_gptEntries.Length + SectorSize - 1) / SectorSize;

        /// <summary>
        /// The partition table of the disk <paramref name="disk"/> presents (read through its parents), or null when its first sectors
        /// hold none (or a GPT whose checksums do not match: nothing trustworthy to size the disk by).
        /// </summary>
        public static PartitionTable Read(ImageLayer disk, int logicalSectorSize)
        {
            long sector = logicalSectorSize > 0 ? logicalSectorSize : 512;
            long size = disk.Size;
            if (size < 2 * sector)
            {
                return null;
            }

            byte[] mbr = new byte[sector];
            disk.Read(0, mbr);
            if (mbr[MbrSignatureOffset] != 0x55 || mbr[MbrSignatureOffset + 1] != 0xAA)
            {
                return null;
            }

            bool protective = false;
            long mbrEnd = sector;
            for (int i = 0; i < 4; i++)
            {
                int entry = MbrEntriesOffset + (i * MbrEntrySize);
                byte type = mbr[entry + 4];
                uint start = BinaryPrimitives.ReadUInt32LittleEndian(mbr.AsSpan(entry + 8));
                uint count = BinaryPrimitives.ReadUInt32LittleEndian(mbr.AsSpan(entry + 12));
                if (type == 0 || count == 0)
                {
                    continue;
                }

                protective |= type == ProtectiveMbrType;

                // Logical partitions lie inside their extended partition, so its end bounds them.
                mbrEnd = Math.Max(mbrEnd, ((long)start + count) * sector);
            }

            if (!protective)
            {
                return new PartitionTable("MBR", sector, mbrEnd, mbr, null, null);
            }

            return ReadGpt(disk, sector, mbr);
        }

        private static PartitionTable ReadGpt(ImageLayer disk, long sector, byte[] mbr)
        {
            byte[] header = new byte[sector];
            disk.Read(sector, header);
            uint headerSize = BinaryPrimitives.ReadUInt32LittleEndian(header.AsSpan(12));
            if (BinaryPrimitives.ReadUInt64LittleEndian(header) != GptSignature || headerSize < 92 || headerSize > sector)
            {
                return null;
            }

            if (HeaderCrc(header) != BinaryPrimitives.ReadUInt32LittleEndian(header.AsSpan(GptHeaderCrcOffset)))
            {
                return null;
            }

            ulong entriesLba = BinaryPrimitives.ReadUInt64LittleEndian(header.AsSpan(GptEntriesLbaOffset));
            uint count = BinaryPrimitives.ReadUInt32LittleEndian(header.AsSpan(GptEntryCountOffset));
            uint entrySize = BinaryPrimitives.ReadUInt32LittleEndian(header.AsSpan(GptEntrySizeOffset));
            long arrayBytes = (long)count * entrySize;
            if (entrySize < 128 || entrySize % 8 != 0 || arrayBytes > MaxEntryArrayBytes
                || entriesLba < 2 || entriesLba > (ulong)(disk.Size / sector) || ((long)entriesLba * sector) + arrayBytes > disk.Size)
            {
                return null;
            }

            byte[] entries = new byte[arrayBytes];
            disk.Read((long)entriesLba * sector, entries);
            if (Crc32.Compute(entries) != BinaryPrimitives.ReadUInt32LittleEndian(header.AsSpan(GptEntriesCrcOffset)))
            {
                return null;
            }

            ulong firstUsable = BinaryPrimitives.ReadUInt64LittleEndian(header.AsSpan(GptFirstUsableOffset));
            if (firstUsable >= (ulong)(disk.Size / sector))
            {
                return null;
            }

            long end = (long)firstUsable * sector;
            for (long i = 0; i < count; i++)
            {
                Span<byte> entry = entries.AsSpan((int)(i * entrySize), (int)entrySize);
                if (IsUnused(entry))
                {
                    continue;
                }

                ulong lastLba = BinaryPrimitives.ReadUInt64LittleEndian(entry.Slice(40));
                if (lastLba >= (ulong)(long.MaxValue / sector))
                {
                    return null;
                }

                end = Math.Max(end, ((long)lastLba + 1) * sector);
            }

            return new PartitionTable("GPT", sector, end, mbr, header, entries);
        }

        /// <summary>
        /// After the disk became <paramref name="newSize"/> bytes: writes the backup entries and header at
        /// the new end and points the primary header (alternate LBA, last usable LBA) and the protective
        /// MBR at them, so partitioning tools find a consistent GPT. Nothing to do for MBR.
        /// </summary>
        public void MoveBackupToEnd(ImageLayer top, long newSize)
        {
            if (_gptHeader == null)
            {
                return;
            }

            long lastLba = (newSize / SectorSize) - 1;
            long backupEntriesLba = lastLba - EntrySectors;
            long lastUsable = backupEntriesLba - 1;
            if (LastPartitionEnd > (lastUsable + 1) * SectorSize)
            {
                throw new ImageOptionException(top.Path, "size", $"the last partition ends at byte {LastPartitionEnd}, past the room the backup GPT leaves in {newSize} bytes");
            }

            byte[] primary = (byte[])_gptHeader.Clone();
            BinaryPrimitives.WriteUInt64LittleEndian(primary.AsSpan(GptAlternateLbaOffset), (ulong)lastLba);
            BinaryPrimitives.WriteUInt64LittleEndian(primary.AsSpan(GptLastUsableOffset), (ulong)lastUsable);
            SetHeaderCrc(primary);

            byte[] backup = (byte[])primary.Clone();
            BinaryPrimitives.WriteUInt64LittleEndian(backup.AsSpan(GptMyLbaOffset), (ulong)lastLba);
            BinaryPrimitives.WriteUInt64LittleEndian(backup.AsSpan(GptAlternateLbaOffset), 1);
            BinaryPrimitives.WriteUInt64LittleEndian(backup.AsSpan(GptEntriesLbaOffset), (ulong)backupEntriesLba);
            SetHeaderCrc(backup);

            byte[] entryArea = new byte[EntrySectors * SectorSize];
            _gptEntries.CopyTo(entryArea, 0);

            // Backup first: until the primary names the new end, readers use the primary and its own entries.
            top.Write(backupEntriesLba * SectorSize, entryArea);
            top.Write(lastLba * SectorSize, backup);
            top.Write(SectorSize, primary);

            byte[] mbr = (byte[])_mbr.Clone();
            for (int i = 0; i < 4; i++)
            {
                int entry = MbrEntriesOffset + (i * MbrEntrySize);
                if (mbr[entry + 4] == ProtectiveMbrType)
                {
                    // UEFI 2.10 table 5-4: the protective partition covers the disk after LBA 0, capped at 32 bits.
                    uint start = BinaryPrimitives.ReadUInt32LittleEndian(mbr.AsSpan(entry + 8));
                    long cover = Math.Min(uint.MaxValue, lastLba + 1 - start);
                    BinaryPrimitives.WriteUInt32LittleEndian(mbr.AsSpan(entry + 12), (uint)cover);
                }
            }

            top.Write(0, mbr);
        }

        /// <summary>An entry whose partition type GUID is all zeros is unused.</summary>
        private static bool IsUnused(ReadOnlySpan<byte> entry)
        {
            for (int i = 0; i < 16; i++)
            {
                if (entry[i] != 0)
                {
                    return false;
                }
            }

            return true;
        }

        private static uint HeaderCrc(byte[] header)
        {
            int size = (int)BinaryPrimitives.ReadUInt32LittleEndian(header.AsSpan(12));
            byte[] copy = header.AsSpan(0, size).ToArray();
            BinaryPrimitives.WriteUInt32LittleEndian(copy.AsSpan(GptHeaderCrcOffset), 0);
            return Crc32.Compute(copy);
        }

        private static void SetHeaderCrc(byte[] header)
            => BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(GptHeaderCrcOffset), HeaderCrc(header));

        /// <summary>CRC-32 (IEEE 802.3, reflected 0xEDB88320), the checksum of GPT headers and entry arrays.</summary>
        private static class Crc32
        {
            private static readonly uint[] s_table = BuildTable();

            public static uint Compute(ReadOnlySpan<byte> data)
            {
                uint crc = 0xFFFFFFFF;
                foreach (byte b in data)
                {
                    crc = s_table[(crc ^ b) & 0xFF] ^ (crc >> 8);
                }

                return ~crc;
            }

            private static uint[] BuildTable()
            {
                var table = new uint[256];
                for (uint i = 0; i < 256; i++)
                {
                    uint c = i;
                    for (int k = 0; k < 8; k++)
                    {
                        c = (c & 1) != 0 ? 0xEDB88320 ^ (c >> 1) : c >> 1;
                    }

                    table[i] = c;
                }

                return table;
            }
        }
    }
}
