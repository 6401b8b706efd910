using Xunit;

namespace VDiskPS.Formats.Tests.Operations
{
    public class MaintenanceOperationTests
    {
        private static string RawImage(TempDir dir)
        {
            string path = dir.File("a.raw");
            CreateOperation.Create(path, Fmt.Raw, new CreateRequest { Size = 1 << 20 });
            return path;
        }

        [Fact]
        public void RawChecksValidWithAnExplanation()
        {
            using var dir = new TempDir();
            var result = CheckOperation.Run(RawImage(dir), null, RepairMode.None);
            Assert.True(result.IsValid);
            Assert.Equal("raw", result.Format);
            Assert.Contains(result.Messages, m => m.Contains("no metadata to check"));
        }

        [Fact]
        public void RepairingRawIsNotSupported()
        {
            using var dir = new TempDir();
            var e = Assert.Throws<ImageNotSupportedException>(() => CheckOperation.Run(RawImage(dir), null, RepairMode.Leaks));
            Assert.Equal("raw does not support repair", e.Reason);
        }

        [Fact]
        public void SnapshotsOnRawAreNotSupported()
        {
            using var dir = new TempDir();
            var e = Assert.Throws<ImageNotSupportedException>(() => SnapshotOperations.List(RawImage(dir)));
            Assert.Equal("raw does not support internal snapshots", e.Reason);
        }

        [Fact]
        public void BitmapsOnRawAreNotSupported()
        {
            using var dir = new TempDir();
            var e = Assert.Throws<ImageNotSupportedException>(() => BitmapOperations.List(RawImage(dir)));
            Assert.Equal("raw does not support persistent bitmaps", e.Reason);
        }

        [Fact]
        public void SnapshotNeedsAName()
        {
            using var dir = new TempDir();
            Assert.Throws<ImageOptionException>(() => SnapshotOperations.Create(RawImage(dir), " "));
        }
    }
}
