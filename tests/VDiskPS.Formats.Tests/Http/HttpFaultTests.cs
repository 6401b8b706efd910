using System;
using System.IO;
using Xunit;

namespace VDiskPS.Formats.Tests.Http
{
    /// <summary>Transient failures retried, lasting ones reported, against <see cref="FaultyServer"/> (nginx cannot fail on cue).</summary>
    public class HttpFaultTests
    {
        private const int MiB = 1 << 20;

        [Fact]
        public void A_503_and_a_reset_connection_are_retried_and_the_read_succeeds()
        {
            byte[] content = TestData.Pattern(3 * MiB, 3);
            using var server = new FaultyServer(content, (n, from) => Fault.None);
            using HostFile file = HostFile.Open(server.Url("disk.raw"), HostAccess.Read);
            int first = server.Requests;
            server.Decide = (n, from) => n == first ? Fault.Unavailable : n == first + 1 ? Fault.Reset : Fault.None;

            var buffer = new byte[4096];
            Assert.Equal(buffer.Length, file.ReadAt(2L * MiB + 7, buffer));
            Assert.Equal(content.AsSpan(2 * MiB + 7, buffer.Length).ToArray(), buffer);
            Assert.Equal(first + 3, server.Requests);
        }

        [Fact]
        public void A_response_cut_short_every_time_is_an_error_after_the_retries_never_short_data()
        {
            byte[] content = TestData.Pattern(3 * MiB, 4);
            using var server = new FaultyServer(content, (n, from) => from == 0 ? Fault.None : Fault.Truncate);
            using HostFile file = HostFile.Open(server.Url("disk.raw"), HostAccess.Read);

            var e = Assert.Throws<ImageRemoteException>(() => file.ReadAt(2L * MiB, new byte[4096]));
            Assert.Contains(server.Url("disk.raw"), e.Message);
            Assert.Contains("cut short", e.Message);
            Assert.Equal(1 + 4, server.Requests);
        }

        [Fact]
        public void A_lasting_server_error_is_reported_with_its_status()
        {
            using var server = new FaultyServer(new byte[MiB], (n, from) => Fault.Unavailable);
            var e = Assert.Throws<ImageRemoteException>(() => HostFile.Open(server.Url("disk.raw"), HostAccess.Read));
            Assert.Equal(503, e.StatusCode);
            Assert.Contains("HTTP 503", e.Message);
            Assert.Equal(4, server.Requests);
        }

        [Fact]
        public void A_convert_that_fails_mid_read_leaves_no_output_behind()
        {
            using var dir = new TempDir();
            string local = dir.File("source.qcow2");
            Qemu.Img("create", "-q", "-f", "qcow2", local, "16M");
            Qemu.Io("-f", "qcow2", "-c", "write -P 0x5a 0 12M", local);
            byte[] content = File.ReadAllBytes(local);
            using var server = new FaultyServer(content, (n, from) => from >= 4 * MiB ? Fault.Truncate : Fault.None);
            string output = dir.File("out") ;
            Directory.CreateDirectory(output);

            Assert.Throws<ImageRemoteException>(() => ConvertOperation.Run(server.Url("source.qcow2"), Path.Combine(output, "disk.vhdx"), new ConvertOptions { TargetFormat = Fmt.Vhdx }));

            Assert.Empty(Directory.GetFileSystemEntries(output));
        }
    }
}
