using System;
using System.Collections.Concurrent;
using System.IO;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;
using System.Threading;
using System.Threading.Tasks;

namespace VDiskPS.Formats.Nbd
{
    /// <summary>Where and how a server listens.</summary>
    public sealed class NbdServerOptions
    {
        /// <summary>The address to bind; loopback unless the caller says otherwise.</summary>
        public string Address { get; set; } = "127.0.0.1";

        /// <summary>TCP port; 0 picks a free one.</summary>
        public int Port { get; set; } = NbdProtocol.DefaultPort;

        /// <summary>Listen on this Unix domain socket instead of TCP.</summary>
        public string UnixSocket { get; set; }

        /// <summary>With a certificate (and its private key) clients must negotiate TLS (NBD_OPT_STARTTLS) first.</summary>
        public X509Certificate2 Certificate { get; set; }

        /// <summary>Connections past this many are closed as they arrive.</summary>
        public int MaxConnections { get; set; } = 4096;

        /// <summary>Time a client has to finish the handshake.</summary>
        public TimeSpan HandshakeTimeout { get; set; } = TimeSpan.FromSeconds(30);

        /// <summary>Time for one step once it has begun: the rest of a request, or sending a reply.</summary>
        public TimeSpan RequestTimeout { get; set; } = TimeSpan.FromSeconds(60);
    }

    /// <summary>
    /// An NBD server over one image, inside this process (qemu-nbd without the process). Connections are
    /// served by asynchronous I/O, so an idle client holds no thread; request payloads draw on a fixed
    /// number of buffers shared by all clients, so memory stays bounded whatever the clients send.
    /// </summary>
    public sealed class NbdServer : IDisposable
    {
        /// <summary>Requests with a payload (reads, writes) being handled at once, over all connections.</summary>
        private const int PayloadSlotCount = 8;

        private static int s_nextId;

        private readonly NbdExport _export;
        private readonly Socket _listener;
        private readonly ConcurrentDictionary<NbdConnection, Task> _connections = new ConcurrentDictionary<NbdConnection, Task>();
        private readonly int _maxConnections;
        private readonly Task _acceptLoop;
        private readonly object _stopGate = new object();
        private long _accepted;
        private bool _stopped;

        private NbdServer(NbdExport export, Socket listener, NbdServerOptions options)
        {
            _export = export;
            _listener = listener;
            _maxConnections = options.MaxConnections;
            Certificate = options.Certificate;
            HandshakeTimeout = options.HandshakeTimeout;
            RequestTimeout = options.RequestTimeout;
            Id = Interlocked.Increment(ref s_nextId);
            UnixSocket = options.UnixSocket == null ? null : System.IO.Path.GetFullPath(options.UnixSocket);
            if (UnixSocket != null)
            {
                Uri = "nbd+unix:///" + System.Uri.EscapeDataString(export.Name) + "?socket=" + UnixSocket;
            }
            else
            {
                var endPoint = (IPEndPoint)listener.LocalEndPoint;
                Address = endPoint.Address.ToString();
                Port = endPoint.Port;
                string host = endPoint.AddressFamily == AddressFamily.InterNetworkV6 ? "[" + Address + "]" : Address;
                Uri = $"nbd://{host}:{Port}/" + System.Uri.EscapeDataString(export.Name);
            }

            _acceptLoop = Task.Run(AcceptLoopAsync);
        }

        /// <summary>A number for this server, unique in the process.</summary>
        public int Id { get; }

        /// <summary>Where clients connect: nbd://host:port/name or nbd+unix:///name?socket=PATH.</summary>
        public string Uri { get; }

        public string Address { get; }

        /// <summary>The TCP port (the one picked when 0 was asked); 0 on a Unix socket.</summary>
        public int Port { get; }

        public string UnixSocket { get; }

        public string Path => _export.Path;

        public DiskFormat Format => _export.Format;

        public string ExportName => _export.Name;

        public long Size => _export.Size;

        public bool Writable => _export.Writable;

        public bool Tls => Certificate != null;

        /// <summary>Clients connected now.</summary>
        public int Connections => _connections.Count;

        /// <summary>Clients accepted since the start.</summary>
        public long TotalConnections => Interlocked.Read(ref _accepted);

        public bool IsRunning => !_stopped;

        internal X509Certificate2 Certificate { get; }

        internal TimeSpan HandshakeTimeout { get; }

        internal TimeSpan RequestTimeout { get; }

        internal SemaphoreSlim PayloadSlots { get; } = new SemaphoreSlim(PayloadSlotCount, PayloadSlotCount);

        /// <summary>Opens the image and starts listening; the server runs until <see cref="Stop"/>.</summary>
        public static NbdServer Start(NbdExportOptions export, NbdServerOptions options)
        {
            options = options ?? new NbdServerOptions();
            if (options.Certificate != null && !options.Certificate.HasPrivateKey)
            {
                throw new ImageOptionException(null, "certificate", "the TLS certificate has no private key");
            }

            Socket listener = Listen(options);
            NbdExport opened = null;
            try
            {
                opened = NbdExport.Open(export);
                return new NbdServer(opened, listener, options);
            }
            catch
            {
                opened?.Dispose();
                listener.Dispose();
                if (options.UnixSocket != null)
                {
                    File.Delete(options.UnixSocket);
                }

                throw;
            }
        }

        /// <summary>
        /// Stops listening, ends every connection (requests under way finish first), flushes and closes
        /// the image. Safe to call more than once.
        /// </summary>
        public void Stop()
        {
            lock (_stopGate)
            {
                if (_stopped)
                {
                    return;
                }

                _stopped = true;
            }

            _listener.Dispose();
            WaitQuietly(_acceptLoop);
            foreach (var connection in _connections.Keys)
            {
                connection.Close();
            }

            foreach (var task in _connections.Values)
            {
                WaitQuietly(task);
            }

            try
            {
                _export.Dispose();
            }
            finally
            {
                PayloadSlots.Dispose();
                if (UnixSocket != null)
                {
                    try
                    {
                        File.Delete(UnixSocket);
                    }
                    catch (IOException)
                    {
                    }
                }
            }
        }

        public void Dispose() => Stop();

        private async Task AcceptLoopAsync()
        {
            while (!_stopped)
            {
                Socket client;
                try
                {
                    client = await _listener.AcceptAsync().ConfigureAwait(false);
                }
                catch (Exception e) when (e is SocketException || e is ObjectDisposedException || e is InvalidOperationException)
                {
                    if (_stopped)
                    {
                        return;
                    }

                    // A connection that failed while being accepted (reset by the peer) does not stop the server.
                    continue;
                }

                if (_stopped || _connections.Count >= _maxConnections)
                {
                    client.Dispose();
                    continue;
                }

                Interlocked.Increment(ref _accepted);
                if (client.AddressFamily != AddressFamily.Unix)
                {
                    client.NoDelay = true;
                }

                var connection = new NbdConnection(this, _export, client);
                var started = new TaskCompletionSource<bool>();
                Task run = Task.Run(async () =>
                {
                    await started.Task.ConfigureAwait(false);
                    try
                    {
                        await connection.RunAsync().ConfigureAwait(false);
                    }
                    finally
                    {
                        _connections.TryRemove(connection, out _);
                    }
                });
                _connections[connection] = run;
                started.SetResult(true);
                if (_stopped)
                {
                    connection.Close();
                }
            }
        }

        private static Socket Listen(NbdServerOptions options)
        {
            if (options.UnixSocket != null)
            {
                string path = System.IO.Path.GetFullPath(options.UnixSocket);
                if (File.Exists(path) || Directory.Exists(path))
                {
                    throw new ImageIOException(path, "the socket path already exists");
                }

                var unix = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                try
                {
                    unix.Bind(UnixEndPoint(path));
                    unix.Listen(512);
                    return unix;
                }
                catch (SocketException e)
                {
                    unix.Dispose();
                    throw new ImageIOException(path, $"cannot listen on the Unix socket: {e.Message}", e);
                }
            }

            if (!IPAddress.TryParse(options.Address ?? "127.0.0.1", out IPAddress address))
            {
                IPAddress[] found;
                try
                {
                    found = Dns.GetHostAddresses(options.Address);
                }
                catch (SocketException e)
                {
                    throw new ImageOptionException(null, "address", $"'{options.Address}' is not an IP address or a known host name: {e.Message}");
                }

                if (found.Length == 0)
                {
                    throw new ImageOptionException(null, "address", $"'{options.Address}' has no address");
                }

                address = found[0];
            }

            if (options.Port < 0 || options.Port > 65535)
            {
                throw new ImageOptionException(null, "port", $"{options.Port} is not a TCP port (0 to 65535)");
            }

            var tcp = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
            try
            {
                tcp.Bind(new IPEndPoint(address, options.Port));
                tcp.Listen(512);
                return tcp;
            }
            catch (SocketException e)
            {
                tcp.Dispose();
                throw new ImageIOException(null, $"cannot listen on {address}:{options.Port}: {e.Message}", e);
            }
        }

        /// <summary>
        /// The runtime's UnixDomainSocketEndPoint (in System.Net.Sockets since .NET Core 2.1; not part of
        /// netstandard2.0, so it is looked up where this assembly runs).
        /// </summary>
        internal static EndPoint UnixEndPoint(string path)
        {
            Type type = typeof(Socket).Assembly.GetType("System.Net.Sockets.UnixDomainSocketEndPoint");
            if (type == null)
            {
                throw new ImageNotSupportedException(path, "unix socket", null, "this .NET runtime has no Unix domain sockets; listen on TCP instead");
            }

            return (EndPoint)Activator.CreateInstance(type, path);
        }

        /// <summary>Whether clients on other machines could reach an address (anything but loopback).</summary>
        public static bool IsLoopback(string address)
        {
            if (string.IsNullOrEmpty(address) || string.Equals(address, "localhost", StringComparison.OrdinalIgnoreCase))
            {
                return true;
            }

            return IPAddress.TryParse(address, out IPAddress ip) && IPAddress.IsLoopback(ip);
        }

        private static void WaitQuietly(Task task)
        {
            try
            {
                task.Wait(TimeSpan.FromSeconds(30));
            }
            catch (AggregateException)
            {
                // A session that failed has already ended; stopping goes on.
            }
        }
    }
}
