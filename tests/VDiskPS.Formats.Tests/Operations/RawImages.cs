using System;
using System.IO;
using System.Text.RegularExpressions;

namespace VDiskPS.Formats.Tests.Operations
{
    /// <summary>Sparse raw fixtures for the operation tests, and parsing of qemu-img messages.</summary>
    internal static class RawImages
    {
        /// <summary>A sparse raw image of <paramref name="size"/> bytes holding the given writes (everything else a hole).</summary>
        public static string Make(TempDir dir, string name, long size, params (long Offset, byte[] Data)[] writes)
        {
            string path = dir.File(name);
            using (var stream = new FileStream(path, FileMode.CreateNew, FileAccess.ReadWrite))
            {
                stream.SetLength(size);
                foreach (var (offset, data) in writes)
                {
                    stream.Position = offset;
                    stream.Write(data, 0, data.Length);
                }
            }

            return path;
        }

        /// <summary>The offset in qemu-img compare's "Content mismatch at offset N!", or null.</summary>
        public static long? QemuMismatchOffset(string output)
        {
            var match = Regex.Match(output, @"Content mismatch at offset (\d+)!");
            return match.Success ? long.Parse(match.Groups[1].Value) : (long?)null;
        }

        public static byte[] Fill(int length, byte value)
        {
            var data = new byte[length];
            Array.Fill(data, value);
            return data;
        }
    }
}
