using System;
using System.Collections.Generic;
using System.IO;
using System.Text;
using Xunit;

namespace VDiskPS.Formats.Tests.Core
{
    /// <summary>
    /// Probing never reads an image it does not understand as raw: a file of a format this module does not
    /// implement is refused by name, and an image extension over foreign content is an error.
    /// </summary>
    public class ForeignFormatProbeTests
    {
        [Fact]
        public void AQcow2HeaderOfAnUnknownVersionIsNotReadAsRaw()
        {
            using var dir = new TempDir();
            string path = dir.File("disk.img");
            Qemu.Img("create", "-q", "-f", "qcow2", path, "4M");
            using (var stream = new FileStream(path, FileMode.Open))
            {
                stream.Position = 7;
                stream.WriteByte(4);
            }

            Assert.Equal(Fmt.Qcow2, FormatRegistry.Default.Probe(path));
            Assert.Throws<ImageNotSupportedException>(() => ImageChain.Open(path));
        }

        [Theory]
        [InlineData("notes.vhdx", "vhdx", "some text, not a disk\n")]
        [InlineData("empty.qcow2", "qcow2", "")]
        [InlineData("old.vmdk", "vmdk", "hello")]
        [InlineData("archive.qed", "qed", "plain bytes")]
        public void AnImageExtensionOverForeignContentIsAnErrorNamingBoth(string name, string format, string content)
        {
            using var dir = new TempDir();
            string path = dir.File(name);
            File.WriteAllText(path, content);
            var e = Assert.Throws<ImageFormatMismatchException>(() => FormatRegistry.Default.Probe(path));
            Assert.Contains(Path.GetExtension(name), e.Message);
            Assert.Contains($"not {format}", e.Message);
            Assert.Contains(content.Length == 0 ? "empty" : "no known image signature", e.Message);
        }

        [Fact]
        public void AFileWithoutSignatureOrImageExtensionStaysRawAsForQemuImg()
        {
            using var dir = new TempDir();
            string path = dir.File("disk.bin");
            File.WriteAllBytes(path, new byte[8192]);
            Assert.Contains("file format: raw", Qemu.Img("info", path));
            using (ImageWarnings.Capture(out var warnings))
            {
                Assert.Equal(Fmt.Raw, FormatRegistry.Default.Probe(path));
                Assert.Empty(warnings);
            }
        }

        [Fact]
        public void AFileShorterThanASectorIsRawWithAWarning()
        {
            using var dir = new TempDir();
            string path = dir.File("tiny");
            File.WriteAllBytes(path, new byte[100]);
            using (ImageWarnings.Capture(out var warnings))
            {
                Assert.Equal(Fmt.Raw, FormatRegistry.Default.Probe(path));
                string warning = Assert.Single(warnings);
                Assert.Contains("100 bytes", warning);
                Assert.StartsWith(path, warning);
            }
        }

        /// <summary>A VHD Set names the .avhdx files that hold the data: it is refused by name, never copied as raw.</summary>
        [Fact]
        public void ConvertingAVhdSetRefusesInsteadOfCopyingItsContainer()
        {
            using var dir = new TempDir();
            string source = dir.File("shared.vhds");
            File.WriteAllBytes(source, TestData.Pattern(64 * 1024, 5));
            var e = Assert.Throws<ImageNotSupportedException>(() => FormatRegistry.Default.Probe(source));
            Assert.Contains("VHD Set (.vhds) files are not supported", e.Message);
            Assert.Equal(source, e.FilePath);
            Assert.Equal("NotSupported", e.ErrorId);
            Assert.Throws<ImageNotSupportedException>(() =>
                ConvertOperation.Run(source, dir.File("vm.qcow2"), new ConvertOptions { TargetFormat = Fmt.Qcow2, Target = new CreateRequest() }));
            Assert.False(File.Exists(dir.File("vm.qcow2")));
        }
    }
}
