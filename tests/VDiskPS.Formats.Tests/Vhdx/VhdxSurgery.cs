using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using VDiskPS.Formats.Vhdx;

namespace VDiskPS.Formats.Tests.Vhdx
{
    /// <summary>Direct edits of VHDX structures, to build pending logs and damaged images for tests.</summary>
    internal static class VhdxSurgery
    {
        public static VhdxHeader ReadHeader(string path)
        {
            byte[] file = File.ReadAllBytes(path);
            VhdxHeader best = null;
            foreach (long at in new[] { VhdxConstants.Header1Offset, VhdxConstants.Header2Offset })
            {
                VhdxHeader h = VhdxHeader.TryParse(file.AsSpan((int)at, VhdxConstants.HeaderLength), out _);
                if (h != null && (best == null || h.SequenceNumber > best.SequenceNumber))
                {
                    best = h;
                }
            }

            return best;
        }

        /// <summary>Writes <paramref name="header"/> into both slots, the second newer.</summary>
        public static void WriteHeader(string path, VhdxHeader header)
        {
            var block = new byte[VhdxConstants.HeaderLength];
            using var stream = new FileStream(path, FileMode.Open, FileAccess.ReadWrite);
            foreach (long at in new[] { VhdxConstants.Header1Offset, VhdxConstants.Header2Offset })
            {
                header.SequenceNumber++;
                header.WriteTo(block);
                stream.Position = at;
                stream.Write(block);
            }
        }

        public static List<VhdxRegion> Regions(string path)
        {
            byte[] table = ReadBytes(path, VhdxConstants.RegionTable1Offset, VhdxConstants.RegionTableLength);
            return VhdxRegionTable.TryParse(table, out _);
        }

        public static long RegionOffset(string path, Guid id) => Regions(path).Find(r => r.Id == id).FileOffset;

        public static long BatOffset(string path) => RegionOffset(path, VhdxConstants.BatRegion);

        public static ulong ReadBatEntry(string path, long index) => BinaryPrimitives.ReadUInt64LittleEndian(ReadBytes(path, BatOffset(path) + (index * 8), 8));

        public static byte[] ReadBytes(string path, long offset, int length)
        {
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read);
            var buffer = new byte[length];
            stream.Position = offset;
            stream.ReadExactly(buffer);
            return buffer;
        }

        public static void WriteBytes(string path, long offset, byte[] data)
        {
            using var stream = new FileStream(path, FileMode.Open, FileAccess.ReadWrite);
            stream.Position = offset;
            stream.Write(data);
        }

        /// <summary>The BAT page holding entry <paramref name="index"/> with that entry replaced.</summary>
        public static KeyValuePair<long, byte[]> BatPageWith(string path, long index, ulong entry)
        {
            long pageOffset = BatOffset(path) + (index * 8 / 4096 * 4096);
            byte[] page = ReadBytes(path, pageOffset, 4096);
            BinaryPrimitives.WriteUInt64LittleEndian(page.AsSpan((int)(index * 8 % 4096)), entry);
            return new KeyValuePair<long, byte[]>(pageOffset, page);
        }

        /// <summary>Writes log entries (already built) at log offsets and points the header at them with <paramref name="logGuid"/>.</summary>
        public static void InjectLog(string path, Guid logGuid, params (long LogPosition, byte[] Entry)[] entries)
        {
            VhdxHeader header = ReadHeader(path);
            foreach (var (position, entry) in entries)
            {
                WriteBytes(path, header.LogOffset + position, entry);
            }

            header.LogGuid = logGuid;
            WriteHeader(path, header);
        }

        public static byte[] Entry(Guid logGuid, ulong sequence, long lastFileOffset, long flushedFileOffset, params KeyValuePair<long, byte[]>[] pages)
            => VhdxLog.BuildEntry(pages.Select(p => new VhdxLogWrite { FileOffset = p.Key, Data = p.Value }).ToList(), sequence, logGuid, 0, flushedFileOffset, lastFileOffset);

        public static byte[] ZeroEntry(Guid logGuid, ulong sequence, long fileLength, long fileOffset, long zeroLength)
            => VhdxLog.BuildEntry(new[] { new VhdxLogWrite { FileOffset = fileOffset, ZeroLength = zeroLength } }, sequence, logGuid, 0, fileLength, fileLength);

        /// <summary>Recomputes the CRC-32C of a log entry after a test changed it.</summary>
        public static void Reseal(byte[] entry)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(entry.AsSpan(4), 0);
            BinaryPrimitives.WriteUInt32LittleEndian(entry.AsSpan(4), Crc32C.Compute(entry));
        }

        public static byte[] Page(byte value)
        {
            var page = new byte[4096];
            Array.Fill(page, value);
            return page;
        }
    }
}
