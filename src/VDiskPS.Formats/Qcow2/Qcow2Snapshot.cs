using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.Text;

namespace VDiskPS.Formats.Qcow2
{
    /// <summary>One entry of the snapshot table (qcow2.rst "Snapshots").</summary>
    internal sealed class Qcow2Snapshot
    {
        // Field offsets of a snapshot table entry.
        private const int L1TableOffsetField = 0;
        private const int L1SizeField = 8;
        private const int IdSizeField = 12;
        private const int NameSizeField = 14;
        private const int DateSecondsField = 16;
        private const int DateNanosecondsField = 20;
        private const int VmClockField = 24;
        private const int VmStateSizeField = 32;
        private const int ExtraDataSizeField = 36;
        private const int FixedLength = 40;

        // Extra data (version 3 needs at least the first 16 bytes).
        private const int ExtraVmStateSizeLarge = 0;
        private const int ExtraDiskSize = 8;
        private const int ExtraIcount = 16;
        public const int ExtraDataLength = 24;

        private const int MaxExtraData = 1024;

        /// <summary>Bounds the work of walking every snapshot (check, snapshot operations) on a hostile table.</summary>
        private const long MaxTotalL1Bytes = 1L << 30;

        public long L1TableOffset { get; set; }

        public int L1Size { get; set; }

        public string Id { get; set; }

        public string Name { get; set; }

        public uint DateSeconds { get; set; }

        public uint DateNanoseconds { get; set; }

        public ulong VmClockNanoseconds { get; set; }

        public long VmStateSize { get; set; }

        /// <summary>Virtual disk size when the snapshot was taken (from extra data, else the image's size).</summary>
        public long DiskSize { get; set; }

        public long Icount { get; set; } = -1;

        /// <summary>Bytes the entry occupies in the table as read (its serialized length for new entries).</summary>
        public long EntryLength { get; set; }

        /// <summary>Extra data beyond what this engine knows, kept on rewrite.</summary>
        public byte[] UnknownExtra { get; set; } = Array.Empty<byte>();

        public static List<Qcow2Snapshot> ReadTable(HostFile file, Qcow2Header header)
        {
            var list = new List<Qcow2Snapshot>();
            long at = header.SnapshotsOffset;
            var fixedPart = new byte[FixedLength];
            long tableBytes = 0;
            long l1Bytes = 0;
            for (int i = 0; i < header.SnapshotCount; i++)
            {
                file.ReadExactly(at, fixedPart, "snapshot table entry " + i);
                var s = new Qcow2Snapshot
                {
                    L1TableOffset = (long)(BinaryPrimitives.ReadUInt64BigEndian(fixedPart.AsSpan(L1TableOffsetField)) & 0x7FFFFFFFFFFFFFFFUL),
                    DateSeconds = BinaryPrimitives.ReadUInt32BigEndian(fixedPart.AsSpan(DateSecondsField)),
                    DateNanoseconds = BinaryPrimitives.ReadUInt32BigEndian(fixedPart.AsSpan(DateNanosecondsField)),
                    VmClockNanoseconds = BinaryPrimitives.ReadUInt64BigEndian(fixedPart.AsSpan(VmClockField)),
                    VmStateSize = BinaryPrimitives.ReadUInt32BigEndian(fixedPart.AsSpan(VmStateSizeField)),
                    DiskSize = header.Size,
                };
                uint l1Size = BinaryPrimitives.ReadUInt32BigEndian(fixedPart.AsSpan(L1SizeField));
                int idSize = BinaryPrimitives.ReadUInt16BigEndian(fixedPart.AsSpan(IdSizeField));
                int nameSize = BinaryPrimitives.ReadUInt16BigEndian(fixedPart.AsSpan(NameSizeField));
                uint extraSize = BinaryPrimitives.ReadUInt32BigEndian(fixedPart.AsSpan(ExtraDataSizeField));
                string field = $"snapshot table entry {i}";
                if (l1Size > Qcow2Header.MaxL1Bytes / 8)
                {
                    throw new ImageCorruptException(file.Path, field + " l1_size", at + L1SizeField, $"{l1Size} entries exceed QEMU's limit");
                }

                if (l1Size > 0 && (s.L1TableOffset == 0 || (s.L1TableOffset & (header.ClusterSize - 1)) != 0))
                {
                    throw new ImageCorruptException(file.Path, field + " l1_table_offset", at + L1TableOffsetField, $"0x{s.L1TableOffset:x} is not cluster aligned");
                }

                if (extraSize > MaxExtraData)
                {
                    throw new ImageCorruptException(file.Path, field + " extra_data_size", at + ExtraDataSizeField, $"{extraSize} bytes exceed the limit of {MaxExtraData}");
                }

                s.L1Size = (int)l1Size;
                l1Bytes += (long)l1Size * 8;
                if (l1Bytes > MaxTotalL1Bytes)
                {
                    throw new ImageCorruptException(file.Path, field + " l1_size", at + L1SizeField, $"the snapshots' L1 tables together exceed {MaxTotalL1Bytes >> 20} MiB");
                }
                var rest = new byte[extraSize + idSize + nameSize];
                file.ReadExactly(at + FixedLength, rest, field);
                if (extraSize >= ExtraDiskSize + 8)
                {
                    s.VmStateSize = (long)Math.Min(BinaryPrimitives.ReadUInt64BigEndian(rest.AsSpan(ExtraVmStateSizeLarge)), long.MaxValue);
                    s.DiskSize = (long)Math.Min(BinaryPrimitives.ReadUInt64BigEndian(rest.AsSpan(ExtraDiskSize)), long.MaxValue / 2);
                }

                if (extraSize >= ExtraIcount + 8)
                {
                    s.Icount = (long)BinaryPrimitives.ReadUInt64BigEndian(rest.AsSpan(ExtraIcount));
                }

                if (extraSize > ExtraDataLength)
                {
                    s.UnknownExtra = rest.AsSpan(ExtraDataLength, (int)extraSize - ExtraDataLength).ToArray();
                }

                s.Id = Encoding.UTF8.GetString(rest, (int)extraSize, idSize);
                s.Name = Encoding.UTF8.GetString(rest, (int)extraSize + idSize, nameSize);
                long entryLength = (FixedLength + rest.Length + 7) & ~7L;
                tableBytes += entryLength;
                s.EntryLength = entryLength;
                if (tableBytes > Qcow2Header.MaxSnapshotTableBytes)
                {
                    throw new ImageCorruptException(file.Path, "snapshot table", header.SnapshotsOffset, "the snapshot table exceeds 64 MiB");
                }

                at += entryLength;
                list.Add(s);
            }

            return list;
        }

        /// <summary>The bytes the table occupies on disk.</summary>
        public static long TableLength(IReadOnlyList<Qcow2Snapshot> snapshots)
        {
            long total = 0;
            foreach (var s in snapshots)
            {
                total += s.EntryLength;
            }

            return total;
        }

        public static byte[] SerializeTable(IReadOnlyList<Qcow2Snapshot> snapshots)
        {
            var parts = new List<byte[]>();
            foreach (var s in snapshots)
            {
                byte[] id = Encoding.UTF8.GetBytes(s.Id);
                byte[] name = Encoding.UTF8.GetBytes(s.Name);
                int extra = ExtraDataLength + s.UnknownExtra.Length;
                int length = (FixedLength + extra + id.Length + name.Length + 7) & ~7;
                s.EntryLength = length;
                var b = new byte[length];
                BinaryPrimitives.WriteUInt64BigEndian(b.AsSpan(L1TableOffsetField), (ulong)s.L1TableOffset);
                BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(L1SizeField), (uint)s.L1Size);
                BinaryPrimitives.WriteUInt16BigEndian(b.AsSpan(IdSizeField), (ushort)id.Length);
                BinaryPrimitives.WriteUInt16BigEndian(b.AsSpan(NameSizeField), (ushort)name.Length);
                BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(DateSecondsField), s.DateSeconds);
                BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(DateNanosecondsField), s.DateNanoseconds);
                BinaryPrimitives.WriteUInt64BigEndian(b.AsSpan(VmClockField), s.VmClockNanoseconds);
                BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(VmStateSizeField), (uint)Math.Min(s.VmStateSize, uint.MaxValue));
                BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(ExtraDataSizeField), (uint)extra);
                BinaryPrimitives.WriteUInt64BigEndian(b.AsSpan(FixedLength + ExtraVmStateSizeLarge), (ulong)s.VmStateSize);
                BinaryPrimitives.WriteUInt64BigEndian(b.AsSpan(FixedLength + ExtraDiskSize), (ulong)s.DiskSize);
                BinaryPrimitives.WriteUInt64BigEndian(b.AsSpan(FixedLength + ExtraIcount), (ulong)s.Icount);
                s.UnknownExtra.CopyTo(b, FixedLength + ExtraDataLength);
                id.CopyTo(b, FixedLength + extra);
                name.CopyTo(b, FixedLength + extra + id.Length);
                parts.Add(b);
            }

            int total = 0;
            foreach (var p in parts)
            {
                total += p.Length;
            }

            var table = new byte[total];
            int offset = 0;
            foreach (var p in parts)
            {
                p.CopyTo(table, offset);
                offset += p.Length;
            }

            return table;
        }
    }
}
