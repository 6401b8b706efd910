using System;
using System.Buffers.Binary;
using System.IO;
using System.Linq;
using System.Security.Cryptography;
using Xunit;

namespace VDiskPS.Formats.Tests.Bochs
{
    /// <summary>
    /// Bochs growing images written by <see cref="BochsBuilder"/> from bximage's layout. Every test first
    /// has qemu-img read the built image back as the raw content (QEMU cannot create bochs images), then
    /// judges the engine against the same raw.
    /// </summary>
    public class BochsTests
    {
        /// <summary>Data at the start, unaligned in the middle, zeros in between, and in the last sector.</summary>
        private static string MakeRaw(TempDir dir, long size = 5L << 20)
        {
            string raw = dir.File("content.raw");
            using (var file = new FileStream(raw, FileMode.Create))
            {
                file.SetLength(size);
                file.Write(TestData.Pattern(200_000, 1));
                file.Position = (size / 2) + 777;
                file.Write(TestData.Pattern((int)Math.Min(700_000, size / 3), 2));
                file.Position = size - 512;
                file.Write(TestData.Pattern(512, 3));
            }

            return raw;
        }

        private static string Build(TempDir dir, string raw, int extentBytes = 64 << 10, int version = 2, int bitmapBytes = 0)
        {
            string image = dir.File("disk.bochs");
            BochsBuilder.Build(raw, image, extentBytes, version, bitmapBytes: bitmapBytes);
            Assert.Equal(File.ReadAllBytes(raw), Qemu.ToRawBytes(image, "bochs", dir.Path));
            return image;
        }

        [Theory]
        [InlineData(64 << 10, 2, 0)]
        [InlineData(4096, 2, 0)]
        [InlineData(512, 1, 0)]
        [InlineData(4 << 20, 2, 0)]
        [InlineData(64 << 10, 1, 1300)]
        public void BuiltImageReadsAsQemuReadsIt(int extentBytes, int version, int bitmapBytes)
        {
            using var dir = new TempDir();
            string raw = MakeRaw(dir);
            string image = Build(dir, raw, extentBytes, version, bitmapBytes);
            Assert.Equal(Fmt.Bochs, FormatRegistry.Default.Probe(image));
            Assert.Equal(File.ReadAllBytes(raw), TestData.ReadAll(image));
            using var info = Qemu.Info(image, "bochs");
            Assert.Equal(ImageInspector.Get(image).Size, info.RootElement.GetProperty("virtual-size").GetInt64());
        }

        [Fact]
        public void SectorsMarkedAbsentReadAsZerosAndAreNotMapped()
        {
            using var dir = new TempDir();
            string raw = MakeRaw(dir);
            string image = Build(dir, raw);
            // The builder fills absent sectors of stored extents with 0xEE; qemu (above) and the engine read zeros there.
            Assert.Contains(BochsBuilder.AbsentFiller, File.ReadAllBytes(image));
            using var layer = FormatRegistry.Default.Open(image, Fmt.Bochs, new OpenOptions());
            // The extent holding byte 200000 is stored, and its sectors past the data are absent.
            BlockStatus data = layer.GetBlockStatus(196_608, 65536);
            Assert.Equal(ExtentKind.Data, data.Kind);
            BlockStatus absent = layer.GetBlockStatus(data.End, 65536);
            Assert.Equal(ExtentKind.Unallocated, absent.Kind);
            Assert.True(absent.End <= 262_144);
            // A whole extent never written is one unallocated run, merged with the next ones.
            BlockStatus never = layer.GetBlockStatus(1L << 20, 1L << 20);
            Assert.Equal(new BlockStatus(1L << 20, 1L << 20, ExtentKind.Unallocated).ToString(), never.ToString());
        }

        [Fact]
        public void ConvertsToQcow2AsQemuJudges()
        {
            using var dir = new TempDir();
            string raw = MakeRaw(dir, 3L << 20);
            string image = Build(dir, raw);
            string qcow2 = dir.File("out.qcow2");
            ConvertOperation.Run(image, qcow2, new ConvertOptions { TargetFormat = Fmt.Qcow2 });
            var (identical, output) = Qemu.Compare(image, "bochs", qcow2, "qcow2");
            Assert.True(identical, output);
        }

        [Fact]
        public void IsReadOnly()
        {
            using var dir = new TempDir();
            string image = Build(dir, MakeRaw(dir, 1L << 20));
            byte[] before = File.ReadAllBytes(image);
            var error = Assert.Throws<ImageNotSupportedException>(() => FormatRegistry.Default.Open(image, null, new OpenOptions { Writable = true }));
            Assert.Contains("read but not written", error.Message);
            Assert.Throws<ImageNotSupportedException>(() => FormatRegistry.Default.GetCreatable(Fmt.Bochs, "x.bochs"));
            Assert.Equal(before, File.ReadAllBytes(image));
        }

        [Fact]
        public void UndoableRedologIsRefusedByName()
        {
            using var dir = new TempDir();
            string image = Build(dir, MakeRaw(dir, 1L << 20));
            using (var stream = File.Open(image, FileMode.Open))
            {
                stream.Position = 48;
                stream.Write(System.Text.Encoding.ASCII.GetBytes("Undoable"));
            }

            // qemu probes it as raw (it only knows Growing); the engine refuses it instead of reading the container as data.
            Assert.Contains("file format: raw", Qemu.Img("info", image));
            var error = Assert.Throws<ImageNotSupportedException>(() => TestData.ReadAll(image));
            Assert.Contains("'Undoable'", error.Message);
        }

        [Theory]
        [InlineData(80, 3000u, "extent")]
        [InlineData(80, 256u, "extent")]
        [InlineData(76, 0u, "bitmap")]
        [InlineData(72, 2u, "disk size")]
        [InlineData(72, 0x200000u, "catalog")]
        [InlineData(68, 0x7FFFFF00u, "header size")]
        [InlineData(68, 16u, "header size")]
        public void DamagedHeaderFieldsAreTypedErrors(int offset, uint value, string field)
        {
            using var dir = new TempDir();
            string image = Build(dir, MakeRaw(dir, 1L << 20));
            TestData.PatchUInt32(image, offset, value);
            byte[] before = File.ReadAllBytes(image);
            var error = Assert.ThrowsAny<ImageException>(() => TestData.ReadAll(image));
            Assert.Equal(field, error.Field);
            Assert.Equal(image, error.FilePath);
            Assert.Equal(SHA256.HashData(before), SHA256.HashData(File.ReadAllBytes(image)));
        }

        [Fact]
        public void CatalogEntryPastTheFileIsATypedError()
        {
            using var dir = new TempDir();
            string image = Build(dir, MakeRaw(dir, 1L << 20));
            TestData.PatchUInt32(image, 512, 100_000);
            var error = Assert.Throws<ImageCorruptException>(() => TestData.ReadAll(image));
            Assert.Equal("catalog entry 0", error.Field);
            Assert.Equal(512, error.Offset);
        }

        [Fact]
        public void PresentSectorsPastTheFileAreATypedError()
        {
            using var dir = new TempDir();
            string raw = MakeRaw(dir, 1L << 20);
            string image = Build(dir, raw);
            // Cut the last stored extent (guest extent 0, stored last) inside its data.
            using (var stream = File.Open(image, FileMode.Open))
            {
                stream.SetLength(stream.Length - 4096);
            }

            var error = Assert.Throws<ImageCorruptException>(() => TestData.ReadAll(image));
            Assert.Contains("past the end of the file", error.Message);
        }

        [Fact]
        public void AnImageNamedLikeRawIsProbedAsBochsByItsHeader()
        {
            // bximage suggests .img, raw's extension; the header decides, as in qemu-img.
            using var dir = new TempDir();
            string raw = MakeRaw(dir, 2L << 20);
            string image = dir.File("disk.img");
            BochsBuilder.Build(raw, image);
            Assert.Contains("file format: bochs", Qemu.Img("info", image));
            Assert.Equal(Fmt.Bochs, FormatRegistry.Default.Probe(image));
            Assert.Equal(File.ReadAllBytes(raw), TestData.ReadAll(image));
            Assert.Equal(Fmt.Raw, FormatRegistry.Default.FromExtension(image));
        }

        /// <summary>
        /// The corruption sweep for a format qemu-img cannot make (CorruptionSweepTests makes its images with
        /// qemu-img): random damage to the header, catalog and bitmaps of a built image gives a typed error
        /// or reads through, and never changes the file.
        /// </summary>
        [Fact]
        public void RandomDamageGivesTypedErrorsOnly()
        {
            using var dir = new TempDir();
            string image = Build(dir, MakeRaw(dir, 2L << 20), extentBytes: 16 << 10);
            byte[] original = File.ReadAllBytes(image);
            var rng = new Random(77);
            for (int round = 0; round < 150; round++)
            {
                byte[] damaged = (byte[])original.Clone();
                for (int h = 1 + rng.Next(6); h > 0; h--)
                {
                    damaged[rng.Next(Math.Min(damaged.Length, 8192))] = (byte)rng.Next(256);
                }

                if (round % 4 == 3)
                {
                    Array.Resize(ref damaged, rng.Next(damaged.Length));
                }

                string path = dir.File($"damaged-{round}.bochs");
                File.WriteAllBytes(path, damaged);
                try
                {
                    ImageInspector.Get(path);
                    using (var chain = ImageChain.Open(path, new ChainOptions()))
                    {
                        // Damage may claim a disk of terabytes: read at most the first 8 MiB.
                        var buffer = new byte[1 << 20];
                        for (long at = 0; at < Math.Min(chain.Size, 8L << 20); at += buffer.Length)
                        {
                            chain.Read(at, buffer.AsSpan(0, (int)Math.Min(buffer.Length, chain.Size - at)));
                        }
                    }

                    MapOperation.Run(path);
                }
                catch (ImageException e)
                {
                    Assert.Equal(path, e.FilePath);
                }

                Assert.Equal(damaged, File.ReadAllBytes(path));
            }
        }

        [Fact]
        public void TruncatedHeaderIsAFormatMismatch()
        {
            using var dir = new TempDir();
            string image = Build(dir, MakeRaw(dir, 1L << 20));
            byte[] head = File.ReadAllBytes(image).Take(300).ToArray();
            File.WriteAllBytes(image, head);
            Assert.Throws<ImageFormatMismatchException>(() => FormatRegistry.Default.Open(image, Fmt.Bochs, new OpenOptions()));
        }
    }
}
