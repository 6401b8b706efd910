using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Text.RegularExpressions;
using System.Threading;
using System.Threading.Tasks;
using VDiskPS.Formats.Nbd;
using Xunit;

namespace VDiskPS.Formats.Tests.Nbd
{
    /// <summary>
    /// Several connections to one export, where the server allows them (NBD_FLAG_CAN_MULTI_CONN) and
    /// only there: counted by the kernel's socket table (ss) and by nbdkit's log filter, the bytes
    /// judged by qemu-img compare against the source.
    /// </summary>
    public class NbdConnectionPoolTests
    {
        private const int Size = 32 << 20;

        [Fact]
        public void ParallelReadsOfASharedQemuNbdExportSpreadOverFourConnections()
        {
            using var dir = new TempDir();
            string raw = dir.File("shared.raw");
            byte[] content = TestData.Pattern(Size, 11);
            File.WriteAllBytes(raw, content);
            using var server = ExternalNbdServer.QemuNbdTcp(raw, "raw", shared: 4, readOnly: true);
            using var file = (NbdClientFile)HostFile.Open(server.Uri, HostAccess.Read);
            ReadInParallelUntil(file, content, () => file.Connections == NbdConnectionPool.MaxConnections);
            Assert.Equal(NbdConnectionPool.MaxConnections, file.Connections);
            Assert.Equal(NbdConnectionPool.MaxConnections, server.EstablishedConnections());
        }

        [Fact]
        public void AConversionFromASharedQemuNbdExportEqualsTheSource()
        {
            using var dir = new TempDir();
            string image = dir.File("source.qcow2");
            Qemu.Img("create", "-q", "-f", "qcow2", image, "32M");
            Qemu.Io("-f", "qcow2", "-c", "write -P 0x5a 0 5M", "-c", "write -z 6M 2M", "-c", "write -P 0x17 9M 13M", "-c", "write -P 0x42 31M 1M", image);
            string output = dir.File("out.raw");
            using (var server = ExternalNbdServer.QemuNbdTcp(image, "qcow2", shared: 4, readOnly: true))
            {
                ConvertOperation.Run(server.Uri, output, new ConvertOptions { TargetFormat = Fmt.Raw, ChunkSize = 256 << 10 });
            }

            var (identical, text) = Qemu.Compare(image, "qcow2", output, "raw");
            Assert.True(identical, text);
        }

        [Fact]
        public void WithoutMultiConnOnlyOneConnectionIsOpened()
        {
            using var dir = new TempDir();
            string raw = dir.File("single.raw");
            File.WriteAllBytes(raw, TestData.Pattern(Size, 12));
            string log = dir.File("nbdkit.log");
            string output = dir.File("out.raw");
            using (var server = ExternalNbdServer.Nbdkit(dir, "--filter=multi-conn", "--filter=log", "file", raw, "multi-conn-mode=disable", "logfile=" + log))
            {
                ConvertOperation.Run(server.Uri, output, new ConvertOptions { TargetFormat = Fmt.Raw, ChunkSize = 256 << 10, ThrottleLimit = 8 });
            }

            Assert.Single(ConnectionsIn(File.ReadAllLines(log)));
            var (identical, text) = Qemu.Compare(raw, "raw", output, "raw");
            Assert.True(identical, text);
        }

        /// <summary>
        /// Reads in flight beyond the workers are the engine's choice for a network source; a limit the
        /// caller gives (-ThrottleLimit) holds for them too: one read at a time never finds its
        /// connection busy, so no second connection is opened (nbdkit's log counts them).
        /// </summary>
        [Theory]
        [InlineData(1, false)]
        [InlineData(null, true)]
        public void AnExplicitReadLimitHoldsForANetworkSource(int? readsInFlight, bool moreThanOneConnection)
        {
            using var dir = new TempDir();
            string raw = dir.File("limited.raw");
            File.WriteAllBytes(raw, TestData.Pattern(Size, 14));
            string log = dir.File("nbdkit.log");
            string output = dir.File("out.raw");
            using (var server = ExternalNbdServer.Nbdkit(dir, "--filter=multi-conn", "--filter=log", "--filter=delay", "file", raw, "multi-conn-mode=emulate", "rdelay=5ms", "logfile=" + log))
            {
                ConvertOperation.Run(server.Uri, output, new ConvertOptions { TargetFormat = Fmt.Raw, ChunkSize = 256 << 10, ThrottleLimit = 1, ReadsInFlight = readsInFlight });
            }

            Assert.Equal(moreThanOneConnection, ConnectionsIn(File.ReadAllLines(log)).Count > 1);
            var (identical, text) = Qemu.Compare(raw, "raw", output, "raw");
            Assert.True(identical, text);
        }

        /// <summary>Export-VDiskOva passes the caller's limit on to the copy of each disk: an OVA from an NBD export at a limit of 1 reads over one connection; the member is judged by qemu-img compare.</summary>
        [Fact]
        public void AnOvaExportFromANetworkSourceKeepsTheCallersReadLimit()
        {
            using var dir = new TempDir();
            string raw = dir.File("disk.raw");
            File.WriteAllBytes(raw, TestData.Pattern(Size, 15));
            string log = dir.File("nbdkit.log");
            string ova = dir.File("vm.ova");
            using (var server = ExternalNbdServer.Nbdkit(dir, "--filter=multi-conn", "--filter=log", "--filter=delay", "file", raw, "multi-conn-mode=emulate", "rdelay=5ms", "logfile=" + log))
            {
                VDiskPS.Formats.Ova.OvaExport.Run(new VDiskPS.Formats.Ova.OvaExportRequest { Images = new[] { server.Uri }, Destination = ova, Name = "vm", ThrottleLimit = 1, ReadsInFlight = 1 });
            }

            Assert.Single(ConnectionsIn(File.ReadAllLines(log)));
            string parts = dir.File("parts");
            Directory.CreateDirectory(parts);
            var tar = Qemu.Run("tar", new[] { "-xf", ova, "-C", parts });
            Assert.True(tar.ExitCode == 0, tar.Output);
            var (identical, text) = Qemu.Compare(raw, "raw", Directory.GetFiles(parts, "*.vmdk").Single(), "vmdk");
            Assert.True(identical, text);
        }

        [Fact]
        public void WritesSpreadOverConnectionsLandAndEveryConnectionThatWroteIsFlushedAfterItsLastWrite()
        {
            using var dir = new TempDir();
            string source = dir.File("source.qcow2");
            Qemu.Img("create", "-q", "-f", "qcow2", source, "32M");
            Qemu.Io("-f", "qcow2", "-c", "write -P 0x21 0 12M", "-c", "write -z 12M 4M", "-c", "write -P 0x63 20M 12M", source);
            string target = dir.File("target.raw");
            File.WriteAllBytes(target, Enumerable.Repeat((byte)0xee, Size).ToArray());
            string log = dir.File("nbdkit.log");
            using (var server = ExternalNbdServer.Nbdkit(dir, "--filter=log", "file", target, "logfile=" + log))
            {
                ConvertOperation.Run(source, server.Uri, new ConvertOptions { TargetFormat = Fmt.Raw, NoCreate = true, ChunkSize = 256 << 10, ThrottleLimit = 8 });
            }

            var (identical, text) = Qemu.Compare(source, "qcow2", target, "raw");
            Assert.True(identical, text);

            string[] lines = File.ReadAllLines(log);
            var wrote = new HashSet<int>();
            var lastWrite = new Dictionary<int, int>();
            var lastFlush = new Dictionary<int, int>();
            for (int i = 0; i < lines.Length; i++)
            {
                Match m = Regex.Match(lines[i], @"connection=(\d+) (Write|Zero|Flush) ");
                if (!m.Success)
                {
                    continue;
                }

                int connection = int.Parse(m.Groups[1].Value);
                if (m.Groups[2].Value == "Flush")
                {
                    lastFlush[connection] = i;
                }
                else
                {
                    wrote.Add(connection);
                    lastWrite[connection] = i;
                }
            }

            Assert.True(wrote.Count > 1, $"the writes went over {wrote.Count} connection(s)");
            Assert.All(wrote, c => Assert.True(lastFlush.TryGetValue(c, out int flush) && flush > lastWrite[c], $"connection {c} was not flushed after its last write"));
        }

        [Fact]
        public void AServerThatRefusesFurtherClientsLeavesFewerConnectionsAndEveryReadServed()
        {
            using var dir = new TempDir();
            string raw = dir.File("limited.raw");
            byte[] content = TestData.Pattern(Size, 13);
            File.WriteAllBytes(raw, content);
            string log = dir.File("nbdkit.log");

            // nbdkit's limit filter drops a third client before its handshake; the file plugin advertises multi-conn.
            using var server = ExternalNbdServer.Nbdkit(dir, "--filter=log", "--filter=limit", "file", raw, "limit=2", "logfile=" + log);
            using (var file = (NbdClientFile)HostFile.Open(server.Uri, HostAccess.Read))
            {
                ReadInParallelUntil(file, content, () => file.Connections == 2 && File.ReadAllText(log).Contains("Preconnect id=3"));
                ReadInParallel(file, content, 64);
                Assert.Equal(2, file.Connections);
            }

            Assert.Equal(2, ConnectionsIn(File.ReadAllLines(log)).Count);
        }

        [Fact]
        public void AHandshakeStalledByAServerAtItsClientLimitDelaysNeitherReadsNorTheClose()
        {
            using var dir = new TempDir();
            string raw = dir.File("two.raw");
            byte[] content = TestData.Pattern(Size, 14);
            File.WriteAllBytes(raw, content);

            // qemu-nbd -e 2 stops accepting at two clients: a third connects but is never greeted.
            using var server = ExternalNbdServer.QemuNbdTcp(raw, "raw", shared: 2, readOnly: true);
            var file = (NbdClientFile)HostFile.Open(server.Uri, HostAccess.Read);
            try
            {
                ReadInParallelUntil(file, content, () => file.Connections == 2 && server.EstablishedConnections() == 3);
                var watch = Stopwatch.StartNew();
                ReadInParallel(file, content, 64);
                Assert.True(watch.Elapsed < TimeSpan.FromSeconds(10), $"reads took {watch.Elapsed} beside the stalled handshake");
                Assert.Equal(2, file.Connections);
            }
            finally
            {
                var watch = Stopwatch.StartNew();
                file.Dispose();
                Assert.True(watch.Elapsed < TimeSpan.FromSeconds(5), $"closing took {watch.Elapsed}");
            }
        }

        [Fact]
        public void AFurtherConnectionThatDescribesTheExportDifferentlyIsNotUsed()
        {
            using var dir = new TempDir();
            string log = dir.File("nbdkit.log");

            // The first client sees 1 MiB, every later one 2 MiB: a server whose connections disagree.
            using var server = ExternalNbdServer.Nbdkit(
                dir,
                "--filter=log",
                "eval",
                "get_size=if [ -e $tmpdir/seen ]; then echo 2097152; else touch $tmpdir/seen; echo 1048576; fi",
                "pread=dd if=/dev/zero count=$3 iflag=count_bytes status=none",
                "can_multi_conn=exit 0",
                "logfile=" + log);
            using var file = (NbdClientFile)HostFile.Open(server.Uri, HostAccess.Read);
            Assert.Equal(1 << 20, file.Length);
            var zeros = new byte[1 << 20];
            var watch = Stopwatch.StartNew();
            while (ConnectionsIn(File.ReadAllLines(log)).Count < 2)
            {
                Assert.True(watch.Elapsed < TimeSpan.FromSeconds(20), "no further connection was tried");
                ReadInParallel(file, zeros, 16);
            }

            ReadInParallel(file, zeros, 16);
            Assert.Equal(1, file.Connections);
        }

        /// <summary>Random reads, 8 at a time, each checked against <paramref name="content"/>, until <paramref name="done"/> holds (at most 20 s).</summary>
        private static void ReadInParallelUntil(HostFile file, byte[] content, Func<bool> done)
        {
            var watch = Stopwatch.StartNew();
            while (!done())
            {
                Assert.True(watch.Elapsed < TimeSpan.FromSeconds(20), "the pool did not reach the expected connections");
                ReadInParallel(file, content, 32);
            }
        }

        private static void ReadInParallel(HostFile file, byte[] content, int reads)
        {
            Parallel.For(0, reads, new ParallelOptions { MaxDegreeOfParallelism = 8 }, i =>
            {
                var rng = new Random(Environment.TickCount ^ i);
                int length = rng.Next(1, Math.Min(content.Length, 1 << 20));
                long offset = rng.Next(0, content.Length - length);
                var buffer = new byte[length];
                Assert.Equal(length, file.ReadAt(offset, buffer));
                Assert.True(buffer.AsSpan().SequenceEqual(content.AsSpan((int)offset, length)), $"read of {length} at {offset}");
            });
        }

        /// <summary>The connection ids of nbdkit's log filter that reached the transmission phase ("connection=N Connect").</summary>
        private static HashSet<int> ConnectionsIn(string[] lines)
            => new HashSet<int>(lines.Select(l => Regex.Match(l, @"connection=(\d+) Connect ")).Where(m => m.Success).Select(m => int.Parse(m.Groups[1].Value)));
    }
}
