using System;
using System.IO;
using Xunit;

namespace VDiskPS.Formats.Tests.Vmdk
{
    public class VmdkWriteTests
    {
        public static TheoryData<string> EngineSubformats => new TheoryData<string>
        {
            "monolithicSparse", "monolithicFlat", "twoGbMaxExtentSparse", "twoGbMaxExtentFlat", "streamOptimized", "vmfs", "vmfsThin",
        };

        [Theory]
        [MemberData(nameof(EngineSubformats))]
        public void ConvertedImagePassesQemuCheckAndCompare(string subformat)
        {
            using var dir = new TempDir();
            string raw = VmdkFixtures.MixedRaw(dir);
            string target = dir.File("out.vmdk");
            ConvertOperation.Run(raw, target, new ConvertOptions { TargetFormat = Fmt.Vmdk, Target = new CreateRequest { Subformat = subformat } });
            var (code, output) = Qemu.Check(target, "vmdk");
            Assert.True(code == 0, output);
            var (identical, compareOutput) = Qemu.Compare(raw, "raw", target, "vmdk");
            Assert.True(identical, compareOutput);
            Assert.Equal(File.ReadAllBytes(raw), VmdkFixtures.EngineBytes(target));
        }

        [Fact]
        public void CompressedConvertToStreamOptimizedPassesQemu()
        {
            using var dir = new TempDir();
            string raw = VmdkFixtures.MixedRaw(dir);
            string target = dir.File("stream.vmdk");
            ConvertOperation.Run(raw, target, new ConvertOptions { TargetFormat = Fmt.Vmdk, Compress = true, Target = new CreateRequest { Options = OptionSet.Parse("subformat=streamOptimized") } });
            Assert.Equal(0, Qemu.Check(target, "vmdk").ExitCode);
            var (identical, output) = Qemu.Compare(raw, "raw", target, "vmdk");
            Assert.True(identical, output);
        }

        [Fact]
        public void UnalignedWritesOfACreatedSparseImageReadBack()
        {
            using var dir = new TempDir();
            string path = dir.File("w.vmdk");
            CreateOperation.Create(path, Fmt.Vmdk, new CreateRequest { Size = 4L << 20 });
            var expected = new byte[4L << 20];
            using (var layer = FormatRegistry.Default.Open(path, Fmt.Vmdk, new OpenOptions { Writable = true }))
            {
                Write(layer, expected, 1000, TestData.Pattern(5000, 1));
                Write(layer, expected, 65536 - 10, TestData.Pattern(300000, 2));
                Write(layer, expected, 2000, TestData.Pattern(100, 3));
                Write(layer, expected, (4L << 20) - 1, new byte[] { 9 });
            }

            Assert.Equal(expected, VmdkFixtures.EngineBytes(path));
            Assert.Equal(expected, Qemu.ToRawBytes(path, "vmdk", dir.Path));
            Assert.Equal(0, Qemu.Check(path, "vmdk").ExitCode);
        }

        [Fact]
        public void ZeroWritesUseZeroedGrainEntries()
        {
            using var dir = new TempDir();
            string path = dir.File("z.vmdk");
            CreateOperation.Create(path, Fmt.Vmdk, new CreateRequest { Size = 4L << 20, Options = OptionSet.Parse("zeroed_grain=on") });
            using (var layer = FormatRegistry.Default.Open(path, Fmt.Vmdk, new OpenOptions { Writable = true }))
            {
                layer.Write(0, TestData.Pattern(1 << 20, 4));
                layer.WriteZeroes(65536, 3 * 65536);
                Assert.Equal(ExtentKind.Zero, layer.GetBlockStatus(65536, 65536).Kind);
            }

            var expected = TestData.Pattern(1 << 20, 4);
            Array.Clear(expected, 65536, 3 * 65536);
            Assert.Equal(expected, Qemu.ToRawBytes(path, "vmdk", dir.Path).AsSpan(0, 1 << 20).ToArray());
            Assert.Equal(0, Qemu.Check(path, "vmdk").ExitCode);
        }

        [Fact]
        public void CreateOptionsReachTheDescriptor()
        {
            using var dir = new TempDir();
            string path = dir.File("o.vmdk");
            CreateOperation.Create(path, Fmt.Vmdk, new CreateRequest { Size = 1L << 30, Subformat = "monolithicFlat", Options = OptionSet.Parse("adapter_type=lsilogic,hwversion=11,toolsversion=10346") });
            string text = File.ReadAllText(path);
            Assert.Contains("ddb.adapterType = \"lsilogic\"", text);
            Assert.Contains("ddb.virtualHWVersion = \"11\"", text);
            Assert.Contains("ddb.toolsVersion = \"10346\"", text);
            Assert.Contains("ddb.geometry.heads = \"255\"", text);
            Assert.True(File.Exists(dir.File("o-flat.vmdk")));
        }

        [Fact]
        public void VmfsThinDescriptorIsWhatEsxiWrites()
        {
            using var dir = new TempDir();
            string path = dir.File("thin.vmdk");
            var info = CreateOperation.Create(path, Fmt.Vmdk, new CreateRequest { Size = 1L << 30, Subformat = "vmfsThin" });
            string text = File.ReadAllText(path);
            Assert.Contains("createType=\"vmfs\"", text);
            Assert.Contains("RW 2097152 VMFS \"thin-flat.vmdk\"", text);
            Assert.Contains("ddb.thinProvisioned = \"1\"", text);
            Assert.Matches("ddb.uuid = \"([0-9a-f]{2} ){7}[0-9a-f]{2}-([0-9a-f]{2} ){7}[0-9a-f]{2}\"", text);
            Assert.Equal("Dynamic", info.Type);
            Assert.NotNull(info.DiskIdentifier);
            Assert.Equal(0, new FileInfo(dir.File("thin-flat.vmdk")).Length - (1L << 30));
        }

        [Theory]
        [InlineData("monolithicSparse")]
        [InlineData("streamOptimized")]
        [InlineData("monolithicFlat")]
        public void EmptyDiskIsValid(string subformat)
        {
            using var dir = new TempDir();
            string path = dir.File("empty.vmdk");
            CreateOperation.Create(path, Fmt.Vmdk, new CreateRequest { Size = 0, Subformat = subformat });

            // qemu-img 7.2 cannot open an empty sparse VMDK (even its own), so the engine judges here.
            using var layer = FormatRegistry.Default.Open(path, Fmt.Vmdk, new OpenOptions());
            Assert.Equal(0, layer.Size);
            Assert.True(((ICheckableLayer)layer).Check(RepairMode.None).IsValid);
        }

        [Fact]
        public void UnknownCreateOptionIsRefusedByName()
        {
            using var dir = new TempDir();
            var e = Assert.Throws<ImageOptionException>(() => CreateOperation.Create(dir.File("u.vmdk"), Fmt.Vmdk, new CreateRequest { Size = 1 << 20, Options = OptionSet.Parse("cluster_bits=9") }));
            Assert.Equal("cluster_bits", e.Field);
            Assert.False(File.Exists(dir.File("u.vmdk")));
        }

        [Fact]
        public void ConflictingSubformatFieldAndOptionAreRefused()
        {
            using var dir = new TempDir();
            var e = Assert.Throws<ImageOptionException>(() => CreateOperation.Create(dir.File("c.vmdk"), Fmt.Vmdk, new CreateRequest { Size = 1 << 20, Subformat = "monolithicFlat", Options = OptionSet.Parse("subformat=streamOptimized") }));
            Assert.Equal("subformat", e.Field);
        }

        [Fact]
        public void StreamOptimizedRefusesOutOfOrderWrites()
        {
            using var dir = new TempDir();
            string path = dir.File("s.vmdk");
            using var layer = FormatRegistry.Default.GetCreatable(Fmt.Vmdk).Create(path, new CreateRequest { Size = 4L << 20, Subformat = "streamOptimized" });
            layer.Write(1L << 20, TestData.Pattern(65536, 1));
            var e = Assert.Throws<ImageNotSupportedException>(() => layer.Write(0, TestData.Pattern(512, 2)));
            Assert.Contains("increasing order", e.Message);
        }

        [Fact]
        public void StreamOptimizedOutputHasFooterAndEndOfStreamMarker()
        {
            using var dir = new TempDir();
            string raw = VmdkFixtures.MixedRaw(dir);
            string target = dir.File("s.vmdk");
            ConvertOperation.Run(raw, target, new ConvertOptions { TargetFormat = Fmt.Vmdk, Compress = true, Target = new CreateRequest { Subformat = "streamOptimized" } });
            byte[] file = File.ReadAllBytes(target);
            Assert.Equal(3u, BitConverter.ToUInt32(file, 4));
            Assert.Equal(ulong.MaxValue, BitConverter.ToUInt64(file, 56));
            int footerMarker = file.Length - 1536;
            Assert.Equal(3u, BitConverter.ToUInt32(file, footerMarker + 12));
            Assert.Equal(0x564D444Bu, BitConverter.ToUInt32(file, footerMarker + 512));
            Assert.Equal(new byte[512], file.AsSpan(file.Length - 512).ToArray());
            string descriptor = System.Text.Encoding.ASCII.GetString(file, 512, 2048);
            Assert.Contains("ddb.longContentID", descriptor);
            Assert.Contains("ddb.toolsInstallType", descriptor);
            Assert.Contains("ddb.adapterType = \"lsilogic\"", descriptor);
        }

        [Fact]
        public void CompressionIsOfferedOnlyForStreamOptimized()
        {
            var driver = FormatRegistry.Default.GetCreatable(Fmt.Vmdk);
            Assert.True(driver.SupportsCompression(new CreateRequest { Subformat = "streamOptimized" }));
            Assert.False(driver.SupportsCompression(new CreateRequest { Subformat = "monolithicSparse" }));
        }

        private static void Write(ImageLayer layer, byte[] expected, long offset, byte[] data)
        {
            layer.Write(offset, data);
            data.CopyTo(expected, offset);
        }
    }
}
