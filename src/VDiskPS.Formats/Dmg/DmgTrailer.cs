using System;
using System.Buffers.Binary;

namespace VDiskPS.Formats.Dmg
{
    /// <summary>
    /// The 512-byte UDIF trailer ("koly", big-endian) at the end of the file: where the data fork and
    /// the block tables (an XML property list, or a resource fork) are, and the disk's sector count.
    /// </summary>
    internal sealed class DmgTrailer
    {
        public const int Length = 512;

        public const int DataForkOffsetField = 0x18;
        public const int RsrcForkOffsetField = 0x28;
        public const int RsrcForkLengthField = 0x30;
        public const int XmlOffsetField = 0xD8;
        public const int XmlLengthField = 0xE0;
        public const int SectorCountField = 0x1EC;

        /// <summary>qemu looks for the trailer this many bytes from the end (it may start up to 511 bytes before the last sector).</summary>
        public const int SearchLength = 515;

        private static readonly byte[] s_magic = { (byte)'k', (byte)'o', (byte)'l', (byte)'y' };

        /// <summary>Where the trailer starts in the file.</summary>
        public long Offset { get; private set; }

        public ulong DataForkOffset { get; private set; }

        public ulong RsrcForkOffset { get; private set; }

        public ulong RsrcForkLength { get; private set; }

        public ulong XmlOffset { get; private set; }

        public ulong XmlLength { get; private set; }

        public ulong SectorCount { get; private set; }

        public static bool HasSignature(byte[] data, int at) => data.Length - at >= 4 && data.AsSpan(at, 4).SequenceEqual(s_magic);

        /// <summary>Finds and reads the trailer: in the last 515 bytes of the length in whole sectors, as qemu looks (dmg_find_koly_offset).</summary>
        public static DmgTrailer Read(HostFile file)
        {
            long length = file.Length;
            if (length < Length)
            {
                throw new ImageFormatMismatchException(file.Path, "trailer", 0, $"not a DMG: the file is {length} bytes, shorter than the {Length}-byte koly trailer");
            }

            // qemu sees the length rounded up to whole sectors, so it also finds a trailer cut short.
            long rounded = (length + Length - 1) / Length * Length;
            long searchStart = rounded > Length + 511 ? rounded - Length - 511 : 0;
            var tail = new byte[Math.Min(length - searchStart, SearchLength)];
            file.ReadExactly(searchStart, tail, "trailer");
            long found = -1;
            for (int i = 0; i + 4 <= tail.Length; i++)
            {
                if (HasSignature(tail, i))
                {
                    found = searchStart + i;
                    break;
                }
            }

            if (found < 0)
            {
                throw new ImageFormatMismatchException(file.Path, "trailer", length - Length, "not a DMG: no koly trailer in the last 512 bytes");
            }

            // A trailer cut short reads as zeros past the end, as qemu reads it (its last 12 bytes are reserved).
            var raw = new byte[Length];
            file.ReadZeroPadded(found, raw);
            ulong U64(int field) => BinaryPrimitives.ReadUInt64BigEndian(raw.AsSpan(field));
            return new DmgTrailer
            {
                Offset = found,
                DataForkOffset = U64(DataForkOffsetField),
                RsrcForkOffset = U64(RsrcForkOffsetField),
                RsrcForkLength = U64(RsrcForkLengthField),
                XmlOffset = U64(XmlOffsetField),
                XmlLength = U64(XmlLengthField),
                SectorCount = U64(SectorCountField),
            };
        }
    }
}
