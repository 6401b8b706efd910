using System;
using System.IO;
using System.Security.Cryptography;
using System.Text;
using Xunit;

namespace VDiskPS.Formats.Tests.Vmdk
{
    public class VmdkBadInputTests
    {
        [Theory]
        [InlineData("../../etc/passwd")]
        [InlineData("/etc/passwd")]
        [InlineData("sub/../../outside.raw")]
        public void ExtentOutsideTheDescriptorDirectoryIsRefused(string extent)
        {
            using var dir = new TempDir();
            string path = WriteDescriptor(dir, $"RW 8 FLAT \"{extent}\" 0");
            var e = Assert.Throws<ImageNotSupportedException>(() => VmdkFixtures.EngineBytes(path));
            Assert.Equal("extent file name", e.Field);
        }

        [Fact]
        public void ExtentOutsideIsReadWhenExplicitlyAllowed()
        {
            using var dir = new TempDir();
            string inner = Path.Combine(dir.Path, "inner");
            Directory.CreateDirectory(inner);
            File.WriteAllBytes(dir.File("outside.raw"), TestData.Pattern(4096, 1));
            string path = Path.Combine(inner, "d.vmdk");
            File.WriteAllText(path, Descriptor("RW 8 FLAT \"../outside.raw\" 0"));
            Assert.Throws<ImageNotSupportedException>(() => VmdkFixtures.EngineBytes(path));
            Assert.Equal(TestData.Pattern(4096, 1), VmdkFixtures.EngineBytes(path, new OpenOptions { AllowExternalExtents = true }));
        }

        [Fact]
        public void MissingExtentFileIsAnIOError()
        {
            using var dir = new TempDir();
            string path = WriteDescriptor(dir, "RW 8 FLAT \"missing-flat.vmdk\" 0");
            Assert.Throws<ImageIOException>(() => VmdkFixtures.EngineBytes(path));
        }

        [Theory]
        [InlineData("RW 8 FLAT missing-quotes.vmdk 0")]
        [InlineData("RW -8 FLAT \"a.vmdk\" 0")]
        [InlineData("RW 99999999999999999999 FLAT \"a.vmdk\" 0")]
        [InlineData("RW 8 BOGUS \"a.vmdk\"")]
        [InlineData("RW 8 FLAT \"a.vmdk")]
        [InlineData("just some words")]
        public void MalformedExtentLineIsCorrupt(string line)
        {
            using var dir = new TempDir();
            File.WriteAllBytes(dir.File("a.vmdk.bin"), new byte[4096]);
            string path = WriteDescriptor(dir, line);
            Assert.Throws<ImageCorruptException>(() => VmdkFixtures.EngineBytes(path));
        }

        [Fact]
        public void RawDeviceMappingExtentIsNamedAsNotSupported()
        {
            using var dir = new TempDir();
            File.WriteAllBytes(dir.File("disk-rdm.vmdk"), new byte[4096]);
            string path = WriteDescriptor(dir, "RW 8 VMFSRDM \"disk-rdm.vmdk\"");
            var e = Assert.Throws<ImageNotSupportedException>(() => VmdkFixtures.EngineBytes(path));
            Assert.Contains("VMFSRDM", e.Message);
        }

        [Fact]
        public void SeSparseExtentWithoutItsMagicIsAFormatMismatch()
        {
            using var dir = new TempDir();
            File.WriteAllBytes(dir.File("delta-sesparse.vmdk"), new byte[4096]);
            string path = WriteDescriptor(dir, "RW 8 SESPARSE \"delta-sesparse.vmdk\"");
            Assert.Throws<ImageFormatMismatchException>(() => VmdkFixtures.EngineBytes(path));
        }

        [Fact]
        public void ExtentsAddingUpPastTheLimitAreCorrupt()
        {
            using var dir = new TempDir();
            var lines = new StringBuilder();
            for (int i = 0; i < 3; i++)
            {
                lines.Append("RW 1000000000000 ZERO\n");
            }

            string path = WriteDescriptor(dir, lines.ToString());
            Assert.Throws<ImageCorruptException>(() => VmdkFixtures.EngineBytes(path));
        }

        [Fact]
        public void StreamWithoutFooterIsCorrupt()
        {
            using var dir = new TempDir();
            string path = VmdkFixtures.QemuConverted(dir, VmdkFixtures.MixedRaw(dir), "streamOptimized");
            byte[] data = File.ReadAllBytes(path);
            BitConverter.GetBytes(ulong.MaxValue).CopyTo(data, 56);
            BitConverter.GetBytes(0x30001u).CopyTo(data, 8);
            File.WriteAllBytes(path, data);
            Assert.Throws<ImageCorruptException>(() => VmdkFixtures.EngineBytes(path));
        }

        [Fact]
        public void GarbageCompressedGrainIsCorrupt()
        {
            using var dir = new TempDir();
            string path = VmdkFixtures.QemuConverted(dir, VmdkFixtures.MixedRaw(dir), "streamOptimized");
            byte[] data = File.ReadAllBytes(path);
            using (var layer = FormatRegistry.Default.Open(path, Fmt.Vmdk, new OpenOptions()))
            {
                var first = ((Formats.Vmdk.VmdkLayer)layer).Extents[0];
                Assert.True(first.Compressed);
            }

            // The first grain follows the 64 KiB of header and metadata; scramble its deflate data.
            long grain = FindFirstGrainMarker(data);
            for (int i = 14; i < 200; i++)
            {
                data[grain + i] = (byte)(i * 37);
            }

            File.WriteAllBytes(path, data);
            Assert.Throws<ImageCorruptException>(() => VmdkFixtures.EngineBytes(path));
        }

        [Theory]
        [InlineData(12, 8, 0xFFFFFFFFFFFFFFFF)]
        [InlineData(20, 8, 0)]
        [InlineData(20, 8, 3)]
        [InlineData(44, 4, 0)]
        [InlineData(56, 8, 0x7FFFFFFF)]
        [InlineData(4, 4, 9)]
        [InlineData(36, 8, 0xFFFFFFFF)]
        public void HostileHeaderFieldIsATypedError(int offset, int width, ulong value)
        {
            using var dir = new TempDir();
            string path = VmdkFixtures.QemuImage(dir, "monolithicSparse");
            byte[] data = File.ReadAllBytes(path);
            byte[] bytes = BitConverter.GetBytes(value);
            Array.Copy(bytes, 0, data, offset, width);
            File.WriteAllBytes(path, data);
            Assert.ThrowsAny<ImageException>(() => VmdkFixtures.EngineBytes(path));
        }

        [Theory]
        [InlineData("monolithicSparse", 1)]
        [InlineData("monolithicSparse", 2)]
        [InlineData("streamOptimized", 3)]
        [InlineData("streamOptimized", 4)]
        public void RandomCorruptionGivesDataOrATypedErrorAndNeverModifiesTheSource(string subformat, int seed)
        {
            using var dir = new TempDir();
            string raw = VmdkFixtures.MixedRaw(dir, size: 2L << 20);
            string original = VmdkFixtures.QemuConverted(dir, raw, subformat);
            byte[] pristine = File.ReadAllBytes(original);
            var random = new Random(seed);
            string path = dir.File("fuzz.vmdk");
            for (int round = 0; round < 60; round++)
            {
                byte[] data = (byte[])pristine.Clone();
                int changes = 1 + random.Next(8);
                for (int i = 0; i < changes; i++)
                {
                    // Aim at the metadata (header, descriptor, tables) and the start of the data.
                    int position = random.Next(Math.Min(data.Length, random.Next(2) == 0 ? 4096 : 200000));
                    data[position] = (byte)random.Next(256);
                }

                File.WriteAllBytes(path, data);
                byte[] before = SHA256.HashData(data);
                try
                {
                    using var layer = FormatRegistry.Default.Open(path, Fmt.Vmdk, new OpenOptions());
                    var buffer = new byte[Math.Min(layer.Size, 4L << 20)];
                    layer.Read(0, buffer);
                    for (long offset = 0; offset < layer.Size;)
                    {
                        offset = layer.GetBlockStatus(offset, layer.Size - offset).End;
                    }

                    ((ICheckableLayer)layer).Check(RepairMode.None);
                }
                catch (ImageException)
                {
                }

                Assert.Equal(before, SHA256.HashData(File.ReadAllBytes(path)));
            }
        }

        [Theory]
        [InlineData("seSparse", "SESPARSE", 11)]
        [InlineData("vmfsSparse", "VMFSSPARSE", 12)]
        public void RandomCorruptionOfEsxiDeltaExtentsGivesDataOrATypedError(string createType, string extentType, int seed)
        {
            using var dir = new TempDir();
            string extent = dir.File("delta-extent.vmdk");
            if (extentType == "SESPARSE")
            {
                VmdkFixtures.SeSparseFile(extent);
            }
            else
            {
                VmdkFixtures.CowdFile(extent);
            }

            byte[] pristine = File.ReadAllBytes(extent);
            string path = dir.File("delta.vmdk");
            File.WriteAllText(path, $"# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType=\"{createType}\"\n\nRW 2048 {extentType} \"delta-extent.vmdk\"\n");
            var random = new Random(seed);
            for (int round = 0; round < 150; round++)
            {
                byte[] data = (byte[])pristine.Clone();
                for (int i = 0, n = 1 + random.Next(6); i < n; i++)
                {
                    data[random.Next(random.Next(2) == 0 ? 1024 : 3 * 512 + 2048)] = (byte)random.Next(256);
                }

                File.WriteAllBytes(extent, data);
                try
                {
                    VmdkFixtures.EngineBytes(path);
                }
                catch (ImageException)
                {
                }
            }
        }

        [Fact]
        public void MutatedDescriptorTextGivesDataOrATypedError()
        {
            using var dir = new TempDir();
            string original = VmdkFixtures.QemuImage(dir, "twoGbMaxExtentFlat", size: 2L << 20);
            string text = File.ReadAllText(original).TrimEnd('\0');
            const string alphabet = "\"=# \n\t0123456789abcdefRWFLATSPARSEZERO/.-";
            var random = new Random(5);
            for (int round = 0; round < 200; round++)
            {
                var mutated = new StringBuilder(text);
                int changes = 1 + random.Next(4);
                for (int i = 0; i < changes; i++)
                {
                    mutated[random.Next(mutated.Length)] = alphabet[random.Next(alphabet.Length)];
                }

                File.WriteAllText(original, mutated.ToString());
                try
                {
                    VmdkFixtures.EngineBytes(original);
                }
                catch (ImageException)
                {
                }
            }
        }

        [Fact]
        public void OversizedTextFileIsNotADescriptor()
        {
            using var dir = new TempDir();
            string path = dir.File("big.vmdk");
            File.WriteAllText(path, Descriptor("RW 8 ZERO") + new string('#', 2 << 20));
            Assert.Throws<ImageFormatMismatchException>(() => VmdkFixtures.EngineBytes(path));
        }

        private static long FindFirstGrainMarker(byte[] data)
        {
            for (long sector = 1; sector * 512 < data.Length; sector++)
            {
                long at = sector * 512;
                uint size = BitConverter.ToUInt32(data, (int)at + 8);
                if (BitConverter.ToUInt64(data, (int)at) == 0 && size > 0 && size < 70000 && data[at + 12] == 0x78)
                {
                    return at;
                }
            }

            throw new InvalidOperationException("no grain marker");
        }

        private static string WriteDescriptor(TempDir dir, string extents)
        {
            string path = dir.File("d.vmdk");
            File.WriteAllText(path, Descriptor(extents));
            return path;
        }

        private static string Descriptor(string extents)
            => "# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\n\n" + extents + "\n\nddb.adapterType = \"ide\"\n";
    }
}
