using System;
using System.Buffers.Binary;
using System.Collections.Generic;

namespace VDiskPS.Formats.Vhdx
{
    /// <summary>One region table entry ([MS-VHDX] 2.2.3.2): where the BAT or the metadata lives.</summary>
    internal sealed class VhdxRegion
    {
        public Guid Id { get; set; }

        public long FileOffset { get; set; }

        public long Length { get; set; }

        public bool Required { get; set; }

        public long End => FileOffset + Length;
    }

    /// <summary>The region table ([MS-VHDX] 2.2.3), kept twice in the header section.</summary>
    internal static class VhdxRegionTable
    {
        private const int SignatureField = 0;
        private const int ChecksumField = 4;
        private const int EntryCountField = 8;
        private const int FirstEntry = 16;
        private const int EntryLength = 32;
        private const int EntryGuidField = 0;
        private const int EntryFileOffsetField = 16;
        private const int EntryLengthField = 24;
        private const int EntryRequiredField = 28;

        /// <summary>Parses and validates a table; returns null with the reason when the copy is unusable.</summary>
        public static List<VhdxRegion> TryParse(ReadOnlySpan<byte> table, out string problem)
        {
            if (BinaryPrimitives.ReadUInt32LittleEndian(table.Slice(SignatureField)) != VhdxConstants.RegionSignature)
            {
                problem = "the signature is not 'regi'";
                return null;
            }

            uint stored = BinaryPrimitives.ReadUInt32LittleEndian(table.Slice(ChecksumField));
            uint actual = Crc32C.ComputeWithZeroField(table, ChecksumField);
            if (stored != actual)
            {
                problem = $"the CRC-32C checksum is 0x{stored:x8}, the content gives 0x{actual:x8}";
                return null;
            }

            uint count = BinaryPrimitives.ReadUInt32LittleEndian(table.Slice(EntryCountField));
            if (count > VhdxConstants.MaxRegionEntries)
            {
                problem = $"the entry count {count} exceeds {VhdxConstants.MaxRegionEntries}";
                return null;
            }

            var regions = new List<VhdxRegion>((int)count);
            for (int i = 0; i < count; i++)
            {
                ReadOnlySpan<byte> entry = table.Slice(FirstEntry + (i * EntryLength), EntryLength);
                regions.Add(new VhdxRegion
                {
                    Id = GuidField.Read(entry.Slice(EntryGuidField)),
                    FileOffset = (long)Math.Min(BinaryPrimitives.ReadUInt64LittleEndian(entry.Slice(EntryFileOffsetField)), long.MaxValue / 2),
                    Length = BinaryPrimitives.ReadUInt32LittleEndian(entry.Slice(EntryLengthField)),
                    Required = (BinaryPrimitives.ReadUInt32LittleEndian(entry.Slice(EntryRequiredField)) & 1) != 0,
                });
            }

            problem = null;
            return regions;
        }

        /// <summary>Checks placement rules (1 MiB alignment, past the header section, no overlaps, no duplicates).</summary>
        public static string Validate(IReadOnlyList<VhdxRegion> regions)
        {
            for (int i = 0; i < regions.Count; i++)
            {
                VhdxRegion r = regions[i];
                if (r.FileOffset % VhdxConstants.MiB != 0 || r.FileOffset < VhdxConstants.HeaderSectionLength)
                {
                    return $"region {r.Id} starts at {r.FileOffset}, not a 1 MiB multiple past the header section";
                }

                if (r.Length == 0 || r.Length % VhdxConstants.MiB != 0)
                {
                    return $"region {r.Id} is {r.Length} bytes long, not a non-zero multiple of 1 MiB";
                }

                for (int j = 0; j < i; j++)
                {
                    VhdxRegion other = regions[j];
                    if (other.Id == r.Id)
                    {
                        return $"region {r.Id} appears twice";
                    }

                    if (r.FileOffset < other.End && other.FileOffset < r.End)
                    {
                        return $"region {r.Id} ({r.FileOffset}+{r.Length}) overlaps region {other.Id} ({other.FileOffset}+{other.Length})";
                    }
                }
            }

            return null;
        }

        /// <summary>Serialises the table into a zeroed 64 KiB block with its checksum.</summary>
        public static byte[] Build(IReadOnlyList<VhdxRegion> regions)
        {
            var table = new byte[VhdxConstants.RegionTableLength];
            BinaryPrimitives.WriteUInt32LittleEndian(table.AsSpan(SignatureField), VhdxConstants.RegionSignature);
            BinaryPrimitives.WriteUInt32LittleEndian(table.AsSpan(EntryCountField), (uint)regions.Count);
            for (int i = 0; i < regions.Count; i++)
            {
                Span<byte> entry = table.AsSpan(FirstEntry + (i * EntryLength), EntryLength);
                GuidField.Write(entry.Slice(EntryGuidField), regions[i].Id);
                BinaryPrimitives.WriteUInt64LittleEndian(entry.Slice(EntryFileOffsetField), (ulong)regions[i].FileOffset);
                BinaryPrimitives.WriteUInt32LittleEndian(entry.Slice(EntryLengthField), (uint)regions[i].Length);
                BinaryPrimitives.WriteUInt32LittleEndian(entry.Slice(EntryRequiredField), regions[i].Required ? 1u : 0u);
            }

            BinaryPrimitives.WriteUInt32LittleEndian(table.AsSpan(ChecksumField), Crc32C.Compute(table));
            return table;
        }
    }
}
