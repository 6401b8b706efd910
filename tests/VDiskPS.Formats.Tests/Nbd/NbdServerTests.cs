using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Text.Json;
using System.Threading;
using VDiskPS.Formats.Nbd;
using Xunit;

namespace VDiskPS.Formats.Tests.Nbd
{
    /// <summary>
    /// The NBD server judged by clients nobody here wrote: qemu-img, qemu-io (QEMU's NBD client) and
    /// libnbd's nbdinfo/nbdcopy; qemu-nbd serves the same image as the reference where answers are compared.
    /// </summary>
    public class NbdServerTests
    {
        private static NbdServer Serve(string path, bool writable = false, string name = "disk", string snapshot = null, string[] bitmaps = null)
            => NbdServer.Start(
                new NbdExportOptions { Path = path, Writable = writable, ExportName = name, Snapshot = snapshot, Bitmaps = bitmaps ?? Array.Empty<string>() },
                new NbdServerOptions { Port = 0 });

        /// <summary>A qcow2 of 8 MiB with data, a zeroed range and holes, all made by qemu-io.</summary>
        private static string MakeQcow2(TempDir dir, string name = "disk.qcow2")
        {
            string path = dir.File(name);
            Qemu.Img("create", "-q", "-f", "qcow2", path, "8M");
            Qemu.Io("-f", "qcow2", "-c", "write -P 0x11 0 300k", "-c", "write -P 0x22 2M 64k", "-c", "write -z 3M 1M", "-c", "write -P 0x33 8128k 64k", path);
            return path;
        }

        private static (int ExitCode, string Output) Tool(string tool, params string[] args) => Qemu.Run(tool, args);

        private static string ToolOk(string tool, params string[] args)
        {
            var r = Qemu.Run(tool, args);
            Assert.True(r.ExitCode == 0, $"{tool} {string.Join(" ", args)}: {r.Output}");
            return r.Output;
        }

        [Fact]
        public void QemuImgReadsTheSameDiskThroughTheServer()
        {
            using var dir = new TempDir();
            string path = MakeQcow2(dir);
            using var server = Serve(path);
            Assert.StartsWith("nbd://127.0.0.1:", server.Uri);
            Assert.True(server.Port > 0);
            var (identical, output) = Qemu.Compare(path, "qcow2", server.Uri, "raw");
            Assert.True(identical, output);

            using var info = JsonDocument.Parse(ToolOk("qemu-img", "info", "--output=json", server.Uri));
            Assert.Equal(8L << 20, info.RootElement.GetProperty("virtual-size").GetInt64());
        }

        [Fact]
        public void QemuImgMapThroughTheServerEqualsTheImagesOwnMap()
        {
            using var dir = new TempDir();
            string path = MakeQcow2(dir);
            using var server = Serve(path);
            var own = DataZeroRuns(ToolOk("qemu-img", "map", "--output=json", "-f", "qcow2", path));
            var served = DataZeroRuns(ToolOk("qemu-img", "map", "--output=json", "-f", "raw", server.Uri));
            Assert.Equal(own, served);
            Assert.Contains(own, r => r.Data);
            Assert.Contains(own, r => !r.Data && r.Zero);
        }

        /// <summary>(start, length, data, zero) runs, adjacent runs of one kind merged.</summary>
        internal static List<(long Start, long Length, bool Data, bool Zero)> DataZeroRuns(string json)
        {
            var runs = new List<(long Start, long Length, bool Data, bool Zero)>();
            using var doc = JsonDocument.Parse(json);
            foreach (var e in doc.RootElement.EnumerateArray())
            {
                long start = e.GetProperty("start").GetInt64();
                long length = e.GetProperty("length").GetInt64();
                bool data = e.GetProperty("data").GetBoolean();
                bool zero = e.GetProperty("zero").GetBoolean();
                if (runs.Count > 0 && runs[^1].Data == data && runs[^1].Zero == zero)
                {
                    runs[^1] = (runs[^1].Start, runs[^1].Length + length, data, zero);
                }
                else
                {
                    runs.Add((start, length, data, zero));
                }
            }

            return runs;
        }

        [Fact]
        public void QemuIoWritesLandInTheImageAndKeepItConsistent()
        {
            using var dir = new TempDir();
            string path = MakeQcow2(dir);
            using (var server = Serve(path, writable: true))
            {
                ToolOk("qemu-io", "-f", "raw", "-c", "write -P 0xab 1M 64k", "-c", "write -z 0 64k", "-c", "discard 2M 64k", "-c", "write -P 0xcd 5M 4k", "-c", "flush", server.Uri);
            }

            var check = Qemu.Check(path, "qcow2");
            Assert.True(check.ExitCode == 0, check.Output);
            ToolOk("qemu-io", "-f", "qcow2", "-c", "read -P 0xab 1M 64k", "-c", "read -P 0 0 64k", "-c", "read -P 0x11 64k 236k", "-c", "read -P 0xcd 5M 4k", "-c", "read -P 0x33 8128k 64k", path);
        }

        [Fact]
        public void WriteZeroesWithNoHoleStaysAllocatedAndMayUnmapDoesNot()
        {
            using var dir = new TempDir();
            string path = dir.File("z.qcow2");
            Qemu.Img("create", "-q", "-f", "qcow2", path, "4M");
            Qemu.Io("-f", "qcow2", "-c", "write -P 0x11 0 4M", path);
            using (var server = Serve(path, writable: true))
            {
                // qemu-io's write -z sends NBD_CMD_FLAG_NO_HOLE unless -u allows unmapping.
                ToolOk("qemu-io", "-f", "raw", "-c", "write -z 0 64k", "-c", "write -z -u 1M 64k", server.Uri);
            }

            var runs = DataZeroRuns(ToolOk("qemu-img", "map", "--output=json", "-f", "qcow2", path));
            Assert.Contains(runs, r => r.Start == 0 && r.Data);
            Assert.Contains(runs, r => r.Start == 1 << 20 && r.Length == 65536 && !r.Data && r.Zero);
            ToolOk("qemu-io", "-f", "qcow2", "-c", "read -P 0 0 64k", "-c", "read -P 0 1M 64k", "-c", "read -P 0x11 64k 960k", path);
        }

        [Theory]
        [InlineData("qcow2")]
        [InlineData("raw")]
        public void NbdcopyWritesIntoAWritableExport(string format)
        {
            // nbdcopy zeroes the destination with NBD_CMD_FLAG_FAST_ZERO first; raw answers ENOTSUP (zeroing
            // there is a write), qcow2 sets zero clusters; either way the copy must be exact.
            using var dir = new TempDir();
            string source = TestData.WriteRaw(dir, "source.raw", 8L << 20);
            string target = dir.File("target." + format);
            Qemu.Img("create", "-q", "-f", format, target, "8M");
            if (format == "raw")
            {
                Qemu.Io("-f", "raw", "-c", "write -P 0x99 0 8M", target);
            }

            using (var server = Serve(target, writable: true))
            {
                ToolOk("nbdcopy", source, server.Uri);
            }

            var (identical, output) = Qemu.Compare(source, "raw", target, format);
            Assert.True(identical, output);
        }

        [Fact]
        public void StructuredReadsSendHolesUnlessNotToFragment()
        {
            using var dir = new TempDir();
            string path = MakeQcow2(dir);
            using var server = Serve(path);
            using var client = new RawNbdClient(server.Port);
            client.Connect(structured: true);
            client.SendRequest(0, 0, 1 << 20);
            Assert.Equal(0u, client.ReadReply());
            Assert.Equal(new ushort[] { 1, 2 }, client.ChunkTypes); // data 0..300k, then a hole

            client.SendRequest(0, 0, 1 << 20, flags: 4); // NBD_CMD_FLAG_DF
            Assert.Equal(0u, client.ReadReply());
            Assert.Equal(new ushort[] { 1 }, client.ChunkTypes);

            client.SendRequest(5, 0, 1 << 20); // NBD_CMD_CACHE
            Assert.Equal(0u, client.ReadReply());
            client.SendRequest(3, 0, 0); // NBD_CMD_FLUSH on a read-only export is harmless
            Assert.Equal(0u, client.ReadReply());
        }

        [Theory]
        [InlineData("qcow2")]
        [InlineData("vmdk")]
        [InlineData("vhdx")]
        [InlineData("vpc")]
        [InlineData("vdi")]
        public void EveryWritableFormatTakesQemuIoWrites(string qemuFormat)
        {
            using var dir = new TempDir();
            string path = dir.File("disk." + qemuFormat);
            Qemu.Img("create", "-q", "-f", qemuFormat, path, "8M");
            using (var server = Serve(path, writable: true))
            {
                ToolOk("qemu-io", "-f", "raw", "-c", "write -P 0x5c 0 100k", "-c", "write -P 0x5d 3M 1M", "-c", "write -z 3M 64k", "-c", "flush", server.Uri);
            }

            if (qemuFormat != "vpc")
            {
                // qemu-img check has no checker for vpc.
                var check = Qemu.Check(path, qemuFormat);
                Assert.True(check.ExitCode == 0, check.Output);
            }

            ToolOk("qemu-io", "-f", qemuFormat, "-c", "read -P 0x5c 0 100k", "-c", "read -P 0 100k 2972k", "-c", "read -P 0 3M 64k", "-c", "read -P 0x5d 3136k 960k", path);
        }

        [Fact]
        public void AChainIsServedAsOneDisk()
        {
            using var dir = new TempDir();
            string basePath = dir.File("base.vmdk");
            string overlay = dir.File("overlay.qcow2");
            Qemu.Img("create", "-q", "-f", "vmdk", basePath, "8M");
            Qemu.Io("-f", "vmdk", "-c", "write -P 0x01 0 4M", basePath);
            Qemu.Img("create", "-q", "-f", "qcow2", "-b", basePath, "-F", "vmdk", overlay);
            Qemu.Io("-f", "qcow2", "-c", "write -P 0x02 1M 64k", overlay);
            using var server = Serve(overlay);
            var (identical, output) = Qemu.Compare(overlay, "qcow2", server.Uri, "raw");
            Assert.True(identical, output);
            Assert.Equal(
                DataZeroRuns(ToolOk("qemu-img", "map", "--output=json", "-f", "qcow2", overlay)),
                DataZeroRuns(ToolOk("qemu-img", "map", "--output=json", "-f", "raw", server.Uri)));
        }

        [Fact]
        public void ReadOnlyExportRefusesWrites()
        {
            using var dir = new TempDir();
            string path = MakeQcow2(dir);
            using var server = Serve(path);
            var r = Tool("qemu-io", "-f", "raw", "-c", "write -P 0xab 0 64k", server.Uri);
            Assert.True(r.ExitCode != 0 || r.Output.Contains("read-only", StringComparison.OrdinalIgnoreCase) || r.Output.Contains("not permitted"), r.Output);
            using var client = new RawNbdClient(server.Port);
            client.Connect(structured: false);
            client.SendRequest(1, 0, 512, payload: new byte[512]);
            Assert.Equal(1u, client.ReadReply()); // NBD_EPERM
            // The served image is unchanged; -r -U: a reader beside the server, which holds it open.
            ToolOk("qemu-io", "-r", "-U", "-f", "qcow2", "-c", "read -P 0x11 0 64k", path);
        }

        [Fact]
        public void NbdinfoMapEqualsQemuNbdsMap()
        {
            using var dir = new TempDir();
            string path = MakeQcow2(dir);
            string ours;
            using (var server = Serve(path))
            {
                ours = ToolOk("nbdinfo", "--map", server.Uri);
            }

            string theirs = WithQemuNbd(dir, path, null, uri => ToolOk("nbdinfo", "--map", uri));
            Assert.Equal(theirs, ours);
        }

        [Fact]
        public void NbdinfoDirtyBitmapMapEqualsQemuNbdsMap()
        {
            using var dir = new TempDir();
            string path = dir.File("b.qcow2");
            Qemu.Img("create", "-q", "-f", "qcow2", path, "8M");
            Qemu.Img("bitmap", "--add", "-g", "65536", path, "b0");
            Qemu.Io("-f", "qcow2", "-c", "write 100000 200000", "-c", "write 4M 64k", "-c", "write 8000k 192k", path);
            string ours;
            using (var server = Serve(path, bitmaps: new[] { "b0" }))
            {
                ours = ToolOk("nbdinfo", "--map=qemu:dirty-bitmap:b0", server.Uri);
                string contexts = ToolOk("nbdinfo", "--list", "--content", server.Uri);
                Assert.Contains("qemu:dirty-bitmap:b0", contexts);
                Assert.Contains("base:allocation", contexts);
            }

            string theirs = WithQemuNbd(dir, path, "b0", uri => ToolOk("nbdinfo", "--map=qemu:dirty-bitmap:b0", uri));
            Assert.Equal(theirs, ours);
            Assert.Contains("dirty", ours);
        }

        /// <summary>Runs <paramref name="work"/> against qemu-nbd serving the image read-only on a Unix socket.</summary>
        private static string WithQemuNbd(TempDir dir, string path, string bitmap, Func<string, string> work)
        {
            string socket = dir.File("qemu-nbd.sock");
            var psi = new ProcessStartInfo("qemu-nbd") { UseShellExecute = false, RedirectStandardError = true, RedirectStandardOutput = true };
            foreach (string a in new[] { "-r", "-f", "qcow2", "-x", "disk", "-k", socket })
            {
                psi.ArgumentList.Add(a);
            }

            if (bitmap != null)
            {
                psi.ArgumentList.Add("-B");
                psi.ArgumentList.Add(bitmap);
            }

            psi.ArgumentList.Add(path);
            using var qemuNbd = Process.Start(psi);
            try
            {
                var until = DateTime.UtcNow.AddSeconds(20);
                while (!File.Exists(socket) && DateTime.UtcNow < until && !qemuNbd.HasExited)
                {
                    Thread.Sleep(50);
                }

                Assert.True(File.Exists(socket), "qemu-nbd did not start: " + (qemuNbd.HasExited ? qemuNbd.StandardError.ReadToEnd() : "timeout"));
                return work($"nbd+unix:///disk?socket={socket}");
            }
            finally
            {
                if (!qemuNbd.HasExited)
                {
                    qemuNbd.Kill();
                }

                qemuNbd.WaitForExit();
            }
        }

        [Fact]
        public void NbdcopyWithFourConnectionsCopiesTheDisk()
        {
            using var dir = new TempDir();
            string path = MakeQcow2(dir);
            string copy = dir.File("copy.raw");
            using var server = Serve(path);
            ToolOk("nbdcopy", "--connections=4", server.Uri, copy);
            Assert.Equal(Qemu.ToRawBytes(path, "qcow2", dir.Path), File.ReadAllBytes(copy));
        }

        [Fact]
        public void UnixSocketServesTheDisk()
        {
            using var dir = new TempDir();
            string path = MakeQcow2(dir);
            string socket = dir.File("s.sock");
            using (var server = NbdServer.Start(new NbdExportOptions { Path = path, ExportName = "d" }, new NbdServerOptions { UnixSocket = socket }))
            {
                Assert.Equal($"nbd+unix:///d?socket={socket}", server.Uri);
                var (identical, output) = Qemu.Compare(path, "qcow2", server.Uri, "raw");
                Assert.True(identical, output);
            }

            Assert.False(File.Exists(socket), "the socket file is removed when the server stops");
        }

        [Fact]
        public void SnapshotExportServesTheDiskAsItWas()
        {
            using var dir = new TempDir();
            string path = MakeQcow2(dir);
            string before = dir.File("before.raw");
            Qemu.Img("convert", "-f", "qcow2", "-O", "raw", path, before);
            Qemu.Img("snapshot", "-c", "s1", path);
            Qemu.Io("-f", "qcow2", "-c", "write -P 0x77 0 1M", path);
            using var server = Serve(path, snapshot: "s1");
            var (identical, output) = Qemu.Compare(before, "raw", server.Uri, "raw");
            Assert.True(identical, output);
        }

        [Fact]
        public void WritableExportLocksTheImageAsAnyWriter()
        {
            // The lock is the engine's (HostFile); this pins that the server opens as a writer does.
            using var dir = new TempDir();
            string path = MakeQcow2(dir);
            using var server = Serve(path, writable: true);
            Assert.Throws<ImageLockedException>(() => ImageChain.Open(path, new ChainOptions { Writable = true }).Dispose());
        }

        [Fact]
        public void ListReportsTheExportName()
        {
            using var dir = new TempDir();
            string path = MakeQcow2(dir);
            using var server = Serve(path, name: "my-disk");
            string list = ToolOk("nbdinfo", "--list", $"nbd://127.0.0.1:{server.Port}");
            Assert.Contains("my-disk", list);
            var wrong = Tool("qemu-img", "info", $"nbd://127.0.0.1:{server.Port}/other");
            Assert.NotEqual(0, wrong.ExitCode);
        }
    }
}
