using System;
using System.Buffers;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.IO;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Text;
using System.Threading;
using System.Threading.Tasks;

namespace VDiskPS.Formats.Nbd
{
    /// <summary>
    /// One client: the fixed newstyle handshake, then requests answered one after another (replies in
    /// order, which the protocol allows). Every length a client sends is checked against a bound before
    /// anything is allocated; a client that breaks the protocol is disconnected, never trusted.
    /// </summary>
    internal sealed class NbdConnection
    {
        /// <summary>Option data longer than this is refused (names and queries are at most 4096 bytes each); with the connection limit it bounds handshake memory.</summary>
        internal const int MaxOptionLength = 16 * 1024;

        /// <summary>Metadata context queries per option; more is refused as too big.</summary>
        private const int MaxQueries = 1024;

        /// <summary>Descriptors in one block status chunk (the spec asks for at most 2^20).</summary>
        private const int MaxExtents = 1 << 16;

        /// <summary>Runs of zeros shorter than this are sent as data: a hole chunk costs 32 bytes.</summary>
        private const int MinHole = 4096;

        private const uint BaseAllocationId = 1;

        private readonly NbdServer _server;
        private readonly NbdExport _export;
        private readonly Socket _socket;
        private readonly byte[] _header = new byte[64];
        private readonly Timer _deadline;
        private Stream _stream;
        private bool _tls;
        private bool _structured;
        private bool _noZeroes;
        private List<uint> _contexts = new List<uint>();
        private DateTime _phaseEnd = DateTime.MaxValue;

        public NbdConnection(NbdServer server, NbdExport export, Socket socket)
        {
            _server = server;
            _export = export;
            _socket = socket;
            _stream = new NetworkStream(socket, ownsSocket: true);
            _deadline = new Timer(_ => Close(), null, Timeout.Infinite, Timeout.Infinite);
        }

        /// <summary>Runs the session to its end; never throws (a broken client only ends its own session).</summary>
        public async Task RunAsync()
        {
            try
            {
                _phaseEnd = DateTime.UtcNow + _server.HandshakeTimeout;
                EndStep();
                if (await HandshakeAsync().ConfigureAwait(false))
                {
                    _phaseEnd = DateTime.MaxValue;
                    EndStep();
                    await TransmitAsync().ConfigureAwait(false);
                }
            }
            catch (Exception e) when (e is IOException || e is SocketException || e is ObjectDisposedException || e is AuthenticationException || e is ProtocolViolation || e is InvalidOperationException)
            {
                // The client went away or broke the protocol: this session ends, the server goes on.
            }
            finally
            {
                Close();
                _deadline.Dispose();
            }
        }

        /// <summary>Drops the connection (server stop, deadline, protocol violation).</summary>
        public void Close()
        {
            try
            {
                _stream.Dispose();
                _socket.Dispose();
            }
            catch (Exception e) when (e is IOException || e is SocketException || e is ObjectDisposedException || e is AuthenticationException || e is InvalidOperationException)
            {
            }
        }

        /// <summary>Starts a step that must finish in time: a send, or the rest of a message that has begun.</summary>
        private void BeginStep()
        {
            DateTime now = DateTime.UtcNow;
            DateTime until = now + _server.RequestTimeout;
            SetDeadline(until < _phaseEnd ? until : _phaseEnd, now);
        }

        /// <summary>Back to the deadline of the phase: the handshake's, or none while idle between requests.</summary>
        private void EndStep() => SetDeadline(_phaseEnd, DateTime.UtcNow);

        private void SetDeadline(DateTime until, DateTime now)
        {
            if (until == DateTime.MaxValue)
            {
                _deadline.Change(Timeout.Infinite, Timeout.Infinite);
            }
            else
            {
                _deadline.Change(until > now ? until - now : TimeSpan.Zero, Timeout.InfiniteTimeSpan);
            }
        }

        private async Task SendAsync(byte[] buffer, int offset, int count)
        {
            BeginStep();
            await _stream.WriteAsync(buffer, offset, count).ConfigureAwait(false);
            EndStep();
        }

        // ---- Handshake ("Fixed newstyle negotiation") ----

        /// <summary>Negotiates until the client enters transmission (true) or leaves (false).</summary>
        private async Task<bool> HandshakeAsync()
        {
            BinaryPrimitives.WriteUInt64BigEndian(_header.AsSpan(0), NbdProtocol.InitPasswd);
            BinaryPrimitives.WriteUInt64BigEndian(_header.AsSpan(8), NbdProtocol.OptionMagic);
            BinaryPrimitives.WriteUInt16BigEndian(_header.AsSpan(16), NbdProtocol.FlagFixedNewstyle | NbdProtocol.FlagNoZeroes);
            await SendAsync(_header, 0, 18).ConfigureAwait(false);

            await ReadExactAsync(_header, 4).ConfigureAwait(false);
            uint clientFlags = BinaryPrimitives.ReadUInt32BigEndian(_header);
            if ((clientFlags & ~(NbdProtocol.ClientFlagFixedNewstyle | NbdProtocol.ClientFlagNoZeroes)) != 0)
            {
                // "the server MUST drop the TCP connection if the client sets an unknown flag"
                return false;
            }

            _noZeroes = (clientFlags & NbdProtocol.ClientFlagNoZeroes) != 0;
            while (true)
            {
                await ReadExactAsync(_header, 16).ConfigureAwait(false);
                if (BinaryPrimitives.ReadUInt64BigEndian(_header) != NbdProtocol.OptionMagic)
                {
                    return false;
                }

                uint option = BinaryPrimitives.ReadUInt32BigEndian(_header.AsSpan(8));
                uint length = BinaryPrimitives.ReadUInt32BigEndian(_header.AsSpan(12));
                if (length > MaxOptionLength)
                {
                    // The data cannot be skipped without reading it all; refuse, then hang up.
                    await OptionReplyAsync(option, NbdProtocol.RepErrTooBig, Encoding.UTF8.GetBytes($"option data of {length} bytes is more than the {MaxOptionLength} this server accepts")).ConfigureAwait(false);
                    return false;
                }

                byte[] data = new byte[length];
                await ReadExactAsync(data, data.Length).ConfigureAwait(false);
                if (_server.Certificate != null && !_tls && option != NbdProtocol.OptStartTls && option != NbdProtocol.OptAbort)
                {
                    if (option == NbdProtocol.OptExportName)
                    {
                        return false;
                    }

                    await OptionErrorAsync(option, NbdProtocol.RepErrTlsReqd, "this server requires TLS (NBD_OPT_STARTTLS) first").ConfigureAwait(false);
                    continue;
                }

                switch (option)
                {
                    case NbdProtocol.OptExportName:
                        return await ExportNameAsync(data).ConfigureAwait(false);
                    case NbdProtocol.OptAbort:
                        await OptionReplyAsync(option, NbdProtocol.RepAck, null).ConfigureAwait(false);
                        return false;
                    case NbdProtocol.OptList:
                        await ListAsync(data).ConfigureAwait(false);
                        break;
                    case NbdProtocol.OptStartTls:
                        await StartTlsAsync(data).ConfigureAwait(false);
                        break;
                    case NbdProtocol.OptInfo:
                    case NbdProtocol.OptGo:
                        if (await InfoAsync(option, data).ConfigureAwait(false) && option == NbdProtocol.OptGo)
                        {
                            return true;
                        }

                        break;
                    case NbdProtocol.OptStructuredReply:
                        if (data.Length != 0)
                        {
                            await OptionErrorAsync(option, NbdProtocol.RepErrInvalid, "NBD_OPT_STRUCTURED_REPLY takes no data").ConfigureAwait(false);
                        }
                        else if (_structured)
                        {
                            await OptionErrorAsync(option, NbdProtocol.RepErrInvalid, "structured replies are already negotiated").ConfigureAwait(false);
                        }
                        else
                        {
                            _structured = true;
                            await OptionReplyAsync(option, NbdProtocol.RepAck, null).ConfigureAwait(false);
                        }

                        break;
                    case NbdProtocol.OptListMetaContext:
                    case NbdProtocol.OptSetMetaContext:
                        await MetaContextAsync(option, data).ConfigureAwait(false);
                        break;
                    default:
                        await OptionErrorAsync(option, NbdProtocol.RepErrUnsup, $"option {option} is not supported").ConfigureAwait(false);
                        break;
                }
            }
        }

        private async Task<bool> ExportNameAsync(byte[] data)
        {
            if (!NameMatches(data, 0, data.Length))
            {
                // NBD_OPT_EXPORT_NAME cannot carry an error: "the server MUST terminate the session".
                return false;
            }

            int n = _noZeroes ? 10 : 134;
            var reply = new byte[n];
            BinaryPrimitives.WriteUInt64BigEndian(reply, (ulong)_export.Size);
            BinaryPrimitives.WriteUInt16BigEndian(reply.AsSpan(8), TransmissionFlags());
            await SendAsync(reply, 0, n).ConfigureAwait(false);
            return true;
        }

        private async Task ListAsync(byte[] data)
        {
            if (data.Length != 0)
            {
                await OptionErrorAsync(NbdProtocol.OptList, NbdProtocol.RepErrInvalid, "NBD_OPT_LIST takes no data").ConfigureAwait(false);
                return;
            }

            byte[] name = Encoding.UTF8.GetBytes(_export.Name);
            var reply = new byte[4 + name.Length];
            BinaryPrimitives.WriteUInt32BigEndian(reply, (uint)name.Length);
            name.CopyTo(reply, 4);
            await OptionReplyAsync(NbdProtocol.OptList, NbdProtocol.RepServer, reply).ConfigureAwait(false);
            await OptionReplyAsync(NbdProtocol.OptList, NbdProtocol.RepAck, null).ConfigureAwait(false);
        }

        private async Task StartTlsAsync(byte[] data)
        {
            if (data.Length != 0)
            {
                await OptionErrorAsync(NbdProtocol.OptStartTls, NbdProtocol.RepErrInvalid, "NBD_OPT_STARTTLS takes no data").ConfigureAwait(false);
                return;
            }

            if (_server.Certificate == null)
            {
                await OptionErrorAsync(NbdProtocol.OptStartTls, NbdProtocol.RepErrPolicy, "this server has no certificate; TLS is not offered").ConfigureAwait(false);
                return;
            }

            if (_tls)
            {
                await OptionErrorAsync(NbdProtocol.OptStartTls, NbdProtocol.RepErrInvalid, "TLS is already negotiated").ConfigureAwait(false);
                return;
            }

            await OptionReplyAsync(NbdProtocol.OptStartTls, NbdProtocol.RepAck, null).ConfigureAwait(false);
            var ssl = new SslStream(_stream, leaveInnerStreamOpen: false);
            _stream = ssl;
            await ssl.AuthenticateAsServerAsync(_server.Certificate, clientCertificateRequired: false, enabledSslProtocols: SslProtocols.None, checkCertificateRevocation: false).ConfigureAwait(false);
            _tls = true;

            // "the server MUST NOT preserve any negotiation state ... issued before this command"
            _structured = false;
            _contexts = new List<uint>();
        }

        /// <summary>NBD_OPT_INFO / NBD_OPT_GO; true when the export was accepted.</summary>
        private async Task<bool> InfoAsync(uint option, byte[] data)
        {
            if (data.Length < 6)
            {
                await OptionErrorAsync(option, NbdProtocol.RepErrInvalid, "the option data is too short").ConfigureAwait(false);
                return false;
            }

            uint nameLength = BinaryPrimitives.ReadUInt32BigEndian(data);
            if (nameLength > data.Length - 6)
            {
                await OptionErrorAsync(option, NbdProtocol.RepErrInvalid, "the name length runs past the option data").ConfigureAwait(false);
                return false;
            }

            int at = 4 + (int)nameLength;
            int requests = BinaryPrimitives.ReadUInt16BigEndian(data.AsSpan(at));
            if (data.Length != at + 2 + 2 * requests)
            {
                await OptionErrorAsync(option, NbdProtocol.RepErrInvalid, "the information request count does not match the option length").ConfigureAwait(false);
                return false;
            }

            if (!NameMatches(data, 4, (int)nameLength))
            {
                await OptionErrorAsync(option, NbdProtocol.RepErrUnknown, "no export of that name").ConfigureAwait(false);
                return false;
            }

            bool wantName = false;
            for (int i = 0; i < requests; i++)
            {
                wantName |= BinaryPrimitives.ReadUInt16BigEndian(data.AsSpan(at + 2 + 2 * i)) == NbdProtocol.InfoName;
            }

            var export = new byte[12];
            BinaryPrimitives.WriteUInt16BigEndian(export, NbdProtocol.InfoExport);
            BinaryPrimitives.WriteUInt64BigEndian(export.AsSpan(2), (ulong)_export.Size);
            BinaryPrimitives.WriteUInt16BigEndian(export.AsSpan(10), TransmissionFlags());
            await OptionReplyAsync(option, NbdProtocol.RepInfo, export).ConfigureAwait(false);

            // Default constraints (minimum 1, preferred 4096, maximum payload 32 MiB), stated for clients that ask.
            var blockSize = new byte[14];
            BinaryPrimitives.WriteUInt16BigEndian(blockSize, NbdProtocol.InfoBlockSize);
            BinaryPrimitives.WriteUInt32BigEndian(blockSize.AsSpan(2), 1);
            BinaryPrimitives.WriteUInt32BigEndian(blockSize.AsSpan(6), 4096);
            BinaryPrimitives.WriteUInt32BigEndian(blockSize.AsSpan(10), NbdProtocol.MaxPayload);
            await OptionReplyAsync(option, NbdProtocol.RepInfo, blockSize).ConfigureAwait(false);

            if (wantName)
            {
                byte[] name = Encoding.UTF8.GetBytes(_export.Name);
                var info = new byte[2 + name.Length];
                BinaryPrimitives.WriteUInt16BigEndian(info, NbdProtocol.InfoName);
                name.CopyTo(info, 2);
                await OptionReplyAsync(option, NbdProtocol.RepInfo, info).ConfigureAwait(false);
            }

            await OptionReplyAsync(option, NbdProtocol.RepAck, null).ConfigureAwait(false);
            return true;
        }

        /// <summary>NBD_OPT_LIST_META_CONTEXT and NBD_OPT_SET_META_CONTEXT ("Metadata querying").</summary>
        private async Task MetaContextAsync(uint option, byte[] data)
        {
            bool set = option == NbdProtocol.OptSetMetaContext;
            if (set)
            {
                // "Issuing this command replaces all previously-set metadata contexts (including when this command fails)"
                _contexts = new List<uint>();
            }

            if (!_structured)
            {
                await OptionErrorAsync(option, NbdProtocol.RepErrInvalid, "structured replies must be negotiated first").ConfigureAwait(false);
                return;
            }

            var queries = new List<string>();
            int at = 0;
            if (!TryReadString(data, ref at, out int nameStart, out int nameLength) || data.Length - at < 4)
            {
                await OptionErrorAsync(option, NbdProtocol.RepErrInvalid, "the option data is malformed").ConfigureAwait(false);
                return;
            }

            uint count = BinaryPrimitives.ReadUInt32BigEndian(data.AsSpan(at));
            at += 4;
            if (count > MaxQueries)
            {
                await OptionErrorAsync(option, NbdProtocol.RepErrTooBig, $"at most {MaxQueries} queries are accepted").ConfigureAwait(false);
                return;
            }

            for (uint i = 0; i < count; i++)
            {
                if (!TryReadString(data, ref at, out int start, out int length))
                {
                    await OptionErrorAsync(option, NbdProtocol.RepErrInvalid, "a query runs past the option data").ConfigureAwait(false);
                    return;
                }

                queries.Add(Encoding.UTF8.GetString(data, start, length));
            }

            if (at != data.Length)
            {
                await OptionErrorAsync(option, NbdProtocol.RepErrInvalid, "the option has data past its last query").ConfigureAwait(false);
                return;
            }

            if (!NameMatches(data, nameStart, nameLength))
            {
                await OptionErrorAsync(option, NbdProtocol.RepErrUnknown, "no export of that name").ConfigureAwait(false);
                return;
            }

            var selected = new List<uint>();
            if (!set && queries.Count == 0)
            {
                for (uint id = BaseAllocationId; id <= BaseAllocationId + (uint)_export.Bitmaps.Count; id++)
                {
                    selected.Add(id);
                }
            }

            foreach (string query in queries)
            {
                foreach (uint id in Match(query, wildcards: !set))
                {
                    if (!selected.Contains(id))
                    {
                        selected.Add(id);
                    }
                }
            }

            foreach (uint id in selected)
            {
                byte[] name = Encoding.UTF8.GetBytes(ContextName(id));
                var reply = new byte[4 + name.Length];

                // The id in a LIST reply "SHOULD be set to zero".
                BinaryPrimitives.WriteUInt32BigEndian(reply, set ? id : 0);
                name.CopyTo(reply, 4);
                await OptionReplyAsync(option, NbdProtocol.RepMetaContext, reply).ConfigureAwait(false);
            }

            if (set)
            {
                _contexts = selected;
            }

            await OptionReplyAsync(option, NbdProtocol.RepAck, null).ConfigureAwait(false);
        }

        /// <summary>The contexts a query names; "base:" and "qemu:dirty-bitmap:" are wildcards when listing.</summary>
        private IEnumerable<uint> Match(string query, bool wildcards)
        {
            if (query == NbdProtocol.BaseAllocation || (wildcards && query == "base:"))
            {
                yield return BaseAllocationId;
            }

            for (int i = 0; i < _export.Bitmaps.Count; i++)
            {
                string name = NbdProtocol.DirtyBitmapPrefix + _export.Bitmaps[i];
                if (query == name || (wildcards && (query == "qemu:" || query == NbdProtocol.DirtyBitmapPrefix)))
                {
                    yield return BaseAllocationId + 1 + (uint)i;
                }
            }
        }

        private string ContextName(uint id)
            => id == BaseAllocationId ? NbdProtocol.BaseAllocation : NbdProtocol.DirtyBitmapPrefix + _export.Bitmaps[(int)(id - BaseAllocationId - 1)];

        /// <summary>A 32-bit length and that many bytes, within the data and the string limit.</summary>
        private static bool TryReadString(byte[] data, ref int at, out int start, out int length)
        {
            start = 0;
            length = 0;
            if (data.Length - at < 4)
            {
                return false;
            }

            uint n = BinaryPrimitives.ReadUInt32BigEndian(data.AsSpan(at));
            if (n > NbdProtocol.MaxString || n > data.Length - at - 4)
            {
                return false;
            }

            start = at + 4;
            length = (int)n;
            at = start + length;
            return true;
        }

        /// <summary>The export's own name, or the empty name of the default export.</summary>
        private bool NameMatches(byte[] data, int start, int length)
        {
            if (length == 0)
            {
                return true;
            }

            return length <= NbdProtocol.MaxString && Encoding.UTF8.GetString(data, start, length) == _export.Name;
        }

        private ushort TransmissionFlags()
        {
            int flags = NbdProtocol.FlagHasFlags | NbdProtocol.FlagSendFlush | NbdProtocol.FlagSendFua | NbdProtocol.FlagCanMultiConn | NbdProtocol.FlagSendCache;
            if (_structured)
            {
                flags |= NbdProtocol.FlagSendDf;
            }

            if (!_export.Writable)
            {
                flags |= NbdProtocol.FlagReadOnly;
            }
            else
            {
                flags |= NbdProtocol.FlagSendWriteZeroes | NbdProtocol.FlagSendFastZero;
                if (_export.CanTrim)
                {
                    flags |= NbdProtocol.FlagSendTrim;
                }
            }

            return (ushort)flags;
        }

        private Task OptionErrorAsync(uint option, uint error, string message) => OptionReplyAsync(option, error, Encoding.UTF8.GetBytes(message));

        private async Task OptionReplyAsync(uint option, uint type, byte[] data)
        {
            int length = data?.Length ?? 0;
            var reply = new byte[20 + length];
            BinaryPrimitives.WriteUInt64BigEndian(reply, NbdProtocol.OptionReplyMagic);
            BinaryPrimitives.WriteUInt32BigEndian(reply.AsSpan(8), option);
            BinaryPrimitives.WriteUInt32BigEndian(reply.AsSpan(12), type);
            BinaryPrimitives.WriteUInt32BigEndian(reply.AsSpan(16), (uint)length);
            data?.CopyTo(reply, 20);
            await SendAsync(reply, 0, reply.Length).ConfigureAwait(false);
        }

        // ---- Transmission ----

        private async Task TransmitAsync()
        {
            var request = new byte[28];
            while (true)
            {
                // A connection may idle between requests; once a request starts, it must arrive in time.
                if (!await ReadRequestHeaderAsync(request).ConfigureAwait(false))
                {
                    return;
                }

                if (BinaryPrimitives.ReadUInt32BigEndian(request) != NbdProtocol.RequestMagic)
                {
                    return;
                }

                ushort flags = BinaryPrimitives.ReadUInt16BigEndian(request.AsSpan(4));
                ushort type = BinaryPrimitives.ReadUInt16BigEndian(request.AsSpan(6));
                ulong cookie = BinaryPrimitives.ReadUInt64BigEndian(request.AsSpan(8));
                ulong offset = BinaryPrimitives.ReadUInt64BigEndian(request.AsSpan(16));
                uint length = BinaryPrimitives.ReadUInt32BigEndian(request.AsSpan(24));
                if (type == NbdProtocol.CmdDisc)
                {
                    return;
                }

                if (type == NbdProtocol.CmdWrite)
                {
                    if (!await WriteAsync(flags, cookie, offset, length).ConfigureAwait(false))
                    {
                        return;
                    }

                    continue;
                }

                await ExecuteAsync(flags, type, cookie, offset, length).ConfigureAwait(false);
            }
        }

        private async Task<bool> ReadRequestHeaderAsync(byte[] request)
        {
            int first = await _stream.ReadAsync(request, 0, request.Length).ConfigureAwait(false);
            if (first == 0)
            {
                return false;
            }

            BeginStep();
            await ReadExactAsync(request, request.Length, first).ConfigureAwait(false);
            EndStep();
            return true;
        }

        /// <summary>NBD_CMD_WRITE; false when the connection must end (the payload could not be taken in).</summary>
        private async Task<bool> WriteAsync(ushort flags, ulong cookie, ulong offset, uint length)
        {
            if (length > NbdProtocol.MaxPayload)
            {
                // The payload cannot be skipped without reading it: refuse, then hang up.
                await ErrorReplyAsync(cookie, NbdProtocol.EOverflow, $"a write of {length} bytes is more than the {NbdProtocol.MaxPayload}-byte maximum payload").ConfigureAwait(false);
                return false;
            }

            await _server.PayloadSlots.WaitAsync().ConfigureAwait(false);
            byte[] buffer = ArrayPool<byte>.Shared.Rent((int)length);
            try
            {
                BeginStep();
                await ReadExactAsync(buffer, (int)length).ConfigureAwait(false);
                EndStep();
                uint error = CheckFlags(flags, NbdProtocol.CmdFlagFua);
                string message = null;
                if (error == 0)
                {
                    (error, message) = CheckWrite(offset, length);
                }

                if (error == 0)
                {
                    (error, message) = Guard(() => _export.Write((long)offset, buffer.AsSpan(0, (int)length), (flags & NbdProtocol.CmdFlagFua) != 0));
                }

                await FinishAsync(cookie, error, message).ConfigureAwait(false);
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(buffer);
                _server.PayloadSlots.Release();
            }

            return true;
        }

        private async Task ExecuteAsync(ushort flags, ushort type, ulong cookie, ulong offset, uint length)
        {
            uint error;
            string message = null;
            switch (type)
            {
                case NbdProtocol.CmdRead:
                    await ReadAsync(flags, cookie, offset, length).ConfigureAwait(false);
                    return;
                case NbdProtocol.CmdBlockStatus:
                    await BlockStatusAsync(flags, cookie, offset, length).ConfigureAwait(false);
                    return;
                case NbdProtocol.CmdFlush:
                    error = CheckFlags(flags, NbdProtocol.CmdFlagFua);
                    if (error == 0)
                    {
                        (error, message) = Guard(_export.Flush);
                    }

                    break;
                case NbdProtocol.CmdCache:
                    // Reads go to the image each time; there is nothing to warm, only the request to check.
                    error = CheckFlags(flags, NbdProtocol.CmdFlagFua);
                    if (error == 0)
                    {
                        (error, message) = CheckRead(offset, length);
                    }

                    break;
                case NbdProtocol.CmdTrim:
                    error = CheckFlags(flags, NbdProtocol.CmdFlagFua);
                    if (error == 0)
                    {
                        (error, message) = CheckWrite(offset, length);
                    }

                    if (error == 0 && !_export.CanTrim)
                    {
                        (error, message) = (NbdProtocol.EInval, "this export does not support trim");
                    }

                    if (error == 0)
                    {
                        (error, message) = Guard(() => _export.Trim((long)offset, length, (flags & NbdProtocol.CmdFlagFua) != 0));
                    }

                    break;
                case NbdProtocol.CmdWriteZeroes:
                    error = CheckFlags(flags, NbdProtocol.CmdFlagFua | NbdProtocol.CmdFlagNoHole | NbdProtocol.CmdFlagFastZero);
                    if (error == 0)
                    {
                        (error, message) = CheckWrite(offset, length);
                    }

                    if (error == 0 && (flags & NbdProtocol.CmdFlagFastZero) != 0 && (!_export.CanFastZero || (flags & NbdProtocol.CmdFlagNoHole) != 0))
                    {
                        // "MUST fail quickly with NBD_ENOTSUP unless the request can be serviced in less time than a corresponding NBD_CMD_WRITE"
                        (error, message) = (NbdProtocol.ENotSup, "zeroing here is no faster than writing");
                    }

                    if (error == 0)
                    {
                        (error, message) = Guard(() => _export.WriteZeroes((long)offset, length, (flags & NbdProtocol.CmdFlagNoHole) != 0, (flags & NbdProtocol.CmdFlagFua) != 0));
                    }

                    break;
                default:
                    (error, message) = (NbdProtocol.EInval, $"command {type} is not known");
                    break;
            }

            await FinishAsync(cookie, error, message).ConfigureAwait(false);
        }

        private async Task ReadAsync(ushort flags, ulong cookie, ulong offset, uint length)
        {
            uint error = CheckFlags(flags, (ushort)(NbdProtocol.CmdFlagFua | (_structured ? NbdProtocol.CmdFlagDf : 0)));
            string message = null;
            if (error == 0 && length > NbdProtocol.MaxPayload)
            {
                (error, message) = (NbdProtocol.EOverflow, $"a read of {length} bytes is more than the {NbdProtocol.MaxPayload}-byte maximum payload");
            }

            if (error == 0)
            {
                (error, message) = CheckRead(offset, length);
            }

            if (error != 0)
            {
                await ErrorReplyAsync(cookie, error, message).ConfigureAwait(false);
                return;
            }

            await _server.PayloadSlots.WaitAsync().ConfigureAwait(false);
            byte[] buffer = ArrayPool<byte>.Shared.Rent((int)Math.Max(length, 1));
            try
            {
                var chunks = new List<(long Start, int Length, bool Hole)>();
                (error, message) = Guard(() => ReadRuns((long)offset, (int)length, buffer, chunks, (flags & NbdProtocol.CmdFlagDf) != 0 || !_structured));
                if (error != 0)
                {
                    await ErrorReplyAsync(cookie, error, message).ConfigureAwait(false);
                    return;
                }

                if (!_structured)
                {
                    WriteSimpleHeader(cookie, 0);
                    await SendAsync(_header, 0, 16).ConfigureAwait(false);
                    await SendAsync(buffer, 0, (int)length).ConfigureAwait(false);
                    return;
                }

                for (int i = 0; i < chunks.Count; i++)
                {
                    var chunk = chunks[i];
                    ushort done = i == chunks.Count - 1 ? NbdProtocol.ReplyFlagDone : (ushort)0;
                    if (chunk.Hole)
                    {
                        int n = WriteChunkHeader(done, NbdProtocol.ReplyTypeOffsetHole, cookie, 12);
                        BinaryPrimitives.WriteUInt64BigEndian(_header.AsSpan(n), (ulong)((long)offset + chunk.Start));
                        BinaryPrimitives.WriteUInt32BigEndian(_header.AsSpan(n + 8), (uint)chunk.Length);
                        await SendAsync(_header, 0, n + 12).ConfigureAwait(false);
                    }
                    else
                    {
                        int n = WriteChunkHeader(done, NbdProtocol.ReplyTypeOffsetData, cookie, 8 + chunk.Length);
                        BinaryPrimitives.WriteUInt64BigEndian(_header.AsSpan(n), (ulong)((long)offset + chunk.Start));
                        await SendAsync(_header, 0, n + 8).ConfigureAwait(false);
                        await SendAsync(buffer, (int)chunk.Start, chunk.Length).ConfigureAwait(false);
                    }
                }

                if (chunks.Count == 0)
                {
                    await NoneReplyAsync(cookie).ConfigureAwait(false);
                }
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(buffer);
                _server.PayloadSlots.Release();
            }
        }

        /// <summary>
        /// Fills <paramref name="buffer"/> and splits the request into data and hole chunks (offsets
        /// relative to the request). With <paramref name="oneChunk"/> everything is one data chunk.
        /// </summary>
        private void ReadRuns(long offset, int length, byte[] buffer, List<(long Start, int Length, bool Hole)> chunks, bool oneChunk)
        {
            int at = 0;
            while (at < length)
            {
                bool zero = _export.ReadsAsZero(offset + at, length - at, out long run);
                int n = (int)Math.Min(Math.Max(run, 1), length - at);
                bool hole = zero && !oneChunk && n >= MinHole;
                if (zero)
                {
                    Array.Clear(buffer, at, n);
                }
                else
                {
                    _export.Read(offset + at, buffer.AsSpan(at, n));
                }

                if (chunks.Count > 0 && !hole && !chunks[chunks.Count - 1].Hole)
                {
                    var last = chunks[chunks.Count - 1];
                    chunks[chunks.Count - 1] = (last.Start, last.Length + n, false);
                }
                else
                {
                    chunks.Add((at, n, hole));
                }

                at += n;
            }
        }

        private async Task BlockStatusAsync(ushort flags, ulong cookie, ulong offset, uint length)
        {
            uint error = CheckFlags(flags, NbdProtocol.CmdFlagFua | NbdProtocol.CmdFlagReqOne);
            string message = null;
            if (error == 0)
            {
                (error, message) = CheckRead(offset, length);
            }

            if (error == 0 && (!_structured || _contexts.Count == 0))
            {
                (error, message) = (NbdProtocol.EInval, "no metadata context was selected (NBD_OPT_SET_META_CONTEXT)");
            }

            if (error == 0 && length == 0)
            {
                (error, message) = (NbdProtocol.EInval, "a block status request of 0 bytes");
            }

            if (error != 0)
            {
                await ErrorReplyAsync(cookie, error, message).ConfigureAwait(false);
                return;
            }

            bool one = (flags & NbdProtocol.CmdFlagReqOne) != 0;
            var replies = new List<byte[]>();
            foreach (uint id in _contexts)
            {
                var extents = new List<(uint Length, uint Flags)>();
                (error, message) = Guard(() => Extents(id, (long)offset, length, one ? 1 : MaxExtents, extents));
                if (error != 0)
                {
                    await ErrorReplyAsync(cookie, error, message).ConfigureAwait(false);
                    return;
                }

                var payload = new byte[4 + 8 * extents.Count];
                BinaryPrimitives.WriteUInt32BigEndian(payload, id);
                for (int i = 0; i < extents.Count; i++)
                {
                    BinaryPrimitives.WriteUInt32BigEndian(payload.AsSpan(4 + 8 * i), extents[i].Length);
                    BinaryPrimitives.WriteUInt32BigEndian(payload.AsSpan(8 + 8 * i), extents[i].Flags);
                }

                replies.Add(payload);
            }

            for (int i = 0; i < replies.Count; i++)
            {
                ushort done = i == replies.Count - 1 ? NbdProtocol.ReplyFlagDone : (ushort)0;
                int n = WriteChunkHeader(done, NbdProtocol.ReplyTypeBlockStatus, cookie, replies[i].Length);
                await SendAsync(_header, 0, n).ConfigureAwait(false);
                await SendAsync(replies[i], 0, replies[i].Length).ConfigureAwait(false);
            }
        }

        /// <summary>Consecutive extents of one context from <paramref name="offset"/>, merged where their flags agree.</summary>
        private void Extents(uint id, long offset, uint length, int maxExtents, List<(uint Length, uint Flags)> extents)
        {
            long end = offset + length;
            string bitmap = id == BaseAllocationId ? null : _export.Bitmaps[(int)(id - BaseAllocationId - 1)];
            while (offset < end)
            {
                long run;
                uint state;
                if (bitmap == null)
                {
                    state = _export.ReadsAsZero(offset, end - offset, out run) ? NbdProtocol.StateHole | NbdProtocol.StateZero : 0;
                }
                else
                {
                    state = _export.IsDirty(bitmap, offset, end - offset, out run) ? NbdProtocol.StateDirty : 0;
                }

                run = Math.Min(Math.Max(run, 1), end - offset);
                if (extents.Count > 0 && extents[extents.Count - 1].Flags == state)
                {
                    var last = extents[extents.Count - 1];
                    extents[extents.Count - 1] = ((uint)(last.Length + run), state);
                }
                else if (extents.Count == maxExtents)
                {
                    return;
                }
                else
                {
                    extents.Add(((uint)run, state));
                }

                offset += run;
            }
        }

        // ---- Checks and replies ----

        private uint CheckFlags(ushort flags, ushort allowed) => (flags & ~allowed) != 0 ? NbdProtocol.EInval : 0;

        private (uint, string) CheckRead(ulong offset, uint length)
            => offset > (ulong)_export.Size || length > (ulong)_export.Size - offset
                ? (NbdProtocol.EInval, $"{offset}+{length} is past the end of the {_export.Size}-byte export")
                : (0u, null);

        private (uint, string) CheckWrite(ulong offset, uint length)
        {
            if (!_export.Writable)
            {
                return (NbdProtocol.EPerm, "the export is read-only");
            }

            return offset > (ulong)_export.Size || length > (ulong)_export.Size - offset
                ? (NbdProtocol.ENoSpc, $"{offset}+{length} is past the end of the {_export.Size}-byte export")
                : (0u, null);
        }

        /// <summary>Runs engine work; its failure becomes an NBD error (the session and the server go on).</summary>
        private static (uint, string) Guard(Action work)
        {
            try
            {
                work();
                return (0, null);
            }
            catch (Exception e) when (e is ImageException || e is ArgumentException || e is InvalidOperationException || e is NotSupportedException)
            {
                return (NbdProtocol.EIO, e.Message);
            }
            catch (IOException e) when ((e.HResult & 0xFFFF) == 112 || e.HResult == 28 || e.Message.IndexOf("space", StringComparison.OrdinalIgnoreCase) >= 0)
            {
                return (NbdProtocol.ENoSpc, e.Message);
            }
            catch (IOException e)
            {
                return (NbdProtocol.EIO, e.Message);
            }
            catch (UnauthorizedAccessException e)
            {
                return (NbdProtocol.EPerm, e.Message);
            }
        }

        private Task FinishAsync(ulong cookie, uint error, string message)
            => error == 0 ? SuccessReplyAsync(cookie) : ErrorReplyAsync(cookie, error, message);

        private async Task SuccessReplyAsync(ulong cookie)
        {
            WriteSimpleHeader(cookie, 0);
            await SendAsync(_header, 0, 16).ConfigureAwait(false);
        }

        private async Task NoneReplyAsync(ulong cookie)
        {
            int n = WriteChunkHeader(NbdProtocol.ReplyFlagDone, NbdProtocol.ReplyTypeNone, cookie, 0);
            await SendAsync(_header, 0, n).ConfigureAwait(false);
        }

        /// <summary>An error: a structured error chunk with the message where negotiated, else a simple reply.</summary>
        private async Task ErrorReplyAsync(ulong cookie, uint error, string message)
        {
            if (!_structured)
            {
                WriteSimpleHeader(cookie, error);
                await SendAsync(_header, 0, 16).ConfigureAwait(false);
                return;
            }

            byte[] text = Encoding.UTF8.GetBytes(message ?? string.Empty);
            int textLength = Math.Min(text.Length, 1024);
            var chunk = new byte[20 + 6 + textLength];
            BinaryPrimitives.WriteUInt32BigEndian(chunk, NbdProtocol.StructuredReplyMagic);
            BinaryPrimitives.WriteUInt16BigEndian(chunk.AsSpan(4), NbdProtocol.ReplyFlagDone);
            BinaryPrimitives.WriteUInt16BigEndian(chunk.AsSpan(6), NbdProtocol.ReplyTypeError);
            BinaryPrimitives.WriteUInt64BigEndian(chunk.AsSpan(8), cookie);
            BinaryPrimitives.WriteUInt32BigEndian(chunk.AsSpan(16), (uint)(6 + textLength));
            BinaryPrimitives.WriteUInt32BigEndian(chunk.AsSpan(20), error);
            BinaryPrimitives.WriteUInt16BigEndian(chunk.AsSpan(24), (ushort)textLength);
            Array.Copy(text, 0, chunk, 26, textLength);
            await SendAsync(chunk, 0, chunk.Length).ConfigureAwait(false);
        }

        private void WriteSimpleHeader(ulong cookie, uint error)
        {
            BinaryPrimitives.WriteUInt32BigEndian(_header, NbdProtocol.SimpleReplyMagic);
            BinaryPrimitives.WriteUInt32BigEndian(_header.AsSpan(4), error);
            BinaryPrimitives.WriteUInt64BigEndian(_header.AsSpan(8), cookie);
        }

        private int WriteChunkHeader(ushort flags, ushort type, ulong cookie, int length)
        {
            BinaryPrimitives.WriteUInt32BigEndian(_header, NbdProtocol.StructuredReplyMagic);
            BinaryPrimitives.WriteUInt16BigEndian(_header.AsSpan(4), flags);
            BinaryPrimitives.WriteUInt16BigEndian(_header.AsSpan(6), type);
            BinaryPrimitives.WriteUInt64BigEndian(_header.AsSpan(8), cookie);
            BinaryPrimitives.WriteUInt32BigEndian(_header.AsSpan(16), (uint)length);
            return 20;
        }

        private async Task ReadExactAsync(byte[] buffer, int count, int have = 0)
        {
            while (have < count)
            {
                int n = await _stream.ReadAsync(buffer, have, count - have).ConfigureAwait(false);
                if (n == 0)
                {
                    throw new ProtocolViolation("the client closed the connection mid-message");
                }

                have += n;
            }
        }

        private sealed class ProtocolViolation : Exception
        {
            public ProtocolViolation(string message)
                : base(message)
            {
            }
        }
    }
}
