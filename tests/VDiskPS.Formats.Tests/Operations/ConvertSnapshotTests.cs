using Xunit;

namespace VDiskPS.Formats.Tests.Operations
{
    /// <summary>Convert-VDisk -Snapshot: the disk as it was in an internal snapshot, as qemu-img convert -l shows it.</summary>
    public class ConvertSnapshotTests
    {
        private static string ImageWithSnapshot(TempDir dir)
        {
            string image = dir.File("vm.qcow2");
            Qemu.Img("create", "-q", "-f", "qcow2", image, "8M");
            Qemu.Io("-f", "qcow2", "-c", "write -P 0x41 0 1M", "-c", "write -P 0x42 5M 64k", image);
            Qemu.Img("snapshot", "-c", "before", image);
            Qemu.Io("-f", "qcow2", "-c", "write -P 0x43 512k 1M", "-c", "write -z 5M 64k", image);
            return image;
        }

        [Theory]
        [InlineData("before")]
        [InlineData("1")]
        public void ConvertsTheDiskAsItWasInTheSnapshot(string snapshot)
        {
            using var dir = new TempDir();
            string image = ImageWithSnapshot(dir);
            string expected = dir.File("expected.raw");
            Qemu.Img("convert", "-f", "qcow2", "-O", "raw", "-l", "snapshot.name=before", image, expected);

            string actual = dir.File("actual.vhdx");
            ConvertOperation.Run(image, actual, new ConvertOptions { TargetFormat = Fmt.Vhdx, Snapshot = snapshot });
            var (identical, output) = Qemu.Compare(expected, "raw", actual, "vhdx");
            Assert.True(identical, output);
        }

        [Fact]
        public void TheCurrentDiskIsUnchanged()
        {
            using var dir = new TempDir();
            string image = ImageWithSnapshot(dir);
            byte[] before = Qemu.ToRawBytes(image, "qcow2", dir.Path);
            ConvertOperation.Run(image, dir.File("snap.raw"), new ConvertOptions { TargetFormat = Fmt.Raw, Snapshot = "before" });
            Assert.Equal(before, Qemu.ToRawBytes(image, "qcow2", dir.Path));
            Assert.Equal(0, Qemu.Check(image, "qcow2").ExitCode);
        }

        [Fact]
        public void AnUnknownSnapshotIsAnErrorAndNothingIsCreated()
        {
            using var dir = new TempDir();
            string image = ImageWithSnapshot(dir);
            Assert.ThrowsAny<ImageException>(() => ConvertOperation.Run(image, dir.File("none.raw"), new ConvertOptions { TargetFormat = Fmt.Raw, Snapshot = "nope" }));
            Assert.False(System.IO.File.Exists(dir.File("none.raw")));
        }

        [Fact]
        public void ASourceWithoutSnapshotsSaysSo()
        {
            using var dir = new TempDir();
            string raw = dir.File("plain.raw");
            CreateOperation.Create(raw, Fmt.Raw, new CreateRequest { Size = 1 << 20 });
            var e = Assert.Throws<ImageNotSupportedException>(() => ConvertOperation.Run(raw, dir.File("x.qcow2"), new ConvertOptions { TargetFormat = Fmt.Qcow2, Snapshot = "s" }));
            Assert.Equal("raw does not support internal snapshots", e.Reason);
        }
    }
}
