using System;
using System.IO;
using Xunit;

namespace VDiskPS.Formats.Tests.Qcow
{
    /// <summary>Create options and refusals of qcow, mirroring qemu-img create -f qcow; images made are judged by qemu.</summary>
    public class QcowCreateTests
    {
        [Fact]
        public void RequestsQemuRefusesAreRefusedAndLeaveNoFile()
        {
            using var dir = new TempDir();
            string path = dir.File("r.qcow");
            void Refused<T>(CreateRequest request, string field)
                where T : ImageException
            {
                var error = Assert.Throws<T>(() => CreateOperation.Create(path, Fmt.Qcow, request, unsafeBacking: true));
                Assert.Equal(field, error.Field);
                Assert.False(File.Exists(path));
            }

            // qemu-img create -f qcow x 0: "Image size is too small, cannot be zero length".
            Refused<ImageOptionException>(new CreateRequest { Options = OptionSet.Parse("size=0") }, "size");
            // qemu's qcow has no preallocation or cluster_size option.
            Refused<ImageOptionException>(new CreateRequest { Size = 1 << 20, Type = DiskType.Fixed }, "preallocation");
            Refused<ImageOptionException>(new CreateRequest { Size = 1 << 20, Options = OptionSet.Parse("cluster_size=64k") }, "cluster_size");
            Refused<ImageOptionException>(new CreateRequest { Size = 1 << 20, ClusterSize = 3000 }, "cluster size");
            // qemu-img create -b a.qcow -F nosuch: the backing format must name a format, though qcow cannot record it.
            Refused<ImageOptionException>(new CreateRequest { Size = 1 << 20, Options = OptionSet.Parse("backing_file=a.qcow,backing_fmt=nosuch") }, "backing_fmt");
            Refused<ImageOptionException>(new CreateRequest { Size = 1 << 20, Backing = new BackingReference(new string('b', 1024), null) }, "backing_file");
            Refused<ImageOptionException>(new CreateRequest { Size = 1 << 20, Subformat = "x" }, "subformat");
        }

        [Fact]
        public void TheSizeIsRoundedUpToWholeSectorsAsQemuDoes()
        {
            using var dir = new TempDir();
            string ours = dir.File("ours.qcow");
            CreateOperation.Create(ours, Fmt.Qcow, new CreateRequest { Size = 1000 });
            string qemu = dir.File("qemu.qcow");
            Qemu.Img("create", "-q", "-f", "qcow", qemu, "1000");
            Assert.Equal(File.ReadAllBytes(qemu), File.ReadAllBytes(ours));
            using var info = Qemu.Info(ours);
            Assert.Equal(1024, info.RootElement.GetProperty("virtual-size").GetInt64());
        }

        [Fact]
        public void ALargerClusterSizeIsWrittenSoQemuReadsIt()
        {
            // qemu-img cannot ask for it, but qemu reads any cluster size from 512 B to 64 KiB.
            using var dir = new TempDir();
            string path = dir.File("big-clusters.qcow");
            CreateOperation.Create(path, Fmt.Qcow, new CreateRequest { Size = 5L << 20, ClusterSize = 65536 });
            byte[] data = TestData.Pattern(200_000, 3);
            using (var layer = FormatRegistry.Default.Open(path, null, new OpenOptions { Writable = true }))
            {
                Assert.Equal(65536, layer.ClusterSize);
                layer.Write(12345, data);

                // A 64 KiB cluster may deflate with back-references beyond the 4 KiB window qemu inflates with: stored plainly.
                Assert.Null(((ICompressedWriteLayer)layer).Compress(new byte[65536]));
            }

            using var info = Qemu.Info(path);
            Assert.Equal(65536, info.RootElement.GetProperty("cluster-size").GetInt64());
            byte[] raw = Qemu.ToRawBytes(path, "qcow", dir.Path);
            Assert.Equal(data, raw.AsSpan(12345, data.Length).ToArray());
        }

        [Fact]
        public void ZeroWritesIntoUnallocatedClustersWithoutABackingFileAllocateNothing()
        {
            using var dir = new TempDir();
            string path = dir.File("z.qcow");
            CreateOperation.Create(path, Fmt.Qcow, new CreateRequest { Size = 4L << 20 });
            long before = new FileInfo(path).Length;
            using (var layer = FormatRegistry.Default.Open(path, null, new OpenOptions { Writable = true }))
            {
                layer.WriteZeroes(0, 4L << 20);
            }

            Assert.Equal(before, new FileInfo(path).Length);
            Assert.Equal(new byte[4 << 20], Qemu.ToRawBytes(path, "qcow", dir.Path));
        }

        [Fact]
        public void MissingCapabilitiesAreRefusedByNameAsInQemu()
        {
            // qemu-img resize: "Image format driver does not support resize"; rebase -u: "Operation not supported".
            using var dir = new TempDir();
            string path = dir.File("c.qcow");
            CreateOperation.Create(path, Fmt.Qcow, new CreateRequest { Size = 1 << 20 });
            using var layer = FormatRegistry.Default.Open(path, null, new OpenOptions { Writable = true });
            var resize = Assert.Throws<ImageNotSupportedException>(() => Capability.Require<IResizableLayer>(layer, "resizing"));
            Assert.Contains("qcow does not support resizing", resize.Message);
            Assert.Throws<ImageNotSupportedException>(() => Capability.Require<IParentChangeableLayer>(layer, "changing the backing file"));
        }
    }
}
