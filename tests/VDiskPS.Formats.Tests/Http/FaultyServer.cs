using System;
using System.Collections.Concurrent;
using System.IO;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.RegularExpressions;
using System.Threading;
using System.Threading.Tasks;

namespace VDiskPS.Formats.Tests.Http
{
    /// <summary>What the faulty server does with one request.</summary>
    public enum Fault
    {
        /// <summary>Answer 206 with the range.</summary>
        None,

        /// <summary>Answer 503 Service Unavailable.</summary>
        Unavailable,

        /// <summary>Promise the range, send a tenth of it and close the connection.</summary>
        Truncate,

        /// <summary>Close the connection without an answer.</summary>
        Reset,

        /// <summary>Ignore the range: answer 200 with the whole file's Content-Length, send a tenth of it and close the connection.</summary>
        WholeFileCutShort,

        /// <summary>Ignore the range: answer 200 with the whole file and no Content-Length, closing the connection at its end.</summary>
        WholeFileUnsized,
    }

    /// <summary>
    /// A minimal HTTP/1.1 server on 127.0.0.1 that serves one byte array by ranges and misbehaves
    /// as <see cref="Decide"/> says, request by request. nginx cannot be made to fail a given
    /// request (cut a body short, answer 503 once), so these failure modes are tested against this.
    /// </summary>
    public sealed class FaultyServer : IDisposable
    {
        private readonly TcpListener _listener = new TcpListener(IPAddress.Loopback, 0);
        private readonly byte[] _content;
        private readonly CancellationTokenSource _stop = new CancellationTokenSource();
        private int _requests;

        public FaultyServer(byte[] content, Func<int, long, Fault> decide)
        {
            _content = content;
            Decide = decide;
            _listener.Start();
            Task.Run(AcceptLoop);
        }

        /// <summary>The fault for request number n (from 0) asking for bytes from the given offset.</summary>
        public Func<int, long, Fault> Decide { get; set; }

        public int Requests => Volatile.Read(ref _requests);

        public string Url(string name) => $"http://127.0.0.1:{((IPEndPoint)_listener.LocalEndpoint).Port}/{name}";

        public void Dispose()
        {
            _stop.Cancel();
            _listener.Stop();
        }

        private async Task AcceptLoop()
        {
            while (!_stop.IsCancellationRequested)
            {
                TcpClient client;
                try
                {
                    client = await _listener.AcceptTcpClientAsync();
                }
                catch (Exception) when (_stop.IsCancellationRequested)
                {
                    return;
                }

                _ = Task.Run(() => Serve(client));
            }
        }

        private void Serve(TcpClient client)
        {
            using (client)
            using (NetworkStream stream = client.GetStream())
            {
                try
                {
                    while (true)
                    {
                        string head = ReadHead(stream);
                        if (head == null)
                        {
                            return;
                        }

                        Match range = Regex.Match(head, @"Range: bytes=(\d+)-(\d+)", RegexOptions.IgnoreCase);
                        long from = range.Success ? long.Parse(range.Groups[1].Value) : 0;
                        long to = range.Success ? Math.Min(long.Parse(range.Groups[2].Value), _content.Length - 1) : _content.Length - 1;
                        Fault fault = Decide(Interlocked.Increment(ref _requests) - 1, from);
                        if (fault == Fault.Reset)
                        {
                            client.Client.LingerState = new LingerOption(true, 0);
                            return;
                        }

                        if (fault == Fault.Unavailable)
                        {
                            Write(stream, "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n");
                            continue;
                        }

                        if (fault == Fault.WholeFileCutShort || fault == Fault.WholeFileUnsized)
                        {
                            string sized = fault == Fault.WholeFileCutShort ? $"Content-Length: {_content.Length}\r\n" : "Connection: close\r\n";
                            Write(stream, $"HTTP/1.1 200 OK\r\n{sized}ETag: \"fixed\"\r\n\r\n");
                            stream.Write(_content, 0, fault == Fault.WholeFileCutShort ? _content.Length / 10 : _content.Length);
                            return;
                        }

                        int length = (int)(to - from + 1);
                        Write(stream, $"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {from}-{to}/{_content.Length}\r\nContent-Length: {length}\r\nETag: \"fixed\"\r\n\r\n");
                        stream.Write(_content, (int)from, fault == Fault.Truncate ? length / 10 : length);
                        if (fault == Fault.Truncate)
                        {
                            return;
                        }
                    }
                }
                catch (IOException)
                {
                    // The client went away.
                }
            }
        }

        private static void Write(Stream stream, string text) => stream.Write(Encoding.ASCII.GetBytes(text));

        private static string ReadHead(Stream stream)
        {
            var head = new StringBuilder();
            while (!head.ToString().EndsWith("\r\n\r\n", StringComparison.Ordinal))
            {
                int b = stream.ReadByte();
                if (b < 0)
                {
                    return null;
                }

                head.Append((char)b);
            }

            return head.ToString();
        }
    }
}
