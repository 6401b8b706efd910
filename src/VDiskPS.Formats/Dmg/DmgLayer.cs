using System;
using System.Buffers;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using VDiskPS.Formats.Compression;

namespace VDiskPS.Formats.Dmg
{
    /// <summary>
    /// A UDIF disk image: the data fork holds chunks of sectors (zeros, raw, zlib, bzip2, ...), the
    /// block tables say which sectors each chunk holds, and the koly trailer at the end says where the
    /// block tables are and how many sectors the disk has.
    /// </summary>
    public sealed class DmgLayer : ImageLayer
    {
        private const int SectorSize = DmgBlockTable.SectorSize;

        private readonly HostFile _file;
        private readonly DmgChunk[] _chunks;
        private readonly long _size;
        private readonly ChunkCache _cache = new ChunkCache();

        private DmgLayer(HostFile file, DmgChunk[] chunks, long size)
            : base(file.Path, false)
        {
            _file = file;
            _chunks = chunks;
            _size = size;
            ClusterSize = (int)Math.Max(SectorSize, chunks.Where(c => c.Kind != DmgChunkKind.Zero && c.Kind != DmgChunkKind.Gap && c.SectorCount <= DmgBlockTable.MaxChunkSectors).Select(c => c.SectorCount * SectorSize).DefaultIfEmpty(0).Max());
        }

        public override DiskFormat Format => DmgDriver.Id;

        public override long Size => _size;

        /// <summary>The largest stored chunk (DMG chunks vary in size), at least one sector.</summary>
        public override int ClusterSize { get; }

        internal static DmgLayer Open(HostFile file)
        {
            DmgTrailer trailer = DmgTrailer.Read(file);
            List<DmgChunk> chunks = DmgBlockTable.Read(file, trailer);
            return new DmgLayer(file, chunks.ToArray(), (long)trailer.SectorCount * SectorSize);
        }

        public override BlockStatus GetBlockStatus(long offset, long maxLength)
        {
            long end = offset + Math.Min(maxLength, _size - offset);
            if (end <= offset)
            {
                // Nothing to describe (an empty disk has no chunks at all).
                return new BlockStatus(offset, 0, ExtentKind.Zero);
            }

            int i = Find(offset);
            DmgChunk first = _chunks[i];
            long runEnd = Math.Min(end, first.EndSector * SectorSize);
            if (first.Kind == DmgChunkKind.Raw)
            {
                // Raw chunks stored back to back in the file make one run.
                long host = first.Offset + (offset - (first.Sector * SectorSize));
                for (int j = i + 1; runEnd < end && j < _chunks.Length && _chunks[j].Kind == DmgChunkKind.Raw && _chunks[j].Offset == _chunks[j - 1].Offset + (_chunks[j - 1].SectorCount * SectorSize); j++)
                {
                    runEnd = Math.Min(end, _chunks[j].EndSector * SectorSize);
                }

                return new BlockStatus(offset, runEnd - offset, ExtentKind.Data, host);
            }

            for (int j = i + 1; runEnd < end && j < _chunks.Length && _chunks[j].Kind != DmgChunkKind.Raw && (_chunks[j].Kind == DmgChunkKind.Zero) == (first.Kind == DmgChunkKind.Zero); j++)
            {
                runEnd = Math.Min(end, _chunks[j].EndSector * SectorSize);
            }

            return first.Kind == DmgChunkKind.Zero
                ? new BlockStatus(offset, runEnd - offset, ExtentKind.Zero)
                : new BlockStatus(offset, runEnd - offset, ExtentKind.Data, compressed: true);
        }

        public override void Describe(VDiskInfo info)
        {
            foreach (var kind in _chunks.GroupBy(c => c.Kind))
            {
                info.FormatSpecific[kind.Key.ToString().ToLowerInvariant() + "-chunks"] = kind.Count();
            }
        }

        protected override void ReadData(long offset, Span<byte> buffer, BlockStatus status)
        {
            while (buffer.Length > 0)
            {
                int i = Find(offset);
                DmgChunk chunk = _chunks[i];
                long within = offset - (chunk.Sector * SectorSize);
                int n = (int)Math.Min(buffer.Length, (chunk.EndSector * SectorSize) - offset);
                Span<byte> part = buffer.Slice(0, n);
                switch (chunk.Kind)
                {
                    case DmgChunkKind.Zero:
                        part.Clear();
                        break;
                    case DmgChunkKind.Raw:
                        _file.ReadExactly(chunk.Offset + within, part, chunk.Name);
                        break;
                    case DmgChunkKind.Zlib:
                    case DmgChunkKind.Bzip2:
                        _cache.Get(i, Decode).AsSpan((int)within, n).CopyTo(part);
                        break;
                    case DmgChunkKind.Gap:
                        throw new ImageCorruptException(Path, "block table", null, $"sectors {chunk.Sector} to {chunk.EndSector - 1} are in no chunk of the block tables");
                    default:
                        throw new ImageNotSupportedException(Path, chunk.Name, chunk.Offset, $"the chunk holding sectors {chunk.Sector} to {chunk.EndSector - 1} is {DmgBlockTable.TypeName(chunk.Type)}-compressed (type 0x{chunk.Type:x8}), which this build cannot decompress");
                }

                buffer = buffer.Slice(n);
                offset += n;
            }
        }

        protected override void Dispose(bool disposing) => _file.Dispose();

        /// <summary>The chunk holding the byte at <paramref name="offset"/> (the chunks cover the disk, in order).</summary>
        private int Find(long offset)
        {
            long sector = offset / SectorSize;
            int lo = 0, hi = _chunks.Length - 1;
            while (lo < hi)
            {
                int mid = lo + ((hi - lo + 1) / 2);
                if (_chunks[mid].Sector <= sector)
                {
                    lo = mid;
                }
                else
                {
                    hi = mid - 1;
                }
            }

            return lo;
        }

        private byte[] Decode(long index)
        {
            DmgChunk chunk = _chunks[index];
            int length = (int)chunk.Length;
            int size = (int)(chunk.SectorCount * SectorSize);
            byte[] input = ArrayPool<byte>.Shared.Rent(Math.Max(1, length));
            try
            {
                _file.ReadExactly(chunk.Offset, input.AsSpan(0, length), chunk.Name);
                var output = new byte[size];
                string what = chunk.Kind == DmgChunkKind.Zlib ? "zlib" : "bzip2";
                int produced;
                try
                {
                    produced = chunk.Kind == DmgChunkKind.Zlib
                        ? Deflate.DecompressZlib(input.AsSpan(0, length), output)
                        : BZip2.Decompress(input, length, output);
                }
                catch (InvalidDataException e)
                {
                    throw new ImageCorruptException(Path, chunk.Name, chunk.Offset, $"the {length}-byte {what} stream does not decompress: {e.Message}", e);
                }

                if (produced != size)
                {
                    throw new ImageCorruptException(Path, chunk.Name, chunk.Offset, $"the {length}-byte {what} stream decompresses to {produced} bytes, not the chunk's {chunk.SectorCount} sectors");
                }

                return output;
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(input);
            }
        }
    }
}
