using System;
using System.IO;
using Xunit;

namespace VDiskPS.Formats.Tests.Raw
{
    public class RawTests
    {
        [Fact]
        public void CreateIsSparseByDefault()
        {
            using var dir = new TempDir();
            string path = dir.File("a.raw");
            CreateOperation.Create(path, Fmt.Raw, new CreateRequest { Size = 64L << 20 });
            Assert.Equal(64L << 20, new FileInfo(path).Length);
            using var layer = FormatRegistry.Default.Open(path, null, new OpenOptions());
            var status = layer.GetBlockStatus(0, layer.Size);
            Assert.Equal(ExtentKind.Zero, status.Kind);
            Assert.Equal(layer.Size, status.Length);
        }

        [Fact]
        public void WrittenDataReadsBackAndShowsAsData()
        {
            using var dir = new TempDir();
            string path = dir.File("a.img");
            CreateOperation.Create(path, Fmt.Raw, new CreateRequest { Size = 16L << 20 });
            byte[] data = TestData.Pattern(1 << 20, 1);
            using (var layer = FormatRegistry.Default.Open(path, null, new OpenOptions { Writable = true }))
            {
                layer.Write(4L << 20, data);
            }

            using (var layer = FormatRegistry.Default.Open(path, null, new OpenOptions()))
            {
                var buffer = new byte[data.Length];
                layer.Read(4L << 20, buffer);
                Assert.Equal(data, buffer);
                var status = layer.GetBlockStatus(4L << 20, 1 << 20);
                Assert.Equal(ExtentKind.Data, status.Kind);
                Assert.Equal(ExtentKind.Zero, layer.GetBlockStatus(0, 1 << 20).Kind);
            }
        }

        [Fact]
        public void FullPreallocationWritesEveryBlock()
        {
            using var dir = new TempDir();
            string path = dir.File("full.raw");
            CreateOperation.Create(path, Fmt.Raw, new CreateRequest { Size = 4L << 20, Preallocation = Preallocation.Full });
            using var layer = FormatRegistry.Default.Open(path, null, new OpenOptions());
            Assert.Equal(ExtentKind.Data, layer.GetBlockStatus(0, layer.Size).Kind);
        }

        [Fact]
        public void MetadataPreallocationIsRefusedForRaw()
        {
            using var dir = new TempDir();
            var e = Assert.Throws<ImageOptionException>(() => CreateOperation.Create(dir.File("m.raw"), Fmt.Raw, new CreateRequest { Size = 1 << 20, Options = OptionSet.Parse("preallocation=metadata") }));
            Assert.Equal("preallocation", e.Field);
        }

        [Fact]
        public void UnknownCreateOptionIsRefused()
        {
            using var dir = new TempDir();
            var e = Assert.Throws<ImageOptionException>(() => CreateOperation.Create(dir.File("m.raw"), Fmt.Raw, new CreateRequest { Size = 1 << 20, Options = OptionSet.Parse("cluster_size=64k") }));
            Assert.Equal("cluster_size", e.Field);
            Assert.False(File.Exists(dir.File("m.raw")));
        }

        [Fact]
        public void BackingFileIsNotSupportedByRaw()
        {
            using var dir = new TempDir();
            var e = Assert.Throws<ImageNotSupportedException>(() => CreateOperation.Create(dir.File("o.raw"), Fmt.Raw, new CreateRequest { Size = 1 << 20, Backing = new BackingReference("x.raw", Fmt.Raw) }, unsafeBacking: true));
            Assert.Contains("raw does not support backing files", e.Message);
        }

        [Fact]
        public void ResizeGrowsAndShrinksOnlyWhenAllowed()
        {
            using var dir = new TempDir();
            string path = dir.File("r.raw");
            CreateOperation.Create(path, Fmt.Raw, new CreateRequest { Size = 1 << 20 });
            using var layer = FormatRegistry.Default.Open(path, null, new OpenOptions { Writable = true });
            var resizable = Capability.Require<IResizableLayer>(layer, "resize");
            resizable.Resize(2 << 20, false, Preallocation.Off);
            Assert.Equal(2 << 20, layer.Size);
            Assert.Throws<ImageOptionException>(() => resizable.Resize(1 << 20, false, Preallocation.Off));
            resizable.Resize(1 << 20, true, Preallocation.Off);
            Assert.Equal(1 << 20, new FileInfo(path).Length);
        }

        [Fact]
        public void MissingCapabilityNamesTheFormat()
        {
            using var dir = new TempDir();
            string path = dir.File("c.raw");
            CreateOperation.Create(path, Fmt.Raw, new CreateRequest { Size = 1 << 20 });
            using var layer = FormatRegistry.Default.Open(path, null, new OpenOptions());
            var e = Assert.Throws<ImageNotSupportedException>(() => Capability.Require<ISnapshotLayer>(layer, "internal snapshots"));
            Assert.Equal("raw does not support internal snapshots", e.Reason);
        }

        [Fact]
        public void AWriterExcludesPlainReadersButNotForcedOnes()
        {
            using var dir = new TempDir();
            string path = dir.File("lock.raw");
            CreateOperation.Create(path, Fmt.Raw, new CreateRequest { Size = 1 << 20 });
            using var writer = FormatRegistry.Default.Open(path, null, new OpenOptions { Writable = true });
            Assert.Throws<ImageLockedException>(() => FormatRegistry.Default.Open(path, Fmt.Raw, new OpenOptions()));
            using var forced = FormatRegistry.Default.Open(path, Fmt.Raw, new OpenOptions { ShareWithWriters = true });
            Assert.Equal(1 << 20, forced.Size);
        }

        [Fact]
        public void ReadersShare()
        {
            using var dir = new TempDir();
            string path = dir.File("share.raw");
            byte[] data = TestData.Pattern(1 << 20, 5);
            File.WriteAllBytes(path, data);
            using var a = FormatRegistry.Default.Open(path, null, new OpenOptions());
            using var b = FormatRegistry.Default.Open(path, null, new OpenOptions());
            var fromA = new byte[data.Length];
            var fromB = new byte[data.Length];
            a.Read(0, fromA);
            b.Read(0, fromB);
            Assert.Equal(data, fromA);
            Assert.Equal(data, fromB);
            // The readers' shared lock still keeps a writer out.
            Assert.Throws<ImageLockedException>(() => FormatRegistry.Default.Open(path, Fmt.Raw, new OpenOptions { Writable = true }));
        }
    }
}
