using System;
using System.Buffers.Binary;
using System.IO;
using System.Text.Json;
using Xunit;

namespace VDiskPS.Formats.Tests.Qcow2
{
    public class Qcow2OperationTests
    {
        private static string CreateWritten(TempDir dir, string name, string options, byte[] model, int seed)
        {
            string path = dir.File(name);
            CreateOperation.Create(path, Fmt.Qcow2, new CreateRequest { Size = model.Length, Options = OptionSet.Parse(options) });
            using var layer = Qcow2TestImages.OpenWritable(path);
            Qcow2TestImages.WriteScattered(layer, model, seed);
            return path;
        }

        private static void AssertSameAsModel(TempDir dir, string path, byte[] model)
        {
            string raw = dir.File(Guid.NewGuid().ToString("N") + ".raw");
            File.WriteAllBytes(raw, model);
            var compare = Qemu.Compare(raw, "raw", path, "qcow2");
            Assert.True(compare.Identical, compare.Output);
        }

        [Fact]
        public void SnapshotCreatedHereIsListedByQemuAndKeepsItsContent()
        {
            using var dir = new TempDir();
            var model = new byte[Qcow2TestImages.Size];
            string path = CreateWritten(dir, "s.qcow2", "", model, 1);
            byte[] before = (byte[])model.Clone();
            using (var layer = Qcow2TestImages.OpenWritable(path))
            {
                var snapshots = (ISnapshotLayer)layer;
                var info = snapshots.CreateSnapshot("first");
                Assert.Equal("1", info.Id);
                Qcow2TestImages.WriteScattered(layer, model, 2);
                layer.WriteZeroes(0, 65536);
                Array.Clear(model, 0, 65536);
            }

            Qcow2TestImages.AssertQemuCheckClean(path);
            Assert.Contains("first", Qemu.Img("snapshot", "-l", path));
            AssertSameAsModel(dir, path, model);
            string snapshotRaw = dir.File("snap.raw");
            Qemu.Img("convert", "-f", "qcow2", "-l", "snapshot.name=first", "-O", "raw", path, snapshotRaw);
            Assert.Equal(before, File.ReadAllBytes(snapshotRaw));
        }

        [Fact]
        public void QemuSnapshotReadsAsItWasAndListsHere()
        {
            using var dir = new TempDir();
            string path = Qcow2TestImages.MakeWithQemuIo(dir, "q.qcow2", "compat=1.1");
            Qemu.Img("snapshot", "-c", "base", path);
            Qemu.Io("-f", "qcow2", "-c", "write -P 0x99 0 200000", path);
            string expected = dir.File("expected.raw");
            Qemu.Img("convert", "-f", "qcow2", "-l", "snapshot.name=base", "-O", "raw", path, expected);
            using var layer = Qcow2TestImages.OpenRead(path);
            var snapshots = (ISnapshotLayer)layer;
            Assert.Equal("base", Assert.Single(snapshots.GetSnapshots()).Name);
            using var view = snapshots.OpenSnapshot("base");
            var buffer = new byte[view.Size];
            view.Read(0, buffer);
            Assert.Equal(File.ReadAllBytes(expected), buffer);
        }

        [Fact]
        public void ApplyAndDeleteSnapshotLeaveCleanImage()
        {
            using var dir = new TempDir();
            var model = new byte[Qcow2TestImages.Size];
            string path = CreateWritten(dir, "a.qcow2", "", model, 3);
            byte[] before = (byte[])model.Clone();
            using (var layer = Qcow2TestImages.OpenWritable(path))
            {
                var snapshots = (ISnapshotLayer)layer;
                snapshots.CreateSnapshot("one");
                Qcow2TestImages.WriteScattered(layer, model, 4);
                snapshots.CreateSnapshot("two");
                Qcow2TestImages.WriteScattered(layer, model, 5);
                snapshots.ApplySnapshot("one");
            }

            Qcow2TestImages.AssertQemuCheckClean(path);
            AssertSameAsModel(dir, path, before);
            using (var layer = Qcow2TestImages.OpenWritable(path))
            {
                var snapshots = (ISnapshotLayer)layer;
                snapshots.DeleteSnapshot("one");
                snapshots.DeleteSnapshot("2");
                Assert.Empty(snapshots.GetSnapshots());
            }

            Qcow2TestImages.AssertQemuCheckClean(path);
            AssertSameAsModel(dir, path, before);
        }

        [Theory]
        [InlineData(false)]
        [InlineData(true)]
        public void CheckCountsLikeQemuOnCleanImage(bool compressedWithSnapshot)
        {
            using var dir = new TempDir();
            string path = Qcow2TestImages.MakeWithQemuIo(dir, "c.qcow2", "compat=1.1");
            if (compressedWithSnapshot)
            {
                string compressed = dir.File("cc.qcow2");
                Qemu.Img("convert", "-c", "-f", "qcow2", "-O", "qcow2", path, compressed);
                Qemu.Img("snapshot", "-c", "s1", compressed);
                Qemu.Io("-f", "qcow2", "-c", "write -P 1 0 100000", compressed);
                path = compressed;
            }

            using var layer = Qcow2TestImages.OpenRead(path);
            var result = ((ICheckableLayer)layer).Check(RepairMode.None);
            string json = Qemu.Run("qemu-img", new[] { "check", "--output=json", "-f", "qcow2", path }).Output;
            using var doc = JsonDocument.Parse(json);
            var root = doc.RootElement;
            Assert.Equal(0, result.Corruptions);
            Assert.Equal(0, result.Leaks);
            Assert.Equal(root.GetProperty("allocated-clusters").GetInt64(), result.AllocatedClusters);
            Assert.Equal(root.GetProperty("total-clusters").GetInt64(), result.TotalClusters);
            Assert.Equal(root.GetProperty("fragmented-clusters").GetInt64(), result.FragmentedClusters);
            Assert.Equal(root.TryGetProperty("compressed-clusters", out var compressedClusters) ? compressedClusters.GetInt64() : 0, result.CompressedClusters);
            Assert.Equal(root.GetProperty("image-end-offset").GetInt64(), result.ImageEndOffset);
        }

        /// <summary>Sets the 16-bit refcount of <paramref name="cluster"/> directly in the file.</summary>
        private static void PokeRefcount(string path, long cluster, ushort value)
        {
            using var fs = new FileStream(path, FileMode.Open, FileAccess.ReadWrite);
            var header = new byte[72];
            fs.ReadExactly(header);
            int clusterBits = (int)BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(20));
            long tableOffset = (long)BinaryPrimitives.ReadUInt64BigEndian(header.AsSpan(48));
            long perBlock = (1L << clusterBits) / 2;
            var entry = new byte[8];
            fs.Position = tableOffset + cluster / perBlock * 8;
            fs.ReadExactly(entry);
            long block = (long)BinaryPrimitives.ReadUInt64BigEndian(entry);
            var raw = new byte[2];
            BinaryPrimitives.WriteUInt16BigEndian(raw, value);
            fs.Position = block + cluster % perBlock * 2;
            fs.Write(raw);
        }

        [Fact]
        public void LeaksAreFoundAndRepaired()
        {
            using var dir = new TempDir();
            var model = new byte[Qcow2TestImages.Size];
            string path = CreateWritten(dir, "l.qcow2", "", model, 6);
            long fileClusters = (new FileInfo(path).Length + 65535) / 65536;
            using (var fs = new FileStream(path, FileMode.Open, FileAccess.Write))
            {
                fs.SetLength((fileClusters + 1) * 65536);
            }

            PokeRefcount(path, fileClusters, 1);
            Assert.Equal(3, Qemu.Check(path, "qcow2").ExitCode);
            using (var layer = Qcow2TestImages.OpenWritable(path))
            {
                var checkable = (ICheckableLayer)layer;
                Assert.Equal(1, checkable.Check(RepairMode.None).Leaks);
                var repaired = checkable.Check(RepairMode.Leaks);
                Assert.Equal(1, repaired.LeaksFixed);
                Assert.Equal(0, repaired.Leaks);
            }

            Qcow2TestImages.AssertQemuCheckClean(path);
            AssertSameAsModel(dir, path, model);
        }

        [Fact]
        public void CorruptionsAreFoundAndRepairedWithAll()
        {
            using var dir = new TempDir();
            var model = new byte[Qcow2TestImages.Size];
            string path = CreateWritten(dir, "k.qcow2", "", model, 7);
            long dataCluster;
            using (var layer = Qcow2TestImages.OpenRead(path))
            {
                dataCluster = layer.GetBlockStatus(0, 65536).HostOffset / 65536;
            }

            PokeRefcount(path, dataCluster, 0);
            Assert.Equal(2, Qemu.Check(path, "qcow2").ExitCode);
            using (var layer = Qcow2TestImages.OpenWritable(path))
            {
                var checkable = (ICheckableLayer)layer;
                Assert.True(checkable.Check(RepairMode.None).Corruptions > 0);
                var repaired = checkable.Check(RepairMode.All);
                Assert.True(repaired.CorruptionsFixed > 0);
                Assert.Equal(0, repaired.Corruptions);
            }

            Qcow2TestImages.AssertQemuCheckClean(path);
            AssertSameAsModel(dir, path, model);
        }

        [Theory]
        [InlineData(31)]
        [InlineData(32)]
        [InlineData(33)]
        public void RepairAllFixesRandomRefcountAndFlagDamage(int seed)
        {
            using var dir = new TempDir();
            string path = Qcow2TestImages.MakeWithQemuIo(dir, "d.qcow2", "compat=1.1");
            Qemu.Img("snapshot", "-c", "s", path);
            Qemu.Io("-f", "qcow2", "-c", "write -c -P 9 7340032 65536", "-c", "write -P 8 0 300000", path);
            byte[] model = Qemu.ToRawBytes(path, "qcow2", dir.Path);
            byte[] file = File.ReadAllBytes(path);
            long refcountTable = (long)BinaryPrimitives.ReadUInt64BigEndian(file.AsSpan(48));
            long block = (long)BinaryPrimitives.ReadUInt64BigEndian(file.AsSpan((int)refcountTable));
            long l1 = (long)BinaryPrimitives.ReadUInt64BigEndian(file.AsSpan(40));
            long l2 = (long)(BinaryPrimitives.ReadUInt64BigEndian(file.AsSpan((int)l1)) & 0x00FFFFFFFFFFFE00UL);
            var rng = new Random(seed);
            using (var fs = new FileStream(path, FileMode.Open, FileAccess.ReadWrite))
            {
                long clusters = file.Length / 65536;
                for (int i = 0; i < 6; i++)
                {
                    fs.Position = block + rng.Next((int)clusters + 4) * 2 + 1;
                    fs.WriteByte((byte)rng.Next(4));
                }

                // Flip COPIED on the first L1 entry and on a few L2 entries.
                fs.Position = l1;
                fs.WriteByte((byte)(file[l1] ^ 0x80));
                for (int i = 0; i < 3; i++)
                {
                    long at = l2 + rng.Next(128) * 8;
                    fs.Position = at;
                    fs.WriteByte((byte)(file[at] ^ 0x80));
                }
            }

            using (var layer = Qcow2TestImages.OpenWritable(path))
            {
                var result = ((ICheckableLayer)layer).Check(RepairMode.All);
                Assert.Equal(0, result.Corruptions);
                Assert.Equal(0, result.Leaks);
            }

            Qcow2TestImages.AssertQemuCheckClean(path);
            Assert.Equal(model, Qemu.ToRawBytes(path, "qcow2", dir.Path));
        }

        [Theory]
        [InlineData(true)]
        [InlineData(false)]
        public void RepairAllRebuildsUnreadableRefcountStructure(bool tablePastEnd)
        {
            using var dir = new TempDir();
            string path = Qcow2TestImages.MakeWithQemuIo(dir, "u.qcow2", "compat=1.1");
            byte[] model = Qemu.ToRawBytes(path, "qcow2", dir.Path);
            byte[] file = File.ReadAllBytes(path);
            using (var fs = new FileStream(path, FileMode.Open, FileAccess.Write))
            {
                var raw = new byte[8];
                BinaryPrimitives.WriteUInt64BigEndian(raw, 1UL << 40);
                fs.Position = tablePastEnd ? 48 : (long)BinaryPrimitives.ReadUInt64BigEndian(file.AsSpan(48));
                fs.Write(raw);
            }

            using (var layer = Qcow2TestImages.OpenWritable(path))
            {
                var checkable = (ICheckableLayer)layer;
                Assert.True(checkable.Check(RepairMode.None).Corruptions > 0);
                var repaired = checkable.Check(RepairMode.All);
                Assert.Equal(0, repaired.Corruptions);
                Assert.Equal(0, repaired.Leaks);
            }

            Qcow2TestImages.AssertQemuCheckClean(path);
            Assert.Equal(model, Qemu.ToRawBytes(path, "qcow2", dir.Path));
        }

        [Fact]
        public void GrowAndShrinkKeepImageClean()
        {
            using var dir = new TempDir();
            var model = new byte[Qcow2TestImages.Size];
            string path = CreateWritten(dir, "r.qcow2", "cluster_size=4k", model, 8);
            using (var layer = Qcow2TestImages.OpenWritable(path))
            {
                ((IResizableLayer)layer).Resize(1L << 30, false, Preallocation.Off);
                layer.Write((1L << 30) - 5, new byte[] { 1, 2, 3, 4, 5 });
            }

            Qcow2TestImages.AssertQemuCheckClean(path);
            Assert.Equal(1L << 30, Qemu.Info(path, "qcow2").RootElement.GetProperty("virtual-size").GetInt64());
            using (var layer = Qcow2TestImages.OpenWritable(path))
            {
                Assert.Throws<ImageOptionException>(() => ((IResizableLayer)layer).Resize(4L << 20, false, Preallocation.Off));
                ((IResizableLayer)layer).Resize(4L << 20, true, Preallocation.Off);
            }

            Qcow2TestImages.AssertQemuCheckClean(path);
            string raw = dir.File("model.raw");
            File.WriteAllBytes(raw, model.AsSpan(0, 4 << 20).ToArray());
            Assert.True(Qemu.Compare(raw, "raw", path, "qcow2").Identical);
        }

        [Theory]
        [InlineData("compat=0.10")]
        [InlineData("refcount_bits=1")]
        [InlineData("refcount_bits=64")]
        [InlineData("lazy_refcounts=on")]
        public void AmendKeepsDataAndPassesCheck(string options)
        {
            using var dir = new TempDir();
            var model = new byte[Qcow2TestImages.Size];
            string path = CreateWritten(dir, "m.qcow2", "", model, 9);
            using (var layer = Qcow2TestImages.OpenWritable(path))
            {
                layer.WriteZeroes(0, 131072);
                Array.Clear(model, 0, 131072);
                ((IAmendableLayer)layer).Amend(OptionSet.Parse(options));
            }

            Qcow2TestImages.AssertQemuCheckClean(path);
            AssertSameAsModel(dir, path, model);
            using var info = Qemu.Info(path, "qcow2");
            var data = info.RootElement.GetProperty("format-specific").GetProperty("data");
            var expected = OptionSet.Parse(options);
            if (expected.Contains("compat"))
            {
                Assert.Equal("0.10", data.GetProperty("compat").GetString());
            }

            if (expected.Contains("refcount_bits"))
            {
                Assert.Equal(expected.GetInt("refcount_bits"), data.GetProperty("refcount-bits").GetInt32());
            }

            if (expected.Contains("lazy_refcounts"))
            {
                Assert.True(data.GetProperty("lazy-refcounts").GetBoolean());
            }
        }

        [Theory]
        [InlineData(false)]
        [InlineData(true)]
        public void DowngradeExpandsZeroClustersInSnapshotsToo(bool overBackingFile)
        {
            using var dir = new TempDir();
            string path = dir.File("z.qcow2");
            if (overBackingFile)
            {
                File.WriteAllBytes(dir.File("base.raw"), TestData.Pattern(8 << 20, 41));
                Qemu.Img("create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", path);
            }
            else
            {
                Qemu.Img("create", "-q", "-f", "qcow2", path, "8M");
            }

            Qemu.Io("-f", "qcow2", "-c", "write -P 1 0 1M", "-c", "write -z 65536 131072", "-c", "write -z -u 2M 131072", path);
            Qemu.Img("snapshot", "-c", "before", path);
            Qemu.Io("-f", "qcow2", "-c", "write -z 262144 65536", "-c", "write -z -u 4M 65536", "-c", "write -P 2 5M 65536", path);
            byte[] active = Qemu.ToRawBytes(path, "qcow2", dir.Path);
            string snapshotRaw = dir.File("before.raw");
            Qemu.Img("convert", "-f", "qcow2", "-l", "snapshot.name=before", "-O", "raw", path, snapshotRaw);
            byte[] snapshot = File.ReadAllBytes(snapshotRaw);
            using (var chain = ImageChain.Open(path, new ChainOptions { Writable = true }))
            {
                ((IAmendableLayer)chain.Top).Amend(OptionSet.Parse("compat=0.10"));
            }

            Qcow2TestImages.AssertQemuCheckClean(path);
            using (var info = Qemu.Info(path, "qcow2"))
            {
                Assert.Equal("0.10", info.RootElement.GetProperty("format-specific").GetProperty("data").GetProperty("compat").GetString());
            }

            Assert.Equal(active, Qemu.ToRawBytes(path, "qcow2", dir.Path));
            File.Delete(snapshotRaw);
            Qemu.Img("convert", "-f", "qcow2", "-l", "snapshot.name=before", "-O", "raw", path, snapshotRaw);
            Assert.Equal(snapshot, File.ReadAllBytes(snapshotRaw));
        }

        [Fact]
        public void AmendRenamesDataFileAndClearsDataFileRaw()
        {
            using var dir = new TempDir();
            string path = Qcow2TestImages.MakeWithQemuIo(dir, "d.qcow2", "data_file=" + dir.File("d.data") + ",data_file_raw=on");
            byte[] before = Qemu.ToRawBytes(path, "qcow2", dir.Path);
            using (var layer = Qcow2TestImages.OpenWritable(path))
            {
                var amend = (IAmendableLayer)layer;
                Assert.Throws<ImageOptionException>(() => amend.Amend(OptionSet.Parse("compat=0.10")));
                amend.Amend(OptionSet.Parse("data_file=d.data,data_file_raw=off"));
            }

            var info = ImageInspector.Get(path, Fmt.Qcow2);
            Assert.Equal("d.data", info.FormatSpecific["data-file"]);
            Assert.Equal(false, info.FormatSpecific["data-file-raw"]);
            Assert.Equal(before, TestData.ReadAll(path, Fmt.Qcow2));
        }

        [Fact]
        public void AmendRefusesClusterSizeChange()
        {
            using var dir = new TempDir();
            string path = dir.File("x.qcow2");
            Qemu.Img("create", "-q", "-f", "qcow2", path, "1M");
            using var layer = Qcow2TestImages.OpenWritable(path);
            var e = Assert.Throws<ImageOptionException>(() => ((IAmendableLayer)layer).Amend(OptionSet.Parse("cluster_size=4k")));
            Assert.Equal("cluster_size", e.Field);
        }

        [Theory]
        [InlineData("", 1L << 30)]
        [InlineData("cluster_size=4k,refcount_bits=8", 100L << 20)]
        [InlineData("extended_l2=on", 3L << 30)]
        [InlineData("preallocation=full", 10L << 20)]
        public void MeasureMatchesQemu(string options, long size)
        {
            var request = new CreateRequest { Size = size, Options = OptionSet.Parse(options) };
            var measured = new VDiskPS.Formats.Qcow2.Qcow2Driver().Measure(request, 0);
            var args = options.Length > 0
                ? new[] { "measure", "--output=json", "-O", "qcow2", "-o", options, "--size", size.ToString() }
                : new[] { "measure", "--output=json", "-O", "qcow2", "--size", size.ToString() };
            using var doc = JsonDocument.Parse(Qemu.Img(args));
            Assert.Equal(doc.RootElement.GetProperty("required").GetInt64(), measured.Required);
            Assert.Equal(doc.RootElement.GetProperty("fully-allocated").GetInt64(), measured.FullyAllocated);
        }

        [Fact]
        public void SetBackingRewritesPointerAndFormat()
        {
            using var dir = new TempDir();
            string baseImage = dir.File("base.qcow2");
            Qemu.Img("create", "-q", "-f", "qcow2", baseImage, "8M");
            string path = dir.File("top.qcow2");
            Qemu.Img("create", "-q", "-f", "qcow2", path, "8M");
            using (var layer = Qcow2TestImages.OpenWritable(path))
            {
                ((IParentChangeableLayer)layer).SetBacking(new BackingReference("base.qcow2", Fmt.Qcow2), null);
            }

            using (var info = Qemu.Info(path, "qcow2"))
            {
                Assert.Equal("base.qcow2", info.RootElement.GetProperty("backing-filename").GetString());
                Assert.Equal("qcow2", info.RootElement.GetProperty("backing-filename-format").GetString());
            }

            using (var layer = Qcow2TestImages.OpenWritable(path))
            {
                ((IParentChangeableLayer)layer).SetBacking(null, null);
            }

            using (var info = Qemu.Info(path, "qcow2"))
            {
                Assert.False(info.RootElement.TryGetProperty("backing-filename", out _));
            }

            Qcow2TestImages.AssertQemuCheckClean(path);
        }
    }
}
