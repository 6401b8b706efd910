using System;
using System.Buffers.Binary;

namespace VDiskPS.Formats.Vhdx
{
    /// <summary>One of the two 4 KiB headers ([MS-VHDX] 2.2.2); the valid one with the higher sequence number is current.</summary>
    internal sealed class VhdxHeader
    {
        private const int SignatureField = 0;
        private const int ChecksumField = 4;
        private const int SequenceNumberField = 8;
        private const int FileWriteGuidField = 16;
        private const int DataWriteGuidField = 32;
        private const int LogGuidField = 48;
        private const int LogVersionField = 64;
        private const int VersionField = 66;
        private const int LogLengthField = 68;
        private const int LogOffsetField = 72;

        public ulong SequenceNumber { get; set; }

        public Guid FileWriteGuid { get; set; }

        public Guid DataWriteGuid { get; set; }

        /// <summary>Zero when the log is empty; otherwise only log entries carrying this GUID count.</summary>
        public Guid LogGuid { get; set; }

        public ushort LogVersion { get; set; }

        public ushort Version { get; set; } = 1;

        public uint LogLength { get; set; }

        public long LogOffset { get; set; }

        /// <summary>Parses a header, or returns null with the reason when it is not valid (a torn header is normal after a crash).</summary>
        public static VhdxHeader TryParse(ReadOnlySpan<byte> block, out string problem)
        {
            if (BinaryPrimitives.ReadUInt32LittleEndian(block.Slice(SignatureField)) != VhdxConstants.HeaderSignature)
            {
                problem = "the signature is not 'head'";
                return null;
            }

            uint stored = BinaryPrimitives.ReadUInt32LittleEndian(block.Slice(ChecksumField));
            uint actual = Crc32C.ComputeWithZeroField(block.Slice(0, VhdxConstants.HeaderLength), ChecksumField);
            if (stored != actual)
            {
                problem = $"the CRC-32C checksum is 0x{stored:x8}, the content gives 0x{actual:x8}";
                return null;
            }

            problem = null;
            return new VhdxHeader
            {
                SequenceNumber = BinaryPrimitives.ReadUInt64LittleEndian(block.Slice(SequenceNumberField)),
                FileWriteGuid = GuidField.Read(block.Slice(FileWriteGuidField)),
                DataWriteGuid = GuidField.Read(block.Slice(DataWriteGuidField)),
                LogGuid = GuidField.Read(block.Slice(LogGuidField)),
                LogVersion = BinaryPrimitives.ReadUInt16LittleEndian(block.Slice(LogVersionField)),
                Version = BinaryPrimitives.ReadUInt16LittleEndian(block.Slice(VersionField)),
                LogLength = BinaryPrimitives.ReadUInt32LittleEndian(block.Slice(LogLengthField)),
                LogOffset = (long)Math.Min(BinaryPrimitives.ReadUInt64LittleEndian(block.Slice(LogOffsetField)), long.MaxValue),
            };
        }

        /// <summary>Serialises into a zeroed 4 KiB block and sets the checksum.</summary>
        public void WriteTo(Span<byte> block)
        {
            block.Slice(0, VhdxConstants.HeaderLength).Clear();
            BinaryPrimitives.WriteUInt32LittleEndian(block.Slice(SignatureField), VhdxConstants.HeaderSignature);
            BinaryPrimitives.WriteUInt64LittleEndian(block.Slice(SequenceNumberField), SequenceNumber);
            GuidField.Write(block.Slice(FileWriteGuidField), FileWriteGuid);
            GuidField.Write(block.Slice(DataWriteGuidField), DataWriteGuid);
            GuidField.Write(block.Slice(LogGuidField), LogGuid);
            BinaryPrimitives.WriteUInt16LittleEndian(block.Slice(LogVersionField), LogVersion);
            BinaryPrimitives.WriteUInt16LittleEndian(block.Slice(VersionField), Version);
            BinaryPrimitives.WriteUInt32LittleEndian(block.Slice(LogLengthField), LogLength);
            BinaryPrimitives.WriteUInt64LittleEndian(block.Slice(LogOffsetField), (ulong)LogOffset);
            BinaryPrimitives.WriteUInt32LittleEndian(block.Slice(ChecksumField), Crc32C.Compute(block.Slice(0, VhdxConstants.HeaderLength)));
        }
    }

    /// <summary>GUIDs are stored in the Microsoft mixed-endian layout, which is Guid's own byte order.</summary>
    internal static class GuidField
    {
        public static Guid Read(ReadOnlySpan<byte> source) => new Guid(source.Slice(0, 16).ToArray());

        public static void Write(Span<byte> target, Guid value) => value.ToByteArray().CopyTo(target);
    }
}
