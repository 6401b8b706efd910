using System;
using System.IO;
using System.Linq;
using System.Text;
using VDiskPS.Formats.Ova;
using Xunit;

namespace VDiskPS.Formats.Tests.Ova
{
    /// <summary>Reading packages other tools made (GNU tar, qemu-img, coreutils): disks described and converted straight out of the archive.</summary>
    public class OvaReadTests
    {
        private const long DiskSize = 8L << 20;

        [Fact]
        public void EachDiskOfAForeignOvaIsDescribedWithItsMemberAndDiskId()
        {
            using var dir = new TempDir();
            string a = OvaFixtures.Raw(dir, "a.raw", DiskSize, 1);
            string b = OvaFixtures.Raw(dir, "b.raw", 2 * DiskSize, 5);
            string ova = OvaFixtures.ForeignOva(dir, new[] { a, b });
            using var package = OvfPackage.Open(ova);
            var infos = package.DescribeDisks();
            Assert.Equal(new[] { ("disk1.vmdk", "vmdisk1"), ("disk2.vmdk", "vmdisk2") }, infos.Select(i => (i.Member, i.DiskId)));
            Assert.All(infos, i => Assert.Equal(ova, i.Path));
            Assert.All(infos, i => Assert.Equal("streamOptimized", i.Subformat));

            // qemu-img reads the same virtual sizes from the files tar was given.
            using var qemu = Qemu.Info(Path.Combine(dir.Path, "appliance-parts", "disk2.vmdk"), "vmdk");
            Assert.Equal(qemu.RootElement.GetProperty("virtual-size").GetInt64(), infos[1].Size);
            Assert.Equal(new FileInfo(Path.Combine(dir.Path, "appliance-parts", "disk2.vmdk")).Length, infos[1].FileSize);
        }

        [Theory]
        [InlineData("sha256sum", false)]
        [InlineData("sha1sum", false)]
        [InlineData("sha256sum", true)]
        public void ADiskConvertsStraightOutOfAForeignOva(string hashTool, bool withCert)
        {
            using var dir = new TempDir();
            string a = OvaFixtures.Raw(dir, "a.raw", DiskSize, 1);
            string ova = OvaFixtures.ForeignOva(dir, new[] { a }, hashTool, withCert);
            string vhdx = dir.File("a.vhdx");
            using (var package = OvfPackage.Open(ova))
            {
                Assert.True(package.HasManifest);
                package.Convert(null, vhdx, new ConvertOptions { TargetFormat = Fmt.Vhdx });
            }

            var (identical, output) = Qemu.Compare(a, "raw", vhdx, "vhdx");
            Assert.True(identical, output);
        }

        [Fact]
        public void TheMemberToConvertIsChosenByFileOrDiskId()
        {
            using var dir = new TempDir();
            string a = OvaFixtures.Raw(dir, "a.raw", DiskSize, 1);
            string b = OvaFixtures.Raw(dir, "b.raw", DiskSize, 9);
            string ova = OvaFixtures.ForeignOva(dir, new[] { a, b });
            using var package = OvfPackage.Open(ova);
            package.Convert("disk2.vmdk", dir.File("b.qcow2"), new ConvertOptions { TargetFormat = Fmt.Qcow2 });
            package.Convert("vmdisk1", dir.File("a.qcow2"), new ConvertOptions { TargetFormat = Fmt.Qcow2 });
            Assert.True(Qemu.Compare(b, "raw", dir.File("b.qcow2"), "qcow2").Identical);
            Assert.True(Qemu.Compare(a, "raw", dir.File("a.qcow2"), "qcow2").Identical);
        }

        [Fact]
        public void SeveralDisksWithoutAChoiceIsAnErrorListingThem()
        {
            using var dir = new TempDir();
            string a = OvaFixtures.Raw(dir, "a.raw", DiskSize, 1);
            string ova = OvaFixtures.ForeignOva(dir, new[] { a, a });
            using var package = OvfPackage.Open(ova);
            var e = Assert.Throws<ImageOptionException>(() => package.Convert(null, dir.File("x.raw"), new ConvertOptions()));
            Assert.Contains("disk1.vmdk, disk2.vmdk", e.Message);
            Assert.False(File.Exists(dir.File("x.raw")));
        }

        [Fact]
        public void AMemberThatDoesNotMatchTheManifestIsCorruptAndLeavesNoOutput()
        {
            using var dir = new TempDir();
            string a = OvaFixtures.Raw(dir, "a.raw", DiskSize, 1);
            string ova = OvaFixtures.ForeignOva(dir, new[] { a });
            string parts = Path.Combine(dir.Path, "appliance-parts");

            // One byte changed after the manifest was taken, in the zero padding after the first grain's
            // compressed data: every reader skips it (qemu-img check stays clean), only the digest sees it.
            string vmdk = Path.Combine(parts, "disk1.vmdk");
            CorruptPadding(vmdk);
            OvaFixtures.Tool("tar", parts, "--format=ustar", "-cf", ova, "appliance.ovf", "disk1.vmdk", "appliance.mf");
            Assert.Equal(0, Qemu.Check(vmdk, "vmdk").ExitCode);

            string output = dir.File("a.vhdx");
            using var package = OvfPackage.Open(ova);
            var e = Assert.Throws<ImageCorruptException>(() => package.Convert(null, output, new ConvertOptions { TargetFormat = Fmt.Vhdx }));
            Assert.Contains("disk1.vmdk", e.Message);
            Assert.Equal("CorruptImage", e.ErrorId);
            Assert.Empty(Directory.GetFiles(dir.Path, "a.vhdx*").Concat(Directory.GetFiles(dir.Path, ".a.vhdx*")));
        }

        [Fact]
        public void ADescriptorThatDoesNotMatchTheManifestIsRefusedOnOpening()
        {
            using var dir = new TempDir();
            string a = OvaFixtures.Raw(dir, "a.raw", DiskSize, 1);
            string ova = OvaFixtures.ForeignOva(dir, new[] { a });
            string parts = Path.Combine(dir.Path, "appliance-parts");
            File.WriteAllText(Path.Combine(parts, "appliance.ovf"), File.ReadAllText(Path.Combine(parts, "appliance.ovf")).Replace("<rasd:VirtualQuantity>2<", "<rasd:VirtualQuantity>8<"));
            OvaFixtures.Tool("tar", parts, "--format=ustar", "-cf", ova, "appliance.ovf", "disk1.vmdk", "appliance.mf");
            var e = Assert.Throws<ImageCorruptException>(() => OvfPackage.Open(ova));
            Assert.Contains("appliance.ovf", e.Message);
        }

        [Fact]
        public void AnOvfWithItsFilesBesideItWorksLikeTheArchive()
        {
            using var dir = new TempDir();
            string a = OvaFixtures.Raw(dir, "a.raw", DiskSize, 1);
            string parts = Path.Combine(dir.Path, "folder");
            Directory.CreateDirectory(parts);
            OvaFixtures.ForeignParts(parts, new[] { a }, "sha256sum", false, "vm");
            using var package = OvfPackage.Open(Path.Combine(parts, "vm.ovf"));
            Assert.Equal("disk1.vmdk", package.DescribeDisks().Single().Member);
            package.Convert(null, dir.File("a.vhd"), new ConvertOptions { TargetFormat = Fmt.Vhd });
            Assert.True(Qemu.Compare(a, "raw", dir.File("a.vhd"), "vpc").Identical);
        }

        [Fact]
        public void TheVirtualMachineIsReadFromAForeignDescriptor()
        {
            using var dir = new TempDir();
            string a = OvaFixtures.Raw(dir, "a.raw", DiskSize, 1);
            string ova = OvaFixtures.ForeignOva(dir, new[] { a, a });
            using var package = OvfPackage.Open(ova);
            OvfVirtualMachine vm = package.Machine;
            Assert.Equal(("appliance", 2, 4096L, "efi", "ubuntu64Guest", "vmx-14"), (vm.Name, vm.CpuCount.Value, vm.MemoryMB.Value, vm.Firmware, vm.OSType, vm.HardwareFamily));
            Assert.Equal(new[] { "VM Network" }, vm.Networks);
            Assert.All(vm.Disks, d => Assert.Equal(("SATA", "vmware.sata.ahci", DiskSize), (d.Controller, d.ControllerModel, d.Capacity)));
            Assert.Equal(new[] { 0, 1 }, vm.Disks.Select(d => d.Address.Value));
        }

        [Fact]
        public void APackageIsNotOpenedAsADiskImage()
        {
            using var dir = new TempDir();
            string a = OvaFixtures.Raw(dir, "a.raw", DiskSize, 1);
            string ova = OvaFixtures.ForeignOva(dir, new[] { a });
            var e = Assert.Throws<ImageNotSupportedException>(() => FormatRegistry.Default.Open(ova, null, new OpenOptions()));
            Assert.Contains("OVF package", e.Message);

            // By content too: a tar whose first member is a descriptor, whatever its name.
            string renamed = dir.File("appliance.bin");
            File.Copy(ova, renamed);
            Assert.Throws<ImageNotSupportedException>(() => FormatRegistry.Default.Open(renamed, null, new OpenOptions()));
        }

        [Fact]
        public void ATruncatedArchiveIsCorruptNamingTheMember()
        {
            using var dir = new TempDir();
            string a = OvaFixtures.Raw(dir, "a.raw", DiskSize, 1);
            string ova = OvaFixtures.ForeignOva(dir, new[] { a });
            using (var file = new FileStream(ova, FileMode.Open))
            {
                file.SetLength(5000);
            }

            var e = Assert.Throws<ImageCorruptException>(() => OvfPackage.Open(ova));
            Assert.Contains("disk1.vmdk", e.Message);
        }

        [Fact]
        public void ABadHeaderChecksumIsCorrupt()
        {
            using var dir = new TempDir();
            string a = OvaFixtures.Raw(dir, "a.raw", DiskSize, 1);
            string ova = OvaFixtures.ForeignOva(dir, new[] { a });
            using (var file = new FileStream(ova, FileMode.Open))
            {
                file.Position = 0;
                file.WriteByte((byte)'X');
            }

            var e = Assert.Throws<ImageCorruptException>(() => OvfPackage.Open(ova));
            Assert.Equal("tar header checksum", e.Field);
        }

        [Fact]
        public void AHugeDescriptorIsRefusedWithoutReadingIt()
        {
            using var dir = new TempDir();
            string parts = Path.Combine(dir.Path, "parts");
            Directory.CreateDirectory(parts);
            using (var file = File.Create(Path.Combine(parts, "big.ovf")))
            {
                file.SetLength(OvfDescriptor.MaxSize + 1);
            }

            string ova = dir.File("big.ova");
            OvaFixtures.Tool("tar", parts, "--format=ustar", "-cf", ova, "big.ovf");
            var e = Assert.Throws<ImageCorruptException>(() => OvfPackage.Open(ova));
            Assert.Contains("at most", e.Message);
        }

        [Fact]
        public void PaxAndGnuLongNamesAreRead()
        {
            using var dir = new TempDir();
            string a = OvaFixtures.Raw(dir, "a.raw", DiskSize, 1);
            string parts = Path.Combine(dir.Path, "parts");
            Directory.CreateDirectory(parts);
            var files = OvaFixtures.ForeignParts(parts, new[] { a }, "sha256sum", false, "vm");
            foreach (string format in new[] { "pax", "gnu" })
            {
                string ova = dir.File(format + ".ova");
                OvaFixtures.Tool("tar", parts, new[] { "--format=" + format, "-cf", ova }.Concat(files).ToArray());
                using var package = OvfPackage.Open(ova);
                Assert.Equal(files, package.Files);
            }
        }

        /// <summary>Sets a byte of the zero padding after the first grain's compressed data, inside its last sector.</summary>
        internal static void CorruptPadding(string vmdk)
        {
            byte[] bytes = File.ReadAllBytes(vmdk);

            // The first grain marker (lba, size) follows the header's overhead (VMDK 5.0 SparseExtentHeader.overHead at 64).
            long overhead = BitConverter.ToInt64(bytes, 64) * 512;
            int size = BitConverter.ToInt32(bytes, (int)overhead + 8);
            long end = overhead + 12 + size;
            long sectorEnd = (end + 511) / 512 * 512;
            Assert.True(sectorEnd > end, "the grain fills its last sector; no padding to change");
            bytes[sectorEnd - 1] ^= 0x5a;
            File.WriteAllBytes(vmdk, bytes);
        }
    }
}
