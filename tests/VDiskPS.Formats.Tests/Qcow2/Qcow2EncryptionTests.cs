using System;
using System.IO;
using System.Linq;
using Xunit;

namespace VDiskPS.Formats.Tests.Qcow2
{
    /// <summary>
    /// qcow2 with encrypt.format=luks (read and written on every create path) and legacy AES (read only),
    /// judged by qemu-img and qemu-io opening the images with the secret sec0.
    /// </summary>
    public class Qcow2EncryptionTests
    {
        private const string Encrypted = "qcow2-encrypted";

        private static ImageSecrets Secret => ImageSecrets.FromString(Qemu.Password);

        private static string QemuLuksQcow2(TempDir dir, string name, string size = "8M", string extra = "")
        {
            string path = dir.File(name);
            Qemu.Img("create", "-q", "-f", "qcow2", "--object", Qemu.SecretObject, "-o", "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10" + extra, path, size);
            return path;
        }

        private static void QemuIo(string path, params string[] commands)
            => Qemu.Io(new[] { "--object", Qemu.SecretObject, "--image-opts", Qemu.ImageOpts(path, Encrypted) }.Concat(commands.SelectMany(c => new[] { "-c", c })).ToArray());

        private static byte[] QemuPlaintext(TempDir dir, string path) => Qemu.ToRawBytesWithSecret(Qemu.ImageOpts(path, Encrypted), dir.Path);

        private static void AssertQemuChecksClean(string path)
        {
            var (code, output) = Qemu.Run("qemu-img", new[] { "check", "--object", Qemu.SecretObject, "--image-opts", Qemu.ImageOpts(path, Encrypted) });
            Assert.True(code == 0, output);
        }

        private static void AssertQemuSeesLuks(string path)
        {
            using var info = Qemu.Info(path, "qcow2");
            Assert.True(info.RootElement.GetProperty("encrypted").GetBoolean());
            Assert.Equal("luks", info.RootElement.GetProperty("format-specific").GetProperty("data").GetProperty("encrypt").GetProperty("format").GetString());
        }

        private static void WriteThrough(string path, byte[] expected, long offset, byte[] data)
        {
            using (var chain = ImageChain.Open(path, new ChainOptions { Writable = true }))
            {
                chain.Top.Write(offset, data);
            }

            data.CopyTo(expected, offset);
        }

        [Fact]
        public void Reads_a_qemu_made_luks_qcow2_bit_exact()
        {
            using var dir = new TempDir();
            string path = QemuLuksQcow2(dir, "disk.qcow2");
            QemuIo(path, "write -P 0xab 0 64k", "write -P 0x11 1000k 12k", "write -P 0x5c 3584k 700k", "write -z 3600k 64k", "write -P 0x42 7M 333");
            byte[] expected = QemuPlaintext(dir, path);
            using (ImageSecrets.Use(Secret))
            {
                Assert.Equal(expected, TestData.ReadAll(path));
                using var layer = FormatRegistry.Default.Open(path, null, new OpenOptions());
                var info = new VDiskInfo();
                layer.Describe(info);
                Assert.True(info.Encrypted);
            }
        }

        [Fact]
        public void Engine_writes_into_a_qemu_made_luks_qcow2_read_back_in_qemu_and_pass_its_check()
        {
            using var dir = new TempDir();
            string path = QemuLuksQcow2(dir, "disk.qcow2");
            QemuIo(path, "write -P 0x33 0 256k", "write -P 0x44 2M 64k");
            byte[] expected = QemuPlaintext(dir, path);
            using (ImageSecrets.Use(Secret))
            {
                WriteThrough(path, expected, 100, TestData.Pattern(1000, 1));
                WriteThrough(path, expected, (2L << 20) + 513, TestData.Pattern(70_000, 2));
                WriteThrough(path, expected, (5L << 20) - 7, TestData.Pattern(200_000, 3));
            }

            Assert.Equal(expected, QemuPlaintext(dir, path));
            AssertQemuChecksClean(path);
        }

        [Theory]
        [InlineData("request")]
        [InlineData("option")]
        public void A_new_luks_qcow2_from_the_request_or_the_option_opens_in_qemu(string how)
        {
            using var dir = new TempDir();
            string path = dir.File("new.qcow2");
            var request = new CreateRequest { Size = 8L << 20, Options = OptionSet.Parse(how == "option" ? "encrypt.format=luks,encrypt.iter-time=10" : "encrypt.iter-time=10") };
            if (how == "request")
            {
                request.Encryption = "luks";
            }

            byte[] expected = new byte[8L << 20];
            using (ImageSecrets.Use(Secret))
            {
                CreateOperation.Create(path, Fmt.Qcow2, request);
                WriteThrough(path, expected, 12345, TestData.Pattern(300_000, 4));
                WriteThrough(path, expected, (8L << 20) - 4096, TestData.Pattern(4096, 5));
                var check = CheckOperation.Run(path, Fmt.Qcow2, RepairMode.None);
                Assert.True(check.IsValid && check.Leaks == 0, string.Join("; ", check.Messages));
            }

            AssertQemuSeesLuks(path);
            AssertQemuChecksClean(path);
            Assert.Equal(expected, QemuPlaintext(dir, path));
        }

        [Fact]
        public void Converting_into_a_luks_qcow2_is_identical_in_qemu()
        {
            using var dir = new TempDir();
            string raw = dir.File("source.raw");
            using (var f = File.Create(raw))
            {
                f.SetLength(9L << 20);
                f.Write(TestData.Pattern(300_000, 6));
                f.Position = (5L << 20) + 777;
                f.Write(TestData.Pattern(1_500_000, 7));
            }

            string target = dir.File("target.qcow2");
            using (ImageSecrets.Use(Secret))
            {
                ConvertOperation.Run(raw, target, new ConvertOptions { TargetFormat = Fmt.Qcow2, Target = new CreateRequest { Encryption = "luks", Options = OptionSet.Parse("encrypt.iter-time=10") } });
            }

            AssertQemuSeesLuks(target);
            var (identical, output) = Qemu.Compare(raw, "raw", target, Encrypted);
            Assert.True(identical, output);
            AssertQemuChecksClean(target);
        }

        [Fact]
        public void Committing_an_overlay_into_a_luks_qcow2_base()
        {
            using var dir = new TempDir();
            string basePath = QemuLuksQcow2(dir, "base.qcow2");
            QemuIo(basePath, "write -P 0x61 0 1M");
            string overlay = dir.File("top.qcow2");
            Qemu.Img("create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "-u", overlay, "8M");
            Qemu.Io("--object", Qemu.SecretObject, "--image-opts", $"driver=qcow2,file.filename={overlay},backing.encrypt.key-secret=sec0", "-c", "write -P 0x72 512k 1M", "-c", "write -P 0x73 6M 100k");
            byte[] expected = QemuPlaintext(dir, basePath);
            expected.AsSpan(512 << 10, 1 << 20).Fill(0x72);
            expected.AsSpan(6 << 20, 100 << 10).Fill(0x73);

            using (ImageSecrets.Use(Secret))
            {
                CommitOperation.Run(overlay);
            }

            Assert.Equal(expected, QemuPlaintext(dir, basePath));
            AssertQemuChecksClean(basePath);
        }

        [Fact]
        public void Internal_snapshots_of_a_luks_qcow2_keep_their_content_for_qemu()
        {
            using var dir = new TempDir();
            string path = QemuLuksQcow2(dir, "disk.qcow2");
            QemuIo(path, "write -P 0x10 0 2M");
            byte[] before = QemuPlaintext(dir, path);
            using (ImageSecrets.Use(Secret))
            {
                SnapshotOperations.Create(path, "s1", Fmt.Qcow2);
                byte[] after = (byte[])before.Clone();
                WriteThrough(path, after, 4096, TestData.Pattern(100_000, 8));
                Assert.Equal(after, QemuPlaintext(dir, path));
                Assert.Equal(before, SnapshotContent(path, "s1"));
            }

            string snapRaw = dir.File("s1.raw");
            Qemu.Img("convert", "--object", Qemu.SecretObject, "--image-opts", Qemu.ImageOpts(path, Encrypted), "-l", "snapshot.name=s1", "-O", "raw", snapRaw);
            Assert.Equal(before, File.ReadAllBytes(snapRaw));
            AssertQemuChecksClean(path);
        }

        private static byte[] SnapshotContent(string path, string name)
        {
            using var layer = FormatRegistry.Default.Open(path, Fmt.Qcow2, new OpenOptions());
            using var view = Capability.Require<ISnapshotLayer>(layer, "internal snapshots").OpenSnapshot(name);
            var buffer = new byte[view.Size];
            view.Read(0, buffer);
            return buffer;
        }

        [Theory]
        [InlineData("qcow2", "encrypt.format=luks,encrypt.key-secret=sec0")]
        [InlineData("luks", "key-secret=sec0")]
        public void Measuring_an_encrypted_image_counts_its_luks_header_as_qemu_does(string format, string qemuOptions)
        {
            using var measured = System.Text.Json.JsonDocument.Parse(Qemu.Img("measure", "--output=json", "--object", Qemu.SecretObject, "-O", format, "-o", qemuOptions, "--size", "100M"));
            var request = new CreateRequest { Size = 100L << 20, Encryption = "luks" };
            VDiskMeasurement ours = FormatRegistry.Default.GetCreatable(DiskFormat.Parse(format)).Measure(request, 0);
            Assert.Equal(measured.RootElement.GetProperty("required").GetInt64(), ours.Required);
            Assert.Equal(measured.RootElement.GetProperty("fully-allocated").GetInt64(), ours.FullyAllocated);
        }

        [Fact]
        public void Compression_and_encryption_together_are_refused()
        {
            using var dir = new TempDir();
            string raw = dir.File("source.raw");
            File.WriteAllBytes(raw, TestData.Pattern(1 << 20, 9));
            string target = dir.File("target.qcow2");
            using (ImageSecrets.Use(Secret))
            {
                var e = Assert.ThrowsAny<ImageException>(() => ConvertOperation.Run(raw, target, new ConvertOptions { TargetFormat = Fmt.Qcow2, Compress = true, Target = new CreateRequest { Encryption = "luks", Options = OptionSet.Parse("encrypt.iter-time=10") } }));
                Assert.Contains("compression and encryption", e.Message);
            }

            Assert.False(File.Exists(target));
            Assert.False(FormatRegistry.Default.GetCreatable(Fmt.Qcow2).SupportsCompression(new CreateRequest { Encryption = "luks" }));
        }

        [Fact]
        public void A_missing_or_wrong_password_is_typed_for_luks_qcow2()
        {
            using var dir = new TempDir();
            string path = QemuLuksQcow2(dir, "disk.qcow2");
            Assert.True(Assert.Throws<ImagePasswordException>(() => TestData.ReadAll(path)).Missing);
            using (ImageSecrets.Use(ImageSecrets.FromString("not-it")))
            {
                var e = Assert.Throws<ImagePasswordException>(() => TestData.ReadAll(path));
                Assert.False(e.Missing);
                Assert.DoesNotContain("not-it", e.ToString());
            }

            Assert.Throws<ImagePasswordException>(() => CreateOperation.Create(dir.File("new.qcow2"), Fmt.Qcow2, new CreateRequest { Size = 1 << 20, Encryption = "luks" }));
            Assert.False(File.Exists(dir.File("new.qcow2")));
        }

        [Theory]
        [InlineData("encrypt.format=aes")]
        [InlineData("encryption=on")]
        public void Legacy_aes_is_refused_for_new_images(string options)
        {
            using var dir = new TempDir();
            using (ImageSecrets.Use(Secret))
            {
                var e = Assert.Throws<ImageNotSupportedException>(() => CreateOperation.Create(dir.File("aes.qcow2"), Fmt.Qcow2, new CreateRequest { Size = 1 << 20, Options = OptionSet.Parse(options) }));
                Assert.Contains("legacy AES encryption is not created", e.Message);
                Assert.Contains("no longer supported in system emulators", e.Message);
            }

            Assert.False(File.Exists(dir.File("aes.qcow2")));
        }

        [Fact]
        public void Reads_a_qemu_made_legacy_aes_qcow2_and_refuses_to_write_it()
        {
            // qemu-img 7.2 still creates crypt_method 1 images (qemu-img, not the system emulator, may).
            using var dir = new TempDir();
            string path = dir.File("aes.qcow2");
            Qemu.Img("create", "-q", "-f", "qcow2", "--object", Qemu.SecretObject, "-o", "encrypt.format=aes,encrypt.key-secret=sec0", path, "4M");
            string opts = $"driver=qcow2,encrypt.format=aes,encrypt.key-secret=sec0,file.filename={path}";
            Qemu.Io("--object", Qemu.SecretObject, "--image-opts", opts, "-c", "write -P 0x5a 0 100k", "-c", "write -P 0x6b 1537k 3000", "-c", "write -z 3M 64k");
            byte[] expected = Qemu.ToRawBytesWithSecret(opts, dir.Path);
            Assert.Contains(expected, b => b == 0x5a);
            using (ImageSecrets.Use(Secret))
            {
                Assert.Equal(expected, TestData.ReadAll(path));
                var e = Assert.Throws<ImageNotSupportedException>(() => FormatRegistry.Default.Open(path, null, new OpenOptions { Writable = true }));
                Assert.Contains("can be read but not written", e.Message);
            }

            using (ImageSecrets.Use(ImageSecrets.FromString("other")))
            {
                // The legacy scheme has no key check: a wrong password decrypts to other bytes, as in QEMU.
                Assert.NotEqual(expected, TestData.ReadAll(path));
            }
        }
    }
}
