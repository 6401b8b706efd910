using System;
using System.Buffers.Binary;
using System.IO;
using System.Net.Sockets;
using System.Text;

namespace VDiskPS.Formats.Tests.Nbd
{
    /// <summary>
    /// A bare NBD client over a socket, for what real clients never send (garbage, oversized lengths,
    /// half messages). Correct traffic is judged with qemu-img, qemu-io and libnbd's tools instead.
    /// </summary>
    internal sealed class RawNbdClient : IDisposable
    {
        private const ulong OptionMagic = 0x49484156454F5054;
        private const ulong OptionReplyMagic = 0x3e889045565a9;

        public RawNbdClient(int port)
        {
            Socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            Socket.Connect("127.0.0.1", port);
            Socket.ReceiveTimeout = 20000;
            Stream = new NetworkStream(Socket, ownsSocket: true);
        }

        public Socket Socket { get; }

        public NetworkStream Stream { get; }

        public bool Structured { get; private set; }

        /// <summary>The chunk types of the last structured reply, in order.</summary>
        public System.Collections.Generic.List<ushort> ChunkTypes { get; } = new System.Collections.Generic.List<ushort>();

        /// <summary>Reads the server's greeting and answers with fixed newstyle flags.</summary>
        public void Greet(uint clientFlags = 1)
        {
            byte[] greeting = ReadExact(18);
            if (BinaryPrimitives.ReadUInt64BigEndian(greeting) != 0x4e42444d41474943)
            {
                throw new InvalidDataException("no NBDMAGIC");
            }

            var flags = new byte[4];
            BinaryPrimitives.WriteUInt32BigEndian(flags, clientFlags);
            Stream.Write(flags);
        }

        public void SendOption(uint option, byte[] data, uint? claimedLength = null)
        {
            var header = new byte[16];
            BinaryPrimitives.WriteUInt64BigEndian(header, OptionMagic);
            BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(8), option);
            BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(12), claimedLength ?? (uint)data.Length);
            Stream.Write(header);
            Stream.Write(data);
        }

        /// <summary>One option reply: its type and data.</summary>
        public (uint Type, byte[] Data) ReadOptionReply()
        {
            byte[] header = ReadExact(20);
            if (BinaryPrimitives.ReadUInt64BigEndian(header) != OptionReplyMagic)
            {
                throw new InvalidDataException("bad option reply magic");
            }

            uint type = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(12));
            uint length = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(16));
            return (type, ReadExact((int)length));
        }

        /// <summary>Handshake up to transmission with NBD_OPT_GO (and structured replies when asked).</summary>
        public void Connect(bool structured)
        {
            Greet();
            if (structured)
            {
                SendOption(8, Array.Empty<byte>());
                if (ReadOptionReply().Type != 1)
                {
                    throw new InvalidDataException("structured replies refused");
                }

                Structured = true;
            }

            var go = new byte[6]; // empty name, no information requests
            SendOption(7, go);
            while (true)
            {
                var (type, _) = ReadOptionReply();
                if (type == 1)
                {
                    return;
                }

                if (type != 3)
                {
                    throw new InvalidDataException($"NBD_OPT_GO failed: 0x{type:x}");
                }
            }
        }

        public void SendRequest(ushort type, ulong offset, uint length, ushort flags = 0, ulong cookie = 42, byte[] payload = null)
        {
            var request = new byte[28];
            BinaryPrimitives.WriteUInt32BigEndian(request, 0x25609513);
            BinaryPrimitives.WriteUInt16BigEndian(request.AsSpan(4), flags);
            BinaryPrimitives.WriteUInt16BigEndian(request.AsSpan(6), type);
            BinaryPrimitives.WriteUInt64BigEndian(request.AsSpan(8), cookie);
            BinaryPrimitives.WriteUInt64BigEndian(request.AsSpan(16), offset);
            BinaryPrimitives.WriteUInt32BigEndian(request.AsSpan(24), length);
            Stream.Write(request);
            if (payload != null)
            {
                Stream.Write(payload);
            }
        }

        /// <summary>
        /// Reads one whole reply. Returns the NBD error (0 on success); for a read with a simple reply,
        /// <paramref name="readLength"/> bytes of data follow a success.
        /// </summary>
        public uint ReadReply(int readLength = 0)
        {
            byte[] header = ReadExact(4);
            uint magic = BinaryPrimitives.ReadUInt32BigEndian(header);
            if (magic == 0x67446698)
            {
                byte[] rest = ReadExact(12);
                uint error = BinaryPrimitives.ReadUInt32BigEndian(rest);
                if (error == 0 && readLength > 0)
                {
                    ReadExact(readLength);
                }

                return error;
            }

            if (magic != 0x668e33ef)
            {
                throw new InvalidDataException($"bad reply magic 0x{magic:x}");
            }

            uint result = 0;
            ChunkTypes.Clear();
            while (true)
            {
                byte[] chunk = ReadExact(16);
                ushort flags = BinaryPrimitives.ReadUInt16BigEndian(chunk);
                ushort type = BinaryPrimitives.ReadUInt16BigEndian(chunk.AsSpan(2));
                uint length = BinaryPrimitives.ReadUInt32BigEndian(chunk.AsSpan(12));
                byte[] payload = ReadExact((int)length);
                ChunkTypes.Add(type);
                if ((type & 0x8000) != 0)
                {
                    result = BinaryPrimitives.ReadUInt32BigEndian(payload);
                }

                if ((flags & 1) != 0)
                {
                    return result;
                }

                byte[] next = ReadExact(4);
                if (BinaryPrimitives.ReadUInt32BigEndian(next) != 0x668e33ef)
                {
                    throw new InvalidDataException("bad chunk magic");
                }
            }
        }

        /// <summary>True when the server has closed the connection (reads return end of stream or fail).</summary>
        public bool IsClosedByServer()
        {
            try
            {
                var one = new byte[1];
                while (true)
                {
                    if (Stream.Read(one, 0, 1) == 0)
                    {
                        return true;
                    }
                }
            }
            catch (IOException e) when (e.InnerException is SocketException se && se.SocketErrorCode == SocketError.TimedOut)
            {
                return false;
            }
            catch (IOException)
            {
                // Reset by the server.
                return true;
            }
        }

        public byte[] ReadExact(int count)
        {
            var buffer = new byte[count];
            int have = 0;
            while (have < count)
            {
                int n = Stream.Read(buffer, have, count - have);
                if (n == 0)
                {
                    throw new EndOfStreamException($"the server closed the connection after {have} of {count} bytes");
                }

                have += n;
            }

            return buffer;
        }

        public static byte[] Utf8(string s) => Encoding.UTF8.GetBytes(s);

        public void Dispose() => Stream.Dispose();
    }
}
