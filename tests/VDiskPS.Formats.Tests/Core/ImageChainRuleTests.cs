using System.IO;
using Xunit;

namespace VDiskPS.Formats.Tests.Core
{
    /// <summary>The backing-file rules every format keeps (ARCHITECTURE.md).</summary>
    public class ImageChainRuleTests
    {
        [Fact]
        public void AProbedBackingFileMayNotNameAFurtherBackingFile()
        {
            using var dir = new TempDir();
            Qemu.Img("create", "-q", "-f", "qcow2", dir.File("base.qcow2"), "4M");
            Qemu.Img("create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", dir.File("mid.qcow2"));
            // The top records no format for mid.qcow2, so it is probed.
            CreateOperation.Create(dir.File("top.qcow2"), Fmt.Qcow2, new CreateRequest { Size = 4L << 20, Backing = new BackingReference("mid.qcow2", null) }, unsafeBacking: true);

            var e = Assert.Throws<ImageChainException>(() => ImageChain.Open(dir.File("top.qcow2")));
            Assert.Equal(dir.File("mid.qcow2"), e.FilePath);
            using var allowed = ImageChain.Open(dir.File("top.qcow2"), new ChainOptions { AllowProbedBackingChain = true });
            Assert.Equal(3, allowed.Layers.Count);
        }

        [Fact]
        public void ARecordedFormatIsUsedWithoutProbing()
        {
            using var dir = new TempDir();
            // A qcow2 file recorded as raw is read as raw, as the child says.
            Qemu.Img("create", "-q", "-f", "qcow2", dir.File("base.qcow2"), "4M");
            Qemu.Img("create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "raw", dir.File("top.qcow2"), "4M");
            using var chain = ImageChain.Open(dir.File("top.qcow2"));
            Assert.Equal(Fmt.Raw, chain.Layers[1].Format);
        }

        [Fact]
        public void AnExplicitFormatIsNeverSecondGuessed()
        {
            using var dir = new TempDir();
            Qemu.Img("create", "-q", "-f", "vpc", "-o", "subformat=fixed", dir.File("fixed.vhd"), "4M");
            Assert.Equal(Fmt.Vhd, FormatRegistry.Default.Probe(dir.File("fixed.vhd")));
            using var asRaw = FormatRegistry.Default.Open(dir.File("fixed.vhd"), Fmt.Raw, new OpenOptions());
            Assert.Equal(Fmt.Raw, asRaw.Format);
            Assert.Equal(new FileInfo(dir.File("fixed.vhd")).Length, asRaw.Size);
        }

        [Fact]
        public void RelativeBackingPathsResolveAgainstTheChildsFolder()
        {
            using var dir = new TempDir();
            Directory.CreateDirectory(dir.File("images"));
            Qemu.Img("create", "-q", "-f", "qcow2", dir.File("images/base.qcow2"), "4M");
            Qemu.Img("create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", dir.File("images/top.qcow2"));
            string before = Directory.GetCurrentDirectory();
            Directory.SetCurrentDirectory(dir.Path);
            try
            {
                using var chain = ImageChain.Open(dir.File("images/top.qcow2"));
                Assert.Equal(dir.File("images/base.qcow2"), chain.Layers[1].Path);
            }
            finally
            {
                Directory.SetCurrentDirectory(before);
            }
        }

        [Fact]
        public void AMissingBackingFileNamesTheChild()
        {
            using var dir = new TempDir();
            Qemu.Img("create", "-q", "-f", "qcow2", "-u", "-b", "gone.qcow2", "-F", "qcow2", dir.File("top.qcow2"), "4M");
            var e = Assert.Throws<ImageChainException>(() => ImageChain.Open(dir.File("top.qcow2")));
            Assert.Equal(dir.File("top.qcow2"), e.FilePath);
            Assert.Contains("gone.qcow2", e.Message);
        }

        [Fact]
        public void OpeningWithoutBackingReadsTheTopAlone()
        {
            using var dir = new TempDir();
            Qemu.Img("create", "-q", "-f", "qcow2", "-u", "-b", "gone.qcow2", "-F", "qcow2", dir.File("top.qcow2"), "4M");
            using var chain = ImageChain.Open(dir.File("top.qcow2"), new ChainOptions { NoBacking = true });
            Assert.Single(chain.Layers);
        }
    }
}
