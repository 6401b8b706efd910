using System;
using System.Buffers;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.IO;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Threading;

namespace VDiskPS.Formats.Nbd
{
    /// <summary>
    /// One connection to an NBD server (NetworkBlockDevice/nbd doc/proto.md), thread-safe: callers on
    /// many threads send requests with their own cookies and one receiver thread hands each reply to the
    /// request it answers, so parallel reads share the connection as qemu's nbd client does.
    /// Everything the server sends is checked against what was asked (lengths, offsets, chunk counts)
    /// before a byte is stored, so a hostile server costs bounded memory; a server silent for
    /// <see cref="Timeout"/> while requests wait is dropped, so a dead server never hangs a caller.
    /// </summary>
    internal sealed class NbdClient : IDisposable
    {
        private const ulong OldstyleMagic = 0x00420281861253;
        private const int MaxOptionReply = 64 * 1024;
        private const int MaxChunksPerReply = 1 << 16;
        private const int MaxExtentsPerReply = 1 << 17;
        private const int MaxSkippedChunk = 64 * 1024;
        private const ushort ReplyTypeErrorOffset = (1 << 15) + 2;
        private const uint AllocationContextUnset = uint.MaxValue;

        private readonly string _location;
        private readonly Socket _socket;
        private readonly Stream _stream;
        private readonly object _sendGate = new object();
        private readonly Dictionary<ulong, Request> _pending = new Dictionary<ulong, Request>();
        private readonly byte[] _sendHeader = new byte[28];
        private readonly byte[] _receiveHeader = new byte[20];
        private Thread _receiver;
        private long _nextCookie;
        private long _lastTraffic;
        private string _failure;
        private bool _failureIsCorruption;
        private Request _culprit;
        private uint _allocationContext = AllocationContextUnset;
        private int _inFlight;
        private bool _wroteSinceFlush;
#if NETFRAMEWORK
        private byte[] _receiveScratch;
#endif

        private NbdClient(string location, Socket socket, TimeSpan timeout)
        {
            _location = location;
            _socket = socket;
            _stream = new NetworkStream(socket, ownsSocket: true);
            Timeout = timeout;
        }

        /// <summary>How long requests wait while the server sends nothing; the handshake's limit too.</summary>
        internal static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(30);

        public TimeSpan Timeout { get; }

        public long Size { get; private set; }

        public ushort TransmissionFlags { get; private set; }

        public bool Structured { get; private set; }

        public bool HasAllocationContext => _allocationContext != AllocationContextUnset;

        /// <summary>The server's minimum block size (requests are aligned to it), 1 when it did not say.</summary>
        public int MinimumBlock { get; private set; } = 1;

        /// <summary>The largest READ/WRITE payload sent: the server's maximum block size, at most 32 MiB.</summary>
        public int MaxPayload { get; private set; } = NbdProtocol.MaxPayload;

        public bool ReadOnly => (TransmissionFlags & NbdProtocol.FlagReadOnly) != 0;

        /// <summary>False once the connection failed or was closed.</summary>
        public bool IsAlive => Volatile.Read(ref _failure) == null;

        /// <summary>The connection ended because the server broke the protocol (not a plain loss of the connection).</summary>
        public bool BrokeProtocol => !IsAlive && _failureIsCorruption;

        /// <summary>Requests sent and not yet answered.</summary>
        public int InFlight => Volatile.Read(ref _inFlight);

        /// <summary>A WRITE or WRITE_ZEROES went out since the last FLUSH on this connection.</summary>
        public bool WroteSinceFlush => Volatile.Read(ref _wroteSinceFlush);

        public bool Has(ushort flag) => (TransmissionFlags & flag) != 0;

        /// <summary>
        /// Connects and negotiates: fixed newstyle, structured replies, base:allocation, NBD_OPT_GO
        /// (NBD_OPT_EXPORT_NAME for old servers). Cancelling closes the socket, which ends a handshake in progress.
        /// </summary>
        public static NbdClient Connect(NbdClientLocation location, TimeSpan timeout, CancellationToken cancel = default)
        {
            Socket socket = OpenSocket(location, timeout, cancel);
            var client = new NbdClient(location.Location, socket, timeout);
            try
            {
                using (cancel.Register(() => socket.Dispose()))
                {
                    cancel.ThrowIfCancellationRequested();
                    Negotiate(client, socket, location, timeout);
                }

                return client;
            }
            catch (Exception e) when (cancel.IsCancellationRequested && (e is IOException || e is ObjectDisposedException || e is SocketException || e is ImageException))
            {
                client.Dispose();
                throw new OperationCanceledException(cancel);
            }
            catch (IOException e)
            {
                client.Dispose();
                throw new ImageIOException(location.Location, $"the NBD handshake with {location.Endpoint} failed: {Describe(e)}", e);
            }
            catch
            {
                client.Dispose();
                throw;
            }
        }

        private static void Negotiate(NbdClient client, Socket socket, NbdClientLocation location, TimeSpan timeout)
        {
            socket.ReceiveTimeout = (int)timeout.TotalMilliseconds;
            socket.SendTimeout = (int)timeout.TotalMilliseconds;
            client.Handshake(location.ExportName);

            // The receiver waits for replies as long as the connection lives; silence while a request
            // waits is judged by the waiter (see SendAndWait).
            socket.ReceiveTimeout = 0;
            client._lastTraffic = DateTime.UtcNow.Ticks;
            client._receiver = new Thread(client.ReceiveLoop) { IsBackground = true, Name = "NBD client " + location.Endpoint };
            client._receiver.Start();
        }

        /// <summary>
        /// Reads [offset, offset+buffer.Length) in one request (at most <see cref="MaxPayload"/>). The
        /// receiver stores the reply straight into <paramref name="buffer"/>, which stays pinned until
        /// the request is released: once this returns or throws, nothing writes into it any more.
        /// </summary>
        public unsafe void Read(long offset, Span<byte> buffer)
        {
            fixed (byte* target = buffer)
            {
                var request = new Request(NbdProtocol.CmdRead, offset, buffer.Length) { Target = target };
                try
                {
                    Execute(request, 0, ReadOnlySpan<byte>.Empty);
                }
                finally
                {
                    request.Release();
                }
            }
        }

        public void Write(long offset, ReadOnlySpan<byte> data, ushort flags = 0)
        {
            Volatile.Write(ref _wroteSinceFlush, true);
            Execute(new Request(NbdProtocol.CmdWrite, offset, data.Length), flags, data);
        }

        public void WriteZeroes(long offset, long length, ushort flags)
        {
            Volatile.Write(ref _wroteSinceFlush, true);
            Execute(new Request(NbdProtocol.CmdWriteZeroes, offset, length), flags, ReadOnlySpan<byte>.Empty);
        }

        /// <summary>NBD_CMD_FLUSH: the writes this connection had answered are durable once it returns.</summary>
        public void Flush()
        {
            Volatile.Write(ref _wroteSinceFlush, false);
            try
            {
                Execute(new Request(NbdProtocol.CmdFlush, 0, 0), 0, ReadOnlySpan<byte>.Empty);
            }
            catch
            {
                Volatile.Write(ref _wroteSinceFlush, true);
                throw;
            }
        }

        /// <summary>base:allocation extents from <paramref name="offset"/>: (length, flags) each, as the server sent them; null when the server answered with an error.</summary>
        public List<(long Length, uint Flags)> BlockStatus(long offset, long length)
        {
            var request = new Request(NbdProtocol.CmdBlockStatus, offset, length) { Extents = new List<(long, uint)>() };
            try
            {
                Execute(request, 0, ReadOnlySpan<byte>.Empty);
            }
            catch (ImageIOException) when (request.Error != 0)
            {
                return null;
            }

            return request.Extents;
        }

        public void Dispose()
        {
            if (_receiver != null && _failure == null)
            {
                try
                {
                    // NBD_CMD_DISC has no reply: the server closes once it has finished earlier requests.
                    lock (_sendGate)
                    {
                        WriteRequestHeader(NbdProtocol.CmdDisc, 0, 0, 0, 0);
                        _stream.Write(_sendHeader, 0, _sendHeader.Length);
                    }
                }
                catch (Exception e) when (e is IOException || e is ObjectDisposedException || e is SocketException)
                {
                    // The connection is gone already; closing goes on.
                }
            }

            Fail("the connection was closed", false);
            _receiver?.Join(TimeSpan.FromSeconds(5));
        }

        private static Socket OpenSocket(NbdClientLocation location, TimeSpan timeout, CancellationToken cancel)
        {
            Socket socket = null;
            try
            {
                EndPoint endPoint;
                if (location.SocketPath != null)
                {
                    endPoint = NbdServer.UnixEndPoint(location.SocketPath);
                    socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                }
                else
                {
                    IPAddress address = ResolveHost(location);
                    endPoint = new IPEndPoint(address, location.Port);
                    socket = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
                }

                IAsyncResult pending = socket.BeginConnect(endPoint, null, null);
                int signalled = WaitHandle.WaitAny(new[] { pending.AsyncWaitHandle, cancel.WaitHandle }, timeout);
                if (signalled == 1)
                {
                    throw new OperationCanceledException(cancel);
                }

                if (signalled == WaitHandle.WaitTimeout)
                {
                    throw new ImageIOException(location.Location, $"no answer from the NBD server at {location.Endpoint} within {timeout.TotalSeconds:0} s");
                }

                socket.EndConnect(pending);
                return socket;
            }
            catch (SocketException e)
            {
                socket?.Dispose();
                throw new ImageIOException(location.Location, $"cannot connect to the NBD server at {location.Endpoint}: {e.Message}", e);
            }
            catch
            {
                socket?.Dispose();
                throw;
            }
        }

        private static IPAddress ResolveHost(NbdClientLocation location)
        {
            if (IPAddress.TryParse(location.Host, out IPAddress literal))
            {
                return literal;
            }

            try
            {
                IPAddress[] found = Dns.GetHostAddresses(location.Host);
                foreach (IPAddress address in found)
                {
                    if (address.AddressFamily == AddressFamily.InterNetwork)
                    {
                        return address;
                    }
                }

                if (found.Length > 0)
                {
                    return found[0];
                }
            }
            catch (SocketException e)
            {
                throw new ImageIOException(location.Location, $"cannot resolve the host '{location.Host}': {e.Message}", e);
            }

            throw new ImageIOException(location.Location, $"the host '{location.Host}' has no address");
        }

        private void Handshake(string exportName)
        {
            byte[] greeting = ReadExact(16);
            if (BinaryPrimitives.ReadUInt64BigEndian(greeting) != NbdProtocol.InitPasswd)
            {
                throw Violation("NBD greeting", 0, "the server did not greet with NBDMAGIC: it is not an NBD server");
            }

            ulong style = BinaryPrimitives.ReadUInt64BigEndian(greeting.AsSpan(8));
            if (style == OldstyleMagic)
            {
                // Oldstyle: one unnamed export, described at once (size, flags, 124 zero bytes).
                byte[] described = ReadExact(8 + 4 + 124);
                if (exportName.Length != 0)
                {
                    throw new ImageIOException(_location, $"the server speaks the oldstyle protocol, which has one unnamed export; it has no export named '{exportName}'");
                }

                Size = CheckedSize(BinaryPrimitives.ReadUInt64BigEndian(described));
                TransmissionFlags = (ushort)BinaryPrimitives.ReadUInt32BigEndian(described.AsSpan(8));
                return;
            }

            if (style != NbdProtocol.OptionMagic)
            {
                throw Violation("NBD greeting", 8, $"unknown handshake style 0x{style:x}");
            }

            ushort serverFlags = BinaryPrimitives.ReadUInt16BigEndian(ReadExact(2));
            bool fixedNewstyle = (serverFlags & NbdProtocol.FlagFixedNewstyle) != 0;
            bool noZeroes = (serverFlags & NbdProtocol.FlagNoZeroes) != 0;
            var clientFlags = new byte[4];
            BinaryPrimitives.WriteUInt32BigEndian(clientFlags, (fixedNewstyle ? NbdProtocol.ClientFlagFixedNewstyle : 0) | (noZeroes ? NbdProtocol.ClientFlagNoZeroes : 0));
            _stream.Write(clientFlags, 0, 4);

            // Without fixed newstyle the server may drop the connection on any option but EXPORT_NAME.
            if (fixedNewstyle)
            {
                NegotiateStructuredReplies();
                if (Structured)
                {
                    NegotiateAllocationContext(exportName);
                }

                if (Go(exportName))
                {
                    return;
                }
            }

            ExportName(exportName, noZeroes);
        }

        private void NegotiateStructuredReplies()
        {
            SendOption(NbdProtocol.OptStructuredReply, Array.Empty<byte>());
            (uint type, byte[] data) = ReadOptionReply(NbdProtocol.OptStructuredReply);
            Structured = type == NbdProtocol.RepAck;
            if (!Structured && (type & NbdProtocol.RepFlagError) == 0)
            {
                throw Violation("NBD_OPT_STRUCTURED_REPLY reply", 0, $"unexpected reply type {type} ({data.Length} bytes)");
            }
        }

        private void NegotiateAllocationContext(string exportName)
        {
            byte[] name = Encoding.UTF8.GetBytes(exportName);
            byte[] query = Encoding.UTF8.GetBytes(NbdProtocol.BaseAllocation);
            var data = new byte[4 + name.Length + 4 + 4 + query.Length];
            BinaryPrimitives.WriteUInt32BigEndian(data, (uint)name.Length);
            name.CopyTo(data, 4);
            BinaryPrimitives.WriteUInt32BigEndian(data.AsSpan(4 + name.Length), 1);
            BinaryPrimitives.WriteUInt32BigEndian(data.AsSpan(8 + name.Length), (uint)query.Length);
            query.CopyTo(data, 12 + name.Length);
            SendOption(NbdProtocol.OptSetMetaContext, data);
            for (int replies = 0; ; replies++)
            {
                (uint type, byte[] reply) = ReadOptionReply(NbdProtocol.OptSetMetaContext);
                if (type == NbdProtocol.RepMetaContext)
                {
                    if (reply.Length < 4 || replies > 16)
                    {
                        throw Violation("NBD_OPT_SET_META_CONTEXT reply", 0, $"a context reply of {reply.Length} bytes (or more contexts than were asked for)");
                    }

                    string context = Encoding.UTF8.GetString(reply, 4, reply.Length - 4);
                    if (context == NbdProtocol.BaseAllocation)
                    {
                        _allocationContext = BinaryPrimitives.ReadUInt32BigEndian(reply);
                    }

                    continue;
                }

                if (type != NbdProtocol.RepAck && (type & NbdProtocol.RepFlagError) == 0)
                {
                    throw Violation("NBD_OPT_SET_META_CONTEXT reply", 0, $"unexpected reply type {type}");
                }

                // An error (unsupported, unknown export) leaves no context: block status is then not asked.
                if (type != NbdProtocol.RepAck)
                {
                    _allocationContext = AllocationContextUnset;
                }

                return;
            }
        }

        /// <summary>NBD_OPT_GO; false when the server does not know the option (then EXPORT_NAME is used).</summary>
        private bool Go(string exportName)
        {
            byte[] name = Encoding.UTF8.GetBytes(exportName);
            var data = new byte[4 + name.Length + 2 + 2];
            BinaryPrimitives.WriteUInt32BigEndian(data, (uint)name.Length);
            name.CopyTo(data, 4);
            BinaryPrimitives.WriteUInt16BigEndian(data.AsSpan(4 + name.Length), 1);
            BinaryPrimitives.WriteUInt16BigEndian(data.AsSpan(6 + name.Length), NbdProtocol.InfoBlockSize);
            SendOption(NbdProtocol.OptGo, data);
            bool haveExport = false;
            for (int replies = 0; replies < 64; replies++)
            {
                (uint type, byte[] reply) = ReadOptionReply(NbdProtocol.OptGo);
                if (type == NbdProtocol.RepInfo)
                {
                    haveExport |= TakeInfo(reply);
                    continue;
                }

                if (type == NbdProtocol.RepAck)
                {
                    if (!haveExport)
                    {
                        throw Violation("NBD_OPT_GO reply", 0, "the server accepted the export without describing it (no NBD_INFO_EXPORT)");
                    }

                    return true;
                }

                string message = Encoding.UTF8.GetString(reply);
                switch (type)
                {
                    case NbdProtocol.RepErrUnsup:
                        return false;
                    case NbdProtocol.RepErrUnknown:
                        throw new ImageIOException(_location, $"the server has no export named '{exportName}'" + Detail(message));
                    case NbdProtocol.RepErrTlsReqd:
                        throw new ImageNotSupportedException(_location, "export", null, "the server requires TLS, which this client does not speak" + Detail(message));
                    case NbdProtocol.RepErrPolicy:
                        throw new ImageIOException(_location, $"the server refuses access to the export '{exportName}'" + Detail(message));
                    default:
                        if ((type & NbdProtocol.RepFlagError) != 0)
                        {
                            throw new ImageIOException(_location, $"the server refused the export '{exportName}' (error {type & ~NbdProtocol.RepFlagError})" + Detail(message));
                        }

                        throw Violation("NBD_OPT_GO reply", 0, $"unexpected reply type {type}");
                }
            }

            throw Violation("NBD_OPT_GO reply", 0, "more than 64 replies to one option");
        }

        /// <summary>Takes one NBD_REP_INFO; true for NBD_INFO_EXPORT.</summary>
        private bool TakeInfo(byte[] reply)
        {
            if (reply.Length < 2)
            {
                throw Violation("NBD_REP_INFO", 0, "an empty information reply");
            }

            ushort info = BinaryPrimitives.ReadUInt16BigEndian(reply);
            if (info == NbdProtocol.InfoExport)
            {
                if (reply.Length != 12)
                {
                    throw Violation("NBD_INFO_EXPORT", 0, $"{reply.Length} bytes, not 12");
                }

                Size = CheckedSize(BinaryPrimitives.ReadUInt64BigEndian(reply.AsSpan(2)));
                TransmissionFlags = BinaryPrimitives.ReadUInt16BigEndian(reply.AsSpan(10));
                return true;
            }

            if (info == NbdProtocol.InfoBlockSize)
            {
                if (reply.Length != 14)
                {
                    throw Violation("NBD_INFO_BLOCK_SIZE", 0, $"{reply.Length} bytes, not 14");
                }

                uint minimum = BinaryPrimitives.ReadUInt32BigEndian(reply.AsSpan(2));
                uint maximum = BinaryPrimitives.ReadUInt32BigEndian(reply.AsSpan(10));
                if (minimum == 0 || minimum > 65536 || (minimum & (minimum - 1)) != 0 || maximum < minimum)
                {
                    throw Violation("NBD_INFO_BLOCK_SIZE", 2, $"a minimum block of {minimum} bytes and a maximum of {maximum} (the minimum must be a power of two up to 64 KiB)");
                }

                MinimumBlock = (int)minimum;
                MaxPayload = (int)Math.Min(maximum, (uint)NbdProtocol.MaxPayload) / (int)minimum * (int)minimum;
            }

            // Other information (names, descriptions) is not needed.
            return false;
        }

        private void ExportName(string exportName, bool noZeroes)
        {
            SendOption(NbdProtocol.OptExportName, Encoding.UTF8.GetBytes(exportName));
            byte[] reply;
            try
            {
                reply = ReadExact(noZeroes ? 10 : 134);
            }
            catch (EndOfStreamException e)
            {
                // The only way an old server says "no such export" is to hang up.
                throw new ImageIOException(_location, $"the server closed the connection: it has no export named '{exportName}'", e);
            }

            Size = CheckedSize(BinaryPrimitives.ReadUInt64BigEndian(reply));
            TransmissionFlags = BinaryPrimitives.ReadUInt16BigEndian(reply.AsSpan(8));
            Structured = false;
            _allocationContext = AllocationContextUnset;
        }

        private long CheckedSize(ulong size)
        {
            if (size > long.MaxValue)
            {
                throw Violation("export size", 0, $"{size} bytes is beyond any disk");
            }

            return (long)size;
        }

        private static string Detail(string message) => string.IsNullOrEmpty(message) ? string.Empty : ": " + message;

        private void SendOption(uint option, byte[] data)
        {
            var header = new byte[16];
            BinaryPrimitives.WriteUInt64BigEndian(header, NbdProtocol.OptionMagic);
            BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(8), option);
            BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(12), (uint)data.Length);
            _stream.Write(header, 0, header.Length);
            _stream.Write(data, 0, data.Length);
        }

        private (uint Type, byte[] Data) ReadOptionReply(uint option)
        {
            byte[] header = ReadExact(20);
            if (BinaryPrimitives.ReadUInt64BigEndian(header) != NbdProtocol.OptionReplyMagic)
            {
                throw Violation("option reply", 0, "bad option reply magic");
            }

            uint answered = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(8));
            uint type = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(12));
            uint length = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(16));
            if (answered != option)
            {
                throw Violation("option reply", 8, $"a reply to option {answered} while option {option} was asked");
            }

            if (length > MaxOptionReply)
            {
                throw Violation("option reply", 16, $"a reply of {length} bytes to option {option} (at most {MaxOptionReply} are accepted)");
            }

            return (type, ReadExact((int)length));
        }

        private byte[] ReadExact(int count)
        {
            var buffer = new byte[count];
            ReadExact(buffer, 0, count);
            return buffer;
        }

        private void ReadExact(byte[] buffer, int offset, int count)
        {
            while (count > 0)
            {
                int n = _stream.Read(buffer, offset, count);
                if (n <= 0)
                {
                    throw new EndOfStreamException("the server closed the connection");
                }

                Volatile.Write(ref _lastTraffic, DateTime.UtcNow.Ticks);
                offset += n;
                count -= n;
            }
        }

        /// <summary>Sends a request and waits for its reply (a server error is thrown after).</summary>
        private void Execute(Request request, ushort flags, ReadOnlySpan<byte> payload)
        {
            ThrowIfFailed(request);
            Interlocked.Increment(ref _inFlight);
            try
            {
                SendAndWait(request, flags, payload);
            }
            finally
            {
                Interlocked.Decrement(ref _inFlight);
            }

            if (request.Failure != null)
            {
                throw request.Failure;
            }

            if (request.Error != 0)
            {
                throw ServerError(request);
            }
        }

        private void SendAndWait(Request request, ushort flags, ReadOnlySpan<byte> payload)
        {
            ulong cookie = (ulong)Interlocked.Increment(ref _nextCookie);
            request.Cookie = cookie;
            lock (_pending)
            {
                _pending.Add(cookie, request);
            }

            try
            {
                lock (_sendGate)
                {
                    ThrowIfFailed(request);
                    WriteRequestHeader(request.Command, flags, cookie, request.Offset, (uint)request.Length);
                    _stream.Write(_sendHeader, 0, _sendHeader.Length);
                    WritePayload(payload);
                }
            }
            catch (Exception e) when (e is IOException || e is ObjectDisposedException || e is SocketException)
            {
                Fail("sending failed: " + Describe(e), false);
                throw Lost(request, e);
            }

            long sent = DateTime.UtcNow.Ticks;
            while (!request.Done.Wait(TimeSpan.FromMilliseconds(Math.Min(Timeout.TotalMilliseconds, 500))))
            {
                long quietSince = Math.Max(sent, Volatile.Read(ref _lastTraffic));
                if (DateTime.UtcNow.Ticks - quietSince > Timeout.Ticks)
                {
                    Fail($"the server sent nothing for {Timeout.TotalSeconds:0.#} s while a reply was due", false);
                }
            }
        }

        private void WriteRequestHeader(ushort command, ushort flags, ulong cookie, long offset, uint length)
        {
            BinaryPrimitives.WriteUInt32BigEndian(_sendHeader, NbdProtocol.RequestMagic);
            BinaryPrimitives.WriteUInt16BigEndian(_sendHeader.AsSpan(4), flags);
            BinaryPrimitives.WriteUInt16BigEndian(_sendHeader.AsSpan(6), command);
            BinaryPrimitives.WriteUInt64BigEndian(_sendHeader.AsSpan(8), cookie);
            BinaryPrimitives.WriteUInt64BigEndian(_sendHeader.AsSpan(16), (ulong)offset);
            BinaryPrimitives.WriteUInt32BigEndian(_sendHeader.AsSpan(24), length);
        }

        private void WritePayload(ReadOnlySpan<byte> payload)
        {
            if (payload.IsEmpty)
            {
                return;
            }
#if NETFRAMEWORK
            byte[] copy = ArrayPool<byte>.Shared.Rent(Math.Min(payload.Length, 1 << 20));
            try
            {
                while (!payload.IsEmpty)
                {
                    int n = Math.Min(payload.Length, copy.Length);
                    payload.Slice(0, n).CopyTo(copy);
                    _stream.Write(copy, 0, n);
                    payload = payload.Slice(n);
                }
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(copy);
            }
#else
            _stream.Write(payload);
#endif
        }

        private void ReceiveLoop()
        {
            try
            {
                while (true)
                {
                    ReadExact(_receiveHeader, 0, 4);
                    uint magic = BinaryPrimitives.ReadUInt32BigEndian(_receiveHeader);
                    if (magic == NbdProtocol.SimpleReplyMagic)
                    {
                        ReadExact(_receiveHeader, 4, 12);
                        uint error = BinaryPrimitives.ReadUInt32BigEndian(_receiveHeader.AsSpan(4));
                        Request request = Find(BinaryPrimitives.ReadUInt64BigEndian(_receiveHeader.AsSpan(8)));
                        if (error != 0)
                        {
                            request.SetError(error, null);
                        }
                        else if (request.Command == NbdProtocol.CmdRead)
                        {
                            ReadInto(request, 0, (int)request.Length);
                            request.Cover(request.Offset, request.Length);
                        }
                        else if (request.Command == NbdProtocol.CmdBlockStatus)
                        {
                            throw new ProtocolViolation(request, "a simple reply to NBD_CMD_BLOCK_STATUS, which needs a structured one");
                        }

                        Complete(request);
                    }
                    else if (magic == NbdProtocol.StructuredReplyMagic && Structured)
                    {
                        ReadExact(_receiveHeader, 4, 16);
                        ushort flags = BinaryPrimitives.ReadUInt16BigEndian(_receiveHeader.AsSpan(4));
                        ushort type = BinaryPrimitives.ReadUInt16BigEndian(_receiveHeader.AsSpan(6));
                        Request request = Find(BinaryPrimitives.ReadUInt64BigEndian(_receiveHeader.AsSpan(8)));
                        uint length = BinaryPrimitives.ReadUInt32BigEndian(_receiveHeader.AsSpan(16));
                        if (++request.Chunks > MaxChunksPerReply)
                        {
                            throw new ProtocolViolation(request, $"more than {MaxChunksPerReply} chunks in one reply");
                        }

                        TakeChunk(request, type, length);
                        if ((flags & NbdProtocol.ReplyFlagDone) != 0)
                        {
                            Complete(request);
                        }
                    }
                    else
                    {
                        throw new ProtocolViolation(null, $"a reply with magic 0x{magic:x8}, which is not an NBD reply" + (Structured ? string.Empty : " (structured replies were not negotiated)"));
                    }
                }
            }
            catch (ProtocolViolation e)
            {
                Fail(e.Message, true, e.Request);
            }
            catch (Exception e) when (e is IOException || e is ObjectDisposedException || e is SocketException)
            {
                Fail(Describe(e), false);
            }
        }

        /// <summary>Reads <paramref name="count"/> bytes of a READ reply into the caller's buffer, at <paramref name="at"/> in it.</summary>
        private unsafe void ReadInto(Request request, int at, int count)
        {
            lock (request.Gate)
            {
                ThrowIfGivenUp(request);

                byte* target = request.Target + at;
                while (count > 0)
                {
#if NETFRAMEWORK
                    byte[] scratch = _receiveScratch ?? (_receiveScratch = new byte[256 * 1024]);
                    int n = _stream.Read(scratch, 0, Math.Min(count, scratch.Length));
                    if (n > 0)
                    {
                        new ReadOnlySpan<byte>(scratch, 0, n).CopyTo(new Span<byte>(target, n));
                    }
#else
                    int n = _stream.Read(new Span<byte>(target, count));
#endif
                    if (n <= 0)
                    {
                        throw new EndOfStreamException("the server closed the connection");
                    }

                    Volatile.Write(ref _lastTraffic, DateTime.UtcNow.Ticks);
                    target += n;
                    count -= n;
                }
            }
        }

        /// <summary>A released request's caller has gone (the connection failed under it): its memory is not ours. Under the request's gate.</summary>
        private static void ThrowIfGivenUp(Request request)
        {
            if (request.Released)
            {
                throw new IOException("a reply came for a request that was given up");
            }
        }

        private unsafe void ClearIn(Request request, int at, int count)
        {
            lock (request.Gate)
            {
                ThrowIfGivenUp(request);

                new Span<byte>(request.Target + at, count).Clear();
            }
        }

        private Request Find(ulong cookie)
        {
            lock (_pending)
            {
                if (!_pending.TryGetValue(cookie, out Request request))
                {
                    throw new ProtocolViolation(null, $"a reply with cookie {cookie}, which no request waits for");
                }

                return request;
            }
        }

        private void TakeChunk(Request request, ushort type, uint length)
        {
            switch (type)
            {
                case NbdProtocol.ReplyTypeOffsetData:
                    {
                        if (request.Command != NbdProtocol.CmdRead || length < 8)
                        {
                            throw new ProtocolViolation(request, $"a data chunk of {length} bytes" + (request.Command != NbdProtocol.CmdRead ? " to a request that reads nothing" : string.Empty));
                        }

                        ReadExact(_receiveHeader, 0, 8);
                        long offset = (long)BinaryPrimitives.ReadUInt64BigEndian(_receiveHeader);
                        long count = length - 8;
                        CheckInside(request, offset, count, "data");
                        ReadInto(request, (int)(offset - request.Offset), (int)count);
                        request.Cover(offset, count);
                        return;
                    }

                case NbdProtocol.ReplyTypeOffsetHole:
                    {
                        if (request.Command != NbdProtocol.CmdRead || length != 12)
                        {
                            throw new ProtocolViolation(request, $"a hole chunk of {length} bytes (12 expected)" + (request.Command != NbdProtocol.CmdRead ? " to a request that reads nothing" : string.Empty));
                        }

                        ReadExact(_receiveHeader, 0, 12);
                        long offset = (long)BinaryPrimitives.ReadUInt64BigEndian(_receiveHeader);
                        long count = BinaryPrimitives.ReadUInt32BigEndian(_receiveHeader.AsSpan(8));
                        CheckInside(request, offset, count, "hole");
                        ClearIn(request, (int)(offset - request.Offset), (int)count);
                        request.Cover(offset, count);
                        return;
                    }

                case NbdProtocol.ReplyTypeBlockStatus:
                    TakeExtents(request, length);
                    return;

                case NbdProtocol.ReplyTypeError:
                case ReplyTypeErrorOffset:
                    TakeError(request, type, length);
                    return;

                case NbdProtocol.ReplyTypeNone:
                    if (length != 0)
                    {
                        throw new ProtocolViolation(request, $"an NBD_REPLY_TYPE_NONE chunk of {length} bytes");
                    }

                    return;

                default:
                    // Unknown types: an error type still fails the request; either is skipped within a bound.
                    if (length > MaxSkippedChunk)
                    {
                        throw new ProtocolViolation(request, $"a chunk of unknown type {type} and {length} bytes");
                    }

                    byte[] skipped = ReadExact((int)length);
                    if ((type & 0x8000) != 0)
                    {
                        request.SetError(skipped.Length >= 4 ? BinaryPrimitives.ReadUInt32BigEndian(skipped) : NbdProtocol.EIO, $"error chunk of unknown type {type}");
                    }

                    return;
            }
        }

        private static void CheckInside(Request request, long offset, long count, string what)
        {
            if (offset < request.Offset || count > request.Length || offset - request.Offset > request.Length - count)
            {
                throw new ProtocolViolation(request, $"a {what} chunk of {count} bytes at offset {offset}, outside the {request.Length} bytes asked for");
            }
        }

        private void TakeExtents(Request request, uint length)
        {
            if (request.Command != NbdProtocol.CmdBlockStatus || length < 12 || (length - 4) % 8 != 0 || (length - 4) / 8 > MaxExtentsPerReply)
            {
                throw new ProtocolViolation(request, $"a block status chunk of {length} bytes" + (request.Command != NbdProtocol.CmdBlockStatus ? " to a request that asked for none" : string.Empty));
            }

            byte[] payload = ArrayPool<byte>.Shared.Rent((int)length);
            try
            {
                ReadExact(payload, 0, (int)length);
                uint context = BinaryPrimitives.ReadUInt32BigEndian(payload);
                if (context != _allocationContext)
                {
                    throw new ProtocolViolation(request, $"block status for context {context}, which was not negotiated");
                }

                for (int at = 4; at < length; at += 8)
                {
                    uint extent = BinaryPrimitives.ReadUInt32BigEndian(payload.AsSpan(at));
                    if (extent == 0)
                    {
                        throw new ProtocolViolation(request, "an extent of 0 bytes");
                    }

                    request.Extents.Add((extent, BinaryPrimitives.ReadUInt32BigEndian(payload.AsSpan(at + 4))));
                }
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(payload);
            }
        }

        private void TakeError(Request request, ushort type, uint length)
        {
            int tail = type == ReplyTypeErrorOffset ? 8 : 0;
            if (length < 6 + tail || length > 6 + NbdProtocol.MaxString + tail)
            {
                throw new ProtocolViolation(request, $"an error chunk of {length} bytes");
            }

            byte[] payload = ReadExact((int)length);
            uint error = BinaryPrimitives.ReadUInt32BigEndian(payload);
            int messageLength = BinaryPrimitives.ReadUInt16BigEndian(payload.AsSpan(4));
            if (messageLength != length - 6 - tail)
            {
                throw new ProtocolViolation(request, $"an error chunk of {length} bytes with a message of {messageLength}");
            }

            string message = Encoding.UTF8.GetString(payload, 6, messageLength);
            if (tail != 0)
            {
                ulong at = BinaryPrimitives.ReadUInt64BigEndian(payload.AsSpan(6 + messageLength));
                message = (message.Length == 0 ? string.Empty : message + " ") + $"(at offset {at})";
            }

            request.SetError(error == 0 ? NbdProtocol.EIO : error, message);
        }

        private void Complete(Request request)
        {
            lock (_pending)
            {
                _pending.Remove(request.Cookie);
            }

            if (request.Error == 0 && request.Command == NbdProtocol.CmdRead && !request.FullyCovered())
            {
                request.Failure = Corrupt(request, $"the reply covers {request.CoveredBytes} of the {request.Length} bytes asked for, or covers some twice");
            }

            request.Done.Set();
        }

        /// <summary>Ends the connection once: every waiting request fails with the first reason given, and later ones at once.</summary>
        private void Fail(string reason, bool corruption, Request culprit = null)
        {
            List<Request> waiting;
            lock (_pending)
            {
                if (_failure == null)
                {
                    _failureIsCorruption = corruption;
                    _culprit = culprit;
                    Volatile.Write(ref _failure, reason);
                }

                waiting = new List<Request>(_pending.Values);
                _pending.Clear();
            }

            try
            {
                _socket.Dispose();
            }
            catch (ObjectDisposedException)
            {
            }

            // Requests fail for the first reason (a later one is the close that reason caused).
            foreach (Request request in waiting)
            {
                request.Failure = _failureIsCorruption && (_culprit == null || _culprit == request) ? Corrupt(request, _failure) : Lost(request, null, _failure);
                request.Done.Set();
            }
        }

        private void ThrowIfFailed(Request request)
        {
            string failure = Volatile.Read(ref _failure);
            if (failure != null)
            {
                throw Lost(request, null, _failureIsCorruption ? "the server broke the protocol earlier: " + failure : failure);
            }
        }

        private string Describe(Request request) => request.Command == NbdProtocol.CmdFlush
            ? $"NBD {CommandName(request.Command)}"
            : $"NBD {CommandName(request.Command)} of {request.Length} bytes at offset {request.Offset}";

        private ImageException Lost(Request request, Exception inner, string reason = null)
            => new ImageIOException(_location, $"{Describe(request)}: the connection to the server is lost ({reason ?? Describe(inner)})", inner);

        private ImageCorruptException Corrupt(Request request, string reason)
            => new ImageCorruptException(_location, $"NBD {CommandName(request.Command)} reply", request.Offset, $"the server broke the NBD protocol: {reason}");

        private ImageCorruptException Violation(string field, long offset, string reason)
            => new ImageCorruptException(_location, field, offset, $"the server broke the NBD protocol: {reason}");

        private ImageException ServerError(Request request)
        {
            string text = $"{Describe(request)} failed: {ErrorName(request.Error)}{Detail(request.ErrorMessage)}";
            return request.Command == NbdProtocol.CmdRead
                ? new ImageReadException(_location, request.Offset, request.Length, text)
                : new ImageIOException(_location, text);
        }

        private static string Describe(Exception e)
        {
            if (e == null)
            {
                return "closed";
            }

            return e.InnerException is SocketException socket && socket.SocketErrorCode == SocketError.TimedOut ? "timed out" : e.Message;
        }

        internal static string CommandName(ushort command)
        {
            switch (command)
            {
                case NbdProtocol.CmdRead: return "READ";
                case NbdProtocol.CmdWrite: return "WRITE";
                case NbdProtocol.CmdFlush: return "FLUSH";
                case NbdProtocol.CmdWriteZeroes: return "WRITE_ZEROES";
                case NbdProtocol.CmdBlockStatus: return "BLOCK_STATUS";
                default: return "command " + command;
            }
        }

        private static string ErrorName(uint error)
        {
            switch (error)
            {
                case NbdProtocol.EPerm: return "EPERM (operation not permitted)";
                case NbdProtocol.EIO: return "EIO (input/output error)";
                case 12: return "ENOMEM (out of memory)";
                case NbdProtocol.EInval: return "EINVAL (invalid argument)";
                case NbdProtocol.ENoSpc: return "ENOSPC (no space left on the device)";
                case NbdProtocol.EOverflow: return "EOVERFLOW (value too large)";
                case NbdProtocol.ENotSup: return "ENOTSUP (not supported)";
                case 108: return "ESHUTDOWN (the server is shutting down)";
                default: return $"error {error}";
            }
        }

        /// <summary>One request in flight: what was asked and what the reply brought.</summary>
        private sealed class Request
        {
            private List<(long Offset, long Length)> _covered;

            public Request(ushort command, long offset, long length)
            {
                Command = command;
                Offset = offset;
                Length = length;
            }

            public ushort Command { get; }

            public long Offset { get; }

            public long Length { get; }

            /// <summary>Where a READ's bytes go: the caller's pinned buffer, valid until <see cref="Release"/>.</summary>
            public unsafe byte* Target { get; set; }

            /// <summary>Held by the receiver while it stores into <see cref="Target"/>, and by <see cref="Release"/>.</summary>
            public object Gate { get; } = new object();

            public bool Released { get; private set; }

            public List<(long Length, uint Flags)> Extents { get; set; }

            // No spinning: a reply takes a round trip, and spinning steals the core the server needs.
            public ManualResetEventSlim Done { get; } = new ManualResetEventSlim(false, 0);

            public int Chunks { get; set; }

            public uint Error { get; private set; }

            public string ErrorMessage { get; private set; }

            public Exception Failure { get; set; }

            public long CoveredBytes { get; private set; }

            public ulong Cookie { get; set; }

            /// <summary>The caller leaves: waits out a store in progress, and no store starts after.</summary>
            public void Release()
            {
                lock (Gate)
                {
                    Released = true;
                }
            }

            public void SetError(uint error, string message)
            {
                if (Error == 0)
                {
                    Error = error;
                    ErrorMessage = message;
                }
            }

            public void Cover(long offset, long length)
            {
                (_covered ?? (_covered = new List<(long, long)>())).Add((offset, length));
                CoveredBytes += length;
            }

            /// <summary>The chunks tile the request exactly: no gap, no overlap.</summary>
            public bool FullyCovered()
            {
                if (CoveredBytes != Length)
                {
                    return false;
                }

                if (_covered == null)
                {
                    return Length == 0;
                }

                _covered.Sort((a, b) => a.Offset.CompareTo(b.Offset));
                long next = Offset;
                foreach ((long offset, long length) in _covered)
                {
                    if (offset != next)
                    {
                        return false;
                    }

                    next += length;
                }

                return next == Offset + Length;
            }
        }

        private sealed class ProtocolViolation : Exception
        {
            public ProtocolViolation(Request request, string message)
                : base(message)
            {
                Request = request;
            }

            public Request Request { get; }
        }
    }
}
