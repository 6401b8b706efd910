using System;
using System.Buffers.Binary;

namespace VDiskPS.Formats.Bochs
{
    /// <summary>
    /// A Bochs growing redolog, read-only (as in QEMU): the header, the catalog (one little-endian entry
    /// per extent: 0xffffffff for an extent never written, else the extent's index in the data area),
    /// then the extents, each a bitmap of its sectors (bit set: the sector is stored) followed by its
    /// sectors. A sector whose bit is clear, or in an extent never written, reads as zeros.
    /// </summary>
    public sealed class BochsLayer : ImageLayer
    {
        /// <summary>Catalog entry of an extent never written.</summary>
        internal const uint NotAllocated = 0xFFFFFFFF;

        /// <summary>QEMU's catalog limit (1M entries, what bximage's largest image needs).</summary>
        internal const uint MaxCatalogEntries = 0x100000;

        /// <summary>QEMU's extent size limits.</summary>
        internal const uint MinExtentBytes = 512;
        internal const uint MaxExtentBytes = 0x800000;

        private const int SectorSize = 512;

        private readonly HostFile _file;
        private readonly uint[] _catalog;
        private readonly long _size;
        private readonly long _extentBytes;
        private readonly long _bitmapBytes;
        private readonly long _dataOffset;
        private readonly long _catalogOffset;

        private BochsLayer(HostFile file, uint[] catalog, long size, long extentBytes, long bitmapBytes, long catalogOffset)
            : base(file.Path, false)
        {
            _file = file;
            _catalog = catalog;
            _size = size;
            _extentBytes = extentBytes;
            _bitmapBytes = bitmapBytes;
            _catalogOffset = catalogOffset;
            _dataOffset = catalogOffset + (catalog.Length * 4L);
        }

        public override DiskFormat Format => BochsDriver.Id;

        public override long Size => _size;

        public override int ClusterSize => (int)_extentBytes;

        /// <summary>Sectors in one extent.</summary>
        private long ExtentSectors => _extentBytes / SectorSize;

        /// <summary>The bitmap takes whole sectors before the extent's data (qemu bitmap_blocks).</summary>
        private long BitmapSpan => (_bitmapBytes + SectorSize - 1) / SectorSize * SectorSize;

        internal static BochsLayer Open(HostFile file)
        {
            string path = file.Path;
            long length = file.Length;
            if (length < BochsHeader.Length)
            {
                throw new ImageFormatMismatchException(path, "header", 0, $"not a Bochs image: the file is {length} bytes, shorter than the {BochsHeader.Length}-byte header");
            }

            var raw = new byte[BochsHeader.Length];
            file.ReadExactly(0, raw, "header");
            if (!BochsHeader.IsRedolog(raw))
            {
                throw new ImageFormatMismatchException(path, "magic", 0, "not a Bochs image: the 'Bochs Virtual HD Image' redolog header (version 1 or 2) is missing");
            }

            BochsHeader header = BochsHeader.FromBytes(raw);
            if (header.Subtype != BochsHeader.GrowingSubtype)
            {
                throw new ImageNotSupportedException(path, "subtype", BochsHeader.SubtypeOffset, $"Bochs '{header.Subtype}' redologs are not supported, only 'Growing' images (an undoable or volatile redolog holds only the changes to a separate base image)");
            }

            uint extent = header.ExtentBytes;
            if (extent < MinExtentBytes || extent > MaxExtentBytes || (extent & (extent - 1)) != 0)
            {
                throw new ImageCorruptException(path, "extent", BochsHeader.ExtentOffset, $"an extent of {extent} bytes is not a power of two between {MinExtentBytes} and {MaxExtentBytes}");
            }

            uint bitmap = header.BitmapBytes;
            long extentSectors = extent / SectorSize;
            if (bitmap < (extentSectors + 7) / 8 || bitmap > extent)
            {
                throw new ImageCorruptException(path, "bitmap", BochsHeader.BitmapOffset, $"a bitmap of {bitmap} bytes does not fit the {extentSectors} sectors of an extent");
            }

            uint entries = header.CatalogEntries;
            long catalogOffset = header.HeaderSize;
            if (entries > MaxCatalogEntries)
            {
                throw new ImageNotSupportedException(path, "catalog", BochsHeader.CatalogOffset, $"a catalog of {entries} entries is beyond the {MaxCatalogEntries} that Bochs and QEMU use");
            }

            if (catalogOffset < BochsHeader.DiskV2Offset + 8 || catalogOffset + (entries * 4L) > length)
            {
                throw new ImageCorruptException(path, "header size", BochsHeader.HeaderSizeOffset, $"the catalog ({entries * 4L} bytes at {catalogOffset}) overlaps the header or lies past the end of the file ({length} bytes)");
            }

            // QEMU reads disk / 512 sectors; the catalog must cover them.
            ulong disk = header.DiskBytes / SectorSize * SectorSize;
            long size = (long)disk;
            if (disk > (ulong)(entries * (long)extent))
            {
                throw new ImageCorruptException(path, "disk size", header.DiskFieldOffset, $"a disk of {disk} bytes does not fit in {entries} extents of {extent} bytes");
            }

            var catalogRaw = new byte[entries * 4L];
            file.ReadExactly(catalogOffset, catalogRaw, "catalog");
            var catalog = new uint[entries];
            for (int i = 0; i < catalog.Length; i++)
            {
                catalog[i] = BinaryPrimitives.ReadUInt32LittleEndian(catalogRaw.AsSpan(i * 4));
            }

            return new BochsLayer(file, catalog, size, extent, bitmap, catalogOffset);
        }

        public override BlockStatus GetBlockStatus(long offset, long maxLength)
        {
            maxLength = Math.Min(maxLength, _size - offset);
            long end = offset + maxLength;
            long index = offset / _extentBytes;
            uint entry = _catalog[index];
            if (entry == NotAllocated)
            {
                long next = index + 1;
                while (next * _extentBytes < end && _catalog[next] == NotAllocated)
                {
                    next++;
                }

                return new BlockStatus(offset, Math.Min(end, next * _extentBytes) - offset, ExtentKind.Unallocated);
            }

            long bitmapAt = ExtentHost(index, entry);
            long extentStart = index * _extentBytes;
            long first = (offset - extentStart) / SectorSize;
            long last = (Math.Min(end, extentStart + _extentBytes) - 1 - extentStart) / SectorSize;
            var bits = new byte[(last / 8) - (first / 8) + 1];
            _file.ReadExactly(bitmapAt + (first / 8), bits, $"bitmap of extent {index}");
            bool Present(long sector) => (bits[(sector / 8) - (first / 8)] >> (int)(sector % 8) & 1) != 0;

            bool present = Present(first);
            long s = first + 1;
            while (s <= last && Present(s) == present)
            {
                s++;
            }

            long runEnd = Math.Min(end, extentStart + (s * SectorSize));
            if (!present)
            {
                return new BlockStatus(offset, runEnd - offset, ExtentKind.Unallocated);
            }

            long host = bitmapAt + BitmapSpan + (offset - extentStart);
            if (host + (runEnd - offset) > _file.Length)
            {
                throw new ImageCorruptException(Path, $"bitmap of extent {index}", bitmapAt, $"sectors marked present lie past the end of the file ({_file.Length} bytes)");
            }

            return new BlockStatus(offset, runEnd - offset, ExtentKind.Data, host);
        }

        protected override void ReadData(long offset, Span<byte> buffer, BlockStatus status)
        {
            _file.ReadExactly(status.HostOffset + (offset - status.GuestOffset), buffer, "extent data");
        }

        protected override void Dispose(bool disposing)
        {
            _file.Dispose();
        }

        /// <summary>Where an extent (its bitmap, then its sectors) starts; an extent past the file is damage.</summary>
        private long ExtentHost(long index, uint entry)
        {
            long host = _dataOffset + (entry * (BitmapSpan + _extentBytes));
            if (host + BitmapSpan > _file.Length)
            {
                throw new ImageCorruptException(Path, $"catalog entry {index}", _catalogOffset + (index * 4), $"extent {entry} lies past the end of the file ({_file.Length} bytes)");
            }

            return host;
        }
    }
}
