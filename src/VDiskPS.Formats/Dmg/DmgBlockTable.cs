using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.IO;
using System.Xml;

namespace VDiskPS.Formats.Dmg
{
    /// <summary>
    /// Reads the block tables ("mish" blocks) of a DMG, from the resource fork when it has one, else
    /// from the XML property list (the base64 "blkx" entries), as qemu's dmg_open does, and returns
    /// the disk as sorted chunks that cover every sector (sectors no chunk names become gaps).
    /// </summary>
    internal static class DmgBlockTable
    {
        /// <summary>qemu's cap on the property list (16 MiB; Apple's images have about 1 MiB); the resource fork has the same cap here.</summary>
        public const long MaxTableBytes = 16L << 20;

        /// <summary>Block tables ("mish" blocks) read at most: one per partition in practice.</summary>
        public const int MaxBlockTables = 4096;

        /// <summary>qemu's DMG_LENGTHS_MAX: the largest compressed or raw chunk (64 MiB).</summary>
        public const long MaxChunkLength = 64L << 20;

        /// <summary>qemu's DMG_SECTORCOUNTS_MAX: sectors of one stored chunk (64 MiB).</summary>
        public const long MaxChunkSectors = MaxChunkLength / 512;

        public const int SectorSize = 512;

        private const uint MishMagic = 0x6d697368;
        private const int MishHeaderLength = 204;
        private const int ChunkEntryLength = 40;
        private const int ChunkCountField = 0xC8;

        private const uint TypeZero = 0x00000000;
        private const uint TypeRaw = 0x00000001;
        private const uint TypeIgnore = 0x00000002;
        private const uint TypeAdc = 0x80000004;
        private const uint TypeZlib = 0x80000005;
        private const uint TypeBzip2 = 0x80000006;
        private const uint TypeLzfse = 0x80000007;
        private const uint TypeLzma = 0x80000008;
        private const uint TypeComment = 0x7ffffffe;
        private const uint TypeEnd = 0xffffffff;

        /// <summary>The compression a chunk type names, for messages ("lzfse").</summary>
        public static string TypeName(uint type)
        {
            switch (type)
            {
                case TypeAdc:
                    return "ADC";
                case TypeLzfse:
                    return "lzfse";
                case TypeLzma:
                    return "LZMA";
                default:
                    return "unknown";
            }
        }

        public static List<DmgChunk> Read(HostFile file, DmgTrailer trailer)
        {
            string path = file.Path;
            long koly = trailer.Offset;
            if (trailer.DataForkOffset > (ulong)koly)
            {
                throw new ImageCorruptException(path, "data fork offset", koly + DmgTrailer.DataForkOffsetField, $"{trailer.DataForkOffset} is past the trailer at {koly}");
            }

            CheckRegion(path, "resource fork", koly, DmgTrailer.RsrcForkOffsetField, trailer.RsrcForkOffset, trailer.RsrcForkLength);
            CheckRegion(path, "property list", koly, DmgTrailer.XmlOffsetField, trailer.XmlOffset, trailer.XmlLength);
            if (trailer.SectorCount > long.MaxValue / SectorSize)
            {
                throw new ImageCorruptException(path, "sector count", koly + DmgTrailer.SectorCountField, $"{trailer.SectorCount} sectors is beyond any disk");
            }

            var reader = new MishReader(path, (long)trailer.DataForkOffset, koly, (long)trailer.SectorCount);
            if (trailer.RsrcForkLength != 0)
            {
                ReadResourceFork(file, (long)trailer.RsrcForkOffset, (long)trailer.RsrcForkLength, reader);
            }
            else if (trailer.XmlLength != 0)
            {
                ReadPropertyList(file, (long)trailer.XmlOffset, (long)trailer.XmlLength, reader);
            }
            else
            {
                throw new ImageCorruptException(path, "property list", koly + DmgTrailer.XmlLengthField, "the trailer names neither a resource fork nor a property list: the image has no block table");
            }

            return Cover(path, reader.Chunks, (long)trailer.SectorCount);
        }

        private static void CheckRegion(string path, string name, long koly, int field, ulong offset, ulong length)
        {
            // qemu refuses a region that starts at or past the trailer, or runs into it, even an empty one.
            if (offset >= (ulong)koly || length > (ulong)koly - offset)
            {
                throw new ImageCorruptException(path, name, koly + field, $"{length} bytes at {offset} do not lie before the trailer at {koly}");
            }

            if (length > MaxTableBytes)
            {
                throw new ImageNotSupportedException(path, name, koly + field, $"{length} bytes is more than the {MaxTableBytes >> 20} MiB a block table may take");
            }
        }

        /// <summary>The resource fork: a header naming the resource data, then length-prefixed resources, each a candidate block table.</summary>
        private static void ReadResourceFork(HostFile file, long begin, long length, MishReader reader)
        {
            var fork = new byte[length];
            file.ReadExactly(begin, fork, "resource fork");
            if (length < 12)
            {
                throw new ImageCorruptException(file.Path, "resource fork", begin, $"{length} bytes is shorter than the 12-byte resource header");
            }

            uint dataOffset = BinaryPrimitives.ReadUInt32BigEndian(fork);
            uint dataLength = BinaryPrimitives.ReadUInt32BigEndian(fork.AsSpan(8));
            if (dataOffset > length || dataLength == 0 || dataLength > length - dataOffset)
            {
                throw new ImageCorruptException(file.Path, "resource data", begin, $"{dataLength} bytes at {dataOffset} do not lie in the {length}-byte resource fork");
            }

            long at = dataOffset;
            long end = dataOffset + dataLength;
            while (at < end)
            {
                if (end - at < 4)
                {
                    throw new ImageCorruptException(file.Path, "resource length", begin + at, "the resource data ends inside a length field");
                }

                uint count = BinaryPrimitives.ReadUInt32BigEndian(fork.AsSpan((int)at));
                if (count == 0 || count > end - at - 4)
                {
                    throw new ImageCorruptException(file.Path, "resource length", begin + at, $"a {count}-byte resource does not fit in the {end - at - 4} bytes of resource data left");
                }

                reader.Add(fork.AsSpan((int)at + 4, (int)count), begin + at + 4);
                at += 4 + count;
            }
        }

        /// <summary>The XML property list: every &lt;data&gt; element that holds a "mish" block, as qemu reads it.</summary>
        private static void ReadPropertyList(HostFile file, long begin, long length, MishReader reader)
        {
            var xml = new byte[length];
            file.ReadExactly(begin, xml, "property list");
            var settings = new XmlReaderSettings
            {
                DtdProcessing = DtdProcessing.Ignore,
                XmlResolver = null,
                IgnoreComments = true,
                IgnoreProcessingInstructions = true,
                MaxCharactersFromEntities = 0,
            };
            try
            {
                using (var stream = new MemoryStream(xml, writable: false))
                using (var xmlReader = XmlReader.Create(stream, settings))
                {
                    while (xmlReader.Read())
                    {
                        if (xmlReader.NodeType == XmlNodeType.Element && xmlReader.LocalName == "data" && !xmlReader.IsEmptyElement)
                        {
                            byte[] data;
                            try
                            {
                                data = Convert.FromBase64String(xmlReader.ReadElementContentAsString());
                            }
                            catch (FormatException e)
                            {
                                throw new ImageCorruptException(file.Path, "property list", begin, $"a <data> element is not base64: {e.Message}", e);
                            }

                            reader.Add(data, null);
                        }
                    }
                }
            }
            catch (XmlException e)
            {
                throw new ImageCorruptException(file.Path, "property list", begin, $"the XML is malformed at line {e.LineNumber}, position {e.LinePosition}: {e.Message}", e);
            }
        }

        /// <summary>Sorts the chunks, refuses overlaps, and fills what no chunk covers with gaps.</summary>
        private static List<DmgChunk> Cover(string path, List<DmgChunk> chunks, long sectors)
        {
            chunks.Sort((a, b) => a.Sector.CompareTo(b.Sector));
            var covered = new List<DmgChunk>(chunks.Count + 1);
            long next = 0;
            DmgChunk previous = default;
            foreach (DmgChunk chunk in chunks)
            {
                if (chunk.Sector < next)
                {
                    throw new ImageCorruptException(path, chunk.Name, chunk.Offset, $"sectors {chunk.Sector} to {chunk.EndSector - 1} overlap {previous.Name} (sectors {previous.Sector} to {previous.EndSector - 1})");
                }

                if (chunk.Sector > next)
                {
                    covered.Add(new DmgChunk(next, chunk.Sector - next, DmgChunkKind.Gap, 0, -1, 0, "no chunk"));
                }

                covered.Add(chunk);
                next = chunk.EndSector;
                previous = chunk;
            }

            if (next < sectors)
            {
                covered.Add(new DmgChunk(next, sectors - next, DmgChunkKind.Gap, 0, -1, 0, "no chunk"));
            }

            return covered;
        }

        /// <summary>Collects the chunks of "mish" blocks, checking each against the file and the disk.</summary>
        private sealed class MishReader
        {
            private readonly string _path;
            private readonly long _dataFork;
            private readonly long _koly;
            private readonly long _sectors;
            private int _tables;

            public MishReader(string path, long dataFork, long koly, long sectors)
            {
                _path = path;
                _dataFork = dataFork;
                _koly = koly;
                _sectors = sectors;
            }

            public List<DmgChunk> Chunks { get; } = new List<DmgChunk>();

            /// <summary>One candidate block (a resource, a &lt;data&gt; element); what is not a "mish" block is skipped, as qemu does.</summary>
            /// <param name="block">The candidate's bytes.</param>
            /// <param name="at">Where the block is in the file, when it is stored plainly (resource fork), else null.</param>
            public void Add(ReadOnlySpan<byte> block, long? at)
            {
                if (block.Length < 4 || BinaryPrimitives.ReadUInt32BigEndian(block) != MishMagic)
                {
                    return;
                }

                int table = _tables++;
                string name = $"blkx entry {table}";
                if (_tables > MaxBlockTables)
                {
                    throw new ImageNotSupportedException(_path, name, at, $"the image has more than {MaxBlockTables} block tables");
                }

                if (block.Length < MishHeaderLength)
                {
                    throw new ImageCorruptException(_path, name, at, $"the {block.Length}-byte mish block is shorter than its {MishHeaderLength}-byte header");
                }

                ulong firstSector = BinaryPrimitives.ReadUInt64BigEndian(block.Slice(8));
                ulong dataOffset = BinaryPrimitives.ReadUInt64BigEndian(block.Slice(0x18));
                uint count = BinaryPrimitives.ReadUInt32BigEndian(block.Slice(ChunkCountField));
                if (count > (block.Length - MishHeaderLength) / ChunkEntryLength)
                {
                    throw new ImageCorruptException(_path, name, at + ChunkCountField, $"{count} chunks do not fit in the {block.Length}-byte mish block");
                }

                for (int i = 0; i < count; i++)
                {
                    ReadOnlySpan<byte> entry = block.Slice(MishHeaderLength + (i * ChunkEntryLength), ChunkEntryLength);
                    AddChunk(entry, $"{name}, chunk {i}", at + MishHeaderLength + (i * ChunkEntryLength), firstSector, dataOffset);
                }
            }

            private void AddChunk(ReadOnlySpan<byte> entry, string name, long? at, ulong firstSector, ulong dataOffset)
            {
                uint type = BinaryPrimitives.ReadUInt32BigEndian(entry);
                ulong relativeSector = BinaryPrimitives.ReadUInt64BigEndian(entry.Slice(8));
                ulong sectorCount = BinaryPrimitives.ReadUInt64BigEndian(entry.Slice(0x10));
                ulong relativeOffset = BinaryPrimitives.ReadUInt64BigEndian(entry.Slice(0x18));
                ulong length = BinaryPrimitives.ReadUInt64BigEndian(entry.Slice(0x20));
                if (type == TypeComment || type == TypeEnd || sectorCount == 0)
                {
                    return;
                }

                DmgChunkKind kind = type == TypeZero || type == TypeIgnore ? DmgChunkKind.Zero
                    : type == TypeRaw ? DmgChunkKind.Raw
                    : type == TypeZlib ? DmgChunkKind.Zlib
                    : type == TypeBzip2 ? DmgChunkKind.Bzip2
                    : DmgChunkKind.Unsupported;

                ulong limit = (ulong)_koly;
                ulong offset = (ulong)_dataFork + dataOffset;
                bool offsetFits = dataOffset <= limit && offset <= limit && relativeOffset <= limit - offset;
                long fileOffset = offsetFits ? (long)(offset + relativeOffset) : -1;
                if (kind != DmgChunkKind.Zero && kind != DmgChunkKind.Unsupported)
                {
                    if (sectorCount > MaxChunkSectors)
                    {
                        throw new ImageCorruptException(_path, name, at, $"{sectorCount} sectors in one chunk are more than the {MaxChunkSectors} (64 MiB) a chunk may hold");
                    }

                    if (length > (ulong)MaxChunkLength)
                    {
                        throw new ImageCorruptException(_path, name, at, $"{length} stored bytes in one chunk are more than the {MaxChunkLength >> 20} MiB a chunk may take");
                    }

                    if (!offsetFits || length > limit - (ulong)fileOffset)
                    {
                        throw new ImageCorruptException(_path, name, at, $"{length} bytes at data fork offset {dataOffset} + {relativeOffset} do not lie before the trailer at {_koly}");
                    }

                    if (kind == DmgChunkKind.Raw && length < sectorCount * SectorSize)
                    {
                        throw new ImageCorruptException(_path, name, at, $"a raw chunk of {sectorCount} sectors stores only {length} bytes");
                    }
                }

                ulong disk = (ulong)_sectors;
                if (firstSector > disk || relativeSector > disk - firstSector || sectorCount > disk - firstSector - relativeSector)
                {
                    throw new ImageCorruptException(_path, name, at, $"{sectorCount} sectors from sector {firstSector} + {relativeSector} lie past the end of the {_sectors}-sector disk");
                }

                long sector = (long)(firstSector + relativeSector);
                Chunks.Add(new DmgChunk(sector, (long)sectorCount, kind, type, fileOffset, (long)length, name));
            }
        }
    }
}
