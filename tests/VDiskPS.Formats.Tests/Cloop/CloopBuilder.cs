using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.IO;
using System.IO.Compression;
using System.Text;

namespace VDiskPS.Formats.Tests.Cloop
{
    /// <summary>
    /// Writes a cloop 2.0 image as cloop's create_compressed_fs does: the 128-byte shell preamble
    /// (zero-padded), block size and block count (big-endian 32-bit), n+1 big-endian 64-bit offsets,
    /// then each block as one zlib stream (with its header), the last block padded with zeros. The zlib
    /// streams come from .NET's ZLibStream, not from the engine. QEMU reads cloop but cannot write it:
    /// CloopTests first checks that qemu-img reads what this writes as the raw content.
    /// </summary>
    internal static class CloopBuilder
    {
        public const string Preamble = "#!/bin/sh\n#V2.0 Format\nmodprobe cloop file=$0 && mount -r -t iso9660 /dev/cloop $1\nexit $?\n";

        /// <summary>FormatSamples' maker: the raw file at <paramref name="raw"/> as 64 KiB blocks.</summary>
        public static void Build(string raw, string path) => Write(File.ReadAllBytes(raw), path, 64 << 10);

        /// <summary>Writes <paramref name="content"/> (padded to whole blocks) as a cloop image; returns the block offsets.</summary>
        public static ulong[] Write(byte[] content, string path, int blockSize)
        {
            int blocks = (int)((content.Length + (long)blockSize - 1) / blockSize);
            var compressed = new List<byte[]>(blocks);
            for (int i = 0; i < blocks; i++)
            {
                var block = new byte[blockSize];
                int n = Math.Min(blockSize, content.Length - (i * blockSize));
                Array.Copy(content, (long)i * blockSize, block, 0, n);
                using var output = new MemoryStream();
                using (var zlib = new ZLibStream(output, CompressionLevel.SmallestSize, leaveOpen: true))
                {
                    zlib.Write(block);
                }

                compressed.Add(output.ToArray());
            }

            var header = new byte[136 + ((blocks + 1) * 8)];
            Encoding.ASCII.GetBytes(Preamble).CopyTo(header, 0);
            BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(128), (uint)blockSize);
            BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(132), (uint)blocks);
            var offsets = new ulong[blocks + 1];
            ulong at = (ulong)header.Length;
            for (int i = 0; i <= blocks; i++)
            {
                offsets[i] = at;
                BinaryPrimitives.WriteUInt64BigEndian(header.AsSpan(136 + (i * 8)), at);
                if (i < blocks)
                {
                    at += (ulong)compressed[i].Length;
                }
            }

            using var file = new FileStream(path, FileMode.Create, FileAccess.Write);
            file.Write(header);
            foreach (byte[] block in compressed)
            {
                file.Write(block);
            }

            return offsets;
        }
    }
}
