using System;
using System.Diagnostics;
using System.IO;
using System.Net;
using System.Net.Sockets;
using System.Threading;

namespace VDiskPS.Formats.Tests.Nbd
{
    /// <summary>
    /// An NBD server nobody here wrote (qemu-nbd, nbdkit) run in the foreground for one test, on a Unix
    /// socket or a free TCP port of 127.0.0.1, and stopped by its process id.
    /// </summary>
    internal sealed class ExternalNbdServer : IDisposable
    {
        private readonly Process _process;

        private ExternalNbdServer(Process process, string uri, int port)
        {
            _process = process;
            Uri = uri;
            Port = port;
        }

        /// <summary>The export's NBD URI.</summary>
        public string Uri { get; }

        /// <summary>The TCP port (0 on a Unix socket).</summary>
        public int Port { get; }

        /// <summary>The client connections established to this server's TCP port now, as the kernel's table (ss) lists them.</summary>
        public int EstablishedConnections()
        {
            string listed = Qemu.Run("ss", new[] { "-H", "-t", "-n", "state", "established", "( dport = :" + Port + " )" }, expectSuccess: true).Output;
            return listed.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length;
        }

        /// <summary>qemu-nbd serving <paramref name="image"/> (persistent, so each open is a new client) on a Unix socket.</summary>
        public static ExternalNbdServer QemuNbd(TempDir dir, string image, string format, string export = "disk", bool readOnly = false, bool persistent = true)
        {
            string socket = dir.File($"q{Guid.NewGuid():N}".Substring(0, 9) + ".sock");
            var args = new System.Collections.Generic.List<string> { "-f", format, "-x", export, "-k", socket };
            if (persistent)
            {
                args.Add("-t");
            }

            if (readOnly)
            {
                args.Add("-r");
            }

            args.Add(image);
            return Start("qemu-nbd", args.ToArray(), socket, $"nbd+unix:///{export}?socket={socket}");
        }

        /// <summary>qemu-nbd on a free TCP port of 127.0.0.1; <paramref name="shared"/> clients at once (-e), which makes it advertise CAN_MULTI_CONN when above 1.</summary>
        public static ExternalNbdServer QemuNbdTcp(string image, string format, string export = "disk", int shared = 1, bool readOnly = false)
        {
            int port = FreePort();
            var args = new System.Collections.Generic.List<string> { "-t", "-f", format, "-x", export, "-b", "127.0.0.1", "-p", port.ToString(), "-e", shared.ToString() };
            if (readOnly)
            {
                args.Add("-r");
            }

            args.Add(image);
            return Start("qemu-nbd", args.ToArray(), null, $"nbd://127.0.0.1:{port}/{export}", port);
        }

        /// <summary>nbdkit with a plugin and its parameters (filters as "--filter=NAME" first) on a Unix socket; the export name is ignored by nbdkit.</summary>
        public static ExternalNbdServer Nbdkit(TempDir dir, params string[] pluginArgs)
        {
            string socket = dir.File($"k{Guid.NewGuid():N}".Substring(0, 9) + ".sock");
            var args = new System.Collections.Generic.List<string> { "-f", "-U", socket };
            args.AddRange(pluginArgs);
            return Start("nbdkit", args.ToArray(), socket, $"nbd+unix:///?socket={socket}");
        }

        /// <summary>nbdkit on a free TCP port of 127.0.0.1.</summary>
        public static ExternalNbdServer NbdkitTcp(params string[] pluginArgs)
        {
            int port = FreePort();
            var args = new System.Collections.Generic.List<string> { "-f", "-i", "127.0.0.1", "-p", port.ToString() };
            args.AddRange(pluginArgs);
            return Start("nbdkit", args.ToArray(), null, $"nbd://127.0.0.1:{port}/", port);
        }

        public void Dispose()
        {
            try
            {
                if (!_process.HasExited)
                {
                    _process.Kill();
                    _process.WaitForExit(10000);
                }
            }
            catch (InvalidOperationException)
            {
                // Already gone.
            }

            _process.Dispose();
        }

        private static ExternalNbdServer Start(string tool, string[] args, string socket, string uri, int port = 0)
        {
            var psi = new ProcessStartInfo(tool) { UseShellExecute = false, RedirectStandardError = true, RedirectStandardOutput = true };
            foreach (string a in args)
            {
                psi.ArgumentList.Add(a);
            }

            var process = Process.Start(psi);
            var server = new ExternalNbdServer(process, uri, port);
            var stderr = new System.Text.StringBuilder();
            process.ErrorDataReceived += (_, e) => { lock (stderr) { stderr.AppendLine(e.Data); } };
            process.OutputDataReceived += (_, e) => { };
            process.BeginErrorReadLine();
            process.BeginOutputReadLine();
            var deadline = DateTime.UtcNow.AddSeconds(20);
            while (DateTime.UtcNow < deadline)
            {
                if (process.HasExited)
                {
                    throw new InvalidOperationException($"{tool} {string.Join(" ", args)} exited {process.ExitCode}: {stderr}");
                }

                if (socket != null ? File.Exists(socket) : Listening(port))
                {
                    return server;
                }

                Thread.Sleep(50);
            }

            server.Dispose();
            throw new TimeoutException($"{tool} did not start listening: {stderr}");
        }

        private static bool Listening(int port)
        {
            // A probe connection would be the persistent server's first client: look at the kernel's table instead.
            foreach (IPEndPoint endPoint in System.Net.NetworkInformation.IPGlobalProperties.GetIPGlobalProperties().GetActiveTcpListeners())
            {
                if (endPoint.Port == port)
                {
                    return true;
                }
            }

            return false;
        }

        private static int FreePort()
        {
            var listener = new TcpListener(IPAddress.Loopback, 0);
            listener.Start();
            int port = ((IPEndPoint)listener.LocalEndpoint).Port;
            listener.Stop();
            return port;
        }
    }
}
