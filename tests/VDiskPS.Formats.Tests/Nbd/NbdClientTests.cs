using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Threading.Tasks;
using VDiskPS.Formats.Nbd;
using Xunit;

namespace VDiskPS.Formats.Tests.Nbd
{
    /// <summary>
    /// The NBD client reading from and writing to servers nobody here wrote (qemu-nbd, nbdkit), its
    /// answers judged by qemu-img (QEMU's own NBD client) on the same export or the same image.
    /// </summary>
    public class NbdClientTests
    {
        /// <summary>A qcow2 of 8 MiB with data, a zeroed range and holes, all made by qemu-io.</summary>
        internal static string MakeQcow2(TempDir dir, string name = "disk.qcow2")
        {
            string path = dir.File(name);
            Qemu.Img("create", "-q", "-f", "qcow2", path, "8M");
            Qemu.Io("-f", "qcow2", "-c", "write -P 0x11 0 300k", "-c", "write -P 0x22 2M 64k", "-c", "write -z 3M 1M", "-c", "write -P 0x33 8128k 64k", path);
            return path;
        }

        /// <summary>The guest bytes of an image, as qemu-img converts them to raw.</summary>
        internal static byte[] GuestBytes(TempDir dir, string image, string format)
        {
            string raw = dir.File(Guid.NewGuid().ToString("N") + ".raw");
            Qemu.Img("convert", "-U", "-f", format, "-O", "raw", image, raw);
            byte[] bytes = File.ReadAllBytes(raw);
            File.Delete(raw);
            return bytes;
        }

        private static byte[] ReadAll(string uri)
        {
            using var chain = ImageChain.Open(uri);
            var bytes = new byte[chain.Size];
            chain.Read(0, bytes);
            return bytes;
        }

        [Fact]
        public void ReadsAQcow2ServedByQemuNbdAsTheGuestBytesQemuImgConverts()
        {
            using var dir = new TempDir();
            string image = MakeQcow2(dir);
            using var server = ExternalNbdServer.QemuNbd(dir, image, "qcow2");
            Assert.Equal(GuestBytes(dir, image, "qcow2"), ReadAll(server.Uri));
            Assert.Equal(Fmt.Raw, FormatRegistry.Default.Probe(server.Uri));
        }

        [Fact]
        public void AOneShotQemuNbdServesTheProbeAndTheReadOnOneConnection()
        {
            using var dir = new TempDir();
            string image = MakeQcow2(dir);
            byte[] expected = GuestBytes(dir, image, "qcow2");

            // Without --persistent qemu-nbd exits when its first client leaves: the probe's connection must be the read's.
            using var server = ExternalNbdServer.QemuNbd(dir, image, "qcow2", persistent: false);
            Assert.Equal(expected, ReadAll(server.Uri));
        }

        [Fact]
        public void ReadsOverTcpWithAPortAndAnExportName()
        {
            using var dir = new TempDir();
            string image = MakeQcow2(dir);
            using var server = ExternalNbdServer.QemuNbdTcp(image, "qcow2", "named export");
            Assert.Contains("/named export", server.Uri);
            Assert.Equal(GuestBytes(dir, image, "qcow2"), ReadAll(server.Uri.Replace(" ", "%20")));
        }

        [Fact]
        public void AnExportCarryingAnImageSignatureIsProbedAndReadAsThatFormat()
        {
            using var dir = new TempDir();
            string image = MakeQcow2(dir);

            // Served as raw bytes, the export is the qcow2 file itself: the probe follows the signature, as qemu does.
            using var server = ExternalNbdServer.QemuNbd(dir, image, "raw");
            Assert.Equal(Fmt.Qcow2, FormatRegistry.Default.Probe(server.Uri));
            Assert.Equal(GuestBytes(dir, image, "qcow2"), ReadAll(server.Uri));
            Assert.Equal(8L << 20, ImageInspector.Get(server.Uri).Size);
        }

        [Fact]
        public void ReadsNbdkitDataWithKnownContentAtKnownOffsets()
        {
            using var dir = new TempDir();
            using var server = ExternalNbdServer.NbdkitTcp("data", "1 2 3 @0x100000 0x55*512 @0x3FFFFF 9", "size=4M");
            byte[] bytes = ReadAll(server.Uri);
            Assert.Equal(4 << 20, bytes.Length);
            Assert.Equal(new byte[] { 1, 2, 3, 0 }, bytes.Take(4));
            Assert.All(bytes.Skip(0x100000).Take(512), b => Assert.Equal(0x55, b));
            Assert.Equal(0, bytes[0x100000 + 512]);
            Assert.Equal(9, bytes[0x3FFFFF]);
            Assert.Equal(1 + 2 + 3 + 0x55 * 512 + 9, bytes.Sum(b => (long)b));
        }

        [Fact]
        public void TheMapFromBlockStatusEqualsQemuImgMapOfTheSameExport()
        {
            using var dir = new TempDir();
            string image = MakeQcow2(dir);
            using var server = ExternalNbdServer.QemuNbd(dir, image, "qcow2");
            var theirs = NbdServerTests.DataZeroRuns(Qemu.Img("map", "--output=json", "-f", "raw", server.Uri));
            var ours = Merge(MapOperation.Run(server.Uri));
            Assert.Equal(theirs, ours);
            Assert.Contains(ours, r => !r.Data && r.Zero);
            Assert.Contains(ours, r => r.Data);
        }

        [Fact]
        public void NbdkitMemoryHolesAreZeroRunsInTheMap()
        {
            using var dir = new TempDir();
            using var server = ExternalNbdServer.Nbdkit(dir, "data", "@0x200000 0x77*65536", "size=8M");
            var runs = Merge(MapOperation.Run(server.Uri));
            var theirs = NbdServerTests.DataZeroRuns(Qemu.Img("map", "--output=json", "-f", "raw", server.Uri));
            Assert.Equal(theirs, runs);
            Assert.Contains(runs, r => r.Data && r.Start <= 0x200000 && r.Start + r.Length >= 0x210000);
            Assert.Contains(runs, r => !r.Data && r.Start == 0);
        }

        [Fact]
        public void AFragmentedExportMapsAndConvertsAsQemuSeesIt()
        {
            using var dir = new TempDir();
            string raw = dir.File("frag.raw");

            // 4 KiB of data every 8 KiB: 2048 extents in one BLOCK_STATUS reply.
            byte[] block = TestData.Pattern(4096, 5);
            using (var stream = new FileStream(raw, FileMode.CreateNew))
            {
                stream.SetLength(8 << 20);
                for (long offset = 0; offset < 8 << 20; offset += 8192)
                {
                    stream.Position = offset;
                    stream.Write(block);
                }
            }

            using var server = ExternalNbdServer.QemuNbd(dir, raw, "raw", readOnly: true);
            var theirs = NbdServerTests.DataZeroRuns(Qemu.Img("map", "--output=json", "-f", "raw", server.Uri));
            Assert.Equal(1024, theirs.Count(r => r.Data));
            Assert.Equal(theirs, Merge(MapOperation.Run(server.Uri)));
            string output = dir.File("out.raw");
            ConvertOperation.Run(server.Uri, output, new ConvertOptions { TargetFormat = Fmt.Raw });
            var (identical, text) = Qemu.Compare(raw, "raw", output, "raw");
            Assert.True(identical, text);
        }

        [Fact]
        public void ParallelReadsOnOneConnectionEachGetTheirOwnBytes()
        {
            using var dir = new TempDir();
            string raw = dir.File("p.raw");
            byte[] content = TestData.Pattern(16 << 20, 7);
            File.WriteAllBytes(raw, content);
            using var server = ExternalNbdServer.QemuNbd(dir, raw, "raw");
            using HostFile file = HostFile.Open(server.Uri, HostAccess.Read);
            Parallel.For(0, 256, new ParallelOptions { MaxDegreeOfParallelism = 16 }, i =>
            {
                var rng = new Random(i);
                int length = rng.Next(1, 1 << 20);
                long offset = rng.Next(0, content.Length - length);
                var buffer = new byte[length];
                Assert.Equal(length, file.ReadAt(offset, buffer));
                Assert.True(buffer.AsSpan().SequenceEqual(content.AsSpan((int)offset, length)), $"read {i} at {offset}");
            });
        }

        [Fact]
        public void ReadsLargerThanTheServersMaximumBlockAreSplit()
        {
            using var dir = new TempDir();
            string raw = dir.File("big.raw");
            byte[] content = TestData.Pattern(40 << 20, 3);
            File.WriteAllBytes(raw, content);

            // nbdkit's blocksize-policy filter announces a 1 MiB maximum block and refuses larger requests.
            using var server = ExternalNbdServer.Nbdkit(dir, "--filter=blocksize-policy", "file", raw, "blocksize-maximum=1M", "blocksize-error-policy=error");
            using HostFile file = HostFile.Open(server.Uri, HostAccess.Read);
            var buffer = new byte[content.Length];
            Assert.Equal(content.Length, file.ReadAt(0, buffer));
            Assert.True(buffer.AsSpan().SequenceEqual(content));
        }

        [Fact]
        public void ConvertNoCreateWritesIntoAnExistingNbdkitMemoryExport()
        {
            using var dir = new TempDir();
            string image = MakeQcow2(dir);
            using var server = ExternalNbdServer.Nbdkit(dir, "memory", "8M");

            // Garbage first, so a zero run the conversion failed to write would show.
            Qemu.Io("-f", "raw", "-c", "write -P 0xee 0 8M", server.Uri);
            ConvertOperation.Run(image, server.Uri, new ConvertOptions { TargetFormat = Fmt.Raw, NoCreate = true });
            var (identical, output) = Qemu.Compare(image, "qcow2", server.Uri, "raw");
            Assert.True(identical, output);

            // The zeros went as WRITE_ZEROES: nbdkit's memory plugin deallocates zeroed pages, so qemu's map shows holes.
            var map = NbdServerTests.DataZeroRuns(Qemu.Img("map", "--output=json", "-f", "raw", server.Uri));
            Assert.Contains(map, r => !r.Data && r.Start <= 3 << 20 && r.Start + r.Length >= 4 << 20);
        }

        [Fact]
        public void ConvertNoCreateWritesIntoAWritableQemuNbdExport()
        {
            using var dir = new TempDir();
            string image = MakeQcow2(dir);
            string target = dir.File("target.qcow2");
            Qemu.Img("create", "-q", "-f", "qcow2", target, "8M");
            Qemu.Io("-f", "qcow2", "-c", "write -P 0xee 0 8M", target);
            using (var server = ExternalNbdServer.QemuNbd(dir, target, "qcow2"))
            {
                ConvertOperation.Run(image, server.Uri, new ConvertOptions { TargetFormat = Fmt.Raw, NoCreate = true });
            }

            var (identical, output) = Qemu.Compare(image, "qcow2", target, "qcow2");
            Assert.True(identical, output);
            Assert.Equal(0, Qemu.Check(target, "qcow2").ExitCode);
        }

        [Fact]
        public void ConvertNoCreateIntoASmallerExportIsRefusedWithBothSizes()
        {
            using var dir = new TempDir();
            string image = MakeQcow2(dir);
            using var server = ExternalNbdServer.Nbdkit(dir, "memory", "1M");
            var e = Assert.Throws<ImageOptionException>(() => ConvertOperation.Run(image, server.Uri, new ConvertOptions { TargetFormat = Fmt.Raw, NoCreate = true }));
            Assert.Contains((1 << 20).ToString(), e.Message);
            Assert.Contains((8 << 20).ToString(), e.Message);
        }

        [Fact]
        public void AnNbdDestinationCannotBeCreated()
        {
            using var dir = new TempDir();
            string image = MakeQcow2(dir);
            using var server = ExternalNbdServer.Nbdkit(dir, "memory", "8M");
            var e = Assert.Throws<ImageNotSupportedException>(() => ConvertOperation.Run(image, server.Uri, new ConvertOptions { TargetFormat = Fmt.Raw }));
            Assert.Contains("NBD", e.Message);
        }

        [Fact]
        public void WritingAReadOnlyExportIsRefusedByName()
        {
            using var dir = new TempDir();
            string image = MakeQcow2(dir);
            using var server = ExternalNbdServer.QemuNbd(dir, image, "qcow2", readOnly: true);
            var e = Assert.Throws<ImageIOException>(() => HostFile.Open(server.Uri, HostAccess.ReadWrite));
            Assert.Contains("read-only", e.Message);
            Assert.Contains(server.Uri, e.Message);
        }

        [Fact]
        public void AnUnknownExportNameIsAnIOErrorNamingIt()
        {
            using var dir = new TempDir();
            string image = MakeQcow2(dir);
            using var server = ExternalNbdServer.QemuNbd(dir, image, "qcow2", export: "disk");
            string wrong = server.Uri.Replace("/disk?", "/nosuch?");
            var e = Assert.Throws<ImageIOException>(() => HostFile.Open(wrong, HostAccess.Read));
            Assert.Contains("no export named 'nosuch'", e.Message);
        }

        [Fact]
        public void NoServerListeningIsAnIOErrorNotAHang()
        {
            using var dir = new TempDir();
            string uri = $"nbd+unix:///x?socket={dir.File("none.sock")}";
            var e = Assert.Throws<ImageIOException>(() => HostFile.Open(uri, HostAccess.Read));
            Assert.Contains("cannot connect", e.Message);
        }

        [Fact]
        public void AServerReadErrorIsATypedReadErrorNamingTheCommandAndOffset()
        {
            using var dir = new TempDir();
            using var server = ExternalNbdServer.Nbdkit(dir, "--filter=error", "pattern", "1M", "error-pread-rate=100%", "error-pread=EIO");
            using HostFile file = HostFile.Open(server.Uri, HostAccess.Read);
            var e = Assert.Throws<ImageReadException>(() => file.ReadAt(65536, new byte[4096]));
            Assert.Equal(65536, e.Offset);
            Assert.Equal(4096, e.Length);
            Assert.Contains("NBD READ", e.Message);
            Assert.Contains("EIO", e.Message);
            Assert.Contains(server.Uri, e.Message);

            // The connection survives an error reply.
            Assert.Throws<ImageReadException>(() => file.ReadAt(0, new byte[512]));
        }

        [Theory]
        [InlineData("nbd://example.com/disk", "example.com", 10809, null, "disk")]
        [InlineData("nbd://example.com:1234/", "example.com", 1234, null, "")]
        [InlineData("nbd://[::1]:99/a%2Fb", "::1", 99, null, "a/b")]
        [InlineData("nbd://host", "host", 10809, null, "")]
        [InlineData("nbd+unix:///exp?socket=/tmp/s.sock", null, 0, "/tmp/s.sock", "exp")]
        [InlineData("nbd+unix://?socket=/tmp/s%20t.sock", null, 0, "/tmp/s t.sock", "")]
        public void LocationsFollowTheNbdUriSpec(string uri, string host, int port, string socket, string export)
        {
            var location = NbdClientLocation.Parse(uri);
            Assert.Equal(host, location.Host);
            Assert.Equal(port, location.Port);
            Assert.Equal(socket, location.SocketPath);
            Assert.Equal(export, location.ExportName);
        }

        [Theory]
        [InlineData("nbds://host/disk", typeof(ImageNotSupportedException))]
        [InlineData("nbd+vsock:///disk", typeof(ImageNotSupportedException))]
        [InlineData("nbd+unix:///disk", typeof(ImageOptionException))]
        [InlineData("nbd://host:70000/disk", typeof(ImageOptionException))]
        [InlineData("nbd://host/disk?socket=/x", typeof(ImageOptionException))]
        public void MalformedOrUnsupportedLocationsAreRefusedByType(string uri, Type expected)
        {
            var e = Assert.ThrowsAny<ImageException>(() => HostFile.Open(uri, HostAccess.Read));
            Assert.IsType(expected, e);
        }

        /// <summary>Our map merged like qemu-img map's JSON: (start, length, data, zero) runs.</summary>
        private static List<(long Start, long Length, bool Data, bool Zero)> Merge(IReadOnlyList<VDiskExtent> extents)
        {
            var runs = new List<(long Start, long Length, bool Data, bool Zero)>();
            foreach (var e in extents)
            {
                if (runs.Count > 0 && runs[^1].Data == e.Data && runs[^1].Zero == e.Zero)
                {
                    runs[^1] = (runs[^1].Start, runs[^1].Length + e.Length, e.Data, e.Zero);
                }
                else
                {
                    runs.Add((e.Start, e.Length, e.Data, e.Zero));
                }
            }

            return runs;
        }
    }
}
