using System;
using System.IO;
using System.Linq;
using Xunit;

namespace VDiskPS.Formats.Tests.Vmdk
{
    public class VmdkReadTests
    {

        [Theory]
        [InlineData("monolithicSparse")]
        [InlineData("monolithicFlat")]
        [InlineData("twoGbMaxExtentSparse")]
        [InlineData("twoGbMaxExtentFlat")]
        public void QemuSubformatReadsBitExact(string subformat)
        {
            using var dir = new TempDir();
            string path = VmdkFixtures.QemuImage(dir, subformat);
            Assert.Equal(Qemu.ToRawBytes(path, "vmdk", dir.Path), VmdkFixtures.EngineBytes(path));
        }

        [Fact]
        public void QemuStreamOptimizedReadsBitExact()
        {
            using var dir = new TempDir();
            string path = VmdkFixtures.QemuConverted(dir, VmdkFixtures.MixedRaw(dir), "streamOptimized");
            Assert.Equal(File.ReadAllBytes(dir.File("source.raw")), VmdkFixtures.EngineBytes(path));
        }

        [Fact]
        public void ParallelConvertOfACompressedSourceIsIdentical()
        {
            using var dir = new TempDir();
            string raw = VmdkFixtures.MixedRaw(dir);
            string stream = VmdkFixtures.QemuConverted(dir, raw, "streamOptimized");
            string copy = dir.File("copy.raw");
            ConvertOperation.Run(stream, copy, new ConvertOptions { TargetFormat = Fmt.Raw, ThrottleLimit = 4, ChunkSize = 256 * 1024 });
            Assert.Equal(File.ReadAllBytes(raw), File.ReadAllBytes(copy));
        }

        [Fact]
        public void ZeroedGrainEntriesReadAsZeroRuns()
        {
            using var dir = new TempDir();
            string path = VmdkFixtures.QemuImage(dir, "monolithicSparse", extraOptions: "zeroed_grain=on");
            Qemu.Io("-f", "vmdk", "-c", "write -z 0 131072", path);
            using var layer = FormatRegistry.Default.Open(path, Fmt.Vmdk, new OpenOptions());
            Assert.Equal(ExtentKind.Zero, layer.GetBlockStatus(0, 65536).Kind);
            Assert.Equal(Qemu.ToRawBytes(path, "vmdk", dir.Path), VmdkFixtures.EngineBytes(path));
        }

        [Fact]
        public void TwoGbSplitImageReadsAcrossTheExtentBoundary()
        {
            using var dir = new TempDir();
            long size = (2L << 30) + (4L << 20);
            string path = dir.File("split.vmdk");
            Qemu.Img("create", "-q", "-f", "vmdk", "-o", "subformat=twoGbMaxExtentSparse", path, size.ToString());
            long boundary = 2L << 30;
            Qemu.Io("-f", "vmdk", "-c", $"write -P 0x77 {boundary - 100000} 300000", path);
            using var layer = FormatRegistry.Default.Open(path, Fmt.Vmdk, new OpenOptions());
            var buffer = new byte[300000];
            layer.Read(boundary - 100000, buffer);
            Assert.All(buffer, b => Assert.Equal(0x77, b));
            string raw = dir.File("split.raw");
            ConvertOperation.Run(path, raw, new ConvertOptions { TargetFormat = Fmt.Raw });
            var (identical, output) = Qemu.Compare(path, "vmdk", raw, "raw");
            Assert.True(identical, output);
        }

        [Fact]
        public void UnallocatedRunsMergeAcrossGrainTables()
        {
            using var dir = new TempDir();
            string path = dir.File("big.vmdk");
            Qemu.Img("create", "-q", "-f", "vmdk", path, "1G");
            using var layer = FormatRegistry.Default.Open(path, Fmt.Vmdk, new OpenOptions());
            var status = layer.GetBlockStatus(0, layer.Size);
            Assert.Equal(ExtentKind.Unallocated, status.Kind);
            Assert.Equal(layer.Size, status.Length);
        }

        [Fact]
        public void DataRunsReportContiguousHostOffsets()
        {
            using var dir = new TempDir();
            string path = VmdkFixtures.QemuImage(dir, "monolithicSparse");
            using var layer = FormatRegistry.Default.Open(path, Fmt.Vmdk, new OpenOptions());
            var status = layer.GetBlockStatus(0, layer.Size);
            Assert.Equal(ExtentKind.Data, status.Kind);
            Assert.Equal(4 * 65536, status.Length);
            Assert.True(status.HostOffset > 0);
        }

        [Theory]
        [InlineData("monolithicSparse")]
        [InlineData("twoGbMaxExtentSparse")]
        [InlineData("monolithicFlat")]
        public void DescribeMatchesQemuInfo(string subformat)
        {
            using var dir = new TempDir();
            string path = VmdkFixtures.QemuImage(dir, subformat);
            using var json = Qemu.Info(path, "vmdk");
            var data = json.RootElement.GetProperty("format-specific").GetProperty("data");
            var info = ImageInspector.Get(path);
            Assert.Equal(subformat, info.Subformat);
            Assert.Equal(data.GetProperty("cid").GetInt64(), (long)info.FormatSpecific["cid"]);
            Assert.Equal(data.GetProperty("parent-cid").GetInt64(), (long)info.FormatSpecific["parent-cid"]);
            Assert.Equal(data.GetProperty("create-type").GetString(), info.FormatSpecific["create-type"]);
            var extents = ((System.Collections.Generic.IEnumerable<System.Collections.Generic.IDictionary<string, object>>)info.FormatSpecific["extents"]).ToList();
            var qemuExtents = data.GetProperty("extents").EnumerateArray().ToList();
            Assert.Equal(qemuExtents.Count, extents.Count);
            for (int i = 0; i < extents.Count; i++)
            {
                Assert.Equal(qemuExtents[i].GetProperty("format").GetString(), extents[i]["format"]);
                Assert.Equal(qemuExtents[i].GetProperty("virtual-size").GetInt64(), (long)extents[i]["virtual-size"]);
                Assert.Equal(Path.GetFileName(qemuExtents[i].GetProperty("filename").GetString()), Path.GetFileName((string)extents[i]["filename"]));
            }
        }

        [Fact]
        public void VmfsSparseDeltaReadsBitExact()
        {
            using var dir = new TempDir();
            const int capacitySectors = 2048;
            VmdkFixtures.CowdFile(dir.File("esx-delta.vmdk"));
            string descriptor = dir.File("esx.vmdk");
            File.WriteAllText(descriptor, "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType=\"vmfsSparse\"\n\nRW 2048 VMFSSPARSE \"esx-delta.vmdk\"\n");
            byte[] engine = VmdkFixtures.EngineBytes(descriptor);
            Assert.Equal(capacitySectors * 512, engine.Length);

            // qemu 7.2 lists a VMFSSPARSE extent twice (its info shows two extents); the first copy is the disk.
            Assert.Equal(Qemu.ToRawBytes(descriptor, "vmdk", dir.Path).AsSpan(0, engine.Length).ToArray(), engine);
        }

        [Fact]
        public void SeSparseDeltaReadsLikeQemu()
        {
            using var dir = new TempDir();
            const int capacitySectors = 2048;
            VmdkFixtures.SeSparseFile(dir.File("se-sesparse.vmdk"));
            string descriptor = dir.File("se.vmdk");
            File.WriteAllText(descriptor, "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType=\"seSparse\"\n\nRW 2048 SESPARSE \"se-sesparse.vmdk\"\n");
            byte[] engine = VmdkFixtures.EngineBytes(descriptor);
            Assert.Equal(capacitySectors * 512, engine.Length);
            Assert.Equal(Qemu.ToRawBytes(descriptor, "vmdk", dir.Path).AsSpan(0, engine.Length).ToArray(), engine);
            Assert.Equal(TestData.Pattern(4096, 32), engine.AsSpan(200 * 4096, 4096).ToArray());
            using (var layer = FormatRegistry.Default.Open(descriptor, Fmt.Vmdk, new OpenOptions()))
            {
                Assert.Equal(ExtentKind.Zero, layer.GetBlockStatus(5 * 4096, 4096).Kind);
            }

            byte[] descriptorBefore = File.ReadAllBytes(descriptor);
            using (var writable = FormatRegistry.Default.Open(descriptor, Fmt.Vmdk, new OpenOptions { Writable = true }))
            {
                Assert.Throws<ImageNotSupportedException>(() => writable.Write(0, new byte[512]));
            }

            Assert.Equal(descriptorBefore, File.ReadAllBytes(descriptor));
        }

        [Fact]
        public void ProbeRecognisesSparseAndDescriptorFiles()
        {
            using var dir = new TempDir();
            string sparse = VmdkFixtures.QemuImage(dir, "monolithicSparse");
            string flat = VmdkFixtures.QemuImage(dir, "monolithicFlat");
            Assert.Equal(Fmt.Vmdk, FormatRegistry.Default.Probe(sparse));
            Assert.Equal(Fmt.Vmdk, FormatRegistry.Default.Probe(flat));
        }
    }
}
