using System;
using System.IO;
using System.Net.Sockets;
using System.Threading;
using System.Threading.Tasks;

namespace VDiskPS.Formats.Nbd
{
    /// <summary>
    /// The connections to one NBD export. A server that advertises NBD_FLAG_CAN_MULTI_CONN promises that
    /// a flush on any connection covers writes answered on all (doc/proto.md, transmission flags), so
    /// requests are spread over up to <see cref="MaxConnections"/>; without the flag the protocol makes
    /// no promise across connections and one is used. Further connections are opened in the background
    /// when every open one has a request in flight, so no request waits for a handshake; a handshake
    /// that fails, or that describes the export differently, leaves the pool as it was and no further
    /// connection is tried.
    /// </summary>
    internal sealed class NbdConnectionPool : IDisposable
    {
        /// <summary>The most connections to one export: enough to keep a server's threads and a link busy, few enough to be a polite client.</summary>
        internal const int MaxConnections = 4;

        private readonly NbdClientLocation _location;
        private readonly object _gate = new object();
        private CancellationTokenSource _growth = new CancellationTokenSource();
        private readonly int _limit;
        private NbdClient[] _connections;
        private bool _growing;
        private bool _noMore;
        private bool _closed;

        public NbdConnectionPool(NbdClientLocation location, NbdClient first)
        {
            _location = location;
            Primary = first;
            _connections = new[] { first };
            _limit = first.Has(NbdProtocol.FlagCanMultiConn) ? MaxConnections : 1;
        }

        /// <summary>The first connection: its handshake describes the export (size, flags, block sizes) for all.</summary>
        public NbdClient Primary { get; }

        /// <summary>The connections open now (some may have failed since).</summary>
        public int Count => Volatile.Read(ref _connections).Length;

        /// <summary>False once no connection is left alive.</summary>
        public bool IsAlive => Array.Exists(Volatile.Read(ref _connections), c => c.IsAlive);

        /// <summary>A READ on the least busy connection; a read whose connection was lost (not refused, not broken by the server) goes again on another.</summary>
        public void Read(long offset, Span<byte> buffer)
        {
            NbdClient client = Pick();
            while (true)
            {
                try
                {
                    client.Read(offset, buffer);
                    return;
                }
                catch (ImageIOException) when (!client.IsAlive && !client.BrokeProtocol && (client = AnotherAlive(client)) != null)
                {
                    // Reading is idempotent: the next live connection serves it.
                }
            }
        }

        public void Write(long offset, ReadOnlySpan<byte> data) => Pick().Write(offset, data);

        public void WriteZeroes(long offset, long length, ushort flags) => Pick().WriteZeroes(offset, length, flags);

        /// <summary>
        /// NBD_CMD_FLUSH on every connection that wrote since its last flush (the callers' writes are
        /// answered by now, as the spec asks before a flush meant to cover them); one flush when none wrote.
        /// A connection that wrote and has since been lost is covered by a flush on a live one, which
        /// CAN_MULTI_CONN promises (without it there is one connection, and its loss fails the flush).
        /// </summary>
        public void Flush()
        {
            bool flushed = false;
            foreach (NbdClient client in Volatile.Read(ref _connections))
            {
                if (client.WroteSinceFlush && client.IsAlive)
                {
                    client.Flush();
                    flushed = true;
                }
            }

            if (!flushed)
            {
                Pick().Flush();
            }
        }

        /// <summary>
        /// Closes every connection but the first (a handshake under way too); the pool may grow again
        /// when it is used. An idle pool holds one of the server's client places, not four.
        /// </summary>
        public void Shrink()
        {
            NbdClient[] extra;
            CancellationTokenSource growth;
            lock (_gate)
            {
                extra = _connections;
                growth = _growth;
                _growth = new CancellationTokenSource();
                Volatile.Write(ref _connections, new[] { Primary });
            }

            growth.Cancel();
            foreach (NbdClient client in extra)
            {
                if (client != Primary)
                {
                    client.Dispose();
                }
            }
        }

        public void Dispose()
        {
            NbdClient[] connections;
            lock (_gate)
            {
                _closed = true;
                connections = _connections;
            }

            _growth.Cancel();
            foreach (NbdClient client in connections)
            {
                client.Dispose();
            }
        }

        /// <summary>The live connection with the fewest requests in flight; asks for another connection when even that one is busy.</summary>
        private NbdClient Pick()
        {
            NbdClient best = null;
            foreach (NbdClient client in Volatile.Read(ref _connections))
            {
                if (client.IsAlive && (best == null || client.InFlight < best.InFlight))
                {
                    best = client;
                }
            }

            if (best == null)
            {
                // None is alive: the first one's calls throw why.
                return Primary;
            }

            if (best.InFlight > 0)
            {
                Grow();
            }

            return best;
        }

        private NbdClient AnotherAlive(NbdClient failed)
        {
            foreach (NbdClient client in Volatile.Read(ref _connections))
            {
                if (client != failed && client.IsAlive)
                {
                    return client;
                }
            }

            return null;
        }

        private void Grow()
        {
            CancellationTokenSource growth;
            lock (_gate)
            {
                if (_growing || _noMore || _closed || _connections.Length >= _limit)
                {
                    return;
                }

                _growing = true;
                growth = _growth;
            }

            Task.Factory.StartNew(() => OpenAnother(growth), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        }

        private void OpenAnother(CancellationTokenSource growth)
        {
            NbdClient opened = null;
            try
            {
                opened = NbdClient.Connect(_location, Primary.Timeout, growth.Token);
            }
            catch (Exception e) when (e is ImageException || e is OperationCanceledException || e is IOException || e is SocketException || e is ObjectDisposedException)
            {
                // Fewer connections, never a failed request: the ones open serve everything.
            }

            lock (_gate)
            {
                _growing = false;
                if (opened != null && !growth.IsCancellationRequested && SameExport(opened))
                {
                    var grown = new NbdClient[_connections.Length + 1];
                    _connections.CopyTo(grown, 0);
                    grown[grown.Length - 1] = opened;
                    Volatile.Write(ref _connections, grown);
                    return;
                }

                // Shrunk or closed meanwhile is no failure of the server's; anything else ends the growing.
                _noMore |= !growth.IsCancellationRequested;
            }

            opened?.Dispose();
        }

        /// <summary>The new connection describes the export as the first did; anything else (a server changed or inconsistent) is not used.</summary>
        private bool SameExport(NbdClient other)
            => other.Size == Primary.Size && other.TransmissionFlags == Primary.TransmissionFlags && other.Structured == Primary.Structured
                && other.HasAllocationContext == Primary.HasAllocationContext && other.MinimumBlock == Primary.MinimumBlock && other.MaxPayload == Primary.MaxPayload;
    }
}
