using System;
using System.Diagnostics;
using System.IO;
using System.Runtime.InteropServices;
using System.Threading;
using VDiskPS.Formats.Attach;

namespace VDiskPS.Formats.Nbd
{
    /// <summary>
    /// An image attached to this Linux host (qemu-nbd -c, or FUSE where there is no nbd module): the
    /// image is served on a private Unix socket and a client of the system turns the export into a
    /// block device (nbd-client) or into a file under a mount point (nbdfuse, from libnbd).
    /// </summary>
    internal sealed class NbdAttachment : IDiskAttachment
    {
        private const string FuseFileName = "disk";
        private static readonly TimeSpan ToolTimeout = TimeSpan.FromSeconds(30);

        private readonly string _privateDirectory;
        private readonly Process _fuse;
        private bool _detached;

        private NbdAttachment(NbdServer server, string privateDirectory, string method, string devicePath, string mountPoint, Process fuse)
        {
            Server = server;
            _privateDirectory = privateDirectory;
            Method = method;
            DevicePath = devicePath;
            MountPoint = mountPoint;
            _fuse = fuse;
        }

        public NbdServer Server { get; }

        public string Path => Server.Path;

        public bool ReadOnly => !Server.Writable;

        public string Uri => Server.Uri;

        /// <summary>"nbd-client" (a /dev/nbdN block device) or "nbdfuse" (a file under the mount point).</summary>
        public string Method { get; }

        /// <summary>/dev/nbdN, or the file under the mount point that holds the guest disk.</summary>
        public string DevicePath { get; }

        /// <summary>The FUSE mount point; null for a block device.</summary>
        public string MountPoint { get; }

        /// <summary>
        /// Serves the image on a private socket and attaches it: /dev/nbdN with nbd-client where the nbd
        /// kernel module is loaded, else a FUSE file with nbdfuse. <paramref name="mountPoint"/> (an existing
        /// folder) is used for FUSE; by default a private folder is made.
        /// </summary>
        public static NbdAttachment Attach(NbdExportOptions export, string mountPoint)
        {
            string nbdClient = FindTool("nbd-client");
            bool kernelNbd = Directory.Exists("/sys/module/nbd") && File.Exists("/dev/nbd0");
            string nbdfuse = FindTool("nbdfuse");
            bool fuse = File.Exists("/dev/fuse");
            if (!(kernelNbd && nbdClient != null) && !(nbdfuse != null && fuse))
            {
                string missing = nbdfuse == null
                    ? "install nbdfuse (Debian/Ubuntu: libnbd-bin; Fedora: nbdfuse) or nbd-client with the nbd kernel module (modprobe nbd)"
                    : "/dev/fuse is missing (load the fuse module) and there is no nbd kernel module with nbd-client";
                throw new ImageNotSupportedException(export.Path, "attach", null, $"no way to attach a disk on this host: {missing}");
            }

            if (mountPoint != null && !Directory.Exists(mountPoint))
            {
                throw new ImageIOException(mountPoint, "the mount point is not an existing folder");
            }

            string privateDirectory = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "vdiskps-attach-" + Guid.NewGuid().ToString("N"));
            Directory.CreateDirectory(privateDirectory);
            NbdServer server = null;
            try
            {
                // Only this user may reach the socket.
                chmod(privateDirectory, 0x1C0 /* 0700 */);
                string socket = System.IO.Path.Combine(privateDirectory, "nbd.sock");
                server = NbdServer.Start(export, new NbdServerOptions { UnixSocket = socket });
                if (kernelNbd && nbdClient != null)
                {
                    string device = FreeNbdDevice() ?? throw new ImageNotSupportedException(export.Path, "attach", null, "every /dev/nbdN device is in use");
                    Run(nbdClient, "-unix", socket, device, "-N", server.ExportName);
                    return new NbdAttachment(server, privateDirectory, "nbd-client", device, null, null);
                }

                string mount = mountPoint ?? System.IO.Path.Combine(privateDirectory, "mnt");
                Directory.CreateDirectory(mount);
                Process process = StartFuse(nbdfuse, export.Writable, privateDirectory, mount, server.Uri);
                return new NbdAttachment(server, privateDirectory, "nbdfuse", System.IO.Path.Combine(mount, FuseFileName), System.IO.Path.GetFullPath(mount), process);
            }
            catch
            {
                server?.Stop();
                TryDelete(privateDirectory);
                throw;
            }
        }

        /// <summary>Detaches (the client flushes through the server), then stops the server, which flushes the image.</summary>
        public void Detach()
        {
            if (_detached)
            {
                return;
            }

            _detached = true;
            try
            {
                if (_fuse != null)
                {
                    string fusermount = FindTool("fusermount3") ?? FindTool("fusermount")
                        ?? throw new ImageNotSupportedException(DevicePath, "detach", null, "fusermount3 is missing; unmount the FUSE folder by hand");
                    Run(fusermount, "-u", MountPoint);
                    if (!_fuse.WaitForExit((int)ToolTimeout.TotalMilliseconds))
                    {
                        _fuse.Kill();
                    }

                    _fuse.Dispose();
                }
                else
                {
                    Run(FindTool("nbd-client") ?? "nbd-client", "-d", DevicePath);
                }
            }
            finally
            {
                Server.Stop();
                TryDelete(_privateDirectory);
            }
        }

        public void Dispose() => Detach();

        private static Process StartFuse(string nbdfuse, bool writable, string privateDirectory, string mount, string uri)
        {
            string pidFile = System.IO.Path.Combine(privateDirectory, "nbdfuse.pid");
            var psi = new ProcessStartInfo(nbdfuse)
            {
                UseShellExecute = false,
                RedirectStandardError = true,
                Arguments = (writable ? string.Empty : "-r ") + "-P " + Quote(pidFile) + " " + Quote(System.IO.Path.Combine(mount, FuseFileName)) + " " + Quote(uri),
            };
            Process process = Process.Start(psi);
            var until = DateTime.UtcNow + ToolTimeout;

            // nbdfuse writes its pid file once the file is ready to use.
            while (!File.Exists(pidFile))
            {
                if (process.WaitForExit(50))
                {
                    string error = process.StandardError.ReadToEnd().Trim();
                    process.Dispose();
                    throw new ImageIOException(mount, $"nbdfuse could not mount the disk: {error}");
                }

                if (DateTime.UtcNow > until)
                {
                    process.Kill();
                    process.Dispose();
                    throw new ImageIOException(mount, "nbdfuse did not mount the disk in time");
                }
            }

            return process;
        }

        private static string FreeNbdDevice()
        {
            for (int i = 0; File.Exists($"/dev/nbd{i}"); i++)
            {
                // A connected device has a pid file in sysfs.
                if (!File.Exists($"/sys/block/nbd{i}/pid"))
                {
                    return $"/dev/nbd{i}";
                }
            }

            return null;
        }

        private static void Run(string tool, params string[] args)
        {
            var psi = new ProcessStartInfo(tool)
            {
                UseShellExecute = false,
                RedirectStandardError = true,
                RedirectStandardOutput = true,
                Arguments = string.Join(" ", Array.ConvertAll(args, Quote)),
            };
            using (Process process = Process.Start(psi))
            {
                string output = process.StandardOutput.ReadToEnd();
                string error = process.StandardError.ReadToEnd();
                if (!process.WaitForExit((int)ToolTimeout.TotalMilliseconds))
                {
                    process.Kill();
                    throw new ImageIOException(null, $"{System.IO.Path.GetFileName(tool)} did not finish in time");
                }

                if (process.ExitCode != 0)
                {
                    throw new ImageIOException(null, $"{System.IO.Path.GetFileName(tool)} failed ({process.ExitCode}): {(error + output).Trim()}");
                }
            }
        }

        /// <summary>One argument quoted for ProcessStartInfo.Arguments, which .NET splits by the Windows rules on every OS.</summary>
        private static string Quote(string arg)
        {
            var quoted = new System.Text.StringBuilder("\"");
            int backslashes = 0;
            foreach (char c in arg)
            {
                if (c == '\\')
                {
                    backslashes++;
                    continue;
                }

                // Backslashes are literal except before a quote, where they (and the quote) are escaped.
                quoted.Append('\\', c == '"' ? backslashes * 2 + 1 : backslashes);
                backslashes = 0;
                quoted.Append(c);
            }

            quoted.Append('\\', backslashes * 2);
            return quoted.Append('"').ToString();
        }

        internal static string FindTool(string tool)
        {
            foreach (string dir in (Environment.GetEnvironmentVariable("PATH") ?? string.Empty).Split(System.IO.Path.PathSeparator))
            {
                string candidate = System.IO.Path.Combine(dir, tool);
                if (File.Exists(candidate))
                {
                    return candidate;
                }
            }

            foreach (string dir in new[] { "/usr/sbin", "/sbin" })
            {
                string candidate = System.IO.Path.Combine(dir, tool);
                if (File.Exists(candidate))
                {
                    return candidate;
                }
            }

            return null;
        }

        private static void TryDelete(string directory)
        {
            try
            {
                Directory.Delete(directory, true);
            }
            catch (IOException)
            {
            }
            catch (UnauthorizedAccessException)
            {
            }
        }

        [DllImport("libc", SetLastError = true)]
        private static extern int chmod(string path, int mode);
    }
}
