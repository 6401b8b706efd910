using System;
using System.IO;
using System.Text;
using Xunit;

namespace VDiskPS.Formats.Tests.Operations
{
    /// <summary>Set-VDisk -ResetDiskIdentifier: a new identifier, the same data, an image qemu still accepts.</summary>
    public class DiskIdentifierTests
    {
        private const long MiB = 1L << 20;

        /// <summary>An image made by qemu-img with data written by qemu-io at a few places.</summary>
        private static string MakeImage(TempDir dir, DiskFormat format, string name = "disk", params string[] createOptions)
        {
            string path = dir.File(name + "." + format.ToName());
            string qemuFormat = format.ToQemuName();
            var args = new System.Collections.Generic.List<string> { "create", "-q", "-f", qemuFormat };
            foreach (string option in createOptions)
            {
                args.Add("-o");
                args.Add(option);
            }

            args.Add(path);
            args.Add("4M");
            Qemu.Img(args.ToArray());
            Qemu.Io("-f", qemuFormat, "-c", "write -P 0x5a 0 64k", "-c", "write -P 0xa5 1M 192k", "-c", "write -P 0x33 3584k 4k", path);
            return path;
        }

        private static string CopyOf(string path)
        {
            string copy = Path.Combine(Path.GetDirectoryName(path), "before-" + Path.GetFileName(path));
            File.Copy(path, copy);
            return copy;
        }

        [Theory]
        [InlineData("vhd")]
        [InlineData("vhdx")]
        [InlineData("vdi")]
        [InlineData("vmdk")]
        public void ResetGivesANewIdentifierAndKeepsTheData(string formatName)
        {
            DiskFormat format = DiskFormat.Parse(formatName);
            using var dir = new TempDir();
            string path = MakeImage(dir, format);
            string before = CopyOf(path);
            Guid? oldIdentifier = ImageInspector.Get(path).DiskIdentifier;
            byte[] content = TestData.ReadAll(path);

            VDiskInfo returned = DiskIdentifierOperation.Reset(path, null);

            Guid? newIdentifier = ImageInspector.Get(path).DiskIdentifier;
            Assert.NotNull(newIdentifier);
            Assert.NotEqual(Guid.Empty, newIdentifier.Value);
            Assert.NotEqual(oldIdentifier, newIdentifier);
            Assert.Equal(newIdentifier, returned.DiskIdentifier);
            Assert.Equal(content, TestData.ReadAll(path));
            var compare = Qemu.Compare(before, format.ToQemuName(), path, format.ToQemuName());
            Assert.True(compare.Identical, compare.Output);
        }

        [Theory]
        [InlineData("vhdx")]
        [InlineData("vdi")]
        [InlineData("vmdk")]
        public void QemuChecksTheImageCleanAfterAReset(string formatName)
        {
            DiskFormat format = DiskFormat.Parse(formatName);
            using var dir = new TempDir();
            string path = MakeImage(dir, format);
            DiskIdentifierOperation.Reset(path, format);
            var check = Qemu.Check(path, format.ToQemuName());
            Assert.True(check.ExitCode == 0, check.Output);
        }

        [Theory]
        [InlineData("vhd")]
        [InlineData("vhdx")]
        [InlineData("vdi")]
        [InlineData("vmdk")]
        public void AnExplicitIdentifierIsRecordedExactly(string formatName)
        {
            DiskFormat format = DiskFormat.Parse(formatName);
            using var dir = new TempDir();
            string path = MakeImage(dir, format);
            var identifier = new Guid("6000c29b-2e4f-4d1a-8b3c-0123456789ab");
            DiskIdentifierOperation.Reset(path, format, identifier);
            Assert.Equal(identifier, ImageInspector.Get(path).DiskIdentifier);
        }

        [Theory]
        [InlineData("vhd")]
        [InlineData("vhdx")]
        [InlineData("vdi")]
        [InlineData("vmdk")]
        public void ImagesThisModuleCreatesCanBeReset(string formatName)
        {
            DiskFormat format = DiskFormat.Parse(formatName);
            using var dir = new TempDir();
            string path = dir.File("made." + format.ToName());
            CreateOperation.Create(path, format, new CreateRequest { Size = 4 * MiB });
            byte[] data = TestData.Pattern(128 * 1024, 7);
            using (ImageLayer layer = FormatRegistry.Default.Open(path, format, new OpenOptions { Writable = true }))
            {
                layer.Write(MiB, data);
            }

            string before = CopyOf(path);
            var identifier = Guid.NewGuid();
            DiskIdentifierOperation.Reset(path, format, identifier);

            Assert.Equal(identifier, ImageInspector.Get(path).DiskIdentifier);
            Assert.Equal(data, TestData.ReadAll(path).AsSpan((int)MiB, data.Length).ToArray());
            var compare = Qemu.Compare(before, format.ToQemuName(), path, format.ToQemuName());
            Assert.True(compare.Identical, compare.Output);
        }

        [Fact]
        public void DynamicVhdKeepsBothFooterCopiesInStep()
        {
            using var dir = new TempDir();
            string path = MakeImage(dir, Fmt.Vhd);
            DiskIdentifierOperation.Reset(path, Fmt.Vhd);
            byte[] file = File.ReadAllBytes(path);
            Assert.Equal(file.AsSpan(0, 512).ToArray(), file.AsSpan(file.Length - 512, 512).ToArray());
            Assert.True(CheckOperation.Run(path, Fmt.Vhd, RepairMode.None).IsValid);
        }

        [Fact]
        public void FixedVhdGetsANewIdentifierInItsOnlyFooter()
        {
            using var dir = new TempDir();
            string path = MakeImage(dir, Fmt.Vhd, "fixed", "subformat=fixed");
            string before = CopyOf(path);
            var identifier = Guid.NewGuid();
            DiskIdentifierOperation.Reset(path, Fmt.Vhd, identifier);
            Assert.Equal(identifier, ImageInspector.Get(path).DiskIdentifier);
            Assert.Equal(new FileInfo(before).Length, new FileInfo(path).Length);
            var compare = Qemu.Compare(before, "vpc", path, "vpc");
            Assert.True(compare.Identical, compare.Output);
            Assert.True(CheckOperation.Run(path, Fmt.Vhd, RepairMode.None).IsValid);
        }

        [Fact]
        public void VmdkWithoutDdbUuidGetsOneAndKeepsItsContentId()
        {
            using var dir = new TempDir();
            string path = MakeImage(dir, Fmt.Vmdk);
            VDiskInfo old = ImageInspector.Get(path);
            Assert.Null(old.DiskIdentifier);

            VDiskInfo changed = DiskIdentifierOperation.Reset(path, Fmt.Vmdk);

            Assert.NotNull(changed.DiskIdentifier);
            Assert.Equal(old.FormatSpecific["cid"], changed.FormatSpecific["cid"]);
            Assert.Equal(Convert.ToInt64(old.FormatSpecific["cid"]), Qemu.Info(path).RootElement.GetProperty("format-specific").GetProperty("data").GetProperty("cid").GetInt64());
        }

        [Theory]
        [InlineData("monolithicFlat")]
        [InlineData("twoGbMaxExtentSparse")]
        [InlineData("streamOptimized")]
        public void VmdkSubformatsGetTheNewUuidInTheirDescriptor(string subformat)
        {
            using var dir = new TempDir();
            string before = MakeImage(dir, Fmt.Raw, "before");
            string path = dir.File("disk.vmdk");
            Qemu.Img("convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=" + subformat, before, path);
            var identifier = Guid.NewGuid();

            DiskIdentifierOperation.Reset(path, Fmt.Vmdk, identifier);

            Assert.Equal(identifier, ImageInspector.Get(path).DiskIdentifier);
            var compare = Qemu.Compare(before, "raw", path, "vmdk");
            Assert.True(compare.Identical, compare.Output);
            var check = Qemu.Check(path, "vmdk");
            Assert.True(check.ExitCode == 0, check.Output);
        }

        [Fact]
        public void VmdkUuidIsWrittenInVmwareByteOrder()
        {
            using var dir = new TempDir();
            string path = MakeImage(dir, Fmt.Vmdk);
            DiskIdentifierOperation.Reset(path, Fmt.Vmdk, new Guid("6000c29b-2e4f-4d1a-8b3c-0123456789ab"));
            string text = Encoding.ASCII.GetString(File.ReadAllBytes(path));
            Assert.Contains("ddb.uuid = \"60 00 c2 9b 2e 4f 4d 1a-8b 3c 01 23 45 67 89 ab\"", text);
        }

        [Fact]
        public void VhdxChildStillOpensAfterItsParentIsReset()
        {
            using var dir = new TempDir();
            MakeImage(dir, Fmt.Vhdx, "parent");
            string child = dir.File("child.vhdx");
            CreateOperation.Create(child, Fmt.Vhdx, new CreateRequest { Backing = new BackingReference("parent.vhdx", Fmt.Vhdx) });
            byte[] content = TestData.ReadAll(child);

            DiskIdentifierOperation.Reset(dir.File("parent.vhdx"), Fmt.Vhdx);

            Assert.Equal(content, TestData.ReadAll(child));
        }

        [Fact]
        public void VmdkChildStillMatchesItsParentAfterAReset()
        {
            using var dir = new TempDir();
            MakeImage(dir, Fmt.Vmdk, "parent");
            string child = dir.File("child.vmdk");
            Qemu.Img("create", "-q", "-f", "vmdk", "-b", "parent.vmdk", "-F", "vmdk", child);
            byte[] content = TestData.ReadAll(child);

            DiskIdentifierOperation.Reset(dir.File("parent.vmdk"), Fmt.Vmdk);

            Assert.Equal(content, TestData.ReadAll(child));
            var compare = Qemu.Compare(dir.File("parent.vmdk"), "vmdk", child, "vmdk");
            Assert.True(compare.Identical, compare.Output);
        }

        [Fact]
        public void VhdChildNoLongerMatchesAResetParent()
        {
            using var dir = new TempDir();
            MakeImage(dir, Fmt.Vhd, "parent");
            string child = dir.File("child.vhd");
            CreateOperation.Create(child, Fmt.Vhd, new CreateRequest { Backing = new BackingReference("parent.vhd", Fmt.Vhd) });

            DiskIdentifierOperation.Reset(dir.File("parent.vhd"), Fmt.Vhd);

            var e = Assert.Throws<ImageParentMismatchException>(() => TestData.ReadAll(child));
            Assert.Contains("unique id", e.Reason);
        }

        [Fact]
        public void VdiChildNoLongerFindsAResetParent()
        {
            using var dir = new TempDir();
            MakeImage(dir, Fmt.Vdi, "parent");
            string child = dir.File("child.vdi");
            CreateOperation.Create(child, Fmt.Vdi, new CreateRequest { Backing = new BackingReference("parent.vdi", Fmt.Vdi) });

            DiskIdentifierOperation.Reset(dir.File("parent.vdi"), Fmt.Vdi);

            Assert.Throws<ImageChainException>(() => TestData.ReadAll(child));
        }

        [Theory]
        [InlineData("qcow2")]
        [InlineData("raw")]
        public void FormatsWithoutADiskIdentifierAreNotSupported(string formatName)
        {
            DiskFormat format = DiskFormat.Parse(formatName);
            using var dir = new TempDir();
            string path = dir.File("disk." + format.ToName());
            Qemu.Img("create", "-q", "-f", format.ToQemuName(), path, "1M");
            byte[] file = File.ReadAllBytes(path);

            var e = Assert.Throws<ImageNotSupportedException>(() => DiskIdentifierOperation.Reset(path, format));

            Assert.Equal($"{format.ToName()} does not support disk identifiers", e.Reason);
            Assert.Equal(file, File.ReadAllBytes(path));
        }
    }
}
