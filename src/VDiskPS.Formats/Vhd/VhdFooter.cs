using System;
using System.Buffers.Binary;
using System.Text;

namespace VDiskPS.Formats.Vhd
{
    /// <summary>The VHD type field of the footer (VHD spec, "Hard Disk Footer Format", Disk Type).</summary>
    internal enum VhdDiskType : uint
    {
        Fixed = 2,
        Dynamic = 3,
        Differencing = 4,
    }

    /// <summary>
    /// The 512-byte hard disk footer, big-endian (VHD spec "Hard Disk Footer Format"). A fixed disk keeps
    /// it at the end only; dynamic and differencing disks also keep a copy at offset 0.
    /// </summary>
    internal sealed class VhdFooter
    {
        public const int Length = 512;
        public const string Cookie = "conectix";

        // Field offsets inside the footer.
        private const int CookieOffset = 0;
        private const int FeaturesOffset = 8;
        private const int VersionOffset = 12;
        private const int DataOffsetOffset = 16;
        private const int TimestampOffset = 24;
        private const int CreatorAppOffset = 28;
        private const int CreatorVersionOffset = 32;
        private const int CreatorHostOsOffset = 36;
        private const int OriginalSizeOffset = 40;
        private const int CurrentSizeOffset = 48;
        private const int CylindersOffset = 56;
        private const int HeadsOffset = 58;
        private const int SectorsPerTrackOffset = 59;
        private const int DiskTypeOffset = 60;
        internal const int ChecksumOffset = 64;
        private const int UniqueIdOffset = 68;
        private const int SavedStateOffset = 84;

        /// <summary>The "reserved" feature bit every VHD sets.</summary>
        public const uint FeaturesReserved = 2;

        public const uint FormatVersion = 0x00010000;

        /// <summary>Data offset of a fixed disk: no further structure.</summary>
        public const ulong NoDataOffset = ulong.MaxValue;

        /// <summary>Largest size the spec allows (2040 GiB, as Hyper-V and qemu enforce).</summary>
        public const long MaxSize = 0xFF000000L * 512;

        /// <summary>Creators whose current size qemu trusts over the CHS geometry (block/vpc.c).</summary>
        private static readonly string[] s_currentSizeCreators = { "win ", "qem2", "d2v ", "CTXS", "tap\0" };

        private static readonly DateTime s_epoch = new DateTime(2000, 1, 1, 0, 0, 0, DateTimeKind.Utc);

        public uint Features { get; set; } = FeaturesReserved;

        public uint Version { get; set; } = FormatVersion;

        public ulong DataOffset { get; set; } = NoDataOffset;

        /// <summary>Seconds since 2000-01-01 UTC.</summary>
        public uint Timestamp { get; set; }

        public string CreatorApp { get; set; } = "win ";

        public uint CreatorVersion { get; set; } = 0x000A0000;

        public string CreatorHostOs { get; set; } = "Wi2k";

        public ulong OriginalSize { get; set; }

        public ulong CurrentSize { get; set; }

        public ushort Cylinders { get; set; }

        public byte Heads { get; set; }

        public byte SectorsPerTrack { get; set; }

        public VhdDiskType DiskType { get; set; }

        public uint Checksum { get; private set; }

        /// <summary>The 16 identity bytes as stored (compared byte for byte with a child's parent id).</summary>
        public byte[] UniqueId { get; set; } = new byte[16];

        public byte SavedState { get; set; }

        public static uint Now() => (uint)Math.Max(0, Math.Min(uint.MaxValue, (DateTime.UtcNow - s_epoch).TotalSeconds));

        public static DateTime ToDateTime(uint timestamp) => s_epoch.AddSeconds(timestamp);

        public static uint FromDateTime(DateTime utc) => (uint)Math.Max(0, Math.Min(uint.MaxValue, (utc.ToUniversalTime() - s_epoch).TotalSeconds));

        public static bool HasCookie(ReadOnlySpan<byte> buffer)
            => buffer.Length >= 8 && buffer.Slice(0, 8).SequenceEqual(Encoding.ASCII.GetBytes(Cookie));

        /// <summary>One's complement of the byte sum, the checksum field counted as zero (VHD spec, Checksum).</summary>
        public static uint ComputeChecksum(ReadOnlySpan<byte> structure, int checksumOffset)
        {
            uint sum = 0;
            for (int i = 0; i < structure.Length; i++)
            {
                if (i < checksumOffset || i >= checksumOffset + 4)
                {
                    sum += structure[i];
                }
            }

            return ~sum;
        }

        /// <summary>Parses and verifies a footer read at <paramref name="fileOffset"/>.</summary>
        public static VhdFooter Parse(ReadOnlySpan<byte> buffer, string path, long fileOffset)
        {
            if (!HasCookie(buffer))
            {
                throw new ImageFormatMismatchException(path, "footer cookie", fileOffset, "not a VHD: the 'conectix' cookie is missing");
            }

            uint stored = BinaryPrimitives.ReadUInt32BigEndian(buffer.Slice(ChecksumOffset));
            uint computed = ComputeChecksum(buffer.Slice(0, Length), ChecksumOffset);
            if (stored != computed)
            {
                throw new ImageCorruptException(path, "footer checksum", fileOffset + ChecksumOffset, $"stored 0x{stored:x8}, computed 0x{computed:x8}");
            }

            var footer = new VhdFooter
            {
                Features = BinaryPrimitives.ReadUInt32BigEndian(buffer.Slice(FeaturesOffset)),
                Version = BinaryPrimitives.ReadUInt32BigEndian(buffer.Slice(VersionOffset)),
                DataOffset = BinaryPrimitives.ReadUInt64BigEndian(buffer.Slice(DataOffsetOffset)),
                Timestamp = BinaryPrimitives.ReadUInt32BigEndian(buffer.Slice(TimestampOffset)),
                CreatorApp = Encoding.ASCII.GetString(buffer.Slice(CreatorAppOffset, 4).ToArray()),
                CreatorVersion = BinaryPrimitives.ReadUInt32BigEndian(buffer.Slice(CreatorVersionOffset)),
                CreatorHostOs = Encoding.ASCII.GetString(buffer.Slice(CreatorHostOsOffset, 4).ToArray()),
                OriginalSize = BinaryPrimitives.ReadUInt64BigEndian(buffer.Slice(OriginalSizeOffset)),
                CurrentSize = BinaryPrimitives.ReadUInt64BigEndian(buffer.Slice(CurrentSizeOffset)),
                Cylinders = BinaryPrimitives.ReadUInt16BigEndian(buffer.Slice(CylindersOffset)),
                Heads = buffer[HeadsOffset],
                SectorsPerTrack = buffer[SectorsPerTrackOffset],
                DiskType = (VhdDiskType)BinaryPrimitives.ReadUInt32BigEndian(buffer.Slice(DiskTypeOffset)),
                Checksum = stored,
                UniqueId = buffer.Slice(UniqueIdOffset, 16).ToArray(),
                SavedState = buffer[SavedStateOffset],
            };
            if (footer.DiskType != VhdDiskType.Fixed && footer.DiskType != VhdDiskType.Dynamic && footer.DiskType != VhdDiskType.Differencing)
            {
                throw new ImageNotSupportedException(path, "disk type", fileOffset + DiskTypeOffset, $"disk type {(uint)footer.DiskType} is not fixed (2), dynamic (3) or differencing (4)");
            }

            return footer;
        }

        public byte[] ToBytes()
        {
            var buffer = new byte[Length];
            Encoding.ASCII.GetBytes(Cookie).CopyTo(buffer, CookieOffset);
            BinaryPrimitives.WriteUInt32BigEndian(buffer.AsSpan(FeaturesOffset), Features);
            BinaryPrimitives.WriteUInt32BigEndian(buffer.AsSpan(VersionOffset), Version);
            BinaryPrimitives.WriteUInt64BigEndian(buffer.AsSpan(DataOffsetOffset), DataOffset);
            BinaryPrimitives.WriteUInt32BigEndian(buffer.AsSpan(TimestampOffset), Timestamp);
            WriteAscii4(buffer, CreatorAppOffset, CreatorApp);
            BinaryPrimitives.WriteUInt32BigEndian(buffer.AsSpan(CreatorVersionOffset), CreatorVersion);
            WriteAscii4(buffer, CreatorHostOsOffset, CreatorHostOs);
            BinaryPrimitives.WriteUInt64BigEndian(buffer.AsSpan(OriginalSizeOffset), OriginalSize);
            BinaryPrimitives.WriteUInt64BigEndian(buffer.AsSpan(CurrentSizeOffset), CurrentSize);
            BinaryPrimitives.WriteUInt16BigEndian(buffer.AsSpan(CylindersOffset), Cylinders);
            buffer[HeadsOffset] = Heads;
            buffer[SectorsPerTrackOffset] = SectorsPerTrack;
            BinaryPrimitives.WriteUInt32BigEndian(buffer.AsSpan(DiskTypeOffset), (uint)DiskType);
            UniqueId.AsSpan(0, 16).CopyTo(buffer.AsSpan(UniqueIdOffset));
            buffer[SavedStateOffset] = SavedState;
            Checksum = ComputeChecksum(buffer, ChecksumOffset);
            BinaryPrimitives.WriteUInt32BigEndian(buffer.AsSpan(ChecksumOffset), Checksum);
            return buffer;
        }

        /// <summary>
        /// The virtual size a reader derives: qemu (block/vpc.c) uses cylinders × heads × sectors unless
        /// the creator is one that records the exact size, or the geometry is the maximum.
        /// </summary>
        public long VirtualSize
        {
            get
            {
                long chs = (long)Cylinders * Heads * SectorsPerTrack * 512;
                bool maxGeometry = Cylinders == 65535 && Heads == 16 && SectorsPerTrack == 255;
                if (maxGeometry || Array.IndexOf(s_currentSizeCreators, CreatorApp) >= 0)
                {
                    return (long)Math.Min(CurrentSize, (ulong)long.MaxValue) / 512 * 512;
                }

                return chs;
            }
        }

        /// <summary>Sets size and the CHS geometry the spec computes for it (Appendix, "CHS Calculation").</summary>
        public void SetSize(long size)
        {
            CurrentSize = (ulong)size;
            var (c, h, s) = Geometry(size / 512);
            Cylinders = c;
            Heads = h;
            SectorsPerTrack = s;
        }

        public static (ushort Cylinders, byte Heads, byte SectorsPerTrack) Geometry(long totalSectors)
        {
            long sectorsPerTrack;
            long heads;
            long cylinderTimesHeads;
            if (totalSectors > 65535L * 16 * 255)
            {
                totalSectors = 65535L * 16 * 255;
            }

            if (totalSectors >= 65535L * 16 * 63)
            {
                sectorsPerTrack = 255;
                heads = 16;
                cylinderTimesHeads = totalSectors / sectorsPerTrack;
            }
            else
            {
                sectorsPerTrack = 17;
                cylinderTimesHeads = totalSectors / sectorsPerTrack;
                heads = (cylinderTimesHeads + 1023) / 1024;
                if (heads < 4)
                {
                    heads = 4;
                }

                if (cylinderTimesHeads >= heads * 1024 || heads > 16)
                {
                    sectorsPerTrack = 31;
                    heads = 16;
                    cylinderTimesHeads = totalSectors / sectorsPerTrack;
                }

                if (cylinderTimesHeads >= heads * 1024)
                {
                    sectorsPerTrack = 63;
                    heads = 16;
                    cylinderTimesHeads = totalSectors / sectorsPerTrack;
                }
            }

            return ((ushort)(cylinderTimesHeads / heads), (byte)heads, (byte)sectorsPerTrack);
        }

        /// <summary>The identity as a GUID, reading the bytes in RFC 4122 (big-endian) order.</summary>
        public Guid UniqueGuid => ToGuid(UniqueId);

        public static Guid ToGuid(byte[] rfcBytes)
        {
            var b = (byte[])rfcBytes.Clone();
            Array.Reverse(b, 0, 4);
            Array.Reverse(b, 4, 2);
            Array.Reverse(b, 6, 2);
            return new Guid(b);
        }

        /// <summary>The inverse of <see cref="ToGuid"/>: the 16 bytes in RFC 4122 (big-endian) order.</summary>
        public static byte[] FromGuid(Guid guid)
        {
            byte[] b = guid.ToByteArray();
            Array.Reverse(b, 0, 4);
            Array.Reverse(b, 4, 2);
            Array.Reverse(b, 6, 2);
            return b;
        }

        public static byte[] NewUniqueId() => Guid.NewGuid().ToByteArray();

        private static void WriteAscii4(byte[] buffer, int offset, string text)
        {
            for (int i = 0; i < 4; i++)
            {
                buffer[offset + i] = i < text.Length ? (byte)text[i] : (byte)0;
            }
        }
    }
}
