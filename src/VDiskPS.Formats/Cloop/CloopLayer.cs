using System;
using System.Buffers;
using System.Buffers.Binary;
using System.IO;
using VDiskPS.Formats.Compression;

namespace VDiskPS.Formats.Cloop
{
    /// <summary>
    /// A cloop 2.0 image: a 128-byte shell preamble, the block size and block count (big-endian
    /// 32-bit), n+1 big-endian 64-bit file offsets (block i is the bytes from offset i to offset i+1),
    /// then the blocks, each a zlib stream of exactly one block. Every block is data.
    /// </summary>
    public sealed class CloopLayer : ImageLayer
    {
        internal const int PreambleLength = 128;
        internal const int BlockSizeOffset = 128;
        internal const int BlockCountOffset = 132;
        internal const int OffsetsOffset = 136;

        /// <summary>qemu's MAX_BLOCK_SIZE: the largest block it allocates a buffer for.</summary>
        internal const int MaxBlockSize = 64 << 20;

        /// <summary>qemu's limit on one compressed block (2 * MAX_BLOCK_SIZE): worse than that is damage.</summary>
        internal const long MaxCompressedBlock = 2L * MaxBlockSize;

        /// <summary>qemu's cap on the offset table (512 MiB: 16 TiB of 256 KiB blocks).</summary>
        internal const long MaxTableBytes = 512L << 20;

        private readonly HostFile _file;
        private readonly long[] _offsets;
        private readonly int _blockSize;
        private readonly long _size;
        private readonly ChunkCache _cache = new ChunkCache();

        private CloopLayer(HostFile file, int blockSize, long[] offsets)
            : base(file.Path, false)
        {
            _file = file;
            _blockSize = blockSize;
            _offsets = offsets;
            _size = (long)(offsets.Length - 1) * blockSize;
        }

        public override DiskFormat Format => CloopDriver.Id;

        public override long Size => _size;

        public override int ClusterSize => _blockSize;

        internal static CloopLayer Open(HostFile file)
        {
            string path = file.Path;
            long length = file.Length;
            if (length < OffsetsOffset)
            {
                throw new ImageFormatMismatchException(path, "header", 0, $"not a cloop image: the file is {length} bytes, shorter than the {OffsetsOffset}-byte header");
            }

            var header = new byte[OffsetsOffset];
            file.ReadExactly(0, header, "header");
            uint blockSize = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(BlockSizeOffset));
            uint blocks = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(BlockCountOffset));
            if (blockSize == 0 || blockSize % 512 != 0 || blockSize > MaxBlockSize)
            {
                throw new ImageCorruptException(path, "block size", BlockSizeOffset, $"{blockSize} is not a non-zero multiple of 512 of at most {MaxBlockSize >> 20} MiB");
            }

            // The table (n+1 entries) must fit in the file before anything is allocated for it.
            long tableBytes = ((long)blocks + 1) * 8;
            if (tableBytes > MaxTableBytes)
            {
                throw new ImageNotSupportedException(path, "block count", BlockCountOffset, $"{blocks} blocks need a {tableBytes}-byte offset table, more than the {MaxTableBytes >> 20} MiB qemu reads");
            }

            if (OffsetsOffset + tableBytes > length)
            {
                throw new ImageCorruptException(path, "block count", BlockCountOffset, $"{blocks} blocks need a {tableBytes}-byte offset table, which does not fit in the {length}-byte file");
            }

            var raw = new byte[tableBytes];
            file.ReadExactly(OffsetsOffset, raw, "offset table");
            var offsets = new long[blocks + 1];
            long tableEnd = OffsetsOffset + tableBytes;
            for (long i = 0; i <= blocks; i++)
            {
                ulong value = BinaryPrimitives.ReadUInt64BigEndian(raw.AsSpan((int)(i * 8)));
                long at = OffsetsOffset + (i * 8);
                if (value < (ulong)tableEnd || value > (ulong)length)
                {
                    throw new ImageCorruptException(path, $"offset {i}", at, $"{value} is outside the block area ({tableEnd} to the end of the file at {length})");
                }

                offsets[i] = (long)value;
                if (i > 0)
                {
                    long compressed = offsets[i] - offsets[i - 1];
                    if (compressed < 0)
                    {
                        throw new ImageCorruptException(path, $"offset {i}", at, $"{value} is less than the previous offset {offsets[i - 1]}: the offsets do not increase");
                    }

                    if (compressed > MaxCompressedBlock)
                    {
                        throw new ImageCorruptException(path, $"offset {i}", at, $"block {i - 1} is {compressed} bytes compressed, more than the {MaxCompressedBlock >> 20} MiB any block may take");
                    }
                }
            }

            return new CloopLayer(file, (int)blockSize, offsets);
        }

        public override BlockStatus GetBlockStatus(long offset, long maxLength)
        {
            // Every block is stored, compressed: one data run.
            return new BlockStatus(offset, Math.Min(maxLength, _size - offset), ExtentKind.Data, compressed: true);
        }

        public override void Describe(VDiskInfo info)
        {
            info.FormatSpecific["block-size"] = _blockSize;
            info.FormatSpecific["blocks"] = _offsets.Length - 1;
        }

        protected override void ReadData(long offset, Span<byte> buffer, BlockStatus status)
        {
            while (buffer.Length > 0)
            {
                long block = offset / _blockSize;
                int within = (int)(offset - (block * _blockSize));
                int n = Math.Min(buffer.Length, _blockSize - within);
                _cache.Get(block, DecodeBlock).AsSpan(within, n).CopyTo(buffer);
                buffer = buffer.Slice(n);
                offset += n;
            }
        }

        protected override void Dispose(bool disposing) => _file.Dispose();

        private byte[] DecodeBlock(long block)
        {
            long at = _offsets[block];
            int compressed = (int)(_offsets[block + 1] - at);
            string field = $"block {block}";
            byte[] input = ArrayPool<byte>.Shared.Rent(Math.Max(1, compressed));
            try
            {
                _file.ReadExactly(at, input.AsSpan(0, compressed), field);
                var output = new byte[_blockSize];
                int produced;
                try
                {
                    produced = Deflate.DecompressZlib(input.AsSpan(0, compressed), output);
                }
                catch (InvalidDataException e)
                {
                    throw new ImageCorruptException(Path, field, at, $"the {compressed}-byte zlib stream does not decompress: {e.Message}", e);
                }

                if (produced != _blockSize)
                {
                    throw new ImageCorruptException(Path, field, at, $"the {compressed}-byte zlib stream decompresses to {produced} bytes, not the block size {_blockSize}");
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
