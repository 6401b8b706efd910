using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Net.Sockets;
using VDiskPS.Formats.Nbd;
using Xunit;

namespace VDiskPS.Formats.Tests.Nbd
{
    /// <summary>
    /// Clients that break the protocol get an error or a disconnect, never a crash, a hang or an unbounded
    /// allocation, and other clients go on being served. No real client sends such traffic, so a bare
    /// socket client sends it and qemu-img (a real client) checks that the server still serves.
    /// </summary>
    public class NbdHostileClientTests
    {
        private static NbdServer Serve(TempDir dir, TimeSpan? timeout = null, int maxConnections = 4096)
        {
            string path = dir.File("disk.raw");
            System.IO.File.WriteAllBytes(path, TestData.Pattern(1 << 20, 3));
            return NbdServer.Start(
                new NbdExportOptions { Path = path, ExportName = "disk" },
                new NbdServerOptions { Port = 0, HandshakeTimeout = timeout ?? TimeSpan.FromSeconds(30), RequestTimeout = timeout ?? TimeSpan.FromSeconds(60), MaxConnections = maxConnections });
        }

        private static void StillServes(NbdServer server)
        {
            var (identical, output) = Qemu.Compare(server.Path, "raw", server.Uri, "raw");
            Assert.True(identical, output);
        }

        [Fact]
        public void GarbageInsteadOfAnOptionIsDisconnected()
        {
            using var dir = new TempDir();
            using var server = Serve(dir);
            using var client = new RawNbdClient(server.Port);
            client.Greet();
            client.Stream.Write(TestData.Pattern(64, 1));
            Assert.True(client.IsClosedByServer());
            StillServes(server);
        }

        [Fact]
        public void UnknownClientFlagsAreDisconnected()
        {
            using var dir = new TempDir();
            using var server = Serve(dir);
            using var client = new RawNbdClient(server.Port);
            client.Greet(clientFlags: 0xFFFF);
            Assert.True(client.IsClosedByServer());
            StillServes(server);
        }

        [Fact]
        public void OversizedOptionLengthIsRefusedWithoutReadingIt()
        {
            using var dir = new TempDir();
            using var server = Serve(dir);
            using var client = new RawNbdClient(server.Port);
            client.Greet();
            client.SendOption(7, Array.Empty<byte>(), claimedLength: 0xFFFFFFF0);
            var (type, _) = client.ReadOptionReply();
            Assert.Equal(0x80000009u, type); // NBD_REP_ERR_TOO_BIG
            Assert.True(client.IsClosedByServer());
            StillServes(server);
        }

        [Fact]
        public void MalformedGoIsAnErrorReplyAndTheHandshakeGoesOn()
        {
            using var dir = new TempDir();
            using var server = Serve(dir);
            using var client = new RawNbdClient(server.Port);
            client.Greet();
            var go = new byte[8];
            go[3] = 200; // a name length past the data
            client.SendOption(7, go);
            Assert.Equal(0x80000003u, client.ReadOptionReply().Type); // NBD_REP_ERR_INVALID
            client.SendOption(7, RawNbdClient.Utf8("\0\0\0\x0005wrong\0\0"));
            Assert.Equal(0x80000006u, client.ReadOptionReply().Type); // NBD_REP_ERR_UNKNOWN
            client.SendOption(99, Array.Empty<byte>());
            Assert.Equal(0x80000001u, client.ReadOptionReply().Type); // NBD_REP_ERR_UNSUP
            client.SendOption(7, new byte[6]);
            Assert.Equal(3u, client.ReadOptionReply().Type); // NBD_REP_INFO: the default export
        }

        [Theory]
        [InlineData(false)]
        [InlineData(true)]
        public void OversizedAndOutOfRangeReadsAreErrorsAndTheConnectionGoesOn(bool structured)
        {
            using var dir = new TempDir();
            using var server = Serve(dir);
            using var client = new RawNbdClient(server.Port);
            client.Connect(structured);
            client.SendRequest(0, 0, 0xFFFFFF00);
            Assert.Equal(75u, client.ReadReply()); // NBD_EOVERFLOW, before anything is allocated
            client.SendRequest(0, (1 << 20) - 512, 1024);
            Assert.Equal(22u, client.ReadReply()); // NBD_EINVAL: past the end
            client.SendRequest(0, ulong.MaxValue - 10, 512);
            Assert.Equal(22u, client.ReadReply());
            client.SendRequest(77, 0, 0);
            Assert.Equal(22u, client.ReadReply()); // unknown command
            client.SendRequest(0, 0, 4096, flags: 0x40);
            Assert.Equal(22u, client.ReadReply()); // unknown flag
            client.SendRequest(7, 0, 4096);
            Assert.Equal(22u, client.ReadReply()); // block status without a selected metadata context
            client.SendRequest(0, 0, 4096);
            Assert.Equal(0u, client.ReadReply(4096));
        }

        [Fact]
        public void OversizedWriteIsRefusedAndDisconnected()
        {
            using var dir = new TempDir();
            using var server = Serve(dir);
            using var client = new RawNbdClient(server.Port);
            client.Connect(structured: true);
            client.SendRequest(1, 0, 0xFFFFFFFF);
            Assert.Equal(75u, client.ReadReply()); // NBD_EOVERFLOW
            Assert.True(client.IsClosedByServer());
            StillServes(server);
        }

        [Fact]
        public void HalfOpenConnectionsAreDroppedInBoundedTime()
        {
            using var dir = new TempDir();
            using var server = Serve(dir, timeout: TimeSpan.FromSeconds(1));
            using var stalledInHandshake = new RawNbdClient(server.Port);
            stalledInHandshake.Greet();
            stalledInHandshake.Stream.Write(new byte[10]); // half an option header
            using var stalledInRequest = new RawNbdClient(server.Port);
            stalledInRequest.Connect(structured: true);
            stalledInRequest.Stream.Write(new byte[] { 0x25, 0x60, 0x95, 0x13, 0, 0 }); // half a request
            var watch = Stopwatch.StartNew();
            Assert.True(stalledInHandshake.IsClosedByServer());
            Assert.True(stalledInRequest.IsClosedByServer());
            Assert.True(watch.Elapsed < TimeSpan.FromSeconds(15), $"took {watch.Elapsed}");
            StillServes(server);
        }

        [Fact]
        public void AThousandIdleConnectionsDoNotStopAReader()
        {
            using var dir = new TempDir();
            using var server = Serve(dir);
            int threadsBefore = Process.GetCurrentProcess().Threads.Count;
            var idle = new List<Socket>();
            try
            {
                for (int i = 0; i < 1000; i++)
                {
                    var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                    s.Connect("127.0.0.1", server.Port);
                    idle.Add(s);
                }

                var watch = Stopwatch.StartNew();
                StillServes(server);
                Assert.True(watch.Elapsed < TimeSpan.FromSeconds(30), $"a read took {watch.Elapsed} beside idle connections");

                // Idle clients hold no thread each (asynchronous I/O).
                int threadsDuring = Process.GetCurrentProcess().Threads.Count;
                Assert.True(threadsDuring < threadsBefore + 100, $"{threadsBefore} threads before, {threadsDuring} with 1000 idle connections");
                Assert.True(server.Connections >= 900, $"{server.Connections} connections counted");
            }
            finally
            {
                foreach (var s in idle)
                {
                    s.Dispose();
                }
            }
        }

        [Fact]
        public void ConnectionsPastTheLimitAreClosed()
        {
            using var dir = new TempDir();
            using var server = Serve(dir, maxConnections: 2);
            using var a = new RawNbdClient(server.Port);
            using var b = new RawNbdClient(server.Port);
            a.Greet();
            b.Greet();
            using var c = new RawNbdClient(server.Port);
            Assert.True(c.IsClosedByServer());
        }

        [Fact]
        public void StopEndsConnectionsAndReleasesTheImage()
        {
            using var dir = new TempDir();
            var server = Serve(dir);
            using var client = new RawNbdClient(server.Port);
            client.Connect(structured: true);
            server.Stop();
            Assert.True(client.IsClosedByServer());
            Assert.False(server.IsRunning);

            // The image is closed: qemu may take it for writing.
            Qemu.Io("-f", "raw", "-c", "write 0 4k", server.Path);
        }
    }
}
