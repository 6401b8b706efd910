using System;
using System.Buffers.Binary;
using System.IO;
using System.Linq;
using Xunit;

namespace VDiskPS.Formats.Tests.Cloop
{
    /// <summary>
    /// cloop images written by <see cref="CloopBuilder"/> (QEMU reads cloop but cannot create it):
    /// qemu-img first reads each built image as the raw content, then the engine is judged on it,
    /// bit-exact. Damaged headers and tables are judged by qemu-img refusing them too, where it does.
    /// </summary>
    public class CloopTests
    {
        private const int BlockSize = 64 << 10;

        private static readonly DiskFormat Cloop = FormatRegistry.Default.Parse("cloop");

        private static byte[] Content(int length)
        {
            var content = new byte[length];
            TestData.Pattern(200_000, 1).CopyTo(content, 0);
            TestData.Pattern(70_000, 2).CopyTo(content, (length / 3) + 333);
            TestData.Pattern(512, 3).CopyTo(content, length - 512);
            return content;
        }

        private static (string Image, string Raw, byte[] Content) Build(TempDir dir, int length = 1 << 20, int blockSize = BlockSize)
        {
            byte[] content = Content(length);
            string raw = dir.File("content.raw");
            File.WriteAllBytes(raw, content);
            string image = dir.File("disk.cloop");
            CloopBuilder.Write(content, image, blockSize);
            return (image, raw, content);
        }

        private static byte[] Padded(byte[] content, int blockSize)
        {
            var padded = new byte[(content.Length + blockSize - 1) / blockSize * blockSize];
            content.CopyTo(padded, 0);
            return padded;
        }

        [Theory]
        [InlineData(1 << 20, 64 << 10)]
        [InlineData(1_000_000, 64 << 10)]
        [InlineData(300_000, 512)]
        [InlineData(3 << 20, 1 << 20)]
        public void QemuReadsTheBuiltImageAsTheRawContentAndSoDoesTheEngine(int length, int blockSize)
        {
            using var dir = new TempDir();
            var (image, _, content) = Build(dir, length, blockSize);
            byte[] expected = Padded(content, blockSize);

            // The builder is judged first: qemu-img probes the image as cloop and reads the content.
            using (var info = Qemu.Info(image))
            {
                Assert.Equal("cloop", info.RootElement.GetProperty("format").GetString());
                Assert.Equal(expected.Length, info.RootElement.GetProperty("virtual-size").GetInt64());
            }

            Assert.Equal(expected, Qemu.ToRawBytes(image, "cloop", dir.Path));

            Assert.Equal(Cloop, FormatRegistry.Default.Probe(image));
            Assert.Equal(expected, TestData.ReadAll(image));
            Assert.Equal(expected, TestData.ReadAll(image, Cloop));
        }

        [Fact]
        public void UnalignedReadsAcrossBlocksMatchQemusView()
        {
            using var dir = new TempDir();
            var (image, _, _) = Build(dir);
            byte[] qemu = Qemu.ToRawBytes(image, "cloop", dir.Path);
            using var layer = FormatRegistry.Default.Open(image, null, new OpenOptions());
            var rng = new Random(5);
            for (int i = 0; i < 50; i++)
            {
                int at = rng.Next(qemu.Length - 1);
                int length = 1 + rng.Next(Math.Min(qemu.Length - at, 3 * BlockSize));
                var buffer = new byte[length];
                layer.Read(at, buffer);
                Assert.True(qemu.AsSpan(at, length).SequenceEqual(buffer), $"read of {length} bytes at {at}");
            }
        }

        [Fact]
        public void EveryBlockIsCompressedDataAndTheImageIsReadOnly()
        {
            using var dir = new TempDir();
            var (image, _, _) = Build(dir);
            using (var layer = FormatRegistry.Default.Open(image, null, new OpenOptions()))
            {
                BlockStatus status = layer.GetBlockStatus(0, layer.Size);
                Assert.Equal(ExtentKind.Data, status.Kind);
                Assert.True(status.Compressed);
                Assert.Equal(layer.Size, status.Length);
                Assert.Equal(BlockSize, layer.ClusterSize);
                var info = new VDiskInfo();
                layer.Describe(info);
                Assert.Equal(16, info.FormatSpecific["blocks"]);
            }

            byte[] before = File.ReadAllBytes(image);
            var refused = Assert.Throws<ImageNotSupportedException>(() => FormatRegistry.Default.Open(image, null, new OpenOptions { Writable = true }));
            Assert.Contains("read but not written", refused.Message);
            Assert.Equal(before, File.ReadAllBytes(image));

            // qemu-img has no write support either: it refuses to open the image for writing.
            Assert.NotEqual(0, Qemu.Run("qemu-io", new[] { "-f", "cloop", "-c", "write 0 512", image }).ExitCode);
        }

        [Theory]
        [InlineData(0u, "block_size cannot be zero")]
        [InlineData(1000u, "must be a multiple of 512")]
        [InlineData(128u << 20, "must be 64 MB or less")]
        public void BadBlockSizesAreCorruptAsQemuSays(uint blockSize, string qemuSays)
        {
            using var dir = new TempDir();
            var (image, _, _) = Build(dir);
            Patch(image, 128, b => BinaryPrimitives.WriteUInt32BigEndian(b, blockSize));
            Assert.Contains(qemuSays, Qemu.Run("qemu-img", new[] { "info", "-f", "cloop", image }).Output);
            var error = Assert.Throws<ImageCorruptException>(() => FormatRegistry.Default.Open(image, Cloop, new OpenOptions()));
            Assert.Equal("block size", error.Field);
            Assert.Equal(128, error.Offset);
        }

        [Fact]
        public void ABlockCountWhoseTableDoesNotFitTheFileIsCorrupt()
        {
            using var dir = new TempDir();
            var (image, _, _) = Build(dir);
            Patch(image, 132, b => BinaryPrimitives.WriteUInt32BigEndian(b, 10_000_000));
            // qemu reads the 80 MB table and fails on the short read.
            Assert.NotEqual(0, Qemu.Run("qemu-img", new[] { "info", "-f", "cloop", image }).ExitCode);
            var error = Assert.Throws<ImageCorruptException>(() => FormatRegistry.Default.Open(image, Cloop, new OpenOptions()));
            Assert.Equal("block count", error.Field);
            Assert.Contains("does not fit", error.Message);
        }

        [Fact]
        public void OffsetsThatDecreaseAreCorruptAsQemuSays()
        {
            using var dir = new TempDir();
            var (image, _, _) = Build(dir);
            ulong third = ReadOffset(image, 3);
            Patch(image, 136 + (4 * 8), b => BinaryPrimitives.WriteUInt64BigEndian(b, third - 1));
            Assert.Contains("offsets not monotonically increasing at index 4", Qemu.Run("qemu-img", new[] { "info", "-f", "cloop", image }).Output);
            var error = Assert.Throws<ImageCorruptException>(() => FormatRegistry.Default.Open(image, Cloop, new OpenOptions()));
            Assert.Equal("offset 4", error.Field);
            Assert.Equal(136 + (4 * 8), error.Offset);
        }

        [Fact]
        public void AnOffsetPastTheEndOfTheFileIsCorrupt()
        {
            using var dir = new TempDir();
            var (image, _, _) = Build(dir);
            long length = new FileInfo(image).Length;
            Patch(image, 136 + (16 * 8), b => BinaryPrimitives.WriteUInt64BigEndian(b, (ulong)length + 4096));

            // qemu does not compare the offsets with the file: it reads past the end as zeros, and the
            // last stream ends before that. The table no longer describes the file (a truncated copy
            // looks so), so the engine refuses it when opening, naming the entry.
            Assert.Equal(0, Qemu.Run("qemu-img", new[] { "convert", "-f", "cloop", "-O", "raw", image, dir.File("out.raw") }).ExitCode);
            var error = Assert.Throws<ImageCorruptException>(() => FormatRegistry.Default.Open(image, Cloop, new OpenOptions()));
            Assert.Equal("offset 16", error.Field);
            Assert.Equal(136 + (16 * 8), error.Offset);
            Assert.Contains("outside the block area", error.Message);
        }

        [Fact]
        public void ACompressedBlockLargerThanQemusLimitIsCorrupt()
        {
            using var dir = new TempDir();
            var (image, _, _) = Build(dir);
            // A sparse 200 MiB file, so that the offsets lie inside it and only the block size is wrong.
            using (var file = new FileStream(image, FileMode.Open))
            {
                file.SetLength(200L << 20);
            }

            Patch(image, 136 + (16 * 8), b => BinaryPrimitives.WriteUInt64BigEndian(b, 199UL << 20));
            Assert.Contains("invalid compressed block size at index 16", Qemu.Run("qemu-img", new[] { "info", "-f", "cloop", image }).Output);
            var error = Assert.Throws<ImageCorruptException>(() => FormatRegistry.Default.Open(image, Cloop, new OpenOptions()));
            Assert.Equal("offset 16", error.Field);
            Assert.Contains("128 MiB", error.Message);
        }

        [Fact]
        public void ADamagedBlockIsCorruptWhenReadAndNamesItsOffset()
        {
            using var dir = new TempDir();
            var (image, _, content) = Build(dir);
            ulong fifth = ReadOffset(image, 5);
            Patch(image, (long)fifth + 10, b => b.Fill(0xA5), 64);
            Assert.NotEqual(0, Qemu.Run("qemu-img", new[] { "convert", "-f", "cloop", "-O", "raw", image, dir.File("out.raw") }).ExitCode);

            using var layer = FormatRegistry.Default.Open(image, null, new OpenOptions());
            var buffer = new byte[BlockSize];
            layer.Read(4L * BlockSize, buffer);
            Assert.Equal(content.AsSpan(4 * BlockSize, BlockSize).ToArray(), buffer);
            var error = Assert.Throws<ImageCorruptException>(() => layer.Read(5L * BlockSize, buffer));
            Assert.Equal("block 5", error.Field);
            Assert.Equal((long)fifth, error.Offset);
        }

        [Fact]
        public void ABlockThatDecompressesShortIsCorrupt()
        {
            using var dir = new TempDir();
            byte[] content = Content(1 << 20);
            string image = dir.File("disk.cloop");
            CloopBuilder.Write(content, image, BlockSize);
            // The header claims 128 KiB blocks: every 64 KiB stream is short, which qemu refuses on read.
            Patch(image, 128, b => BinaryPrimitives.WriteUInt32BigEndian(b, 128 << 10));
            Assert.NotEqual(0, Qemu.Run("qemu-img", new[] { "convert", "-f", "cloop", "-O", "raw", image, dir.File("out.raw") }).ExitCode);
            using var layer = FormatRegistry.Default.Open(image, null, new OpenOptions());
            var error = Assert.Throws<ImageCorruptException>(() => layer.Read(0, new byte[512]));
            Assert.Contains("decompresses to 65536 bytes, not the block size 131072", error.Message);
        }

        [Fact]
        public void AFileShorterThanTheHeaderIsNotACloopImage()
        {
            using var dir = new TempDir();
            string image = dir.File("short.cloop");
            File.WriteAllBytes(image, System.Text.Encoding.ASCII.GetBytes(CloopBuilder.Preamble));
            Assert.NotEqual(0, Qemu.Run("qemu-img", new[] { "info", "-f", "cloop", image }).ExitCode);
            Assert.Throws<ImageFormatMismatchException>(() => FormatRegistry.Default.Open(image, Cloop, new OpenOptions()));
        }

        private static ulong ReadOffset(string image, int index)
        {
            using var file = File.OpenRead(image);
            var buffer = new byte[8];
            file.Position = 136 + (index * 8);
            file.ReadExactly(buffer);
            return BinaryPrimitives.ReadUInt64BigEndian(buffer);
        }

        /// <summary>Rewrites <paramref name="length"/> bytes of the file at <paramref name="at"/> in place.</summary>
        internal static void Patch(string image, long at, SpanAction action, int length = 8)
        {
            using var file = new FileStream(image, FileMode.Open);
            var buffer = new byte[length];
            file.Position = at;
            file.ReadAtLeast(buffer, length, throwOnEndOfStream: false);
            action(buffer);
            file.Position = at;
            file.Write(buffer);
        }

        internal delegate void SpanAction(Span<byte> bytes);
    }
}
