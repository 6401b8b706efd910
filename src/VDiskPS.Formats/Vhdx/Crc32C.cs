using System;
using System.Buffers.Binary;

namespace VDiskPS.Formats.Vhdx
{
    /// <summary>CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), slicing-by-8; [MS-VHDX] 2.2 checksums.</summary>
    internal static class Crc32C
    {
        private const uint Polynomial = 0x82F63B78;
        private static readonly uint[] s_table = BuildTable();

        /// <summary>The checksum of <paramref name="data"/> (initial value and final xor 0xFFFFFFFF).</summary>
        public static uint Compute(ReadOnlySpan<byte> data) => ~Append(0xFFFFFFFF, data);

        /// <summary>
        /// The checksum of a structure whose 4-byte checksum field at <paramref name="checksumOffset"/>
        /// counts as zero ([MS-VHDX]: "the checksum field is set to 0 for the computation").
        /// </summary>
        public static uint ComputeWithZeroField(ReadOnlySpan<byte> data, int checksumOffset)
        {
            uint crc = Append(0xFFFFFFFF, data.Slice(0, checksumOffset));
            crc = Append(crc, stackalloc byte[4]);
            return ~Append(crc, data.Slice(checksumOffset + 4));
        }

        private static uint Append(uint crc, ReadOnlySpan<byte> data)
        {
            uint[] t = s_table;
            while (data.Length >= 8)
            {
                uint low = BinaryPrimitives.ReadUInt32LittleEndian(data) ^ crc;
                uint high = BinaryPrimitives.ReadUInt32LittleEndian(data.Slice(4));
                crc = t[(7 * 256) + (low & 0xFF)] ^ t[(6 * 256) + ((low >> 8) & 0xFF)]
                    ^ t[(5 * 256) + ((low >> 16) & 0xFF)] ^ t[(4 * 256) + (low >> 24)]
                    ^ t[(3 * 256) + (high & 0xFF)] ^ t[(2 * 256) + ((high >> 8) & 0xFF)]
                    ^ t[256 + ((high >> 16) & 0xFF)] ^ t[high >> 24];
                data = data.Slice(8);
            }

            foreach (byte b in data)
            {
                crc = t[(crc ^ b) & 0xFF] ^ (crc >> 8);
            }

            return crc;
        }

        private static uint[] BuildTable()
        {
            var table = new uint[8 * 256];
            for (uint i = 0; i < 256; i++)
            {
                uint c = i;
                for (int k = 0; k < 8; k++)
                {
                    c = (c & 1) != 0 ? (c >> 1) ^ Polynomial : c >> 1;
                }

                table[i] = c;
            }

            for (int slice = 1; slice < 8; slice++)
            {
                for (int i = 0; i < 256; i++)
                {
                    uint previous = table[((slice - 1) * 256) + i];
                    table[(slice * 256) + i] = table[previous & 0xFF] ^ (previous >> 8);
                }
            }

            return table;
        }
    }
}
