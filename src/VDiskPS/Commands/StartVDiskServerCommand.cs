using System;
using System.IO;
using System.Management.Automation;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using VDiskPS.Formats;
using VDiskPS.Formats.Nbd;

namespace VDiskPS.Commands
{
    /// <summary>Start-VDiskServer: serves an image over NBD from inside this session (qemu-nbd).</summary>
    [Cmdlet(VerbsLifecycle.Start, "VDiskServer", DefaultParameterSetName = ParameterSets.Path, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
    [OutputType(typeof(VDiskServer))]
    public sealed class StartVDiskServerCommand : VDiskPathCmdlet
    {
        /// <summary>The image's format; probed when omitted.</summary>
        [Parameter]
        [ValidateReadableFormat]
        [ArgumentCompleter(typeof(ReadableFormatCompleter))]
        public string Format { get; set; }

        /// <summary>The address to listen on; loopback (127.0.0.1) by default.</summary>
        [Parameter]
        [ValidateNotNullOrEmpty]
        public string Address { get; set; } = "127.0.0.1";

        /// <summary>The TCP port; 0 picks a free one.</summary>
        [Parameter]
        [ValidateRange(0, 65535)]
        public int Port { get; set; } = 10809;

        /// <summary>Listen on this Unix domain socket instead of TCP.</summary>
        [Parameter]
        [ValidateNotNullOrEmpty]
        public string UnixSocket { get; set; }

        /// <summary>The export name clients ask for; the image's file name by default.</summary>
        [Parameter]
        public string ExportName { get; set; }

        /// <summary>Let clients write (read-only otherwise).</summary>
        [Parameter]
        public SwitchParameter Writable { get; set; }

        /// <summary>Serve this internal snapshot (name or id) read-only instead of the current disk.</summary>
        [Parameter]
        [ValidateNotNullOrEmpty]
        public string Snapshot { get; set; }

        /// <summary>Persistent bitmaps to offer as qemu:dirty-bitmap:NAME metadata contexts.</summary>
        [Parameter]
        [ValidateNotNullOrEmpty]
        public string[] Bitmap { get; set; }

        /// <summary>An X509Certificate2 with its private key, or the path of a PFX file: clients must then use TLS.</summary>
        [Parameter]
        [ValidateNotNull]
        public object Certificate { get; set; }

        /// <summary>Serve a read-only image another process is writing (qemu-img -U); do not ask before a writable export on a non-loopback address.</summary>
        [Parameter]
        public SwitchParameter Force { get; set; }

        protected override void ProcessRecord()
        {
            foreach (string file in ResolvedImagePaths())
            {
                string where = UnixSocket != null ? ResolveNewPath(UnixSocket) : $"{Address}:{Port}";
                string mode = Writable ? "writable" : "read-only";
                if (!ShouldProcess(file, $"Serve over NBD ({mode}) on {where}"))
                {
                    continue;
                }

                if (Writable && UnixSocket == null && !NbdServer.IsLoopback(Address) && !Force
                    && !ShouldContinue($"'{file}' would be writable by any client that reaches {Address}:{Port}. Serve it?", "Writable NBD export on a network address"))
                {
                    continue;
                }

                try
                {
                    var export = new NbdExportOptions
                    {
                        Path = file,
                        Format = ParseFormat(Format),
                        ExportName = ExportName ?? System.IO.Path.GetFileName(file),
                        Writable = Writable,
                        Snapshot = Snapshot,
                        Bitmaps = Bitmap ?? Array.Empty<string>(),
                        ShareWithWriters = Force && !Writable,
                    };
                    var options = new NbdServerOptions
                    {
                        Address = Address,
                        Port = Port,
                        UnixSocket = UnixSocket == null ? null : ResolveNewPath(UnixSocket),
                        Certificate = LoadCertificate(),
                    };
                    NbdServer server = WithImageWarnings(() => NbdServer.Start(export, options));
                    VDiskServers.Add(server);
                    WriteObject(new VDiskServer(server));
                }
                catch (ImageException e)
                {
                    WriteImageError(e, file);
                }
            }
        }

        private X509Certificate2 LoadCertificate()
        {
            object value = Unwrap(Certificate);
            switch (value)
            {
                case null:
                    return null;
                case X509Certificate2 certificate:
                    return certificate;
                case string path:
                    string full = ResolveNewPath(path);
                    try
                    {
                        return new X509Certificate2(full);
                    }
                    catch (CryptographicException e)
                    {
                        throw new ImageOptionException(full, "certificate", $"cannot read the certificate (a PFX file with its private key is expected): {e.Message}");
                    }

                default:
                    throw new ImageOptionException(null, "certificate", $"a {value.GetType().Name} is not a certificate; give an X509Certificate2 or the path of a PFX file");
            }
        }
    }
}
