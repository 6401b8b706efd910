using System;
using System.IO;
using Xunit;

namespace VDiskPS.Formats.Tests.Qcow2
{
    public class Qcow2WriteTests
    {
        private static string CreateImage(TempDir dir, string name, string options, long size = Qcow2TestImages.Size)
        {
            string path = dir.File(name);
            CreateOperation.Create(path, Fmt.Qcow2, new CreateRequest { Size = size, Options = OptionSet.Parse(options) });
            return path;
        }

        [Theory]
        [InlineData("")]
        [InlineData("compat=0.10")]
        [InlineData("compat=1.1,lazy_refcounts=on")]
        [InlineData("cluster_size=512")]
        [InlineData("cluster_size=4k")]
        [InlineData("cluster_size=2M")]
        [InlineData("refcount_bits=1")]
        [InlineData("refcount_bits=2")]
        [InlineData("refcount_bits=4,cluster_size=1k")]
        [InlineData("refcount_bits=8")]
        [InlineData("refcount_bits=32")]
        [InlineData("refcount_bits=64")]
        [InlineData("cluster_size=512,refcount_bits=64")]
        [InlineData("cluster_size=512,refcount_bits=1")]
        [InlineData("extended_l2=on")]
        [InlineData("compression_type=zstd")]
        [InlineData("preallocation=metadata")]
        [InlineData("preallocation=falloc")]
        [InlineData("preallocation=full")]
        public void WrittenImagePassesQemuCheckAndMatchesModel(string options)
        {
            using var dir = new TempDir();
            string path = CreateImage(dir, "w.qcow2", options);
            var model = new byte[Qcow2TestImages.Size];
            using (var layer = Qcow2TestImages.OpenWritable(path))
            {
                Qcow2TestImages.WriteScattered(layer, model, 1);
            }

            Qcow2TestImages.AssertQemuCheckClean(path);
            string raw = dir.File("model.raw");
            Qcow2TestImages.WriteRaw(raw, model);
            var compare = Qemu.Compare(raw, "raw", path, "qcow2");
            Assert.True(compare.Identical, compare.Output);
        }

        [Fact]
        public void CreatedImageHasQemuInfoOfOptions()
        {
            using var dir = new TempDir();
            string path = CreateImage(dir, "o.qcow2", "compat=1.1,cluster_size=16k,refcount_bits=8,lazy_refcounts=on,extended_l2=on,compression_type=zstd");
            using var info = Qemu.Info(path, "qcow2");
            var data = info.RootElement.GetProperty("format-specific").GetProperty("data");
            Assert.Equal(16384, info.RootElement.GetProperty("cluster-size").GetInt32());
            Assert.Equal(8, data.GetProperty("refcount-bits").GetInt32());
            Assert.True(data.GetProperty("lazy-refcounts").GetBoolean());
            Assert.True(data.GetProperty("extended-l2").GetBoolean());
            Assert.Equal("zstd", data.GetProperty("compression-type").GetString());
            Qcow2TestImages.AssertQemuCheckClean(path);
        }

        [Theory]
        [InlineData(",data_file_raw=on")]
        [InlineData("")]
        [InlineData(",extended_l2=on")]
        [InlineData(",preallocation=full")]
        public void ExternalDataFileIsCreatedAndWritten(string options)
        {
            using var dir = new TempDir();

            // qemu-img opens a relative data file name against its working directory, so record it absolute here.
            string path = CreateImage(dir, "e.qcow2", "data_file=" + dir.File("e.data") + options);
            var model = new byte[Qcow2TestImages.Size];
            using (var layer = Qcow2TestImages.OpenWritable(path))
            {
                Qcow2TestImages.WriteScattered(layer, model, 2);
                layer.WriteZeroes(65536, 65536);
                Array.Clear(model, 65536, 65536);
            }

            Qcow2TestImages.AssertQemuCheckClean(path);
            if (options.Contains("raw"))
            {
                Assert.Equal(model, File.ReadAllBytes(dir.File("e.data")));
            }

            string raw = dir.File("model.raw");
            Qcow2TestImages.WriteRaw(raw, model);
            Assert.True(Qemu.Compare(raw, "raw", path, "qcow2").Identical);
            Qcow2TestImages.AssertReadsLikeQemu(dir, path);
        }

        [Fact]
        public void PartialWritesOverBackingFileCopyTheRestOfTheCluster()
        {
            using var dir = new TempDir();
            string baseRaw = dir.File("base.raw");
            byte[] model = TestData.Pattern((int)Qcow2TestImages.Size, 3);
            File.WriteAllBytes(baseRaw, model);
            string path = dir.File("over.qcow2");
            CreateOperation.Create(path, Fmt.Qcow2, new CreateRequest { Backing = new BackingReference("base.raw", Fmt.Raw) });
            using (var chain = ImageChain.Open(path, new ChainOptions { Writable = true }))
            {
                Qcow2TestImages.WriteScattered(chain.Top, model, 4);
                chain.Top.WriteZeroes(6L << 20, 65536);
                Array.Clear(model, 6 << 20, 65536);
            }

            Qcow2TestImages.AssertQemuCheckClean(path);
            string raw = dir.File("model.raw");
            Qcow2TestImages.WriteRaw(raw, model);
            var compare = Qemu.Compare(raw, "raw", path, "qcow2");
            Assert.True(compare.Identical, compare.Output);
            using var info = Qemu.Info(path, "qcow2");
            Assert.Equal("raw", info.RootElement.GetProperty("backing-filename-format").GetString());
        }

        [Fact]
        public void ZeroWritesAndDiscardsLeaveNoLeaks()
        {
            using var dir = new TempDir();
            string path = CreateImage(dir, "z.qcow2", "");
            var model = new byte[Qcow2TestImages.Size];
            using (var layer = Qcow2TestImages.OpenWritable(path))
            {
                Qcow2TestImages.WriteScattered(layer, model, 5);
                layer.WriteZeroes(100000, 400000);
                Array.Clear(model, 100000, 400000);
                Assert.Equal(ExtentKind.Zero, layer.GetBlockStatus(131072, 65536).Kind);
                ((IDiscardableLayer)layer).Discard(2 << 20, 1 << 20);
                Array.Clear(model, 2 << 20, 1 << 20);
                Assert.Equal(ExtentKind.Unallocated, layer.GetBlockStatus(2 << 20, 65536).Kind);
            }

            Qcow2TestImages.AssertQemuCheckClean(path);
            string raw = dir.File("model.raw");
            Qcow2TestImages.WriteRaw(raw, model);
            Assert.True(Qemu.Compare(raw, "raw", path, "qcow2").Identical);
        }

        [Theory]
        [InlineData("compat=1.1")]
        [InlineData("compat=1.1,compression_type=zstd")]
        [InlineData("compat=0.10,cluster_size=4k")]
        public void CompressedConvertPassesCheckAndCompare(string options)
        {
            using var dir = new TempDir();
            string source = Qcow2TestImages.MakeWithQemuIo(dir, "src.qcow2", "compat=1.1");
            string target = dir.File("c.qcow2");
            ConvertOperation.Run(source, target, new ConvertOptions
            {
                TargetFormat = Fmt.Qcow2,
                Compress = true,
                Target = new CreateRequest { Options = OptionSet.Parse(options) },
            });
            Qcow2TestImages.AssertQemuCheckClean(target);
            var compare = Qemu.Compare(source, "qcow2", target, "qcow2");
            Assert.True(compare.Identical, compare.Output);
            // qemu-img check counts the compressed clusters; qemu-img map gives no host offset for a
            // compressed run, so every data run without one is compressed.
            using (var check = System.Text.Json.JsonDocument.Parse(Qemu.Run("qemu-img", new[] { "check", "--output=json", "-f", "qcow2", target }).Output))
            {
                Assert.True(check.RootElement.GetProperty("compressed-clusters").GetInt64() > 0, check.RootElement.ToString());
            }

            using var map = System.Text.Json.JsonDocument.Parse(Qemu.Img("map", "--output=json", "-f", "qcow2", target));
            foreach (var entry in map.RootElement.EnumerateArray())
            {
                Assert.False(entry.GetProperty("data").GetBoolean() && entry.TryGetProperty("offset", out _), $"stored uncompressed: {entry}");
            }
        }

        [Fact]
        public void PlainConvertPassesCheckAndCompare()
        {
            using var dir = new TempDir();
            string source = Qcow2TestImages.MakeWithQemuIo(dir, "src.qcow2", "compat=1.1,cluster_size=4k");
            string target = dir.File("p.qcow2");
            ConvertOperation.Run(source, target, new ConvertOptions { TargetFormat = Fmt.Qcow2 });
            Qcow2TestImages.AssertQemuCheckClean(target);
            var compare = Qemu.Compare(source, "qcow2", target, "qcow2", strict: false);
            Assert.True(compare.Identical, compare.Output);
        }

        [Fact]
        public void WritingToDirtyImageRebuildsRefcountsFirst()
        {
            using var dir = new TempDir();
            string path = dir.File("dirty.qcow2");
            Qemu.Img("create", "-q", "-f", "qcow2", "-o", "lazy_refcounts=on", path, "4M");
            Qemu.Run("qemu-io", new[] { "-f", "qcow2", "-c", "write -P 0x12 0 100000", "-c", "sigraise 9", path });
            using (var layer = Qcow2TestImages.OpenWritable(path))
            {
                layer.Write(200000, new byte[] { 1, 2, 3 });
            }

            Qcow2TestImages.AssertQemuCheckClean(path);
            Assert.False(ImageInspector.Get(path, Fmt.Qcow2).Dirty);
        }

        [Fact]
        public void BackingFileAndFormatAreAcceptedAsOptions()
        {
            using var dir = new TempDir();
            string baseImage = dir.File("base.qcow2");
            Qemu.Img("create", "-q", "-f", "qcow2", baseImage, "4M");
            Qemu.Io("-f", "qcow2", "-c", "write -P 0x31 0 1M", baseImage);
            string path = dir.File("child.qcow2");
            CreateOperation.Create(path, Fmt.Qcow2, new CreateRequest { Size = 4L << 20, Options = OptionSet.Parse("backing_file=base.qcow2,backing_fmt=qcow2") });
            using (var info = Qemu.Info(path, "qcow2"))
            {
                Assert.Equal("base.qcow2", info.RootElement.GetProperty("backing-filename").GetString());
                Assert.Equal("qcow2", info.RootElement.GetProperty("backing-filename-format").GetString());
            }

            Qcow2TestImages.AssertReadsLikeQemu(dir, path);
        }

        [Theory]
        [InlineData("compat=1.1")]
        [InlineData("compat=1.1,compression_type=zstd")]
        [InlineData("compat=1.1,extended_l2=on")]
        public void OverwritingQemuImagesKeepsThemConsistent(string options)
        {
            using var dir = new TempDir();
            string source = Qcow2TestImages.MakeWithQemuIo(dir, "src.qcow2", options);
            string path = dir.File("c.qcow2");
            Qemu.Img("convert", "-c", "-f", "qcow2", "-O", "qcow2", "-o", options, source, path);
            Qemu.Io("-f", "qcow2", "-c", "write -P 0x5a 2000000 3000", "-c", "write -z 3000000 100000", path);
            byte[] model = Qemu.ToRawBytes(path, "qcow2", dir.Path);
            using (var layer = Qcow2TestImages.OpenWritable(path))
            {
                Qcow2TestImages.WriteScattered(layer, model, 11);
                ((ISnapshotLayer)layer).CreateSnapshot("s");
                Qcow2TestImages.WriteScattered(layer, model, 12);
                layer.WriteZeroes(65536, 65536 * 3);
                Array.Clear(model, 65536, 65536 * 3);
            }

            Qcow2TestImages.AssertQemuCheckClean(path);
            string raw = dir.File("model.raw");
            Qcow2TestImages.WriteRaw(raw, model);
            Assert.True(Qemu.Compare(raw, "raw", path, "qcow2").Identical);
            using (var layer = Qcow2TestImages.OpenWritable(path))
            {
                ((ISnapshotLayer)layer).DeleteSnapshot("s");
            }

            Qcow2TestImages.AssertQemuCheckClean(path);
            Assert.True(Qemu.Compare(raw, "raw", path, "qcow2").Identical);
        }

        [Theory]
        [InlineData("compat=1.1,cluster_size=16k")]
        [InlineData("compat=1.1,cluster_size=16k,extended_l2=on")]
        public void WritesOverScatteredPreallocatedZeroClustersLandInTheirOwnClusters(string options)
        {
            using var dir = new TempDir();
            string path = dir.File("zeroalloc.qcow2");
            Qemu.Img("create", "-q", "-f", "qcow2", "-o", options, path, "64M");

            // Guest clusters 0 and 1 get host clusters with another L2 table and its data between them, then become allocated zero clusters.
            Qemu.Io("-f", "qcow2", "-c", "write -P 1 0 16k", "-c", "write -P 2 40M 16k", "-c", "write -P 3 16k 16k", "-c", "write -z 0 32k", path);
            var model = new byte[64 << 20];
            Array.Fill(model, (byte)2, 40 << 20, 16384);
            byte[] data = TestData.Pattern(40000, 21);
            using (var layer = Qcow2TestImages.OpenWritable(path))
            {
                layer.Write(5000, data);
            }

            Array.Copy(data, 0, model, 5000, data.Length);
            Qcow2TestImages.AssertQemuCheckClean(path);
            string raw = dir.File("model.raw");
            Qcow2TestImages.WriteRaw(raw, model);
            Assert.True(Qemu.Compare(raw, "raw", path, "qcow2").Identical);
        }

        [Fact]
        public void SubclusterWritesOverBackingFileMatchQemu()
        {
            using var dir = new TempDir();
            string baseImage = dir.File("base.raw");
            File.WriteAllBytes(baseImage, TestData.Pattern((int)Qcow2TestImages.Size, 13));
            string path = dir.File("ext.qcow2");
            Qemu.Img("create", "-q", "-f", "qcow2", "-o", "extended_l2=on,cluster_size=64k", "-b", "base.raw", "-F", "raw", path);
            Qemu.Io("-f", "qcow2", "-c", "write -P 0x21 4096 2048", "-c", "write -z 131072 8192", path);
            byte[] model = Qemu.ToRawBytes(path, "qcow2", dir.Path);
            using (var chain = ImageChain.Open(path, new ChainOptions { Writable = true }))
            {
                Assert.Equal(ExtentKind.Unallocated, chain.Top.GetBlockStatus(0, 4096).Kind);
                Assert.Equal(ExtentKind.Data, chain.Top.GetBlockStatus(4096, 2048).Kind);
                Qcow2TestImages.WriteScattered(chain.Top, model, 14);
            }

            Qcow2TestImages.AssertQemuCheckClean(path);
            string raw = dir.File("model.raw");
            Qcow2TestImages.WriteRaw(raw, model);
            Assert.True(Qemu.Compare(raw, "raw", path, "qcow2").Identical);
        }

        [Fact]
        public void FreedClustersAreReused()
        {
            using var dir = new TempDir();
            string path = CreateImage(dir, "reuse.qcow2", "");
            byte[] data = TestData.Pattern(2 << 20, 31);
            long lengthAfterFirstWrite;
            using (var layer = Qcow2TestImages.OpenWritable(path))
            {
                layer.Write(0, data);
                layer.Flush();
                lengthAfterFirstWrite = new FileInfo(path).Length;
                ((IDiscardableLayer)layer).Discard(0, 2 << 20);
                layer.Write(4 << 20, data);
            }

            Assert.Equal(lengthAfterFirstWrite, new FileInfo(path).Length);
            Qcow2TestImages.AssertQemuCheckClean(path);
            var model = new byte[Qcow2TestImages.Size];
            Array.Copy(data, 0, model, 4 << 20, data.Length);
            string raw = dir.File("model.raw");
            Qcow2TestImages.WriteRaw(raw, model);
            Assert.True(Qemu.Compare(raw, "raw", path, "qcow2").Identical);
        }

        [Fact]
        public void TerabyteImageWalksAndWritesQuickly()
        {
            using var dir = new TempDir();
            string path = dir.File("big.qcow2");
            long size = 1L << 40;
            CreateOperation.Create(path, Fmt.Qcow2, new CreateRequest { Size = size });
            var watch = System.Diagnostics.Stopwatch.StartNew();
            using (var layer = Qcow2TestImages.OpenWritable(path))
            {
                layer.Write(size - 4096, TestData.Pattern(4096, 1));
                layer.Write(size / 2, TestData.Pattern(4096, 2));
                int runs = 0;
                for (long offset = 0; offset < size; runs++)
                {
                    offset = layer.GetBlockStatus(offset, size - offset).End;
                }

                Assert.True(runs <= 5, $"{runs} runs");
            }

            Assert.True(watch.Elapsed < TimeSpan.FromSeconds(10), "took " + watch.Elapsed);
            Qcow2TestImages.AssertQemuCheckClean(path);
        }

        [Theory]
        [InlineData("cluster_size=1000", "cluster_size")]
        [InlineData("compat=0.10,lazy_refcounts=on", "lazy_refcounts")]
        [InlineData("compat=0.10,compression_type=zstd", "compression_type")]
        [InlineData("compat=0.10,refcount_bits=8", "refcount_bits")]
        [InlineData("refcount_bits=3", "refcount_bits")]
        [InlineData("extended_l2=on,cluster_size=4k", "extended_l2")]
        [InlineData("data_file_raw=on", "data_file_raw")]
        [InlineData("bogus=1", "bogus")]
        public void InvalidCreateOptionsAreRefusedByName(string options, string field)
        {
            using var dir = new TempDir();
            var e = Assert.Throws<ImageOptionException>(() => CreateImage(dir, "bad.qcow2", options));
            Assert.Equal(field, e.Field);
            Assert.False(File.Exists(dir.File("bad.qcow2")));
        }
    }
}
