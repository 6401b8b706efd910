using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.IO;
using System.IO.Compression;
using System.Linq;
using System.Text;
using ICSharpCode.SharpZipLib.BZip2;

namespace VDiskPS.Formats.Tests.Dmg
{
    /// <summary>One chunk as written: its entry in the block table and where its bytes went.</summary>
    internal sealed record DmgBuiltChunk(int Table, int Index, uint Type, long Sector, long SectorCount, long FileOffset, long Length);

    /// <summary>
    /// Writes a UDIF image from the published layout (Apple's TN1150-era UDIF as QEMU's block/dmg.c
    /// reads it): the data fork with the chunks, the block tables ("mish" blocks, one per "blkx" entry,
    /// each with a comment chunk first and the terminator last) in an XML property list as base64
    /// &lt;data&gt;, or in a resource fork, then the 512-byte big-endian "koly" trailer. Chunks are zero
    /// (all-zero runs, alternately types 0 and 2), zlib (.NET's ZLibStream), bzip2 (SharpZipLib's
    /// BZip2OutputStream) or raw, never the engine's code. QEMU reads DMG but cannot write it: DmgTests
    /// first checks that qemu-img reads what this writes as the raw content.
    /// </summary>
    internal sealed class DmgBuilder
    {
        public const uint Zero = 0x00000000;
        public const uint Raw = 0x00000001;
        public const uint Ignore = 0x00000002;
        public const uint Zlib = 0x80000005;
        public const uint Bzip2 = 0x80000006;
        public const uint Lzfse = 0x80000007;
        public const uint Comment = 0x7ffffffe;
        public const uint Terminator = 0xffffffff;

        /// <summary>Sectors per chunk (Apple's default is 2048; smaller here so that tests have many).</summary>
        public int ChunkSectors { get; init; } = 128;

        /// <summary>How many "blkx" entries (partitions) the disk is split into.</summary>
        public int Tables { get; init; } = 2;

        /// <summary>The stored types data chunks take in turn (all-zero chunks are zero chunks).</summary>
        public uint[] DataTypes { get; init; } = { Zlib, Raw };

        /// <summary>Write the block tables as a resource fork instead of the XML property list.</summary>
        public bool ResourceFork { get; init; }

        /// <summary>Bytes before the data fork (qemu adds DataForkOffset to every chunk offset).</summary>
        public int DataForkOffset { get; init; }

        /// <summary>Sectors at the end of the disk that no chunk describes.</summary>
        public long UncoveredSectors { get; init; }

        /// <summary>The chunks written, in order.</summary>
        public List<DmgBuiltChunk> Chunks { get; } = new List<DmgBuiltChunk>();

        /// <summary>Where the koly trailer was written.</summary>
        public long TrailerOffset { get; private set; }

        /// <summary>Where the property list (or resource fork) was written and how long it is.</summary>
        public (long Offset, long Length) TableRegion { get; private set; }

        /// <summary>FormatSamples' maker: zlib, raw and zero chunks, which qemu-img reads (Debian's qemu has no bzip2 module).</summary>
        public static void Build(string raw, string path) => new DmgBuilder().Write(File.ReadAllBytes(raw), path);

        public void Write(byte[] content, string path)
        {
            if (content.Length % 512 != 0)
            {
                throw new ArgumentException("a DMG holds whole sectors");
            }

            long sectors = (content.Length / 512) + UncoveredSectors;
            long covered = content.Length / 512;
            using var file = new FileStream(path, FileMode.Create, FileAccess.Write);
            file.Write(new byte[DataForkOffset]);
            long perTable = (covered + Tables - 1) / Tables;
            var mishes = new List<byte[]>();
            int dataChunk = 0;
            int zeroChunk = 0;
            for (int t = 0; t < Tables; t++)
            {
                long first = Math.Min(covered, t * perTable);
                long count = Math.Min(covered, first + perTable) - first;

                // The second and later tables record their data offset in the mish header, chunk offsets relative to it.
                long tableData = t == 0 ? 0 : file.Position - DataForkOffset;
                var entries = new List<(uint Type, long Sector, long Count, long Offset, long Length)> { (Comment, 0, 0, 0, 0) };
                for (long s = 0; s < count; s += ChunkSectors)
                {
                    int n = (int)Math.Min(ChunkSectors, count - s);
                    byte[] data = content.AsSpan((int)((first + s) * 512), n * 512).ToArray();
                    uint type = data.All(b => b == 0) ? (zeroChunk++ % 2 == 0 ? Zero : Ignore) : DataTypes[dataChunk++ % DataTypes.Length];
                    byte[] stored = Store(type, data);
                    long at = file.Position;
                    file.Write(stored);
                    entries.Add((type, s, n, at - DataForkOffset - tableData, stored.Length));
                    Chunks.Add(new DmgBuiltChunk(t, entries.Count - 1, type, first + s, n, at, stored.Length));
                }

                entries.Add((Terminator, count, 0, file.Position - DataForkOffset - tableData, 0));
                mishes.Add(Mish(t, first, count, tableData, entries));
            }

            long dataForkLength = file.Position - DataForkOffset;
            byte[] table = ResourceFork ? ResourceForkOf(mishes) : PropertyListOf(mishes);
            long tableAt = file.Position;
            file.Write(table);
            TableRegion = (tableAt, table.Length);
            TrailerOffset = file.Position;
            file.Write(Koly(dataForkLength, tableAt, table.Length, sectors));
        }

        private static byte[] Store(uint type, byte[] data)
        {
            switch (type)
            {
                case Zero:
                case Ignore:
                    return Array.Empty<byte>();
                case Raw:
                    return data;
                case Zlib:
                {
                    using var output = new MemoryStream();
                    using (var zlib = new ZLibStream(output, CompressionLevel.Optimal, leaveOpen: true))
                    {
                        zlib.Write(data);
                    }

                    return output.ToArray();
                }

                case Bzip2:
                {
                    using var output = new MemoryStream();
                    using (var bzip = new BZip2OutputStream(output) { IsStreamOwner = false })
                    {
                        bzip.Write(data);
                    }

                    return output.ToArray();
                }

                default:
                    // Stands for a stream of a type nobody here decompresses (lzfse): the bytes are not read.
                    return Encoding.ASCII.GetBytes("bvx2 not really lzfse");
            }
        }

        /// <summary>A "mish" block: 204-byte header (magic, version, first sector, sector count, data offset, checksum), then 40-byte chunk entries.</summary>
        private static byte[] Mish(int table, long first, long count, long dataOffset, List<(uint Type, long Sector, long Count, long Offset, long Length)> entries)
        {
            var mish = new byte[204 + (entries.Count * 40)];
            var span = mish.AsSpan();
            Encoding.ASCII.GetBytes("mish").CopyTo(mish, 0);
            BinaryPrimitives.WriteUInt32BigEndian(span.Slice(4), 1);
            BinaryPrimitives.WriteUInt64BigEndian(span.Slice(8), (ulong)first);
            BinaryPrimitives.WriteUInt64BigEndian(span.Slice(0x10), (ulong)count);
            BinaryPrimitives.WriteUInt64BigEndian(span.Slice(0x18), (ulong)dataOffset);
            BinaryPrimitives.WriteUInt32BigEndian(span.Slice(0x20), 0x208);
            BinaryPrimitives.WriteUInt32BigEndian(span.Slice(0x24), (uint)table);
            BinaryPrimitives.WriteUInt32BigEndian(span.Slice(0x40), 2);
            BinaryPrimitives.WriteUInt32BigEndian(span.Slice(0x44), 32);
            BinaryPrimitives.WriteUInt32BigEndian(span.Slice(0xC8), (uint)entries.Count);
            for (int i = 0; i < entries.Count; i++)
            {
                var e = entries[i];
                var entry = span.Slice(204 + (i * 40));
                BinaryPrimitives.WriteUInt32BigEndian(entry, e.Type);
                BinaryPrimitives.WriteUInt64BigEndian(entry.Slice(8), (ulong)e.Sector);
                BinaryPrimitives.WriteUInt64BigEndian(entry.Slice(0x10), (ulong)e.Count);
                BinaryPrimitives.WriteUInt64BigEndian(entry.Slice(0x18), (ulong)e.Offset);
                BinaryPrimitives.WriteUInt64BigEndian(entry.Slice(0x20), (ulong)e.Length);
            }

            return mish;
        }

        private static byte[] PropertyListOf(List<byte[]> mishes)
        {
            var xml = new StringBuilder();
            xml.Append("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
            xml.Append("<!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n");
            xml.Append("<plist version=\"1.0\">\n<dict>\n\t<key>resource-fork</key>\n\t<dict>\n\t\t<key>blkx</key>\n\t\t<array>\n");
            for (int i = 0; i < mishes.Count; i++)
            {
                xml.Append("\t\t\t<dict>\n\t\t\t\t<key>Attributes</key>\n\t\t\t\t<string>0x0050</string>\n");
                xml.Append($"\t\t\t\t<key>CFName</key>\n\t\t\t\t<string>partition {i} (Apple_HFS : {i + 1})</string>\n");
                xml.Append("\t\t\t\t<key>Data</key>\n\t\t\t\t<data>\n");
                string base64 = Convert.ToBase64String(mishes[i]);
                for (int at = 0; at < base64.Length; at += 52)
                {
                    xml.Append("\t\t\t\t").Append(base64, at, Math.Min(52, base64.Length - at)).Append('\n');
                }

                xml.Append($"\t\t\t\t</data>\n\t\t\t\t<key>ID</key>\n\t\t\t\t<string>{i}</string>\n\t\t\t</dict>\n");
            }

            // A "plst" entry, which is no block table: qemu and the engine skip it.
            xml.Append("\t\t</array>\n\t\t<key>plst</key>\n\t\t<array>\n\t\t\t<dict>\n\t\t\t\t<key>Data</key>\n\t\t\t\t<data>\n\t\t\t\t");
            xml.Append(Convert.ToBase64String(new byte[0x32C])).Append("\n\t\t\t\t</data>\n\t\t\t</dict>\n\t\t</array>\n\t</dict>\n</dict>\n</plist>\n");
            return Encoding.UTF8.GetBytes(xml.ToString());
        }

        /// <summary>The resource fork as qemu reads it: data offset, map offset, data length, map length, then length-prefixed resources.</summary>
        private static byte[] ResourceForkOf(List<byte[]> mishes)
        {
            const int DataOffset = 256;
            var resources = new List<byte[]>(mishes) { new byte[] { (byte)'p', (byte)'l', (byte)'s', (byte)'t', 0, 0, 0, 0 } };
            int dataLength = resources.Sum(r => 4 + r.Length);
            var fork = new byte[DataOffset + dataLength + 32];
            var span = fork.AsSpan();
            BinaryPrimitives.WriteUInt32BigEndian(span, DataOffset);
            BinaryPrimitives.WriteUInt32BigEndian(span.Slice(4), (uint)(DataOffset + dataLength));
            BinaryPrimitives.WriteUInt32BigEndian(span.Slice(8), (uint)dataLength);
            BinaryPrimitives.WriteUInt32BigEndian(span.Slice(12), 32);
            int at = DataOffset;
            foreach (byte[] resource in resources)
            {
                BinaryPrimitives.WriteUInt32BigEndian(span.Slice(at), (uint)resource.Length);
                resource.CopyTo(fork, at + 4);
                at += 4 + resource.Length;
            }

            return fork;
        }

        private byte[] Koly(long dataForkLength, long tableAt, long tableLength, long sectors)
        {
            var koly = new byte[512];
            var span = koly.AsSpan();
            Encoding.ASCII.GetBytes("koly").CopyTo(koly, 0);
            BinaryPrimitives.WriteUInt32BigEndian(span.Slice(4), 4);
            BinaryPrimitives.WriteUInt32BigEndian(span.Slice(8), 512);
            BinaryPrimitives.WriteUInt32BigEndian(span.Slice(0x0C), 1);
            BinaryPrimitives.WriteUInt64BigEndian(span.Slice(0x18), (ulong)DataForkOffset);
            BinaryPrimitives.WriteUInt64BigEndian(span.Slice(0x20), (ulong)dataForkLength);
            if (ResourceFork)
            {
                BinaryPrimitives.WriteUInt64BigEndian(span.Slice(0x28), (ulong)tableAt);
                BinaryPrimitives.WriteUInt64BigEndian(span.Slice(0x30), (ulong)tableLength);
            }
            else
            {
                BinaryPrimitives.WriteUInt64BigEndian(span.Slice(0xD8), (ulong)tableAt);
                BinaryPrimitives.WriteUInt64BigEndian(span.Slice(0xE0), (ulong)tableLength);
            }

            BinaryPrimitives.WriteUInt32BigEndian(span.Slice(0x38), 1);
            BinaryPrimitives.WriteUInt32BigEndian(span.Slice(0x3C), 1);
            BinaryPrimitives.WriteUInt32BigEndian(span.Slice(0x50), 2);
            BinaryPrimitives.WriteUInt32BigEndian(span.Slice(0x54), 32);
            BinaryPrimitives.WriteUInt32BigEndian(span.Slice(0x1E8), 1);
            BinaryPrimitives.WriteUInt64BigEndian(span.Slice(0x1EC), (ulong)sectors);
            return koly;
        }
    }
}
