using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Net;
using System.Net.Sockets;
using System.Threading;

namespace VDiskPS.Formats.Tests.Http
{
    /// <summary>
    /// A real nginx (Debian nginx-light) on 127.0.0.1, run as a child process from a generated config
    /// in a temp folder (pid, logs and temp paths all there): plain HTTP and TLS (a self-signed
    /// certificate made by openssl) over the folder <see cref="Root"/>, with /noranges/ (max_ranges 0),
    /// /private/ (basic auth: user "alice", password <see cref="Password"/>, an htpasswd made by
    /// openssl passwd -apr1) and /forbidden/ (deny all). The access log records each request's Range
    /// header and status, so tests can count range requests.
    /// </summary>
    public sealed class Nginx : IDisposable
    {
        public const string User = "alice";
        public const string Password = "s3cret-Pa55";

        private readonly TempDir _dir = new TempDir();
        private readonly Process _process;

        public Nginx()
        {
            Root = _dir.File("www");
            foreach (string folder in new[] { "www/noranges", "www/private", "www/forbidden", "tmp" })
            {
                Directory.CreateDirectory(_dir.File(folder));
            }

            string key = _dir.File("key.pem");
            string certificate = _dir.File("cert.pem");
            Run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", certificate, "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1");
            string hash = Run("openssl", "passwd", "-apr1", Password).Split('\n')[0].Trim();
            System.IO.File.WriteAllText(_dir.File("htpasswd"), $"{User}:{hash}\n");

            Port = FreePort();
            TlsPort = FreePort();
            string d = _dir.Path;
            string locations = $@"
        root {Root};
        location /noranges/ {{ max_ranges 0; }}
        location /private/ {{ auth_basic ""vdisk""; auth_basic_user_file {d}/htpasswd; }}
        location /forbidden/ {{ deny all; }}";
            System.IO.File.WriteAllText(_dir.File("nginx.conf"), $@"
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 128; }}
http {{
    log_format ranges '$request_method $uri ""$http_range"" $status $body_bytes_sent';
    access_log {d}/access.log ranges;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{Port};{locations}
    }}
    server {{
        listen 127.0.0.1:{TlsPort} ssl;
        ssl_certificate {certificate};
        ssl_certificate_key {key};{locations}
    }}
}}
");
            var psi = new ProcessStartInfo("nginx") { UseShellExecute = false, RedirectStandardError = true, RedirectStandardOutput = true };
            foreach (string a in new[] { "-p", d, "-c", _dir.File("nginx.conf"), "-e", _dir.File("error.log"), "-g", "daemon off;" })
            {
                psi.ArgumentList.Add(a);
            }

            _process = Process.Start(psi);
            WaitUntilListening();
        }

        /// <summary>The folder nginx serves.</summary>
        public string Root { get; }

        public int Port { get; }

        public int TlsPort { get; }

        public string Url(string relative) => $"http://127.0.0.1:{Port}/{relative}";

        public string TlsUrl(string relative) => $"https://127.0.0.1:{TlsPort}/{relative}";

        /// <summary>A path under <see cref="Root"/>.</summary>
        public string File(string relative) => System.IO.Path.Combine(Root, relative);

        /// <summary>The requests logged so far for <paramref name="uri"/> ("/disk.qcow2").</summary>
        public IReadOnlyList<LoggedRequest> Requests(string uri)
        {
            string log = _dir.File("access.log");
            if (!System.IO.File.Exists(log))
            {
                return Array.Empty<LoggedRequest>();
            }

            var result = new List<LoggedRequest>();
            foreach (string line in System.IO.File.ReadAllLines(log))
            {
                // GET /disk.qcow2 "bytes=0-1048575" 206 1048576
                string[] parts = line.Split(' ');
                if (parts.Length == 5 && parts[1] == uri)
                {
                    result.Add(new LoggedRequest(parts[0], parts[2].Trim('"'), int.Parse(parts[3]), long.Parse(parts[4])));
                }
            }

            return result;
        }

        public void Dispose()
        {
            try
            {
                if (!_process.HasExited)
                {
                    // SIGTERM to the master (by its PID) stops its worker too.
                    Process.Start("kill", new[] { "-TERM", _process.Id.ToString() })?.WaitForExit();
                    if (!_process.WaitForExit(10000))
                    {
                        _process.Kill(entireProcessTree: true);
                    }
                }
            }
            finally
            {
                _process.Dispose();
                _dir.Dispose();
            }
        }

        private void WaitUntilListening()
        {
            DateTime deadline = DateTime.UtcNow.AddSeconds(15);
            foreach (int port in new[] { Port, TlsPort })
            {
                while (true)
                {
                    if (_process.HasExited)
                    {
                        throw new InvalidOperationException($"nginx exited {_process.ExitCode}: {_process.StandardError.ReadToEnd()} {ReadErrorLog()}");
                    }

                    try
                    {
                        using var client = new TcpClient();
                        client.Connect(IPAddress.Loopback, port);
                        break;
                    }
                    catch (SocketException) when (DateTime.UtcNow < deadline)
                    {
                        Thread.Sleep(50);
                    }
                }
            }
        }

        private string ReadErrorLog() => System.IO.File.Exists(_dir.File("error.log")) ? System.IO.File.ReadAllText(_dir.File("error.log")) : string.Empty;

        /// <summary>A TCP port nobody listens on now.</summary>
        public static int FreePort()
        {
            var listener = new TcpListener(IPAddress.Loopback, 0);
            listener.Start();
            int port = ((IPEndPoint)listener.LocalEndpoint).Port;
            listener.Stop();
            return port;
        }

        private static string Run(string tool, params string[] args)
        {
            var r = Qemu.Run(tool, args);
            if (r.ExitCode != 0)
            {
                throw new InvalidOperationException($"{tool} failed: {r.Output}");
            }

            return r.Output;
        }
    }

    /// <summary>One access-log line: method, Range header ("" when none), status, body bytes sent.</summary>
    public sealed record LoggedRequest(string Method, string Range, int Status, long Bytes)
    {
        /// <summary>The first byte of the range ("bytes=START-END").</summary>
        public long RangeStart => long.Parse(Range.Substring("bytes=".Length).Split('-')[0]);
    }
}
