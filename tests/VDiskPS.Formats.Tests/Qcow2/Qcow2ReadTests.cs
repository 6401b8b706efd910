using System;
using System.IO;
using Xunit;

namespace VDiskPS.Formats.Tests.Qcow2
{
    public class Qcow2ReadTests
    {
        [Theory]
        [InlineData("compat=1.1")]
        [InlineData("compat=0.10")]
        [InlineData("cluster_size=512")]
        [InlineData("cluster_size=4096,compat=0.10")]
        [InlineData("cluster_size=2M")]
        [InlineData("refcount_bits=1")]
        [InlineData("refcount_bits=64,cluster_size=16k")]
        [InlineData("extended_l2=on")]
        [InlineData("extended_l2=on,cluster_size=32k")]
        [InlineData("lazy_refcounts=on")]
        [InlineData("preallocation=metadata")]
        public void ReadsQemuWrittenImageBitExact(string options)
        {
            using var dir = new TempDir();
            string path = Qcow2TestImages.MakeWithQemuIo(dir, "a.qcow2", options);
            Qcow2TestImages.AssertReadsLikeQemu(dir, path);
        }

        [Theory]
        [InlineData("zlib")]
        [InlineData("zstd")]
        public void ReadsCompressedClustersBitExact(string type)
        {
            using var dir = new TempDir();
            string source = Qcow2TestImages.MakeWithQemuIo(dir, "src.qcow2", "compat=1.1");
            string path = dir.File("c.qcow2");
            Qemu.Img("convert", "-c", "-f", "qcow2", "-O", "qcow2", "-o", "compression_type=" + type, source, path);
            using (var layer = Qcow2TestImages.OpenRead(path))
            {
                Assert.True(layer.GetBlockStatus(0, layer.Size).Compressed);
            }

            Qcow2TestImages.AssertReadsLikeQemu(dir, path);
        }

        [Fact]
        public void ReadsBackingChainWithBackingFormatExtension()
        {
            using var dir = new TempDir();
            string baseRaw = dir.File("base.raw");
            File.WriteAllBytes(baseRaw, TestData.Pattern((int)Qcow2TestImages.Size, 7));
            string mid = dir.File("mid.qcow2");
            Qemu.Img("create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", mid);
            Qemu.Io("-f", "qcow2", "-c", "write -P 0x77 12345 100000", "-c", "write -z 1048576 65536", mid);
            string top = dir.File("top.qcow2");
            Qemu.Img("create", "-q", "-f", "qcow2", "-b", "mid.qcow2", "-F", "qcow2", "-o", "compat=0.10", top);
            Qemu.Io("-f", "qcow2", "-c", "write -P 0x78 60000 10000", top);
            using (var layer = Qcow2TestImages.OpenRead(top))
            {
                Assert.Equal("mid.qcow2", layer.Backing.RecordedPath);
                Assert.Equal(Fmt.Qcow2, layer.Backing.Format);
            }

            Qcow2TestImages.AssertReadsLikeQemu(dir, top);
        }

        [Fact]
        public void BackingLoopIsDetected()
        {
            using var dir = new TempDir();
            string a = dir.File("a.qcow2");
            string b = dir.File("b.qcow2");
            Qemu.Img("create", "-q", "-f", "qcow2", a, "1M");
            Qemu.Img("create", "-q", "-f", "qcow2", "-b", "a.qcow2", "-F", "qcow2", b);
            Qemu.Img("rebase", "-u", "-f", "qcow2", "-b", "b.qcow2", "-F", "qcow2", a);
            Assert.Throws<ImageChainException>(() => TestData.ReadAll(b, Fmt.Qcow2));
        }

        [Theory]
        [InlineData(false)]
        [InlineData(true)]
        public void ReadsExternalDataFile(bool raw)
        {
            using var dir = new TempDir();
            string path = Qcow2TestImages.MakeWithQemuIo(dir, "d.qcow2", "data_file=" + dir.File("d.data") + (raw ? ",data_file_raw=on" : string.Empty));

            // Record the data file relative to the image, as images moved between hosts do.
            Qemu.Img("amend", "-f", "qcow2", "-o", "data_file=d.data", path);
            using (var layer = Qcow2TestImages.OpenRead(path))
            {
                Assert.Equal(dir.File("d.data"), layer.GetBlockStatus(0, 65536).HostFile);
                Assert.DoesNotContain(dir.File("d.data"), layer.HostFiles);
            }

            Qcow2TestImages.AssertReadsLikeQemu(dir, path);
        }

        [Fact]
        public void DirtyImageIsReadable()
        {
            using var dir = new TempDir();
            string path = dir.File("dirty.qcow2");
            Qemu.Img("create", "-q", "-f", "qcow2", "-o", "lazy_refcounts=on", path, "4M");
            Qemu.Run("qemu-io", new[] { "-f", "qcow2", "-c", "write -P 0x12 0 100000", "-c", "sigraise 9", path });
            var info = ImageInspector.Get(path, Fmt.Qcow2);
            Assert.True(info.Dirty);
            Qcow2TestImages.AssertReadsLikeQemu(dir, path);
        }

        [Fact]
        public void InfoShowsQemuFormatSpecificFields()
        {
            using var dir = new TempDir();
            string path = dir.File("i.qcow2");
            Qemu.Img("create", "-q", "-f", "qcow2", "-o", "lazy_refcounts=on,refcount_bits=8,compression_type=zstd", path, "4M");
            var info = ImageInspector.Get(path, Fmt.Qcow2);
            using var qemu = Qemu.Info(path, "qcow2");
            var data = qemu.RootElement.GetProperty("format-specific").GetProperty("data");
            Assert.Equal("1.1", info.Subformat);
            Assert.Equal(data.GetProperty("compat").GetString(), info.FormatSpecific["compat"]);
            Assert.Equal(data.GetProperty("lazy-refcounts").GetBoolean(), info.FormatSpecific["lazy-refcounts"]);
            Assert.Equal(data.GetProperty("refcount-bits").GetInt32(), info.FormatSpecific["refcount-bits"]);
            Assert.Equal(data.GetProperty("compression-type").GetString(), info.FormatSpecific["compression-type"]);
            Assert.Equal(data.GetProperty("extended-l2").GetBoolean(), info.FormatSpecific["extended-l2"]);
            Assert.Equal(data.GetProperty("corrupt").GetBoolean(), info.FormatSpecific["corrupt"]);
        }

        [Fact]
        public void UnknownHeaderExtensionIsSkippedAndKeptOnRewrite()
        {
            using var dir = new TempDir();
            string path = Qcow2TestImages.MakeWithQemuIo(dir, "x.qcow2", "compat=1.1");
            byte[] file = File.ReadAllBytes(path);
            int at = (int)System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(file.AsSpan(100));
            while (System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(file.AsSpan(at)) != 0)
            {
                at += 8 + (((int)System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(file.AsSpan(at + 4)) + 7) & ~7);
            }

            byte[] extension = { 0x12, 0x34, 0x56, 0x78, 0, 0, 0, 5, (byte)'h', (byte)'e', (byte)'l', (byte)'l', (byte)'o', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 };
            using (var fs = new FileStream(path, FileMode.Open, FileAccess.Write))
            {
                fs.Position = at;
                fs.Write(extension);
            }

            Qcow2TestImages.AssertReadsLikeQemu(dir, path);
            using (var layer = Qcow2TestImages.OpenWritable(path))
            {
                ((IAmendableLayer)layer).Amend(OptionSet.Parse("lazy_refcounts=on"));
            }

            byte[] after = File.ReadAllBytes(path);
            Assert.True(after.AsSpan(0, 65536).IndexOf(extension.AsSpan(0, 13)) > 0);
            Qcow2TestImages.AssertQemuCheckClean(path);
        }

        [Fact]
        public void ProbeRecognisesQcow2()
        {
            using var dir = new TempDir();
            string path = dir.File("p.img");
            Qemu.Img("create", "-q", "-f", "qcow2", path, "1M");
            Assert.Equal(Fmt.Qcow2, FormatRegistry.Default.Probe(path));
        }
    }
}
