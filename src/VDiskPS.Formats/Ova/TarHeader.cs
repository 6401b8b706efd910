using System;
using System.Text;

namespace VDiskPS.Formats.Ova
{
    /// <summary>
    /// One 512-byte tar header block (POSIX.1-1988 ustar, as the OVF spec requires for an OVA), read
    /// and written over spans with the field offsets named. Sizes past the 11 octal digits of ustar
    /// (8 GiB) use the GNU base-256 form, which GNU tar, bsdtar, Python and VirtualBox's reader
    /// accept; VirtualBox refuses pax extended headers, so they are never written.
    /// </summary>
    internal static class TarHeader
    {
        public const int BlockSize = 512;

        public const int NameOffset = 0;
        public const int NameLength = 100;
        public const int ModeOffset = 100;
        public const int UidOffset = 108;
        public const int GidOffset = 116;
        public const int SizeOffset = 124;
        public const int SizeLength = 12;
        public const int MtimeOffset = 136;
        public const int ChecksumOffset = 148;
        public const int ChecksumLength = 8;
        public const int TypeOffset = 156;
        public const int MagicOffset = 257;
        public const int VersionOffset = 263;
        public const int PrefixOffset = 345;
        public const int PrefixLength = 155;

        public const byte TypeRegular = (byte)'0';
        public const byte TypeRegularOld = 0;
        public const byte TypeContiguous = (byte)'7';
        public const byte TypePaxLocal = (byte)'x';
        public const byte TypePaxGlobal = (byte)'g';
        public const byte TypeGnuLongName = (byte)'L';

        /// <summary>The largest size the 11 octal digits of a ustar size field hold.</summary>
        public const long MaxOctalSize = (1L << 33) - 1;

        /// <summary>Builds the header of a regular file member.</summary>
        public static byte[] Build(string name, long size, DateTimeOffset modified)
        {
            byte[] nameBytes = Encoding.UTF8.GetBytes(name);
            if (nameBytes.Length > NameLength)
            {
                throw new ImageOptionException(name, "member name", $"the name is {nameBytes.Length} bytes long; a tar member name holds at most {NameLength}");
            }

            var block = new byte[BlockSize];
            nameBytes.CopyTo(block, NameOffset);
            WriteOctal(block, ModeOffset, 8, 0x1a4);
            WriteOctal(block, UidOffset, 8, 0);
            WriteOctal(block, GidOffset, 8, 0);
            WriteSize(block, size);
            WriteOctal(block, MtimeOffset, 12, Math.Max(0, modified.ToUnixTimeSeconds()));
            block[TypeOffset] = TypeRegular;
            Encoding.ASCII.GetBytes("ustar\0").CopyTo(block, MagicOffset);
            Encoding.ASCII.GetBytes("00").CopyTo(block, VersionOffset);
            for (int i = 0; i < ChecksumLength; i++)
            {
                block[ChecksumOffset + i] = (byte)' ';
            }

            long sum = 0;
            foreach (byte b in block)
            {
                sum += b;
            }

            // Six octal digits, NUL, space: the form every tar writes.
            WriteOctal(block, ChecksumOffset, 7, sum);
            block[ChecksumOffset + 7] = (byte)' ';
            return block;
        }

        /// <summary>True when the block is all zeros (the end-of-archive marker).</summary>
        public static bool IsZero(ReadOnlySpan<byte> block)
        {
            foreach (byte b in block)
            {
                if (b != 0)
                {
                    return false;
                }
            }

            return true;
        }

        /// <summary>Whether the stored checksum matches the block (unsigned sum, or the signed one old tars wrote).</summary>
        public static bool ChecksumMatches(ReadOnlySpan<byte> block)
        {
            if (!TryParseOctal(block.Slice(ChecksumOffset, ChecksumLength), out long stored))
            {
                return false;
            }

            long unsigned = 0;
            long signed = 0;
            for (int i = 0; i < BlockSize; i++)
            {
                byte b = i >= ChecksumOffset && i < ChecksumOffset + ChecksumLength ? (byte)' ' : block[i];
                unsigned += b;
                signed += (sbyte)b;
            }

            return stored == unsigned || stored == signed;
        }

        /// <summary>The member size: octal, or base-256 (high bit of the first byte set); null when malformed or negative.</summary>
        public static long? ReadSize(ReadOnlySpan<byte> block)
        {
            ReadOnlySpan<byte> field = block.Slice(SizeOffset, SizeLength);
            if ((field[0] & 0x80) != 0)
            {
                if ((field[0] & 0x40) != 0)
                {
                    return null;
                }

                long value = field[0] & 0x3f;
                for (int i = 1; i < field.Length; i++)
                {
                    if (value > (long.MaxValue >> 8))
                    {
                        return null;
                    }

                    value = (value << 8) | field[i];
                }

                return value;
            }

            return TryParseOctal(field, out long octal) ? octal : (long?)null;
        }

        /// <summary>The member name: the ustar prefix (POSIX magic only) joined to the name field.</summary>
        public static string ReadName(ReadOnlySpan<byte> block)
        {
            string name = ReadString(block.Slice(NameOffset, NameLength));
            bool posix = block.Slice(MagicOffset, 6).SequenceEqual(Encoding.ASCII.GetBytes("ustar\0"));
            if (posix && block[PrefixOffset] != 0)
            {
                name = ReadString(block.Slice(PrefixOffset, PrefixLength)) + "/" + name;
            }

            return name;
        }

        public static string ReadString(ReadOnlySpan<byte> field)
        {
            int end = field.IndexOf((byte)0);
            return Encoding.UTF8.GetString(field.Slice(0, end < 0 ? field.Length : end).ToArray());
        }

        private static void WriteSize(byte[] block, long size)
        {
            if (size <= MaxOctalSize)
            {
                WriteOctal(block, SizeOffset, SizeLength, size);
                return;
            }

            // GNU base-256: the first byte's high bit marks it; the value is big-endian in the rest.
            block[SizeOffset] = 0x80;
            for (int i = SizeLength - 1; i > 0; i--)
            {
                block[SizeOffset + i] = (byte)size;
                size >>= 8;
            }
        }

        /// <summary>Zero-padded octal digits filling the field but its last byte, which is NUL.</summary>
        private static void WriteOctal(byte[] block, int offset, int length, long value)
        {
            string digits = Convert.ToString(value, 8).PadLeft(length - 1, '0');
            Encoding.ASCII.GetBytes(digits).CopyTo(block, offset);
            block[offset + length - 1] = 0;
        }

        /// <summary>Octal digits after optional spaces, ended by NUL or space (or the field's end).</summary>
        private static bool TryParseOctal(ReadOnlySpan<byte> field, out long value)
        {
            value = 0;
            int i = 0;
            while (i < field.Length && field[i] == (byte)' ')
            {
                i++;
            }

            int digits = 0;
            for (; i < field.Length && field[i] >= (byte)'0' && field[i] <= (byte)'7'; i++, digits++)
            {
                if (value > (long.MaxValue >> 3))
                {
                    return false;
                }

                value = (value << 3) | (long)(field[i] - '0');
            }

            for (; i < field.Length; i++)
            {
                if (field[i] != 0 && field[i] != (byte)' ')
                {
                    return false;
                }
            }

            return digits > 0;
        }
    }
}
