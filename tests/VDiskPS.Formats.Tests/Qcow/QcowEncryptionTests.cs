using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using Xunit;

namespace VDiskPS.Formats.Tests.Qcow
{
    /// <summary>
    /// Legacy qcow AES (crypt_method 1), judged against images qemu-img creates and qemu-io fills with
    /// the same passphrase (qemu 7.2 still creates them through qemu-img), and read back by qemu-img convert.
    /// </summary>
    public class QcowEncryptionTests
    {
        private const string Password = "correct horse";

        /// <summary>The subcommand (or, for qemu-io, nothing) and its arguments with the secret object after it.</summary>
        private static string[] Secret(string command, string password, params string[] args)
            => (command == null ? Array.Empty<string>() : new[] { command }).Concat(new[] { "--object", $"secret,id=sec0,data={password}" }).Concat(args).ToArray();

        private static string MakeEncrypted(TempDir dir, string password = Password)
        {
            string path = dir.File("e.qcow");
            Qemu.Img(Secret("create", password, "-q", "-f", "qcow", "-o", "encrypt.format=aes,encrypt.key-secret=sec0", path, "3M"));
            Qemu.Io(Secret(null, password, "--image-opts", "-c", "write -P 0x5a 0 64k", "-c", "write -P 0xa5 1000k 5000", "-c", "write -P 0x3c 3071k 1k",
                $"driver=qcow,file.filename={path},encrypt.key-secret=sec0"));
            return path;
        }

        private static byte[] QemuPlain(TempDir dir, string path, string password = Password)
        {
            string raw = dir.File("plain.raw");
            Qemu.Img(Secret("convert", password, "--image-opts", $"driver=qcow,file.filename={path},encrypt.key-secret=sec0", "-O", "raw", raw));
            return File.ReadAllBytes(raw);
        }

        [Fact]
        public void OnlyTheFirstSixteenBytesOfThePasswordAreTheKeyAsInQemu()
        {
            using var dir = new TempDir();
            string path = MakeEncrypted(dir, "0123456789abcdefLONGER");
            byte[] expected = QemuPlain(dir, path, "0123456789abcdefLONGER");

            // qemu itself reads the image with another tail after the 16th byte.
            Assert.Equal(expected, QemuPlain(dir, path, "0123456789abcdefOTHER"));
            using (ImageSecrets.Use(ImageSecrets.FromString("0123456789abcdefXYZ")))
            {
                Assert.Equal(expected, TestData.ReadAll(path));
            }

            using (ImageSecrets.Use(ImageSecrets.FromString("0123456789abcde")))
            {
                Assert.NotEqual(expected, TestData.ReadAll(path));
            }
        }

        [Fact]
        public void QemuEncryptedImageReadsBitExactWithThePassword()
        {
            using var dir = new TempDir();
            string path = MakeEncrypted(dir);
            byte[] expected = QemuPlain(dir, path);
            Assert.Equal(0x5a, expected[100]);
            byte[] ours;
            IReadOnlyCollection<string> warnings;
            using (ImageSecrets.Use(ImageSecrets.FromString(Password)))
            using (ImageWarnings.Capture(out warnings))
            {
                ours = TestData.ReadAll(path);

                // Unaligned reads decrypt whole sectors underneath.
                using var layer = FormatRegistry.Default.Open(path, null, new OpenOptions());
                var part = new byte[777];
                layer.Read((1000 << 10) + 3, part);
                Assert.Equal(expected.AsSpan((1000 << 10) + 3, 777).ToArray(), part);
            }

            Assert.Equal(expected, ours);
            Assert.Contains(warnings, w => w.Contains("wrong password cannot be detected"));
        }

        [Fact]
        public void WithoutAPasswordTheImageDescribesAndMapsButDataReadsAreRefused()
        {
            using var dir = new TempDir();
            string path = MakeEncrypted(dir);
            var info = ImageInspector.Get(path, null);
            Assert.True(info.Encrypted);
            Assert.Equal("aes", info.FormatSpecific["encryption"]);
            using var layer = FormatRegistry.Default.Open(path, null, new OpenOptions());
            BlockStatus status = layer.GetBlockStatus(0, layer.Size);
            Assert.Equal(ExtentKind.Data, status.Kind);
            Assert.Equal(-1, status.HostOffset);
            var error = Assert.Throws<ImagePasswordException>(() => layer.Read(0, new byte[512]));
            Assert.True(error.Missing);
            Assert.Equal(path, error.FilePath);
        }

        [Fact]
        public void AWrongPasswordIsNotDetectedAndReadsOtherBytes()
        {
            // The format stores no key check (QEMU cannot tell a wrong key either): the read succeeds with garbage.
            using var dir = new TempDir();
            string path = MakeEncrypted(dir);
            byte[] expected = QemuPlain(dir, path);
            using (ImageSecrets.Use(ImageSecrets.FromString("wrong")))
            {
                Assert.NotEqual(expected, TestData.ReadAll(path));
            }
        }

        [Fact]
        public void WritingOrCreatingEncryptedQcowIsRefused()
        {
            using var dir = new TempDir();
            string path = MakeEncrypted(dir);
            byte[] before = File.ReadAllBytes(path);
            var open = Assert.Throws<ImageNotSupportedException>(() => FormatRegistry.Default.Open(path, null, new OpenOptions { Writable = true }));
            Assert.Contains("AES-encrypted qcow", open.Message);
            Assert.Equal(before, File.ReadAllBytes(path));

            string target = dir.File("new.qcow");
            foreach (var request in new[]
            {
                new CreateRequest { Size = 1 << 20, Encryption = "aes" },
                new CreateRequest { Size = 1 << 20, Options = OptionSet.Parse("encryption=on") },
                new CreateRequest { Size = 1 << 20, Options = OptionSet.Parse("encrypt.format=aes,encrypt.key-secret=sec0") },
            })
            {
                var create = Assert.Throws<ImageNotSupportedException>(() => CreateOperation.Create(target, Fmt.Qcow, request));
                Assert.Contains("no longer supports such images in its system emulators", create.Message);
                Assert.False(File.Exists(target));
            }
        }

        [Fact]
        public void EncryptedImageConvertsToPlainQcowThatQemuReadsIdentically()
        {
            using var dir = new TempDir();
            string path = MakeEncrypted(dir);
            byte[] expected = QemuPlain(dir, path);
            string target = dir.File("plain.qcow");
            using (ImageSecrets.Use(ImageSecrets.FromString(Password)))
            {
                ConvertOperation.Run(path, target, new ConvertOptions { TargetFormat = Fmt.Qcow });
            }

            Assert.Equal(expected, Qemu.ToRawBytes(target, "qcow", dir.Path));
            using var info = Qemu.Info(target);
            Assert.False(info.RootElement.TryGetProperty("encrypted", out _));
        }
    }
}
