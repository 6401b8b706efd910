using System;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Text.RegularExpressions;
using Xunit;

namespace VDiskPS.Formats.Tests.Luks
{
    /// <summary>
    /// The luks format (QEMU's raw LUKS1 container) as images: qemu-img/qemu-io and cryptsetup make and
    /// judge the containers; the engine reads theirs bit-exact, and what it creates and writes they read.
    /// </summary>
    public class LuksFormatTests
    {
        private static ImageSecrets Secret => ImageSecrets.FromString(Qemu.Password);

        private static byte[] QemuPlaintext(TempDir dir, string luks) => Qemu.ToRawBytesWithSecret(Qemu.ImageOpts(luks, "luks"), dir.Path);

        private static void QemuIo(string luks, params string[] commands)
            => Qemu.Io(new[] { "--object", Qemu.SecretObject, "--image-opts", Qemu.ImageOpts(luks, "luks") }.Concat(commands.SelectMany(c => new[] { "-c", c })).ToArray());

        private static string QemuContainer(TempDir dir, string name, string size = "4M")
        {
            string luks = dir.File(name);
            Qemu.Img("create", "-q", "-f", "luks", "--object", Qemu.SecretObject, "-o", "key-secret=sec0,iter-time=10", luks, size);
            return luks;
        }

        private static string CryptsetupContainer(TempDir dir, string cipher, string keySize, string type = "luks1")
        {
            string luks = dir.File("crypt.luks");
            using (var f = File.Create(luks))
            {
                f.SetLength(4 << 20);
            }

            File.WriteAllText(dir.File("pw.key"), Qemu.Password);
            var (code, output) = Qemu.Run("cryptsetup", new[] { "luksFormat", "--type", type, "-q", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--cipher", cipher, "--key-size", keySize, "--hash", "sha256", "--key-file", dir.File("pw.key"), luks });
            Assert.True(code == 0, output);
            return luks;
        }

        private static string LuksDump(string path)
        {
            var (code, output) = Qemu.Run("cryptsetup", new[] { "luksDump", path });
            Assert.True(code == 0, output);
            return output;
        }

        [Fact]
        public void Reads_a_qemu_made_container_bit_exact_and_probes_it_without_its_extension()
        {
            using var dir = new TempDir();
            string luks = QemuContainer(dir, "disk.img");
            QemuIo(luks, "write -P 0xab 0 64k", "write -P 0x11 1000k 12k", "write -P 0x5c 3584k 512k");
            byte[] expected = QemuPlaintext(dir, luks);

            using (ImageSecrets.Use(Secret))
            {
                Assert.Equal(Fmt.Luks, FormatRegistry.Default.Probe(luks));
                using var layer = FormatRegistry.Default.Open(luks, null, new OpenOptions());
                Assert.Equal(4L << 20, layer.Size);
                Assert.Equal(expected, TestData.ReadAll(luks));
            }
        }

        [Theory]
        [InlineData("aes-cbc-essiv:sha256", "256")]
        [InlineData("aes-xts-plain64", "512")]
        public void Reads_cryptsetup_made_containers_after_qemu_wrote_into_them(string cipher, string keySize)
        {
            using var dir = new TempDir();
            string luks = CryptsetupContainer(dir, cipher, keySize);
            QemuIo(luks, "write -P 0x7e 0 100k", "write -P 0x21 1537k 3k");
            byte[] expected = QemuPlaintext(dir, luks);
            using (ImageSecrets.Use(Secret))
            {
                Assert.Equal(expected, TestData.ReadAll(luks));
            }
        }

        [Fact]
        public void Unaligned_writes_into_a_qemu_made_container_read_back_in_qemu()
        {
            using var dir = new TempDir();
            string luks = QemuContainer(dir, "disk.luks");
            QemuIo(luks, "write -P 0x33 0 4M");
            byte[] expected = QemuPlaintext(dir, luks);
            using (ImageSecrets.Use(Secret))
            using (var layer = FormatRegistry.Default.Open(luks, null, new OpenOptions { Writable = true }))
            {
                foreach (var (offset, length, seed) in new[] { (1L, 10, 1), (511L, 2, 2), (4096L + 100, 3000, 3), ((4L << 20) - 700, 700, 4), (1L << 20, 1 << 20, 5), (77777L, (3 << 20) + 3, 6) })
                {
                    byte[] data = TestData.Pattern(length, seed);
                    layer.Write(offset, data);
                    data.CopyTo(expected, offset);
                }

                layer.WriteZeroes(2000, 5000);
                Array.Clear(expected, 2000, 5000);
            }

            Assert.Equal(expected, QemuPlaintext(dir, luks));
        }

        [Fact]
        public void Converting_into_luks_makes_a_container_cryptsetup_and_qemu_open()
        {
            using var dir = new TempDir();
            string raw = dir.File("source.raw");
            using (var f = File.Create(raw))
            {
                f.SetLength(6L << 20);
                f.Write(TestData.Pattern(70_000, 9));
                f.Position = 5L << 20;
                f.Write(TestData.Pattern(4096, 10));
            }

            string luks = dir.File("target.luks");
            using (ImageSecrets.Use(Secret))
            {
                ConvertOperation.Run(raw, luks, new ConvertOptions { TargetFormat = Fmt.Luks, Target = new CreateRequest { Options = OptionSet.Parse("iter-time=10") } });
            }

            var (identical, output) = Qemu.Compare(raw, "raw", luks, "luks");
            Assert.True(identical, output);
            string dump = LuksDump(luks);
            Assert.Matches(@"Version:\s+1", dump);
            Assert.Matches(@"Cipher name:\s+aes", dump);
            Assert.Matches(@"Cipher mode:\s+xts-plain64", dump);
            Assert.Matches(@"Hash spec:\s+sha256", dump);
            Assert.Matches(@"MK bits:\s+512", dump);
            Assert.Matches(@"Payload offset:\s+4040", dump);
            Assert.Matches(@"Key Slot 0: ENABLED", dump);
            Assert.Matches(@"AF stripes:\s+4000", dump);
            Assert.Equal(7, Regex.Matches(dump, "DISABLED").Count);
            Assert.Equal(2068480 + (6L << 20), new FileInfo(luks).Length);

            File.WriteAllText(dir.File("pw.key"), Qemu.Password);
            var (good, goodOutput) = Qemu.Run("cryptsetup", new[] { "open", "--type", "luks1", "--test-passphrase", "--key-file", dir.File("pw.key"), luks });
            Assert.True(good == 0, goodOutput);
            File.WriteAllText(dir.File("bad.key"), "wrong");
            Assert.NotEqual(0, Qemu.Run("cryptsetup", new[] { "open", "--type", "luks1", "--test-passphrase", "--key-file", dir.File("bad.key"), luks }).ExitCode);
        }

        [Fact]
        public void A_new_container_reads_as_zeros_in_qemu_and_a_size_is_rounded_to_sectors()
        {
            using var dir = new TempDir();
            string luks = dir.File("new.luks");
            var request = new CreateRequest { Size = (1 << 20) + 100, Options = OptionSet.Parse("iter-time=10") };
            using (ImageSecrets.Use(Secret))
            {
                CreateOperation.Create(luks, Fmt.Luks, request);
            }

            Assert.Contains(request.Warnings, w => w.Contains("rounded up to 1049088"));
            Assert.Equal(new byte[(1 << 20) + 512], QemuPlaintext(dir, luks));
        }

        [Fact]
        public void Iter_time_sets_the_benchmarked_pbkdf2_iterations()
        {
            using var dir = new TempDir();
            int Iterations(string name, string iterTime)
            {
                string luks = dir.File(name);
                var clock = Stopwatch.StartNew();
                using (ImageSecrets.Use(Secret))
                {
                    CreateOperation.Create(luks, Fmt.Luks, new CreateRequest { Size = 1 << 20, Options = OptionSet.Parse("iter-time=" + iterTime) });
                }

                Match m = Regex.Match(LuksDump(luks), @"Key Slot 0: ENABLED\s+Iterations:\s+(\d+)");
                Assert.True(m.Success);
                return int.Parse(m.Groups[1].Value);
            }

            int shortSlot = Iterations("short.luks", "20");
            int longSlot = Iterations("long.luks", "400");
            Assert.True(shortSlot >= 1000, $"{shortSlot}");
            Assert.True(longSlot > 5 * shortSlot, $"iter-time 400 gave {longSlot} iterations, iter-time 20 gave {shortSlot}");
        }

        [Fact]
        public void A_missing_or_wrong_password_is_typed_and_never_quoted()
        {
            using var dir = new TempDir();
            string luks = QemuContainer(dir, "disk.luks");
            var missing = Assert.Throws<ImagePasswordException>(() => FormatRegistry.Default.Open(luks, null, new OpenOptions()));
            Assert.True(missing.Missing);
            Assert.Throws<ImagePasswordException>(() => CreateOperation.Create(dir.File("other.luks"), Fmt.Luks, new CreateRequest { Size = 1 << 20 }));
            Assert.False(File.Exists(dir.File("other.luks")));
            using (ImageSecrets.Use(ImageSecrets.FromString("hunter2-wrong")))
            {
                var wrong = Assert.Throws<ImagePasswordException>(() => FormatRegistry.Default.Open(luks, null, new OpenOptions()));
                Assert.False(wrong.Missing);
                Assert.DoesNotContain("hunter2", wrong.ToString());
            }
        }

        [Fact]
        public void Damaged_headers_and_cut_files_give_typed_errors_and_stay_unchanged()
        {
            // The container's own sweep (CorruptionSweepTests drives qemu-img without a secret): bytes of the
            // 592-byte header and the first key material changed, or the file cut short, then opened and read.
            using var dir = new TempDir();
            string good = QemuContainer(dir, "good.luks", "1M");
            QemuIo(good, "write -P 0x6e 0 1M");
            byte[] original = File.ReadAllBytes(good);
            var rng = new Random(1234);
            using (ImageSecrets.Use(Secret))
            {
                for (int round = 0; round < 30; round++)
                {
                    byte[] damaged = (byte[])original.Clone();
                    for (int h = 1 + rng.Next(4); h > 0; h--)
                    {
                        damaged[rng.Next(round % 2 == 0 ? 592 : 8192)] = (byte)rng.Next(256);
                    }

                    if (round % 5 == 4)
                    {
                        Array.Resize(ref damaged, rng.Next(damaged.Length));
                    }

                    string path = dir.File($"damaged-{round}.luks");
                    File.WriteAllBytes(path, damaged);
                    Exception failure = Record.Exception(() => TestData.ReadAll(path, Fmt.Luks));
                    Assert.True(failure == null || failure is ImageException, $"round {round}: {failure}");
                    Assert.Equal(damaged, File.ReadAllBytes(path));
                }
            }
        }

        [Fact]
        public void A_luks2_container_is_refused_by_name_not_read_as_raw()
        {
            using var dir = new TempDir();
            string luks = CryptsetupContainer(dir, "aes-xts-plain64", "512", "luks2");
            Assert.Equal(Fmt.Luks, FormatRegistry.Default.Probe(luks));
            using (ImageSecrets.Use(Secret))
            {
                var e = Assert.Throws<ImageNotSupportedException>(() => FormatRegistry.Default.Open(luks, null, new OpenOptions()));
                Assert.Contains("LUKS version 2", e.Message);
            }
        }
    }
}
