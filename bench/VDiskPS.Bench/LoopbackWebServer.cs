using System;
using System.Diagnostics;
using System.IO;
using System.Net;
using System.Net.Sockets;
using System.Threading;

namespace VDiskPS.Bench
{
    /// <summary>
    /// nginx serving a folder on 127.0.0.1 (a free port), from a config, pid file, logs and temp
    /// paths in its own folder; stopped by its PID. For the HTTP cases: both sides read one URL.
    /// </summary>
    internal sealed class LoopbackWebServer : IDisposable
    {
        private readonly Process _process;

        public LoopbackWebServer(string root, string stateFolder)
        {
            Directory.CreateDirectory(Path.Combine(stateFolder, "tmp"));
            var listener = new TcpListener(IPAddress.Loopback, 0);
            listener.Start();
            Port = ((IPEndPoint)listener.LocalEndpoint).Port;
            listener.Stop();
            string s = stateFolder;
            string config = Path.Combine(s, "nginx.conf");
            File.WriteAllText(config, $@"worker_processes 1;
pid {s}/nginx.pid;
error_log {s}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {s}/tmp/body; proxy_temp_path {s}/tmp/proxy; fastcgi_temp_path {s}/tmp/fastcgi;
    uwsgi_temp_path {s}/tmp/uwsgi; scgi_temp_path {s}/tmp/scgi;
    default_type application/octet-stream;
    server {{ listen 127.0.0.1:{Port}; root {root}; }}
}}
");
            var psi = new ProcessStartInfo("nginx") { UseShellExecute = false };
            foreach (string a in new[] { "-p", s, "-c", config, "-e", Path.Combine(s, "error.log"), "-g", "daemon off;" })
            {
                psi.ArgumentList.Add(a);
            }

            _process = Process.Start(psi);
            for (DateTime deadline = DateTime.UtcNow.AddSeconds(15); ; Thread.Sleep(50))
            {
                try
                {
                    using var client = new TcpClient();
                    client.Connect(IPAddress.Loopback, Port);
                    return;
                }
                catch (SocketException) when (DateTime.UtcNow < deadline && !_process.HasExited)
                {
                }
            }
        }

        public int Port { get; }

        public string Url(string name) => $"http://127.0.0.1:{Port}/{name}";

        public void Dispose()
        {
            if (!_process.HasExited)
            {
                Process.Start("kill", new[] { "-TERM", _process.Id.ToString() })?.WaitForExit();
                if (!_process.WaitForExit(10000))
                {
                    _process.Kill(entireProcessTree: true);
                }
            }

            _process.Dispose();
        }
    }
}
