using System;
using System.Collections.Generic;

namespace VDiskPS.Formats.Nbd
{
    /// <summary>
    /// The NBD transport: <c>nbd://</c> and <c>nbd+unix://</c> locations are exports on an NBD server,
    /// read (and written, where the export allows) as a byte source beneath any format.
    /// </summary>
    internal sealed class NbdTransport : IHostTransport
    {
        public string Name => "NBD";

        public bool Claims(string location) => NbdClientLocation.IsNbd(location);

        public HostFile Open(string location, HostAccess access) => NbdClientFile.Open(location, access);

        /// <summary>qemu-img convert's default (-m 8): enough requests in flight to hide the round trip, spread over the pool's connections.</summary>
        public int ReadsInFlight => 8;

        public string Resolve(string imageLocation, string recorded)
            => throw new ImageChainException(imageLocation, "backing file", $"the image names its backing file '{recorded}' by a relative path, which an NBD export has no directory to resolve against; serve the backing file too and give its full location");
    }

    /// <summary>
    /// An NBD export as a host file: READ, WRITE, WRITE_ZEROES, FLUSH and BLOCK_STATUS base:allocation
    /// over an <see cref="NbdConnectionPool"/> that parallel callers share (one connection unless the
    /// server allows more).
    /// </summary>
    internal sealed class NbdClientFile : HostFile
    {
        // BLOCK_STATUS asks for this much at a time; the extents that come back answer later queries.
        private const long StatusSpan = 1L << 30;

        // WRITE_ZEROES lengths are 32-bit; a request zeroes at most this much.
        private const long ZeroSpan = 1L << 30;

        // A closed connection waits this long for the next open of the same export (a probe is followed
        // by the open), so one-shot servers (qemu-nbd without --persistent) serve the whole operation.
        private static readonly TimeSpan s_parkTime = TimeSpan.FromSeconds(2);
        private static readonly object s_parkGate = new object();
        private static Parked s_parked;

        private readonly NbdConnectionPool _pool;
        private readonly NbdClient _client;
        private readonly object _extentGate = new object();
        private List<(long Start, long End, bool IsData)> _extents = new List<(long, long, bool)>();

        private NbdClientFile(string location, NbdConnectionPool pool, bool writable)
            : base(location, writable)
        {
            _pool = pool;
            _client = pool.Primary;
        }

        public override long Length => _client.Size;

        /// <summary>The connections open to the export now.</summary>
        internal int Connections => _pool.Count;

        /// <summary>Connects to the export; <paramref name="timeout"/> (default 30 s) bounds the handshake and any silence while a reply is due.</summary>
        public static NbdClientFile Open(string location, HostAccess access, TimeSpan? timeout = null)
        {
            NbdClientLocation parsed = NbdClientLocation.Parse(location);
            NbdConnectionPool pool = Unpark(location, timeout ?? NbdClient.DefaultTimeout)
                ?? new NbdConnectionPool(parsed, NbdClient.Connect(parsed, timeout ?? NbdClient.DefaultTimeout));
            bool writable = access == HostAccess.ReadWrite;
            if (writable && pool.Primary.ReadOnly)
            {
                pool.Dispose();
                throw new ImageIOException(location, "the NBD export is read-only (the server was started without write access)");
            }

            return new NbdClientFile(location, pool, writable);
        }

        public override int ReadAt(long offset, Span<byte> buffer)
        {
            if (offset < 0 || offset >= Length)
            {
                return 0;
            }

            int total = (int)Math.Min(buffer.Length, Length - offset);
            int piece = _client.MaxPayload;
            for (int done = 0; done < total; done += piece)
            {
                ReadAligned(offset + done, buffer.Slice(done, Math.Min(piece, total - done)));
            }

            return total;
        }

        public override void WriteAt(long offset, ReadOnlySpan<byte> data)
        {
            CheckWrite(offset, data.Length);
            int piece = _client.MaxPayload;
            for (int done = 0; done < data.Length; done += piece)
            {
                _pool.Write(offset + done, data.Slice(done, Math.Min(piece, data.Length - done)));
            }
        }

        /// <summary>NBD_CMD_WRITE_ZEROES with NBD_CMD_FLAG_NO_HOLE: real zeros, as the contract asks.</summary>
        public override void WriteZeros(long offset, long length)
        {
            if (!_client.Has(NbdProtocol.FlagSendWriteZeroes))
            {
                base.WriteZeros(offset, length);
                return;
            }

            Zero(offset, length, NbdProtocol.CmdFlagNoHole);
        }

        /// <summary>NBD_CMD_WRITE_ZEROES that may deallocate: the range reads as zeros (TRIM would not promise that).</summary>
        public override bool PunchHole(long offset, long length)
        {
            if (!CanWrite || !_client.Has(NbdProtocol.FlagSendWriteZeroes))
            {
                return false;
            }

            Zero(offset, length, 0);
            return true;
        }

        public override void SetLength(long length)
        {
            if (length != Length)
            {
                throw new ImageNotSupportedException(Path, "size", null, $"an NBD export cannot be resized (it is {Length} bytes; {length} were asked)");
            }
        }

        public override void Flush(bool durable = true)
        {
            if (CanWrite && _client.Has(NbdProtocol.FlagSendFlush))
            {
                _pool.Flush();
            }
        }

        /// <summary>base:allocation: a run the server calls zero (NBD_STATE_ZERO) is not data; a hole that may not read as zeros still is.</summary>
        public override (bool IsData, long Length)? QueryAllocation(long offset, long maxLength)
        {
            if (!_client.HasAllocationContext || offset < 0 || offset >= Length)
            {
                return null;
            }

            lock (_extentGate)
            {
                (bool IsData, long Length)? known = Lookup(offset, maxLength);
                if (known != null)
                {
                    return known;
                }
            }

            long start = offset / _client.MinimumBlock * _client.MinimumBlock;
            long length = Math.Min(Length - start, StatusSpan);
            List<(long Length, uint Flags)> extents = _client.BlockStatus(start, length);
            if (extents == null)
            {
                // The server could not say (an error reply): everything is data there.
                return null;
            }

            var runs = new List<(long Start, long End, bool IsData)>();
            long at = start;
            foreach ((long extent, uint flags) in extents)
            {
                if (at >= Length)
                {
                    break;
                }

                long end = Math.Min(Length, at + extent);
                bool isData = (flags & NbdProtocol.StateZero) == 0;
                if (runs.Count > 0 && runs[runs.Count - 1].IsData == isData)
                {
                    runs[runs.Count - 1] = (runs[runs.Count - 1].Start, end, isData);
                }
                else
                {
                    runs.Add((at, end, isData));
                }

                at = end;
            }

            lock (_extentGate)
            {
                _extents = runs;
                return Lookup(offset, maxLength);
            }
        }

        public override void Dispose()
        {
            if (!_client.IsAlive)
            {
                _pool.Dispose();
                return;
            }

            // Parked, it keeps one connection: the server's other client places are free for others meanwhile.
            _pool.Shrink();
            Parked previous;
            lock (s_parkGate)
            {
                previous = s_parked;
                var parked = new Parked(Path, _pool);
                parked.Timer = new System.Threading.Timer(_ => Expire(parked), null, s_parkTime, System.Threading.Timeout.InfiniteTimeSpan);
                s_parked = parked;
            }

            previous?.Close();
        }

        private static NbdConnectionPool Unpark(string location, TimeSpan timeout)
        {
            Parked parked;
            lock (s_parkGate)
            {
                parked = s_parked;
                if (parked == null || parked.Location != location || parked.Pool.Primary.Timeout != timeout)
                {
                    return null;
                }

                s_parked = null;
                parked.Timer.Dispose();
                if (parked.Pool.Primary.IsAlive)
                {
                    return parked.Pool;
                }
            }

            // Its first connection is gone: the rest describe an export that may have changed.
            parked.Close();
            return null;
        }

        private static void Expire(Parked parked)
        {
            lock (s_parkGate)
            {
                if (s_parked != parked)
                {
                    return;
                }

                s_parked = null;
            }

            parked.Close();
        }

        /// <summary>The cached run holding <paramref name="offset"/>: the runs are sorted and touch, so a binary search finds it (a reply may hold 128 Ki extents).</summary>
        private (bool IsData, long Length)? Lookup(long offset, long maxLength)
        {
            int low = 0;
            int high = _extents.Count - 1;
            while (low <= high)
            {
                int middle = low + ((high - low) / 2);
                (long start, long end, bool isData) = _extents[middle];
                if (offset < start)
                {
                    high = middle - 1;
                }
                else if (offset >= end)
                {
                    low = middle + 1;
                }
                else
                {
                    return (isData, Math.Min(end - offset, maxLength));
                }
            }

            return null;
        }

        private void ReadAligned(long offset, Span<byte> buffer)
        {
            int block = _client.MinimumBlock;
            if (block == 1 || (offset % block == 0 && buffer.Length % block == 0))
            {
                _pool.Read(offset, buffer);
                return;
            }

            // The server takes whole blocks only: read the blocks around the range.
            long start = offset / block * block;
            long end = Math.Min(Length, (offset + buffer.Length + block - 1) / block * block);
            byte[] widened = new byte[end - start];
            for (long done = 0; done < widened.Length; done += _client.MaxPayload)
            {
                int n = (int)Math.Min(_client.MaxPayload, widened.Length - done);
                _pool.Read(start + done, widened.AsSpan((int)done, n));
            }

            widened.AsSpan((int)(offset - start), buffer.Length).CopyTo(buffer);
        }

        private void CheckWrite(long offset, long length)
        {
            if (!CanWrite)
            {
                throw new ImageIOException(Path, "the NBD export is open read-only");
            }

            if (offset < 0 || length > Length - offset)
            {
                throw new ImageIOException(Path, $"a write of {length} bytes at offset {offset} reaches past the end of the export ({Length} bytes); an NBD export cannot grow");
            }

            int block = _client.MinimumBlock;
            if (offset % block != 0 || (length % block != 0 && offset + length != Length))
            {
                throw new ImageNotSupportedException(Path, "write", offset, $"the server takes writes in whole blocks of {block} bytes; {length} bytes at offset {offset} are not aligned");
            }

            lock (_extentGate)
            {
                _extents = new List<(long, long, bool)>();
            }
        }

        private void Zero(long offset, long length, ushort flags)
        {
            CheckWrite(offset, length);
            long span = ZeroSpan / _client.MinimumBlock * _client.MinimumBlock;
            for (long done = 0; done < length; done += span)
            {
                _pool.WriteZeroes(offset + done, Math.Min(span, length - done), flags);
            }
        }

        /// <summary>Connections kept open between a close and the next open of their export.</summary>
        private sealed class Parked
        {
            public Parked(string location, NbdConnectionPool pool)
            {
                Location = location;
                Pool = pool;
            }

            public string Location { get; }

            public NbdConnectionPool Pool { get; }

            public System.Threading.Timer Timer { get; set; }

            public void Close()
            {
                Timer?.Dispose();
                Pool.Dispose();
            }
        }
    }
}
