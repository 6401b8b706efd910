using System;
using System.IO;
using Xunit;

namespace VDiskPS.Formats.Tests.Crash
{
    /// <summary>
    /// A conversion onto a volume that fills up fails with an IOError naming the destination and "no
    /// space left on device", and leaves no file there (temporary ones included). The volume is a small
    /// tmpfs, so the full disk is the kernel's own ENOSPC (the tests run as root, as the suite does).
    /// </summary>
    public sealed class DiskFullTests : IDisposable
    {
        private readonly TempDir _dir = new TempDir();
        private readonly SmallVolume _volume = new SmallVolume("8m");
        private readonly string _full;

        public DiskFullTests()
        {
            _full = _volume.Path;
        }

        public void Dispose()
        {
            _volume.Dispose();
            _dir.Dispose();
        }

        [Theory]
        [MemberData(nameof(OutputTarget.Names), MemberType = typeof(OutputTarget))]
        public void ConvertOntoAFullVolumeFailsNamingTheFileAndLeavesNothing(string name)
        {
            OutputTarget target = OutputTarget.Named(name);
            string source = OutputTarget.RandomRaw(_dir.File("src.raw"), 16, 1);
            string destination = Path.Combine(_full, "dst" + target.Extension);

            var e = Assert.Throws<ImageIOException>(() => ConvertOperation.Run(source, destination, target.Options()));

            Assert.Equal(destination, e.FilePath);
            Assert.Contains("no space left on device", e.Message);
            Assert.Empty(Directory.GetFileSystemEntries(_full));
        }

        [Fact]
        public void FullyPreallocatedCreateOnAFullVolumeLeavesNothing()
        {
            string destination = Path.Combine(_full, "big.raw");
            var e = Assert.Throws<ImageIOException>(() => CreateOperation.Create(destination, Fmt.Raw, new CreateRequest { Size = 16L << 20, Preallocation = Preallocation.Full }));
            Assert.Equal(destination, e.FilePath);
            Assert.Contains("no space left on device", e.Message);
            Assert.Empty(Directory.GetFileSystemEntries(_full));
        }
    }
}
