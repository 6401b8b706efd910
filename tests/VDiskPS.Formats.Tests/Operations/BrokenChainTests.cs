using System.IO;
using System.Linq;
using Xunit;

namespace VDiskPS.Formats.Tests.Operations
{
    /// <summary>
    /// Parent paths recorded in the form qemu follows, broken chains reported by the check, and children
    /// whose parent changed identity re-pinned by a rebase. qemu-img and qemu-io judge.
    /// </summary>
    public class BrokenChainTests
    {
        [Fact]
        public void ARelativeParentIsRecordedRelativeToTheChildsFolderWithSlashes()
        {
            using var dir = new TempDir();
            string recorded = PathPlanner.RecordedParentPath(dir.File("ov/a.qcow2"), dir.File("base/b.qcow2"), relative: true);
            Assert.Equal("../base/b.qcow2", recorded);
        }

        [Fact]
        public void AnAbsoluteParentStaysAbsolute()
        {
            using var dir = new TempDir();
            Assert.Equal(dir.File("base/b.qcow2"), PathPlanner.RecordedParentPath(dir.File("ov/a.qcow2"), dir.File("base/b.qcow2"), relative: false));
        }

        [Theory]
        [InlineData("qcow2", "qcow2")]
        [InlineData("vmdk", "vmdk")]
        public void BackslashesInARecordedParentBecomeSlashesThatQemuFollows(string formatName, string qemuName)
        {
            DiskFormat format = DiskFormat.Parse(formatName);
            using var dir = new TempDir();
            Directory.CreateDirectory(dir.File("base"));
            Directory.CreateDirectory(dir.File("ov"));
            string ext = "." + qemuName;
            Qemu.Img("create", "-q", "-f", qemuName, dir.File("base/b" + ext), "4M");
            Qemu.Io("-c", "write -P 0x61 0 64k", dir.File("base/b" + ext));
            CreateOperation.Create(dir.File("ov/a" + ext), format, new CreateRequest { Backing = new BackingReference("..\\base\\b" + ext, null) });
            Qemu.Img("info", "--backing-chain", dir.File("ov/a" + ext));
            Assert.True(Qemu.Compare(dir.File("ov/a" + ext), qemuName, dir.File("base/b" + ext), qemuName).Identical);
        }

        [Fact]
        public void ARebaseRecordsSlashes()
        {
            using var dir = new TempDir();
            Directory.CreateDirectory(dir.File("base"));
            Directory.CreateDirectory(dir.File("ov"));
            Qemu.Img("create", "-q", "-f", "qcow2", dir.File("base/b.qcow2"), "4M");
            Qemu.Img("create", "-q", "-f", "qcow2", dir.File("ov/a.qcow2"), "4M");
            RebaseOperation.Run(dir.File("ov/a.qcow2"), new RebaseOptions { NewParentPath = "..\\base\\b.qcow2" });
            Assert.Contains("backing file: ../base/b.qcow2", Qemu.Img("info", "--backing-chain", dir.File("ov/a.qcow2")));
        }

        [Fact]
        public void AMissingBackingFileFailsTheCheckAsInQemuImg()
        {
            using var dir = new TempDir();
            Qemu.Img("create", "-q", "-f", "qcow2", dir.File("base.qcow2"), "4M");
            Qemu.Img("create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", dir.File("top.qcow2"));
            File.Delete(dir.File("base.qcow2"));
            Assert.Equal(1, Qemu.Check(dir.File("top.qcow2"), "qcow2").ExitCode);

            VDiskCheckResult result = CheckOperation.Run(dir.File("top.qcow2"), null, RepairMode.None);
            Assert.False(result.IsValid);
            Assert.Equal(1, result.CheckErrors);
            Assert.False(result.ParentIdMismatch);
            Assert.Contains(result.Messages, m => m.Contains("does not exist"));
        }

        [Fact]
        public void AnIntactChainPassesTheCheck()
        {
            using var dir = new TempDir();
            Qemu.Img("create", "-q", "-f", "qcow2", dir.File("base.qcow2"), "4M");
            Qemu.Img("create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", dir.File("top.qcow2"));
            Assert.Equal(0, Qemu.Check(dir.File("top.qcow2"), "qcow2").ExitCode);
            Assert.True(CheckOperation.Run(dir.File("top.qcow2"), null, RepairMode.None).IsValid);
        }

        [Fact]
        public void AVmdkWhoseParentChangedFailsTheCheckAndARebaseIgnoringTheMismatchRepinsIt()
        {
            using var dir = new TempDir();
            Qemu.Img("create", "-q", "-f", "vmdk", dir.File("base.vmdk"), "4M");
            Qemu.Img("create", "-q", "-f", "vmdk", "-b", "base.vmdk", "-F", "vmdk", dir.File("child.vmdk"));
            Qemu.Io("-c", "write -P 0x11 0 4k", dir.File("base.vmdk"));
            Assert.False(Qemu.Compare(dir.File("child.vmdk"), "vmdk", dir.File("base.vmdk"), "vmdk").Identical);

            VDiskCheckResult check = CheckOperation.Run(dir.File("child.vmdk"), null, RepairMode.None);
            Assert.False(check.IsValid);
            Assert.True(check.ParentIdMismatch);
            Assert.True(CheckOperation.Run(dir.File("child.vmdk"), null, RepairMode.None, ignoreParentMismatch: true).IsValid);
            using (var chain = ImageChain.Open(dir.File("child.vmdk")))
            {
                var e = Assert.Throws<ImageParentMismatchException>(() => chain.Top.GetBlockStatus(0, 1));
                Assert.Equal(dir.File("base.vmdk"), e.ParentPath);
                Assert.DoesNotContain("Ignore", e.Message);
            }

            Assert.Throws<ImageParentMismatchException>(() => RebaseOperation.Run(dir.File("child.vmdk"), new RebaseOptions { NewParentPath = "base.vmdk" }));
            RebaseOperation.Run(dir.File("child.vmdk"), new RebaseOptions { NewParentPath = "base.vmdk", IgnoreParentMismatch = true });
            Assert.True(Qemu.Compare(dir.File("child.vmdk"), "vmdk", dir.File("base.vmdk"), "vmdk").Identical);
            Assert.True(CheckOperation.Run(dir.File("child.vmdk"), null, RepairMode.None).IsValid);
        }

        [Fact]
        public void AVhdWhoseParentChangedIsRepinnedToItsCurrentUniqueId()
        {
            using var dir = new TempDir();
            Qemu.Img("create", "-q", "-f", "vpc", dir.File("base.vhd"), "4M");
            CreateOperation.Create(dir.File("child.vhd"), Fmt.Vhd, new CreateRequest { Backing = new BackingReference("base.vhd", null) });
            // Give the base a new identity, as a copy restored over it would have.
            DiskIdentifierOperation.Reset(dir.File("base.vhd"), Fmt.Vhd);
            Assert.Throws<ImageParentMismatchException>(() => ImageInspector.Get(dir.File("child.vhd")));
            Assert.NotEqual(VhdiField(dir.File("base.vhd"), "Identifier"), VhdiField(dir.File("child.vhd"), "Parent identifier"));

            RebaseOperation.Run(dir.File("child.vhd"), new RebaseOptions { NewParentPath = "base.vhd", IgnoreParentMismatch = true });
            Assert.Equal(VhdiField(dir.File("base.vhd"), "Identifier"), VhdiField(dir.File("child.vhd"), "Parent identifier"));
            Assert.True(CheckOperation.Run(dir.File("child.vhd"), null, RepairMode.None).IsValid);
        }

        [Fact]
        public void AVdiWhoseParentGotANewUuidFailsTheCheckAndAPointerOnlyRebaseRepinsIt()
        {
            // qemu-img reads no differencing VDI: the engine's reads and the header's UUID fields judge.
            using var dir = new TempDir();
            Qemu.Img("create", "-q", "-f", "vdi", dir.File("base.vdi"), "4M");
            Qemu.Io("-c", "write -P 0x77 0 64k", dir.File("base.vdi"));
            CreateOperation.Create(dir.File("child.vdi"), Fmt.Vdi, new CreateRequest { Backing = new BackingReference("base.vdi", null) });
            DiskIdentifierOperation.Reset(dir.File("base.vdi"), Fmt.Vdi);
            Assert.Throws<ImageChainException>(() => ImageChain.Open(dir.File("child.vdi")));
            Assert.False(CheckOperation.Run(dir.File("child.vdi"), null, RepairMode.None).IsValid);

            RebaseOperation.Run(dir.File("child.vdi"), new RebaseOptions { NewParentPath = "base.vdi", Unsafe = true });
            Assert.True(CheckOperation.Run(dir.File("child.vdi"), null, RepairMode.None).IsValid);
            Assert.Equal(TestData.ReadAll(dir.File("base.vdi")), TestData.ReadAll(dir.File("child.vdi")));
        }

        private static string VhdiField(string path, string name)
        {
            string line = Qemu.Run("vhdiinfo", new[] { path }, expectSuccess: true).Output.Split('\n')
                .First(l => l.TrimStart().StartsWith(name + "\t", System.StringComparison.Ordinal) || l.TrimStart().StartsWith(name + " ", System.StringComparison.Ordinal));
            return line.Substring(line.IndexOf(':') + 1).Trim();
        }
    }
}
