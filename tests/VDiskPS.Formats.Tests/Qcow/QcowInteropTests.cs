using System;
using System.IO;
using System.Linq;
using System.Text.Json;
using Xunit;

namespace VDiskPS.Formats.Tests.Qcow
{
    /// <summary>
    /// qcow (version 1) against QEMU: images qemu-img and qemu-io make read bit-exact; images written here
    /// are judged by qemu-img compare and qemu-io (QEMU has no check for qcow), and qemu can go on writing them.
    /// </summary>
    public class QcowInteropTests
    {
        private static void FillWithQemu(string path)
        {
            Qemu.Io("-f", "qcow", "-c", "write -P 0x11 0 64k", "-c", "write -P 0x22 2M 1536k", "-c", "write -P 0x33 3001k 3k", "-c", "write -P 0x44 5119k 1k", path);
        }

        [Theory]
        [InlineData("5M")]
        [InlineData("5243392")]
        public void QemuMadeQcowReadsBitExact(string size)
        {
            using var dir = new TempDir();
            string path = dir.File("q.qcow");
            Qemu.Img("create", "-q", "-f", "qcow", path, size);
            FillWithQemu(path);
            Assert.Equal(Fmt.Qcow, FormatRegistry.Default.Probe(path));
            Assert.Equal(Qemu.ToRawBytes(path, "qcow", dir.Path), TestData.ReadAll(path));
        }

        [Fact]
        public void CompressedClustersWrittenByQemuReadBitExact()
        {
            using var dir = new TempDir();
            string path = dir.File("c.qcow");
            Qemu.Img("create", "-q", "-f", "qcow", path, "3M");
            Qemu.Io("-f", "qcow", "-c", "write -c -P 0x11 1M 4k", "-c", "write -c -P 0x12 1028k 4k", "-c", "write -P 0x13 0 4k", "-c", "write -c -P 0x14 3068k 4k", path);
            byte[] data = Qemu.ToRawBytes(path, "qcow", dir.Path);
            Assert.Equal(0x12, data[(1028 << 10) + 5]);
            Assert.Equal(data, TestData.ReadAll(path));
            using var layer = FormatRegistry.Default.Open(path, null, new OpenOptions());
            BlockStatus status = layer.GetBlockStatus(1 << 20, 4096);
            Assert.True(status.Kind == ExtentKind.Data && status.Compressed && status.HostOffset < 0, status.ToString());
        }

        [Fact]
        public void BlockStatusMatchesQemuImgMap()
        {
            using var dir = new TempDir();
            string path = dir.File("m.qcow");
            Qemu.Img("create", "-q", "-f", "qcow", path, "5M");
            FillWithQemu(path);
            using var map = JsonDocument.Parse(Qemu.Img("map", "--output=json", "-f", "qcow", path));
            using var layer = FormatRegistry.Default.Open(path, null, new OpenOptions());
            foreach (JsonElement run in map.RootElement.EnumerateArray())
            {
                long start = run.GetProperty("start").GetInt64();
                long length = run.GetProperty("length").GetInt64();
                for (long at = start; at < start + length;)
                {
                    BlockStatus status = layer.GetBlockStatus(at, start + length - at);
                    Assert.Equal(run.GetProperty("data").GetBoolean() ? ExtentKind.Data : ExtentKind.Unallocated, status.Kind);
                    if (run.TryGetProperty("offset", out JsonElement offset))
                    {
                        Assert.Equal(offset.GetInt64() + (at - start), status.HostOffset);
                    }

                    at = status.End;
                }
            }
        }

        [Fact]
        public void OverlayOverAQcowBaseReadsThroughItsBackingFile()
        {
            using var dir = new TempDir();
            string basePath = dir.File("base.qcow");
            Qemu.Img("create", "-q", "-f", "qcow", basePath, "5M");
            FillWithQemu(basePath);
            string overlay = dir.File("top.qcow");
            Qemu.Img("create", "-q", "-f", "qcow", "-b", "base.qcow", "-F", "qcow", overlay);
            Qemu.Io("-f", "qcow", "-c", "write -P 0x55 1000 3000", "-c", "write -P 0x66 2100k 8k", overlay);
            using (var layer = FormatRegistry.Default.Open(overlay, null, new OpenOptions()))
            {
                Assert.Equal("base.qcow", layer.Backing.RecordedPath);
                Assert.Null(layer.Backing.Format);
                Assert.Equal(512, layer.ClusterSize);
            }

            Assert.Equal(Qemu.ToRawBytes(overlay, "qcow", dir.Path), TestData.ReadAll(overlay));
        }

        [Fact]
        public void NewImagesAreByteIdenticalToQemuImgCreate()
        {
            using var dir = new TempDir();
            string qemu = dir.File("qemu.qcow");
            Qemu.Img("create", "-q", "-f", "qcow", qemu, "10M");
            string ours = dir.File("ours.qcow");
            CreateOperation.Create(ours, Fmt.Qcow, new CreateRequest { Size = 10L << 20 });
            Assert.Equal(File.ReadAllBytes(qemu), File.ReadAllBytes(ours));

            string baseRaw = dir.File("b.raw");
            File.WriteAllBytes(baseRaw, new byte[1 << 20]);
            string qemuChild = dir.File("qemu-child.qcow");
            Qemu.Img("create", "-q", "-f", "qcow", "-b", "b.raw", "-F", "raw", qemuChild, "3000001");
            string ourChild = dir.File("our-child.qcow");
            CreateOperation.Create(ourChild, Fmt.Qcow, new CreateRequest { Size = 3000001, Backing = new BackingReference("b.raw", Fmt.Raw) });
            Assert.Equal(File.ReadAllBytes(qemuChild), File.ReadAllBytes(ourChild));
        }

        [Fact]
        public void WritesAreReadBackByQemuAndQemuCanGoOnWriting()
        {
            using var dir = new TempDir();
            string path = dir.File("w.qcow");
            long size = 6L << 20;
            CreateOperation.Create(path, Fmt.Qcow, new CreateRequest { Size = size });
            var expected = new byte[size];
            using (var layer = FormatRegistry.Default.Open(path, null, new OpenOptions { Writable = true }))
            {
                void Write(long offset, byte[] data)
                {
                    layer.Write(offset, data);
                    data.CopyTo(expected, offset);
                }

                Write(100, TestData.Pattern(1000, 1));
                Write((2L << 20) - 300, TestData.Pattern(5000, 2));
                Write(3L << 20, TestData.Pattern(3 << 20, 3));
                Write(777, TestData.Pattern(10, 4));
                Write(size - 1, new byte[] { 0x99 });
                layer.WriteZeroes(3L << 20, 10_000);
                Array.Clear(expected, 3 << 20, 10_000);
            }

            Assert.Equal(expected, Qemu.ToRawBytes(path, "qcow", dir.Path));
            Qemu.Io("-f", "qcow", "-c", "write -P 0x77 1M 8k", "-c", "write -P 0x78 5000 512", path);
            Array.Fill(expected, (byte)0x77, 1 << 20, 8192);
            Array.Fill(expected, (byte)0x78, 5000, 512);
            Assert.Equal(expected, Qemu.ToRawBytes(path, "qcow", dir.Path));
            Assert.Equal(expected, TestData.ReadAll(path));
        }

        [Fact]
        public void WritesIntoAnOverlayKeepTheBackingDataOfPartialClusters()
        {
            using var dir = new TempDir();
            string basePath = dir.File("base.qcow");
            Qemu.Img("create", "-q", "-f", "qcow", basePath, "5M");
            FillWithQemu(basePath);
            string overlay = dir.File("child.qcow");
            CreateOperation.Create(overlay, Fmt.Qcow, new CreateRequest { Size = 5L << 20, Backing = new BackingReference("base.qcow", Fmt.Qcow) });
            byte[] expected = Qemu.ToRawBytes(basePath, "qcow", dir.Path);
            using (var chain = ImageChain.Open(overlay, new ChainOptions { Writable = true }))
            {
                byte[] a = TestData.Pattern(100, 5);
                chain.Top.Write(30, a);
                a.CopyTo(expected, 30);
                byte[] b = TestData.Pattern(9000, 6);
                chain.Top.Write((2L << 20) + 77, b);
                b.CopyTo(expected, (2 << 20) + 77);
                chain.Top.WriteZeroes(20_000, 1000);
                Array.Clear(expected, 20_000, 1000);
            }

            Assert.Equal(expected, Qemu.ToRawBytes(overlay, "qcow", dir.Path));
            using var info = Qemu.Info(overlay);
            Assert.Equal("base.qcow", info.RootElement.GetProperty("backing-filename").GetString());
        }

        [Fact]
        public void ConvertWithCompressionGivesWhatQemuImgCompareAccepts()
        {
            using var dir = new TempDir();
            string raw = dir.File("src.raw");
            var data = new byte[(4 << 20) + 1536];
            TestData.Pattern(200_000, 1).CopyTo(data, 0);
            for (int i = 1 << 20; i < data.Length; i++)
            {
                data[i] = (byte)(i / 1000);
            }

            File.WriteAllBytes(raw, data);
            string path = dir.File("c.qcow");
            ConvertOperation.Run(raw, path, new ConvertOptions { TargetFormat = Fmt.Qcow, Compress = true });
            var (identical, output) = Qemu.Compare(raw, "raw", path, "qcow");
            Assert.True(identical, output);
            Assert.True(new FileInfo(path).Length < 600_000, $"{new FileInfo(path).Length} bytes: the compressible part was not compressed");
            using var map = JsonDocument.Parse(Qemu.Img("map", "--output=json", "-f", "qcow", path));
            Assert.Contains(map.RootElement.EnumerateArray(), r => r.GetProperty("data").GetBoolean() && !r.TryGetProperty("offset", out _));

            // A partial write over a compressed cluster keeps the rest of it.
            using (var layer = FormatRegistry.Default.Open(path, null, new OpenOptions { Writable = true }))
            {
                byte[] patch = TestData.Pattern(300, 9);
                layer.Write((2L << 20) + 1000, patch);
                patch.CopyTo(data, (2 << 20) + 1000);
            }

            Assert.Equal(data, Qemu.ToRawBytes(path, "qcow", dir.Path));
        }

        [Fact]
        public void ConvertFromQcowToQcow2PassesQemuImgCheck()
        {
            using var dir = new TempDir();
            string path = dir.File("s.qcow");
            Qemu.Img("create", "-q", "-f", "qcow", path, "5M");
            FillWithQemu(path);
            string target = dir.File("t.qcow2");
            ConvertOperation.Run(path, target, new ConvertOptions { TargetFormat = Fmt.Qcow2 });
            var check = Qemu.Check(target, "qcow2");
            Assert.True(check.ExitCode == 0, check.Output);
            // Not strict: qcow2's 64 KiB clusters allocate more around the data than qcow's 4 KiB ones.
            var (identical, output) = Qemu.Compare(path, "qcow", target, "qcow2");
            Assert.True(identical, output);
        }

        [Fact]
        public void MeasureCoversWhatAConvertWrites()
        {
            using var dir = new TempDir();
            string raw = TestData.WriteRaw(dir, "src.raw", 9L << 20);
            var measured = MeasureOperation.Run(raw, new MeasureOptions { TargetFormat = Fmt.Qcow });
            string path = dir.File("m.qcow");
            ConvertOperation.Run(raw, path, new ConvertOptions { TargetFormat = Fmt.Qcow });
            long written = new FileInfo(path).Length;
            Assert.InRange(written, 1, measured.Required);
            Assert.True(measured.FullyAllocated >= (9L << 20) && measured.FullyAllocated >= measured.Required, $"{measured.Required} / {measured.FullyAllocated}");
            Assert.True(Qemu.Compare(raw, "raw", path, "qcow").Identical);
        }

        [Fact]
        public void DescribeShowsClusterSizeEncryptionAndBacking()
        {
            using var dir = new TempDir();
            string path = dir.File("d.qcow");
            Qemu.Img("create", "-q", "-f", "qcow", path, "4M");
            var info = ImageInspector.Get(path, null);
            using var qemu = Qemu.Info(path);
            Assert.Equal("qcow", info.Format);
            Assert.Equal(qemu.RootElement.GetProperty("cluster-size").GetInt64(), info.ClusterSize);
            Assert.Equal(qemu.RootElement.GetProperty("virtual-size").GetInt64(), info.Size);
            Assert.False(info.Encrypted);
            Assert.Equal("none", info.FormatSpecific["encryption"]);
            Assert.Equal(4096L, info.FormatSpecific["l2-table-size"]);
        }

        [Fact]
        public void TheQcowExtensionNamesQcowVersionOne()
        {
            Assert.Equal(Fmt.Qcow, FormatRegistry.Default.FromExtension("disk.qcow"));
            Assert.Equal(Fmt.Qcow2, FormatRegistry.Default.FromExtension("disk.qcow2"));
        }
    }
}
