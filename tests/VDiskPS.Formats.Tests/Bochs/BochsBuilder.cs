using System;
using System.Buffers.Binary;
using System.IO;
using System.Linq;
using System.Text;

namespace VDiskPS.Formats.Tests.Bochs
{
    /// <summary>
    /// Writes a Bochs growing redolog from a raw file, by the layout bximage writes (Bochs
    /// iodev/hdimage/hdimage.h redolog_header_t): a 512-byte header ("Bochs Virtual HD Image",
    /// "Redolog", "Growing", version, header size 512, catalog entries, bitmap bytes, extent bytes, the
    /// disk size at 88 in version 2 or at 84 in version 1), the catalog of little-endian extent indices
    /// (0xffffffff: never written), then per stored extent its bitmap in whole sectors (bit n of byte
    /// n/8 set: sector n is stored) followed by its sectors. QEMU cannot create bochs images, so tests
    /// first assert that qemu-img reads what this writes as the raw content.
    /// </summary>
    internal static class BochsBuilder
    {
        private const int Sector = 512;

        /// <summary>Filler of the sectors an extent holds but its bitmap marks absent: they must read as zeros.</summary>
        public const byte AbsentFiller = 0xEE;

        /// <param name="raw">The content; its length must be a multiple of 512.</param>
        /// <param name="path">The image to write.</param>
        /// <param name="extentBytes">A power of two, 512 to 8 MiB.</param>
        /// <param name="version">1 or 2 (where the disk size is).</param>
        /// <param name="spareEntries">Catalog entries past the disk, as bximage's fixed-size catalogs have.</param>
        /// <param name="bitmapBytes">The bitmap size; bximage uses one bit a sector (extent / 4096 bytes).</param>
        public static void Build(string raw, string path, int extentBytes = 64 << 10, int version = 2, int spareEntries = 3, int bitmapBytes = 0)
        {
            byte[] data = File.ReadAllBytes(raw);
            if (data.Length % Sector != 0)
            {
                throw new ArgumentException("the raw content must be whole sectors", nameof(raw));
            }

            int extentSectors = extentBytes / Sector;
            int bitmap = bitmapBytes > 0 ? bitmapBytes : Math.Max(1, extentSectors / 8);
            int bitmapSpan = (bitmap + Sector - 1) / Sector * Sector;
            int extents = (data.Length + extentBytes - 1) / extentBytes;
            int entries = extents + spareEntries;

            var header = new byte[Sector];
            Encoding.ASCII.GetBytes("Bochs Virtual HD Image").CopyTo(header, 0);
            Encoding.ASCII.GetBytes("Redolog").CopyTo(header, 32);
            Encoding.ASCII.GetBytes("Growing").CopyTo(header, 48);
            BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(64), version == 1 ? 0x00010000u : 0x00020000u);
            BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(68), Sector);
            BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(72), (uint)entries);
            BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(76), (uint)bitmap);
            BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(80), (uint)extentBytes);
            BinaryPrimitives.WriteUInt64LittleEndian(header.AsSpan(version == 1 ? 84 : 88), (ulong)data.Length);

            // Extents holding any data are stored, in reverse guest order, so the catalog is not the identity.
            var stored = Enumerable.Range(0, extents).Where(e => HasData(data, e, extentBytes)).Reverse().ToList();
            var catalog = new uint[entries];
            catalog.AsSpan().Fill(0xFFFFFFFF);
            for (int k = 0; k < stored.Count; k++)
            {
                catalog[stored[k]] = (uint)k;
            }

            using var file = new FileStream(path, FileMode.Create, FileAccess.Write);
            file.Write(header);
            var catalogRaw = new byte[entries * 4];
            for (int i = 0; i < entries; i++)
            {
                BinaryPrimitives.WriteUInt32LittleEndian(catalogRaw.AsSpan(i * 4), catalog[i]);
            }

            file.Write(catalogRaw);
            foreach (int e in stored)
            {
                var bits = new byte[bitmapSpan];
                var sectors = new byte[extentBytes];
                sectors.AsSpan().Fill(AbsentFiller);
                for (int s = 0; s < extentSectors; s++)
                {
                    long guest = ((long)e * extentBytes) + ((long)s * Sector);
                    if (guest >= data.Length)
                    {
                        break;
                    }

                    // A sector is stored when it holds data, and every eighth zero sector is stored too
                    // (as zeros), as Bochs stores what the guest wrote even when it wrote zeros.
                    ReadOnlySpan<byte> content = data.AsSpan((int)guest, Sector);
                    if (content.IndexOfAnyExcept((byte)0) >= 0 || s % 8 == 3)
                    {
                        bits[s / 8] |= (byte)(1 << (s % 8));
                        content.CopyTo(sectors.AsSpan(s * Sector));
                    }
                }

                file.Write(bits);
                file.Write(sectors);
            }
        }

        private static bool HasData(byte[] data, int extent, int extentBytes)
        {
            long start = (long)extent * extentBytes;
            int length = (int)Math.Min(extentBytes, data.Length - start);
            return data.AsSpan((int)start, length).IndexOfAnyExcept((byte)0) >= 0;
        }
    }
}
