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
