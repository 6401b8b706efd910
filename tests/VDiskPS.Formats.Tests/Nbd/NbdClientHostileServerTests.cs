using System;
using System.Buffers.Binary;
using System.Diagnostics;
using System.IO;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Threading;
using System.Threading.Tasks;
using VDiskPS.Formats.Nbd;
using Xunit;

namespace VDiskPS.Formats.Tests.Nbd
{
    /// <summary>
    /// The client against a tiny fake server that breaks the protocol on purpose (no real server sends
    /// these replies, so no independent tool can play the part): every misbehaviour is a typed error
    /// within seconds, and nothing the server claims sizes an allocation.
    /// </summary>
    public class NbdClientHostileServerTests
    {
        private const long ExportSize = 1 << 20;

        private delegate void Misbehaviour(Stream stream, ulong cookie, long offset, uint length);

        [Fact]
        public void AnOversizedDataChunkIsCorruptionWithoutAllocatingIt()
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            var e = ReadThrough<ImageCorruptException>((s, cookie, offset, length) =>
            {
                Chunk(s, 0, NbdProtocol.ReplyTypeOffsetData, cookie, 0x7FFFFFF0u);
                Write64(s, (ulong)offset);
            });
            Assert.Contains("outside the 4096 bytes asked for", e.Message);
            Assert.Contains("NBD READ reply", e.Message);
            Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 64 << 20);
        }

        [Fact]
        public void GarbageReplyMagicIsCorruption()
        {
            var e = ReadThrough<ImageCorruptException>((s, cookie, offset, length) => s.Write(new byte[] { 0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 }));
            Assert.Contains("0xdeadbeef", e.Message);
        }

        [Fact]
        public void AReplyToNoRequestIsCorruption()
        {
            var e = ReadThrough<ImageCorruptException>((s, cookie, offset, length) => Chunk(s, NbdProtocol.ReplyFlagDone, NbdProtocol.ReplyTypeNone, cookie + 1000, 0));
            Assert.Contains("no request waits for", e.Message);
        }

        [Fact]
        public void ClosingInTheMiddleOfAReplyIsAnIOError()
        {
            var e = ReadThrough<ImageIOException>((s, cookie, offset, length) =>
            {
                Chunk(s, NbdProtocol.ReplyFlagDone, NbdProtocol.ReplyTypeOffsetData, cookie, 8 + length);
                Write64(s, (ulong)offset);
                s.Write(new byte[100]);
                s.Close();
            });
            Assert.Contains("connection to the server is lost", e.Message);
            Assert.Contains("offset 8192", e.Message);
        }

        [Fact]
        public void AReplyThatCoversHalfTheReadIsCorruption()
        {
            var e = ReadThrough<ImageCorruptException>((s, cookie, offset, length) =>
            {
                Chunk(s, NbdProtocol.ReplyFlagDone, NbdProtocol.ReplyTypeOffsetHole, cookie, 12);
                Write64(s, (ulong)offset);
                Write32(s, length / 2);
            });
            Assert.Contains("covers 2048 of the 4096 bytes", e.Message);
        }

        [Fact]
        public void ChunksThatOverlapAreCorruptionEvenWhenTheirSizesAddUp()
        {
            var e = ReadThrough<ImageCorruptException>((s, cookie, offset, length) =>
            {
                for (int i = 0; i < 2; i++)
                {
                    Chunk(s, (ushort)(i == 1 ? NbdProtocol.ReplyFlagDone : 0), NbdProtocol.ReplyTypeOffsetHole, cookie, 12);
                    Write64(s, (ulong)offset);
                    Write32(s, length / 2);
                }
            });
            Assert.Contains("covers some twice", e.Message);
        }

        [Fact]
        public void AnOversizedErrorChunkIsCorruption()
        {
            var e = ReadThrough<ImageCorruptException>((s, cookie, offset, length) => Chunk(s, NbdProtocol.ReplyFlagDone, NbdProtocol.ReplyTypeError, cookie, 1u << 30));
            Assert.Contains("error chunk", e.Message);
        }

        [Fact]
        public void AnErrorChunkIsAReadErrorCarryingTheServersMessage()
        {
            var e = ReadThrough<ImageReadException>((s, cookie, offset, length) =>
            {
                byte[] message = Encoding.UTF8.GetBytes("bad sector");
                Chunk(s, NbdProtocol.ReplyFlagDone, NbdProtocol.ReplyTypeError, cookie, (uint)(6 + message.Length));
                Write32(s, NbdProtocol.EIO);
                s.Write(new byte[] { 0, (byte)message.Length });
                s.Write(message);
            });
            Assert.Equal(8192, e.Offset);
            Assert.Contains("bad sector", e.Message);
        }

        [Fact]
        public void ASilentServerTimesOutInsteadOfHanging()
        {
            TimeSpan took = TimeSpan.Zero;
            var e = ReadThrough<ImageIOException>((s, cookie, offset, length) => Thread.Sleep(10000), TimeSpan.FromSeconds(1), t => took = t);
            Assert.True(took < TimeSpan.FromSeconds(6), took.ToString());
            Assert.Contains("sent nothing for 1 s", e.Message);
        }

        [Fact]
        public void AHugeOptionReplyInTheHandshakeIsCorruption()
        {
            using var server = new FakeServer(hugeOptionReply: true, null);
            var e = Assert.Throws<ImageCorruptException>(() => NbdClientFile.Open(server.Uri, HostAccess.Read, TimeSpan.FromSeconds(5)));
            Assert.Contains("at most 65536 are accepted", e.Message);
        }

        [Fact]
        public void NotAnNbdServerIsRefusedByName()
        {
            var listener = new TcpListener(IPAddress.Loopback, 0);
            listener.Start();
            int port = ((IPEndPoint)listener.LocalEndpoint).Port;
            var serve = Task.Run(() =>
            {
                using var client = listener.AcceptTcpClient();
                client.GetStream().Write(Encoding.ASCII.GetBytes("HTTP/1.1 400 Bad Request\r\n\r\n"));
                Thread.Sleep(2000);
            });
            try
            {
                var e = Assert.Throws<ImageCorruptException>(() => NbdClientFile.Open($"nbd://127.0.0.1:{port}/", HostAccess.Read, TimeSpan.FromSeconds(5)));
                Assert.Contains("not an NBD server", e.Message);
            }
            finally
            {
                listener.Stop();
            }
        }

        private static T ReadThrough<T>(Misbehaviour reply, TimeSpan? timeout = null, Action<TimeSpan> took = null)
            where T : ImageException
        {
            using var server = new FakeServer(false, reply);
            using HostFile file = NbdClientFile.Open(server.Uri, HostAccess.Read, timeout ?? TimeSpan.FromSeconds(10));
            Assert.Equal(ExportSize, file.Length);
            var watch = Stopwatch.StartNew();
            var read = Task.Run(() => file.ReadAt(8192, new byte[4096]));
            Assert.True(Task.WhenAny(read, Task.Delay(20000)).Result == read, "the read hung");
            took?.Invoke(watch.Elapsed);
            var e = Assert.Throws<T>(() => read.GetAwaiter().GetResult());
            Assert.Contains(server.Uri, e.Message);
            return e;
        }

        private static void Chunk(Stream s, ushort flags, ushort type, ulong cookie, uint length)
        {
            var header = new byte[20];
            BinaryPrimitives.WriteUInt32BigEndian(header, NbdProtocol.StructuredReplyMagic);
            BinaryPrimitives.WriteUInt16BigEndian(header.AsSpan(4), flags);
            BinaryPrimitives.WriteUInt16BigEndian(header.AsSpan(6), type);
            BinaryPrimitives.WriteUInt64BigEndian(header.AsSpan(8), cookie);
            BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(16), length);
            s.Write(header);
        }

        private static void Write64(Stream s, ulong value)
        {
            var b = new byte[8];
            BinaryPrimitives.WriteUInt64BigEndian(b, value);
            s.Write(b);
        }

        private static void Write32(Stream s, uint value)
        {
            var b = new byte[4];
            BinaryPrimitives.WriteUInt32BigEndian(b, value);
            s.Write(b);
        }

        /// <summary>One connection: a correct fixed-newstyle handshake (structured replies, base:allocation, GO), then the misbehaviour on the first request.</summary>
        private sealed class FakeServer : IDisposable
        {
            private readonly TcpListener _listener = new TcpListener(IPAddress.Loopback, 0);
            private readonly Task _serve;

            public FakeServer(bool hugeOptionReply, Misbehaviour reply)
            {
                _listener.Start();
                Uri = $"nbd://127.0.0.1:{((IPEndPoint)_listener.LocalEndpoint).Port}/fake";
                _serve = Task.Run(() => Serve(hugeOptionReply, reply));
            }

            public string Uri { get; }

            public void Dispose()
            {
                _listener.Stop();
                _serve.Wait(TimeSpan.FromSeconds(15));
            }

            private void Serve(bool hugeOptionReply, Misbehaviour reply)
            {
                try
                {
                    using TcpClient client = _listener.AcceptTcpClient();
                    Stream s = client.GetStream();
                    Write64(s, NbdProtocol.InitPasswd);
                    Write64(s, NbdProtocol.OptionMagic);
                    s.Write(new byte[] { 0, NbdProtocol.FlagFixedNewstyle | NbdProtocol.FlagNoZeroes });
                    ReadExact(s, 4);
                    while (true)
                    {
                        byte[] header = ReadExact(s, 16);
                        uint option = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(8));
                        ReadExact(s, (int)BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(12)));
                        if (hugeOptionReply)
                        {
                            OptionReply(s, option, NbdProtocol.RepAck, new byte[0], 1u << 31);
                            return;
                        }

                        if (option == NbdProtocol.OptSetMetaContext)
                        {
                            var context = new byte[4 + NbdProtocol.BaseAllocation.Length];
                            BinaryPrimitives.WriteUInt32BigEndian(context, 1);
                            Encoding.ASCII.GetBytes(NbdProtocol.BaseAllocation).CopyTo(context, 4);
                            OptionReply(s, option, NbdProtocol.RepMetaContext, context);
                        }
                        else if (option == NbdProtocol.OptGo)
                        {
                            var info = new byte[12];
                            BinaryPrimitives.WriteUInt64BigEndian(info.AsSpan(2), ExportSize);
                            BinaryPrimitives.WriteUInt16BigEndian(info.AsSpan(10), NbdProtocol.FlagHasFlags | NbdProtocol.FlagReadOnly);
                            OptionReply(s, option, NbdProtocol.RepInfo, info);
                            OptionReply(s, option, NbdProtocol.RepAck, new byte[0]);
                            break;
                        }

                        OptionReply(s, option, NbdProtocol.RepAck, new byte[0]);
                    }

                    byte[] request = ReadExact(s, 28);
                    reply(s, BinaryPrimitives.ReadUInt64BigEndian(request.AsSpan(8)), (long)BinaryPrimitives.ReadUInt64BigEndian(request.AsSpan(16)), BinaryPrimitives.ReadUInt32BigEndian(request.AsSpan(24)));

                    // Hold the connection until the client hangs up.
                    s.ReadByte();
                }
                catch (Exception e) when (e is IOException || e is SocketException || e is ObjectDisposedException)
                {
                    // The client hung up, as it should on a broken reply.
                }
            }

            private static void OptionReply(Stream s, uint option, uint type, byte[] data, uint? claimed = null)
            {
                var header = new byte[20];
                BinaryPrimitives.WriteUInt64BigEndian(header, NbdProtocol.OptionReplyMagic);
                BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(8), option);
                BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(12), type);
                BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(16), claimed ?? (uint)data.Length);
                s.Write(header);
                s.Write(data);
            }

            private static byte[] ReadExact(Stream s, int count)
            {
                var buffer = new byte[count];
                s.ReadExactly(buffer);
                return buffer;
            }
        }
    }
}
