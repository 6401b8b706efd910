using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text.RegularExpressions;
using System.Threading;
using VDiskPS.Formats.Ova;
using Xunit;

namespace VDiskPS.Formats.Tests.Ova
{
    /// <summary>Export-VDiskOva's engine, judged by GNU tar, coreutils, qemu-img, vmdkinfo and python's xml.etree.</summary>
    public class OvaExportTests
    {
        private const long DiskSize = 8L << 20;

        /// <summary>Two sources: a raw image and a qcow2 overlay over a qcow2 base (a chain), made by qemu-img/qemu-io.</summary>
        private static (string Raw, string Overlay) Sources(TempDir dir)
        {
            string raw = OvaFixtures.Raw(dir, "web.raw", DiskSize, 11);
            string baseImage = dir.File("base.qcow2");
            Qemu.Img("create", "-q", "-f", "qcow2", baseImage, "6M");
            Qemu.Io("-f", "qcow2", "-c", "write -P 0x3c 0 1M", baseImage);
            string overlay = dir.File("data.qcow2");
            Qemu.Img("create", "-q", "-f", "qcow2", "-b", baseImage, "-F", "qcow2", overlay, "6M");
            Qemu.Io("-f", "qcow2", "-c", "write -P 0x77 512k 64k", "-c", "write -P 0x12 5M 4k", overlay);
            return (raw, overlay);
        }

        private static OvfVirtualMachine Export(TempDir dir, string destination, params string[] images)
            => OvaExport.Run(new OvaExportRequest { Images = images, Destination = destination, Name = "web01", CpuCount = 4, MemoryMB = 2048 });

        [Fact]
        public void TarListsTheDescriptorFirstThenTheDisksThenTheManifest()
        {
            using var dir = new TempDir();
            var (raw, overlay) = Sources(dir);
            string ova = dir.File("web01.ova");
            Export(dir, ova, raw, overlay);
            string listing = OvaFixtures.Tool("tar", dir.Path, "-tvf", ova);
            var names = listing.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries).Last()).ToList();
            Assert.Equal(new[] { "web01.ovf", "web01-disk1.vmdk", "web01-disk2.vmdk", "web01.mf" }, names);
        }

        [Fact]
        public void ExtractedMembersHaveTheDigestsTheManifestRecords()
        {
            using var dir = new TempDir();
            var (raw, overlay) = Sources(dir);
            string ova = dir.File("web01.ova");
            Export(dir, ova, raw, overlay);
            string folder = OvaFixtures.Extract(dir, ova);
            string manifest = File.ReadAllText(Path.Combine(folder, "web01.mf"));
            var lines = manifest.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.Equal(3, lines.Length);
            foreach (string line in lines)
            {
                Match m = Regex.Match(line, @"^SHA256\((.+)\)= ([0-9a-f]{64})$");
                Assert.True(m.Success, line);
                string sum = OvaFixtures.Tool("sha256sum", folder, m.Groups[1].Value).Split(' ')[0];
                Assert.Equal(sum, m.Groups[2].Value);
            }

            // coreutils also checks the manifest as a whole in its BSD-tag form.
            Assert.Contains("OK", OvaFixtures.Tool("sha256sum", folder, "-c", "web01.mf"));
        }

        [Fact]
        public void ExtractedDisksPassQemuCheckAndCompareWithTheirSources()
        {
            using var dir = new TempDir();
            var (raw, overlay) = Sources(dir);
            string ova = dir.File("web01.ova");
            Export(dir, ova, raw, overlay);
            string folder = OvaFixtures.Extract(dir, ova);
            string[] sources = { raw, overlay };
            string[] formats = { "raw", "qcow2" };
            for (int i = 0; i < 2; i++)
            {
                string vmdk = Path.Combine(folder, $"web01-disk{i + 1}.vmdk");
                var (code, output) = Qemu.Check(vmdk, "vmdk");
                Assert.True(code == 0, output);
                var (identical, compare) = Qemu.Compare(sources[i], formats[i], vmdk, "vmdk");
                Assert.True(identical, compare);
                using var info = Qemu.Info(vmdk, "vmdk");
                Assert.Equal("streamOptimized", info.RootElement.GetProperty("format-specific").GetProperty("data").GetProperty("create-type").GetString());
            }
        }

        [Fact]
        public void VmdkinfoReadsTheExtractedDiskAsStreamOptimized()
        {
            using var dir = new TempDir();
            var (raw, _) = Sources(dir);
            string ova = dir.File("web01.ova");
            Export(dir, ova, raw);
            string folder = OvaFixtures.Extract(dir, ova);
            string output = OvaFixtures.Tool("vmdkinfo", folder, "web01-disk1.vmdk");
            Assert.Contains("Stream optimized", output);
            Assert.Contains($"({DiskSize} bytes)", output);
        }

        [Fact]
        public void TheDescriptorKeepsTheOvfEnvelopeRules()
        {
            using var dir = new TempDir();
            var (raw, overlay) = Sources(dir);
            string ova = dir.File("web01.ova");
            Export(dir, ova, raw, overlay);
            string folder = OvaFixtures.Extract(dir, ova);
            string script = Path.Combine(AppContext.BaseDirectory, "Ova", "check_ovf.py");
            var (code, output) = Qemu.Run(OvaFixtures.PythonPath, new[] { script, Path.Combine(folder, "web01.ovf") });
            Assert.True(code == 0, output);
        }

        [Theory]
        [InlineData(OvfControllerType.Scsi, "SCSI", "lsilogic")]
        [InlineData(OvfControllerType.Sata, "SATA", "vmware.sata.ahci")]
        [InlineData(OvfControllerType.Ide, "IDE", null)]
        public void TheDescriptorDescribesTheVirtualMachineAsAsked(OvfControllerType controller, string name, string model)
        {
            using var dir = new TempDir();
            var (raw, overlay) = Sources(dir);
            string ova = dir.File("vm.ova");
            OvfVirtualMachine vm = OvaExport.Run(new OvaExportRequest { Images = new[] { raw, overlay }, Destination = ova, Name = "app", CpuCount = 3, MemoryMB = 3072, Firmware = OvfFirmware.Efi, OSType = "Ubuntu64", Controller = controller });
            Assert.Equal(("app", 3, 3072L, "efi", "ubuntu64Guest", 94), (vm.Name, vm.CpuCount.Value, vm.MemoryMB.Value, vm.Firmware, vm.OSType, vm.OSId.Value));
            Assert.Equal(new[] { DiskSize, 6L << 20 }, vm.Disks.Select(d => d.Capacity));
            Assert.All(vm.Disks, d => Assert.Equal((name, model), (d.Controller, d.ControllerModel)));
            Assert.Equal(new[] { 0, 1 }, vm.Disks.Select(d => d.Address.Value));

            // File sizes in References are the members' sizes as GNU tar lists them.
            string listing = OvaFixtures.Tool("tar", dir.Path, "-tvf", ova);
            foreach (OvfDisk disk in vm.Disks)
            {
                Assert.Matches($@"\s{disk.FileSize}\s.*{Regex.Escape(disk.File)}", listing);
            }
        }

        [Fact]
        public void AMemberOver8GiBGetsABase256SizeThatPythonsTarfileReads()
        {
            using var dir = new TempDir();
            long size = (9L << 30) + 12345;
            string header = dir.File("header.bin");
            File.WriteAllBytes(header, TarHeader.Build("big.vmdk", size, DateTimeOffset.UnixEpoch));
            string code = "import sys,tarfile; t=tarfile.TarInfo.frombuf(open(sys.argv[1],'rb').read(512),'utf-8','surrogateescape'); print(t.name, t.size)";
            var (exit, output) = Qemu.Run(OvaFixtures.PythonPath, new[] { "-c", code, header });
            Assert.True(exit == 0, output);
            Assert.Equal($"big.vmdk {size}", output.Trim());
        }

        [Fact]
        public void TheFolderLayoutWritesTheDescriptorDisksAndManifestBesideEachOther()
        {
            using var dir = new TempDir();
            var (raw, overlay) = Sources(dir);
            string outFolder = dir.File("out");
            Directory.CreateDirectory(outFolder);
            OvfVirtualMachine vm = OvaExport.Run(new OvaExportRequest { Images = new[] { raw, overlay }, Destination = outFolder, Name = "web01", Format = OvaPackageFormat.Ovf });
            Assert.Equal(Path.Combine(outFolder, "web01.ovf"), vm.Path);
            Assert.Equal(new[] { "web01-disk1.vmdk", "web01-disk2.vmdk", "web01.mf", "web01.ovf" }, Directory.GetFiles(outFolder).Select(Path.GetFileName).OrderBy(n => n, StringComparer.Ordinal));
            Assert.Contains("OK", OvaFixtures.Tool("sha256sum", outFolder, "-c", "web01.mf"));
            var (identical, compare) = Qemu.Compare(overlay, "qcow2", Path.Combine(outFolder, "web01-disk2.vmdk"), "vmdk");
            Assert.True(identical, compare);
        }

        [Fact]
        public void ACancelledExportLeavesNothingBehind()
        {
            using var dir = new TempDir();
            var (raw, overlay) = Sources(dir);
            string outFolder = dir.File("out");
            Directory.CreateDirectory(outFolder);
            using var cancel = new CancellationTokenSource();
            var progress = new CancelAfterFirstReport(cancel);
            Assert.ThrowsAny<OperationCanceledException>(() => OvaExport.Run(new OvaExportRequest { Images = new[] { raw, overlay }, Destination = Path.Combine(outFolder, "x.ova") }, progress, cancel.Token));
            Assert.Empty(Directory.GetFileSystemEntries(outFolder));
        }

        [Fact]
        public void AMissingSourceFailsBeforeAnythingIsWritten()
        {
            using var dir = new TempDir();
            var (raw, _) = Sources(dir);
            string outFolder = dir.File("out");
            Directory.CreateDirectory(outFolder);
            Assert.Throws<ImageIOException>(() => OvaExport.Run(new OvaExportRequest { Images = new[] { raw, dir.File("missing.qcow2") }, Destination = Path.Combine(outFolder, "x.ova") }));
            Assert.Empty(Directory.GetFileSystemEntries(outFolder));
        }

        [Fact]
        public void AnExistingPackageIsKeptWithoutOverwrite()
        {
            using var dir = new TempDir();
            var (raw, _) = Sources(dir);
            string ova = dir.File("x.ova");
            File.WriteAllText(ova, "keep");
            Assert.Throws<ImageIOException>(() => OvaExport.Run(new OvaExportRequest { Images = new[] { raw }, Destination = ova }));
            Assert.Equal("keep", File.ReadAllText(ova));
        }

        [Fact]
        public void MoreDisksThanTheControllerTakesAreRefused()
        {
            using var dir = new TempDir();
            var (raw, overlay) = Sources(dir);
            var e = Assert.Throws<ImageOptionException>(() => OvaExport.Run(new OvaExportRequest { Images = new[] { raw, overlay, raw }, Destination = dir.File("x.ova"), Controller = OvfControllerType.Ide }));
            Assert.Contains("at most 2", e.Message);
        }

        [Fact]
        public void AnUnknownGuestIsRefusedWithTheKnownNames()
        {
            using var dir = new TempDir();
            var (raw, _) = Sources(dir);
            var e = Assert.Throws<ImageOptionException>(() => OvaExport.Run(new OvaExportRequest { Images = new[] { raw }, Destination = dir.File("x.ova"), OSType = "Plan9" }));
            Assert.Contains("Ubuntu64", e.Message);
        }

        [Fact]
        public void AWriteBehindWhatAMemberHoldsIsRefused()
        {
            using var dir = new TempDir();
            using HostFile output = HostFile.Create(dir.File("out.bin"), false);
            using var member = new MemberOutputFile(output, 512, "out.bin/m", "SHA256");
            member.WriteAt(0, new byte[1024]);
            Assert.Throws<ImageNotSupportedException>(() => member.WriteAt(512, new byte[16]));
            Assert.Throws<ImageNotSupportedException>(() => member.SetLength(100));
        }

        private sealed class CancelAfterFirstReport : IProgress<OperationProgress>
        {
            private readonly CancellationTokenSource _cancel;

            public CancelAfterFirstReport(CancellationTokenSource cancel) => _cancel = cancel;

            public void Report(OperationProgress value) => _cancel.Cancel();
        }
    }
}
