using System;
using System.IO;
using System.Security.Cryptography.X509Certificates;
using VDiskPS.Formats.Nbd;
using Xunit;

namespace VDiskPS.Formats.Tests.Nbd
{
    /// <summary>NBD_OPT_STARTTLS with an X.509 certificate, judged by qemu's tls-creds-x509 client (GnuTLS).</summary>
    public class NbdTlsTests
    {
        /// <summary>A self-signed certificate for 127.0.0.1 made by openssl: ca-cert.pem for qemu, server.pfx for the server.</summary>
        private static X509Certificate2 MakeCertificate(TempDir dir)
        {
            string pem = dir.File("ca-cert.pem");
            string key = dir.File("key.pem");
            string pfx = dir.File("server.pfx");
            var r = Qemu.Run("openssl", new[]
            {
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", pem, "-days", "2", "-subj", "/CN=127.0.0.1",
                "-addext", "subjectAltName=IP:127.0.0.1", "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,digitalSignature,keyEncipherment,keyCertSign",
            });
            Assert.True(r.ExitCode == 0, r.Output);
            r = Qemu.Run("openssl", new[] { "pkcs12", "-export", "-out", pfx, "-inkey", key, "-in", pem, "-passout", "pass:" });
            Assert.True(r.ExitCode == 0, r.Output);
            return X509CertificateLoader.LoadPkcs12FromFile(pfx, string.Empty);
        }

        private static string TlsImageOpts(int port) => $"driver=nbd,host=127.0.0.1,port={port},export=disk,tls-creds=tls0";

        [Fact]
        public void QemuReadsAndWritesOverTls()
        {
            using var dir = new TempDir();
            string path = dir.File("disk.qcow2");
            Qemu.Img("create", "-q", "-f", "qcow2", path, "4M");
            Qemu.Io("-f", "qcow2", "-c", "write -P 0x42 0 64k", path);
            using var certificate = MakeCertificate(dir);
            string creds = $"tls-creds-x509,id=tls0,dir={dir.Path},endpoint=client";
            using (var server = NbdServer.Start(
                new NbdExportOptions { Path = path, ExportName = "disk", Writable = true },
                new NbdServerOptions { Port = 0, Certificate = certificate }))
            {
                Assert.True(server.Tls);
                string info = Qemu.Img("info", "--object", creds, "--image-opts", TlsImageOpts(server.Port));
                Assert.Contains("4 MiB", info);
                Qemu.Io("--object", creds, "--image-opts", "-c", "read -P 0x42 0 64k", "-c", "write -P 0x43 1M 64k", "-c", "flush", TlsImageOpts(server.Port));
            }

            Qemu.Io("-f", "qcow2", "-c", "read -P 0x43 1M 64k", path);
        }

        [Fact]
        public void ClientsWithoutTlsAreRefused()
        {
            using var dir = new TempDir();
            string path = dir.File("disk.raw");
            File.WriteAllBytes(path, new byte[1 << 20]);
            using var certificate = MakeCertificate(dir);
            using var server = NbdServer.Start(new NbdExportOptions { Path = path, ExportName = "disk" }, new NbdServerOptions { Port = 0, Certificate = certificate });
            var plain = Qemu.Run("qemu-img", new[] { "info", server.Uri });
            Assert.NotEqual(0, plain.ExitCode);
            Assert.Contains("TLS", plain.Output);

            using var client = new RawNbdClient(server.Port);
            client.Greet();
            client.SendOption(7, new byte[6]);
            Assert.Equal(0x80000005u, client.ReadOptionReply().Type); // NBD_REP_ERR_TLS_REQD
        }
    }
}
