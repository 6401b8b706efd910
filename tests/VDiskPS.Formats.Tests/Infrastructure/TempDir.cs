using System;
using System.IO;

namespace VDiskPS.Formats.Tests
{
    /// <summary>A scratch folder deleted with the test.</summary>
    public sealed class TempDir : IDisposable
    {
        public TempDir()
        {
            Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "vdiskps-tests", Guid.NewGuid().ToString("N"));
            Directory.CreateDirectory(Path);
        }

        public string Path { get; }

        public string File(string name) => System.IO.Path.Combine(Path, name);

        public void Dispose()
        {
            try
            {
                Directory.Delete(Path, true);
            }
            catch (IOException)
            {
            }
        }
    }

    /// <summary>Deterministic test content.</summary>
    public static class TestData
    {
        /// <summary>Bytes that differ per offset and seed, so misplaced data is caught.</summary>
        public static byte[] Pattern(int length, int seed)
        {
            var data = new byte[length];
            var rng = new Random(seed);
            rng.NextBytes(data);
            return data;
        }

        /// <summary>
        /// A raw image of <paramref name="size"/> bytes with data at the start, at an unaligned place
        /// past 2 MiB and in the last sector, zeros elsewhere.
        /// </summary>
        public static string WriteRaw(TempDir dir, string name, long size)
        {
            string path = dir.File(name);
            var data = new byte[size];
            Pattern(300000, 7).CopyTo(data, 0);
            Pattern(70000, 8).CopyTo(data, 2 * 1024 * 1024 + 123);
            Pattern(512, 9).CopyTo(data, size - 512);
            System.IO.File.WriteAllBytes(path, data);
            return path;
        }

        /// <summary>Overwrites 4 bytes of a file with a little-endian value (damage for hostile-input tests).</summary>
        public static void PatchUInt32(string path, long offset, uint value)
        {
            var bytes = new byte[4];
            System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(bytes, value);
            using var stream = System.IO.File.Open(path, System.IO.FileMode.Open);
            stream.Position = offset;
            stream.Write(bytes);
        }

        /// <summary>Reads a whole image through the engine (chain included).</summary>
        public static byte[] ReadAll(string path, DiskFormat? format = null)
        {
            using var chain = ImageChain.Open(path, new ChainOptions { Format = format });
            var buffer = new byte[chain.Size];
            chain.Read(0, buffer);
            return buffer;
        }
    }
}
