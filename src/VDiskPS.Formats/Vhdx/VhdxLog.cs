using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.Linq;

namespace VDiskPS.Formats.Vhdx
{
    /// <summary>One update a log entry carries: a 4 KiB page of data, or a run of zeros ([MS-VHDX] 2.3.1.2, 2.3.1.3).</summary>
    internal sealed class VhdxLogWrite
    {
        public long FileOffset { get; set; }

        /// <summary>The page to write, or null for a zero descriptor.</summary>
        public byte[] Data { get; set; }

        public long ZeroLength { get; set; }
    }

    /// <summary>The active sequence a log holds: its writes in order and the file sizes its head entry records.</summary>
    internal sealed class VhdxLogSequence
    {
        public List<VhdxLogWrite> Writes { get; } = new List<VhdxLogWrite>();

        public long HeadLogOffset { get; set; }

        public long FlushedFileOffset { get; set; }

        public long LastFileOffset { get; set; }
    }

    /// <summary>The metadata log ([MS-VHDX] 2.3): finding the active sequence and building new entries.</summary>
    internal static class VhdxLog
    {
        // 2.3.1.1 entry header.
        private const int EntrySignatureField = 0;
        private const int EntryChecksumField = 4;
        private const int EntryLengthField = 8;
        private const int EntryTailField = 12;
        private const int EntrySequenceField = 16;
        private const int EntryDescriptorCountField = 24;
        private const int EntryLogGuidField = 32;
        private const int EntryFlushedFileOffsetField = 48;
        private const int EntryLastFileOffsetField = 56;
        private const int EntryHeaderLength = 64;

        // 2.3.1.2 / 2.3.1.3 descriptors.
        private const int DescriptorLength = 32;
        private const int DescriptorSignatureField = 0;
        private const int DescriptorTrailingBytesField = 4;
        private const int DescriptorLeadingBytesField = 8;
        private const int DescriptorZeroLengthField = 8;
        private const int DescriptorFileOffsetField = 16;
        private const int DescriptorSequenceField = 24;

        // 2.3.1.4 data sector.
        private const int DataSectorSignatureField = 0;
        private const int DataSectorSequenceHighField = 4;
        private const int DataSectorDataField = 8;
        private const int DataSectorSequenceLowField = 4092;
        private const int DataSectorPayload = 4084;

        private const int Sector = VhdxConstants.LogSectorLength;

        /// <summary>Scanning a hostile log never checksums more than this many bytes in total.</summary>
        private const long ChecksumBudget = 1L << 30;

        /// <summary>
        /// Finds the active sequence: the valid run of entries (consecutive sequence numbers, each following
        /// the previous in the circular log, the head's tail inside the run) whose head has the highest sequence
        /// number. Torn or foreign entries are simply not part of it. Returns null when there is no valid sequence.
        /// </summary>
        public static VhdxLogSequence FindActiveSequence(byte[] log, Guid logGuid, string path, long logFileOffset)
        {
            var entries = new Dictionary<long, ParsedEntry>();
            long budget = ChecksumBudget;
            for (long at = 0; at < log.Length; at += Sector)
            {
                ParsedEntry entry = TryParseEntry(log, at, logGuid, ref budget);
                if (budget < 0)
                {
                    throw new ImageCorruptException(path, "log", logFileOffset, "the log holds too many overlapping candidate entries to search in bounded time");
                }

                if (entry != null)
                {
                    entries[at] = entry;
                }
            }

            if (entries.Count == 0)
            {
                return null;
            }

            // Each entry's successor, then the head its run reaches, computed from the highest sequence down.
            var headOf = new Dictionary<long, ParsedEntry>();
            foreach (ParsedEntry entry in entries.Values.OrderByDescending(e => e.SequenceNumber))
            {
                long next = (entry.LogOffset + entry.Length) % log.Length;
                entry.Successor = entries.TryGetValue(next, out ParsedEntry successor) && successor.SequenceNumber == entry.SequenceNumber + 1 ? successor : null;
                headOf[entry.LogOffset] = entry.Successor == null ? entry : headOf[entry.Successor.LogOffset];
            }

            // A run is a valid sequence when its head's tail names an entry of the run ([MS-VHDX] 2.3.2, 2.3.3);
            // the active sequence is the valid one with the newest head.
            ParsedEntry head = null;
            ParsedEntry start = null;
            foreach (ParsedEntry candidate in entries.Values)
            {
                ParsedEntry candidateHead = headOf[candidate.LogOffset];
                if (entries.TryGetValue(candidateHead.Tail, out ParsedEntry tail) && headOf[tail.LogOffset] == candidateHead
                    && tail.SequenceNumber >= candidate.SequenceNumber
                    && (head == null || candidateHead.SequenceNumber > head.SequenceNumber))
                {
                    head = candidateHead;
                    start = tail;
                }
            }

            if (head == null)
            {
                return null;
            }

            var sequence = new VhdxLogSequence
            {
                HeadLogOffset = head.LogOffset,
                FlushedFileOffset = head.FlushedFileOffset,
                LastFileOffset = head.LastFileOffset,
            };
            for (ParsedEntry e = start; e != null; e = e == head ? null : e.Successor)
            {
                sequence.Writes.AddRange(e.Writes);
            }

            return sequence;
        }

        /// <summary>The length of an entry carrying <paramref name="pageCount"/> data pages.</summary>
        public static long EntryLength(int pageCount) => (DescriptorSectors(pageCount) + (long)pageCount) * Sector;

        /// <summary>The most 4 KiB pages one entry can carry in a log of <paramref name="logLength"/> bytes.</summary>
        public static int MaxPagesPerEntry(long logLength)
        {
            long sectors = logLength / Sector;
            int n = (int)Math.Min(sectors, 1 << 20);
            while (n > 0 && DescriptorSectors(n) + n > sectors)
            {
                n--;
            }

            return n;
        }

        /// <summary>Builds one entry carrying <paramref name="writes"/>: data descriptors with their data sectors, and zero descriptors.</summary>
        public static byte[] BuildEntry(IReadOnlyList<VhdxLogWrite> writes, ulong sequenceNumber, Guid logGuid, uint tail, long flushedFileOffset, long lastFileOffset)
        {
            int descriptorSectors = DescriptorSectors(writes.Count);
            int dataSectors = writes.Count(w => w.Data != null);
            var entry = new byte[(descriptorSectors + dataSectors) * Sector];
            Span<byte> header = entry.AsSpan(0, EntryHeaderLength);
            BinaryPrimitives.WriteUInt32LittleEndian(header.Slice(EntrySignatureField), VhdxConstants.LogEntrySignature);
            BinaryPrimitives.WriteUInt32LittleEndian(header.Slice(EntryLengthField), (uint)entry.Length);
            BinaryPrimitives.WriteUInt32LittleEndian(header.Slice(EntryTailField), tail);
            BinaryPrimitives.WriteUInt64LittleEndian(header.Slice(EntrySequenceField), sequenceNumber);
            BinaryPrimitives.WriteUInt32LittleEndian(header.Slice(EntryDescriptorCountField), (uint)writes.Count);
            GuidField.Write(header.Slice(EntryLogGuidField), logGuid);
            BinaryPrimitives.WriteUInt64LittleEndian(header.Slice(EntryFlushedFileOffsetField), (ulong)flushedFileOffset);
            BinaryPrimitives.WriteUInt64LittleEndian(header.Slice(EntryLastFileOffsetField), (ulong)lastFileOffset);
            int dataSector = descriptorSectors;
            for (int i = 0; i < writes.Count; i++)
            {
                VhdxLogWrite write = writes[i];
                Span<byte> descriptor = entry.AsSpan(EntryHeaderLength + (i * DescriptorLength), DescriptorLength);
                BinaryPrimitives.WriteUInt64LittleEndian(descriptor.Slice(DescriptorFileOffsetField), (ulong)write.FileOffset);
                BinaryPrimitives.WriteUInt64LittleEndian(descriptor.Slice(DescriptorSequenceField), sequenceNumber);
                if (write.Data == null)
                {
                    BinaryPrimitives.WriteUInt32LittleEndian(descriptor.Slice(DescriptorSignatureField), VhdxConstants.LogZeroDescriptorSignature);
                    BinaryPrimitives.WriteUInt64LittleEndian(descriptor.Slice(DescriptorZeroLengthField), (ulong)write.ZeroLength);
                    continue;
                }

                byte[] page = write.Data;
                BinaryPrimitives.WriteUInt32LittleEndian(descriptor.Slice(DescriptorSignatureField), VhdxConstants.LogDataDescriptorSignature);
                page.AsSpan(DataSectorSequenceLowField, 4).CopyTo(descriptor.Slice(DescriptorTrailingBytesField));
                page.AsSpan(0, 8).CopyTo(descriptor.Slice(DescriptorLeadingBytesField));

                Span<byte> sector = entry.AsSpan(dataSector * Sector, Sector);
                BinaryPrimitives.WriteUInt32LittleEndian(sector.Slice(DataSectorSignatureField), VhdxConstants.LogDataSectorSignature);
                BinaryPrimitives.WriteUInt32LittleEndian(sector.Slice(DataSectorSequenceHighField), (uint)(sequenceNumber >> 32));
                page.AsSpan(DataSectorDataField, DataSectorPayload).CopyTo(sector.Slice(DataSectorDataField));
                BinaryPrimitives.WriteUInt32LittleEndian(sector.Slice(DataSectorSequenceLowField), (uint)sequenceNumber);
                dataSector++;
            }

            BinaryPrimitives.WriteUInt32LittleEndian(entry.AsSpan(EntryChecksumField), Crc32C.Compute(entry));
            return entry;
        }

        private static int DescriptorSectors(int descriptorCount) => (EntryHeaderLength + (descriptorCount * DescriptorLength) + Sector - 1) / Sector;

        private static ParsedEntry TryParseEntry(byte[] log, long at, Guid logGuid, ref long budget)
        {
            ReadOnlySpan<byte> header = log.AsSpan((int)at, EntryHeaderLength);
            if (BinaryPrimitives.ReadUInt32LittleEndian(header.Slice(EntrySignatureField)) != VhdxConstants.LogEntrySignature
                || GuidField.Read(header.Slice(EntryLogGuidField)) != logGuid)
            {
                return null;
            }

            uint length = BinaryPrimitives.ReadUInt32LittleEndian(header.Slice(EntryLengthField));
            uint tail = BinaryPrimitives.ReadUInt32LittleEndian(header.Slice(EntryTailField));
            ulong sequenceNumber = BinaryPrimitives.ReadUInt64LittleEndian(header.Slice(EntrySequenceField));
            uint descriptorCount = BinaryPrimitives.ReadUInt32LittleEndian(header.Slice(EntryDescriptorCountField));
            if (length == 0 || length % Sector != 0 || length > log.Length || tail % Sector != 0 || tail >= log.Length
                || sequenceNumber == 0 || descriptorCount > length / DescriptorLength)
            {
                return null;
            }

            int descriptorSectors = DescriptorSectors((int)descriptorCount);
            if (descriptorSectors * (long)Sector > length)
            {
                return null;
            }

            budget -= length;
            if (budget < 0)
            {
                return null;
            }

            // The entry may wrap around the end of the circular log.
            byte[] bytes = new byte[length];
            long firstPart = Math.Min(length, log.Length - at);
            Array.Copy(log, at, bytes, 0, firstPart);
            Array.Copy(log, 0, bytes, firstPart, length - firstPart);

            var entry = new ParsedEntry
            {
                LogOffset = at,
                Length = length,
                Tail = tail,
                SequenceNumber = sequenceNumber,
                FlushedFileOffset = (long)Math.Min(BinaryPrimitives.ReadUInt64LittleEndian(header.Slice(EntryFlushedFileOffsetField)), long.MaxValue),
                LastFileOffset = (long)Math.Min(BinaryPrimitives.ReadUInt64LittleEndian(header.Slice(EntryLastFileOffsetField)), long.MaxValue),
            };
            int dataSector = descriptorSectors;
            for (int i = 0; i < descriptorCount; i++)
            {
                ReadOnlySpan<byte> descriptor = bytes.AsSpan(EntryHeaderLength + (i * DescriptorLength), DescriptorLength);
                uint signature = BinaryPrimitives.ReadUInt32LittleEndian(descriptor.Slice(DescriptorSignatureField));
                ulong fileOffset = BinaryPrimitives.ReadUInt64LittleEndian(descriptor.Slice(DescriptorFileOffsetField));
                if (BinaryPrimitives.ReadUInt64LittleEndian(descriptor.Slice(DescriptorSequenceField)) != sequenceNumber
                    || fileOffset % Sector != 0 || fileOffset > (ulong)VhdxConstants.MaxVirtualSize * 2)
                {
                    return null;
                }

                if (signature == VhdxConstants.LogZeroDescriptorSignature)
                {
                    ulong zeroLength = BinaryPrimitives.ReadUInt64LittleEndian(descriptor.Slice(DescriptorZeroLengthField));
                    if (zeroLength % Sector != 0 || zeroLength > (ulong)VhdxConstants.MaxVirtualSize * 2)
                    {
                        return null;
                    }

                    entry.Writes.Add(new VhdxLogWrite { FileOffset = (long)fileOffset, ZeroLength = (long)zeroLength });
                    continue;
                }

                if (signature != VhdxConstants.LogDataDescriptorSignature || (dataSector + 1) * (long)Sector > length)
                {
                    return null;
                }

                ReadOnlySpan<byte> sector = bytes.AsSpan(dataSector * Sector, Sector);
                if (BinaryPrimitives.ReadUInt32LittleEndian(sector.Slice(DataSectorSignatureField)) != VhdxConstants.LogDataSectorSignature
                    || BinaryPrimitives.ReadUInt32LittleEndian(sector.Slice(DataSectorSequenceHighField)) != (uint)(sequenceNumber >> 32)
                    || BinaryPrimitives.ReadUInt32LittleEndian(sector.Slice(DataSectorSequenceLowField)) != (uint)sequenceNumber)
                {
                    return null;
                }

                var page = new byte[Sector];
                descriptor.Slice(DescriptorLeadingBytesField, 8).CopyTo(page);
                sector.Slice(DataSectorDataField, DataSectorPayload).CopyTo(page.AsSpan(DataSectorDataField));
                descriptor.Slice(DescriptorTrailingBytesField, 4).CopyTo(page.AsSpan(DataSectorSequenceLowField));
                entry.Writes.Add(new VhdxLogWrite { FileOffset = (long)fileOffset, Data = page });
                dataSector++;
            }

            if (dataSector * (long)Sector != length)
            {
                return null;
            }

            uint stored = BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(EntryChecksumField));
            return Crc32C.ComputeWithZeroField(bytes, EntryChecksumField) == stored ? entry : null;
        }

        private sealed class ParsedEntry
        {
            public long LogOffset { get; set; }

            public long Length { get; set; }

            public long Tail { get; set; }

            public ulong SequenceNumber { get; set; }

            public long FlushedFileOffset { get; set; }

            public long LastFileOffset { get; set; }

            public List<VhdxLogWrite> Writes { get; } = new List<VhdxLogWrite>();

            public ParsedEntry Successor { get; set; }
        }
    }
}
