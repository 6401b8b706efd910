using System;
using System.Buffers.Binary;
using System.IO;
using System.Linq;
using System.Security.Cryptography;
using Xunit;

namespace VDiskPS.Formats.Tests.Vhd
{
    public class VhdHostileInputTests
    {
        private const int HeaderOffset = 512;
        private const int TableOffset = 1536;

        private static string MakeDynamic(TempDir dir, string name = "d.vhd")
        {
            string path = dir.File(name);
            CreateOperation.Create(path, Fmt.Vhd, new CreateRequest { Size = 6L << 20 });
            using var layer = FormatRegistry.Default.Open(path, null, new OpenOptions { Writable = true });
            layer.Write(0, TestData.Pattern(3 << 20, 51));
            return path;
        }

        private static string MakeChild(TempDir dir)
        {
            MakeDynamic(dir, "base.vhd");
            string child = dir.File("child.vhd");
            CreateOperation.Create(child, Fmt.Vhd, new CreateRequest { Backing = new BackingReference("base.vhd", Fmt.Vhd) });
            using var chain = ImageChain.Open(child, new ChainOptions { Writable = true });
            chain.Top.Write(1000, TestData.Pattern(5000, 52));
            return child;
        }

        private static void Patch(string path, long offset, byte[] bytes)
        {
            using var stream = File.Open(path, FileMode.Open);
            stream.Position = offset;
            stream.Write(bytes);
        }

        private static byte[] BigEndian32(uint value)
        {
            var b = new byte[4];
            BinaryPrimitives.WriteUInt32BigEndian(b, value);
            return b;
        }

        /// <summary>Patches a dynamic header field and rewrites the header checksum, so only the field is wrong.</summary>
        private static void PatchHeaderField(string path, int fieldOffset, byte[] bytes)
        {
            byte[] file = File.ReadAllBytes(path);
            bytes.CopyTo(file, HeaderOffset + fieldOffset);
            BinaryPrimitives.WriteUInt32BigEndian(file.AsSpan(HeaderOffset + 36), 0);
            uint sum = 0;
            for (int i = 0; i < 1024; i++)
            {
                sum += file[HeaderOffset + i];
            }

            BinaryPrimitives.WriteUInt32BigEndian(file.AsSpan(HeaderOffset + 36), ~sum);
            File.WriteAllBytes(path, file);
        }

        private static ImageLayer Open(string path, OpenOptions options = null) => FormatRegistry.Default.Open(path, Fmt.Vhd, options ?? new OpenOptions());

        [Fact]
        public void BadFooterChecksumNamesTheFieldAndOffset()
        {
            using var dir = new TempDir();
            string path = MakeDynamic(dir);
            Patch(path, 40, new byte[] { 0x7F });
            var error = Assert.Throws<ImageCorruptException>(() => Open(path));
            Assert.Equal("footer checksum", error.Field);
            Assert.Equal(64, error.Offset);
        }

        [Fact]
        public void BadFixedFooterChecksumIsReported()
        {
            using var dir = new TempDir();
            string path = dir.File("f.vhd");
            CreateOperation.Create(path, Fmt.Vhd, new CreateRequest { Size = 1 << 20, Type = DiskType.Fixed });
            Patch(path, (1 << 20) + 48, new byte[] { 0x01 });
            var error = Assert.Throws<ImageCorruptException>(() => Open(path));
            Assert.Equal("footer checksum", error.Field);
            Assert.Equal((1 << 20) + 64, error.Offset);
        }

        [Fact]
        public void BadDynamicHeaderChecksumNamesTheField()
        {
            using var dir = new TempDir();
            string path = MakeDynamic(dir);
            Patch(path, HeaderOffset + 100, new byte[] { 0x42 });
            var error = Assert.Throws<ImageCorruptException>(() => Open(path));
            Assert.Equal("dynamic header checksum", error.Field);
            Assert.Equal(HeaderOffset + 36, error.Offset);
        }

        [Fact]
        public void BlockPastEndOfFileIsCorruptOnReadAndInCheck()
        {
            using var dir = new TempDir();
            string path = MakeDynamic(dir);
            Patch(path, TableOffset + 4, BigEndian32(0x00FFFFFF));
            using var layer = Open(path);
            Assert.Throws<ImageCorruptException>(() => layer.Read(2L << 20, new byte[4096]));
            var result = ((ICheckableLayer)layer).Check(RepairMode.None);
            Assert.Equal(1, result.Corruptions);
            Assert.Contains("past the end", result.Messages[0]);
        }

        [Fact]
        public void BlockOverlappingTheHeaderIsCorrupt()
        {
            using var dir = new TempDir();
            string path = MakeDynamic(dir);
            Patch(path, TableOffset, BigEndian32(1));
            using var layer = Open(path);
            Assert.Throws<ImageCorruptException>(() => layer.Read(0, new byte[512]));
            Assert.False(((ICheckableLayer)layer).Check(RepairMode.None).IsValid);
        }

        [Fact]
        public void TwoEntriesSharingABlockAreCorrupt()
        {
            using var dir = new TempDir();
            string path = MakeDynamic(dir);
            byte[] first = new byte[4];
            using (var stream = File.OpenRead(path))
            {
                stream.Position = TableOffset;
                stream.ReadExactly(first);
            }

            Patch(path, TableOffset + 8, first);
            using var layer = Open(path);
            Assert.Equal(2, ((ICheckableLayer)layer).Check(RepairMode.None).Corruptions);
        }

        [Theory]
        [InlineData(28, 0x7FFFFFFFu)]
        [InlineData(32, 3u)]
        [InlineData(32, 0x80000000u)]
        [InlineData(16, 0xFFFFFF00u)]
        public void AbsurdHeaderFieldsAreCorrupt(int fieldOffset, uint value)
        {
            using var dir = new TempDir();
            string path = MakeDynamic(dir);
            PatchHeaderField(path, fieldOffset, BigEndian32(value));
            Assert.Throws<ImageCorruptException>(() => Open(path));
        }

        [Fact]
        public void HugeParentLocatorIsCorrupt()
        {
            using var dir = new TempDir();
            string child = MakeChild(dir);
            PatchHeaderField(child, 576 + 8, BigEndian32(0x7FFFFFFF));
            var error = Assert.Throws<ImageCorruptException>(() => Open(child));
            Assert.Equal("parent locator 0", error.Field);
        }

        [Fact]
        public void ParentLocatorWithControlCharactersIsCorrupt()
        {
            using var dir = new TempDir();
            string child = MakeChild(dir);
            byte[] file = File.ReadAllBytes(child);
            long dataOffset = BinaryPrimitives.ReadInt64BigEndian(file.AsSpan(HeaderOffset + 576 + 16));
            Patch(child, dataOffset, new byte[] { 0x07, 0x00 });
            Assert.Throws<ImageCorruptException>(() => Open(child));
        }

        [Fact]
        public void ExternalParentPathsAreRefusedWhenNotAllowed()
        {
            using var dir = new TempDir();
            Directory.CreateDirectory(dir.File("sub"));
            MakeDynamic(dir, "base.vhd");
            string child = Path.Combine(dir.Path, "sub", "child.vhd");
            CreateOperation.Create(child, Fmt.Vhd, new CreateRequest { Backing = new BackingReference("../base.vhd", Fmt.Vhd) });
            Assert.Throws<ImageChainException>(() => ImageChain.Open(child, new ChainOptions { AllowExternalPaths = false }));
            using var chain = ImageChain.Open(child);
            Assert.Equal(2, chain.Layers.Count);
        }

        [Fact]
        public void TruncatedImageGivesTypedErrors()
        {
            using var dir = new TempDir();
            string path = MakeDynamic(dir);
            using (var stream = File.Open(path, FileMode.Open))
            {
                stream.SetLength(stream.Length - (1 << 20));
            }

            using var layer = Open(path);
            Assert.Throws<ImageCorruptException>(() => layer.Read(0, new byte[layer.Size]));
        }

        [Fact]
        public void DamagedTrailingFooterIsFoundByCheckAndRepaired()
        {
            using var dir = new TempDir();
            string path = MakeDynamic(dir);
            var before = Judge.Library("vhdi", path);
            Patch(path, new FileInfo(path).Length - 512 + 40, new byte[] { 0x55 });
            using (var layer = FormatRegistry.Default.Open(path, Fmt.Vhd, new OpenOptions { Writable = true }))
            {
                var result = ((ICheckableLayer)layer).Check(RepairMode.None);
                Assert.Equal(1, result.Corruptions);
                Assert.Contains("footer checksum", result.Messages[0]);
                Assert.Equal(1, ((ICheckableLayer)layer).Check(RepairMode.All).CorruptionsFixed);
            }

            using (var reopened = Open(path))
            {
                Assert.True(((ICheckableLayer)reopened).Check(RepairMode.None).IsValid);
            }

            // vhdiinfo opens the repaired image, and libvhdi reads the same content as before the damage.
            var footer = Qemu.Run("vhdiinfo", new[] { path });
            Assert.True(footer.ExitCode == 0, footer.Output);
            Assert.Equal(before, Judge.Library("vhdi", path));
        }

        [Fact]
        public void FixedDiskLargerThanItsFileReadsZerosAndRefusesWrites()
        {
            using var dir = new TempDir();
            string path = dir.File("short.vhd");
            CreateOperation.Create(path, Fmt.Vhd, new CreateRequest { Size = 1 << 20, Type = DiskType.Fixed });
            byte[] file = File.ReadAllBytes(path);
            byte[] footer = file.AsSpan(file.Length - 512).ToArray();
            BinaryPrimitives.WriteInt64BigEndian(footer.AsSpan(48), 4L << 20);
            FixChecksum(footer, 0, 512, 64);
            File.WriteAllBytes(path, file.AsSpan(0, file.Length - 512).ToArray().Concat(footer).ToArray());
            using (var layer = Open(path))
            {
                Assert.Equal(4L << 20, layer.Size);
                var tail = new byte[3L << 20];
                layer.Read(1L << 20, tail);
                Assert.True(Array.TrueForAll(tail, b => b == 0));
            }

            Assert.Throws<ImageCorruptException>(() => FormatRegistry.Default.Open(path, Fmt.Vhd, new OpenOptions { Writable = true }));
        }

        [Fact]
        public void TinyFileIsNotAVhd()
        {
            using var dir = new TempDir();
            string path = dir.File("tiny.vhd");
            File.WriteAllBytes(path, new byte[100]);
            Assert.Throws<ImageFormatMismatchException>(() => Open(path));
        }

        /// <summary>Recomputes a checksum so that damage reaches the field checks behind it.</summary>
        private static void FixChecksum(byte[] file, int start, int length, int checksumOffset)
        {
            BinaryPrimitives.WriteUInt32BigEndian(file.AsSpan(start + checksumOffset), 0);
            uint sum = 0;
            for (int i = 0; i < length; i++)
            {
                sum += file[start + i];
            }

            BinaryPrimitives.WriteUInt32BigEndian(file.AsSpan(start + checksumOffset), ~sum);
        }

        [Theory]
        [InlineData(false, false)]
        [InlineData(true, false)]
        [InlineData(false, true)]
        [InlineData(true, true)]
        public void RandomlyDamagedMetadataGivesOnlyTypedErrorsAndNeverChangesTheFile(bool differencing, bool fixChecksums)
        {
            using var dir = new TempDir();
            string pristine = differencing ? MakeChild(dir) : MakeDynamic(dir);
            byte[] original = File.ReadAllBytes(pristine);
            string victim = dir.File("victim.vhd");
            var rng = new Random((differencing ? 2 : 1) + (fixChecksums ? 10 : 0));
            int metadataEnd = differencing ? 4096 : 2048;
            for (int iteration = 0; iteration < 50; iteration++)
            {
                byte[] damaged = (byte[])original.Clone();
                int flips = rng.Next(1, 6);
                for (int i = 0; i < flips; i++)
                {
                    int at = rng.Next(0, 4) == 0 ? damaged.Length - 512 + rng.Next(512) : rng.Next(metadataEnd);
                    damaged[at] = (byte)rng.Next(256);
                }

                if (fixChecksums)
                {
                    FixChecksum(damaged, 0, 512, 64);
                    FixChecksum(damaged, HeaderOffset, 1024, 36);
                    FixChecksum(damaged, damaged.Length - 512, 512, 64);
                }

                File.WriteAllBytes(victim, damaged);
                byte[] before = SHA256.HashData(damaged);
                try
                {
                    using var chain = ImageChain.Open(victim, new ChainOptions { Format = Fmt.Vhd, IgnoreParentMismatch = iteration % 2 == 0 });
                    ImageLayer top = chain.Top;
                    long length = Math.Min(top.Size, 4L << 20);
                    top.Read(0, new byte[length]);
                    for (long offset = 0; offset < length;)
                    {
                        offset += top.GetBlockStatus(offset, length - offset).Length;
                    }

                    ((ICheckableLayer)top).Check(RepairMode.None);
                }
                catch (ImageException)
                {
                }

                Assert.Equal(before, SHA256.HashData(File.ReadAllBytes(victim)));
            }
        }
    }
}
