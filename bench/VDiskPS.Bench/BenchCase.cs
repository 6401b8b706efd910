using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;

namespace VDiskPS.Bench
{
    /// <summary>
    /// One benchmark case: the same job for qemu-img (its arguments) and for VDiskPS (the cmdlet
    /// line a user types), with the checks that every timed output must pass.
    /// </summary>
    internal sealed class BenchCase
    {
        public string Name { get; set; }

        /// <summary>The peer's command: qemu-img by default.</summary>
        public string PeerCommand { get; set; } = "qemu-img";

        public string[] PeerArguments { get; set; }

        /// <summary>The PowerShell line that does the job with the module imported.</summary>
        public string Cmdlet { get; set; }

        /// <summary>Files a run creates (deleted before each run).</summary>
        public string[] Outputs { get; set; } = Array.Empty<string>();

        public Action Prepare { get; set; }

        /// <summary>Runs before each timed run of either side (for cases that change their input).</summary>
        public Action BeforeEach { get; set; }

        /// <summary>Checks the output of the run just timed; throws when it is wrong.</summary>
        public Action Verify { get; set; }

        /// <summary>The most our peak memory may exceed the pwsh + Import-Module baseline; more fails the bench.</summary>
        public long? PeakLimitAboveBaseline { get; set; }

        /// <summary>Runs once after the case's runs, failed or not (stops a server the case started).</summary>
        public Action Finish { get; set; }

        /// <summary>Measured as whole processes only (cold start: the process is the point).</summary>
        public bool WholeProcessOnly { get; set; }

        /// <summary>The longest one run of the peer may take before it counts as stalled; null for the bench's default.</summary>
        public TimeSpan? PeerTimeout { get; set; }

        /// <summary>The peer's arguments to time instead when the peer stalls (the same job on a local file), and the row's name then.</summary>
        public (string[] Arguments, string Name)? FallbackPeer { get; set; }

        /// <summary>
        /// The case whose VDiskPS time this one's is also put against: our own convert of the same
        /// image from a local file, for the HTTP case (issue 13's goal: at most 1.2 times it).
        /// </summary>
        public string OwnLocalCase { get; set; }

        public void Cleanup()
        {
            foreach (string output in Outputs)
            {
                foreach (string file in Directory.GetFiles(Path.GetDirectoryName(output), Path.GetFileName(output) + "*"))
                {
                    File.Delete(file);
                }
            }
        }

        /// <summary>Every case, in the order the README's table lists them.</summary>
        public static IEnumerable<BenchCase> All(string dir, string source, long size)
        {
            string Out(string name) => Path.Combine(dir, name);
            string Quote(string s) => "'" + s.Replace("'", "''") + "'";

            // qemu-img with its fastest flags: out-of-order writes (-W) and 8 coroutines (-m 8).
            BenchCase Convert(string name, string src, string srcFormat, string target, string qemuFormat, string cmdletFormat, bool compress = false, string options = null, string compressionType = null)
            {
                var qemu = new List<string> { "convert", "-W", "-m", "8", "-f", srcFormat, "-O", qemuFormat };
                string cmdlet = $"Convert-VDisk -LiteralPath {Quote(src)} -Destination {Quote(target)} -Format {cmdletFormat}";
                if (compress)
                {
                    qemu.Add("-c");
                    cmdlet += " -Compress";
                }

                var qemuOptions = new List<string>();
                if (options != null)
                {
                    qemuOptions.Add(options);
                    cmdlet += $" -Option {Quote(options)}";
                }

                if (compressionType != null)
                {
                    qemuOptions.Add("compression_type=" + compressionType);
                    cmdlet += " -CompressionType " + compressionType;
                }

                if (qemuOptions.Count > 0)
                {
                    qemu.Add("-o");
                    qemu.Add(string.Join(",", qemuOptions));
                }

                qemu.Add(src);
                qemu.Add(target);
                return new BenchCase
                {
                    Name = name,
                    PeerArguments = qemu.ToArray(),
                    Cmdlet = cmdlet,
                    Outputs = new[] { target },
                    Verify = () => Check.Output(target, qemuFormat, src, srcFormat),
                };
            }

            string qcow2Source = Out("src.qcow2");
            Action makeQcow2 = () => Tools.CreateOnce(qcow2Source, "convert", "-f", "raw", "-O", "qcow2", source, qcow2Source);
            string vmdkSource = Out("src.vmdk");
            string vhdxSource = Out("src.vhdx");

            var rawToRaw = Convert("raw->raw", source, "raw", Out("out.raw"), "raw", "raw");
            yield return rawToRaw;
            yield return new BenchCase
            {
                Name = "raw->raw vs cp --sparse=always",
                PeerCommand = "cp",
                PeerArguments = new[] { "--sparse=always", source, Out("cp.raw") },
                Cmdlet = $"Convert-VDisk -LiteralPath {Quote(source)} -Destination {Quote(Out("cp.raw"))} -Format raw",
                Outputs = new[] { Out("cp.raw") },
                Verify = () => Check.Output(Out("cp.raw"), "raw", source, "raw"),
            };
            yield return Convert("raw->qcow2", source, "raw", Out("out.qcow2"), "qcow2", "qcow2");
            var toRaw = Convert("qcow2->raw", qcow2Source, "qcow2", Out("back.raw"), "raw", "raw");
            toRaw.Prepare = makeQcow2;
            yield return toRaw;
            // The same qcow2 from nginx on loopback: both sides read the URL (qemu-img by its curl
            // driver, from qemu-block-extra). Without the driver, or where it stalls (Debian 12's
            // qemu 7.2 stops fetching about a second into the image, with or without -W), the peer
            // converts the local file. Goal: no slower than 1.2x the local qcow2->raw row.
            LoopbackWebServer web = null;
            string url = null;
            bool qemuCurl = File.Exists("/usr/lib/x86_64-linux-gnu/qemu/block-curl.so");
            var overHttp = Convert(qemuCurl ? "qcow2 over HTTP->raw" : "qcow2 over HTTP->raw (peer: local file)", qcow2Source, "qcow2", Out("http.raw"), "raw", "raw");
            overHttp.PeerTimeout = TimeSpan.FromSeconds(30);
            overHttp.OwnLocalCase = "qcow2->raw";
            overHttp.FallbackPeer = ((string[])overHttp.PeerArguments.Clone(), "qcow2 over HTTP->raw (peer: local file; qemu-img's curl driver stalled)");
            overHttp.Prepare = () =>
            {
                makeQcow2();
                web = new LoopbackWebServer(dir, Out("nginx"));
                url = web.Url(Path.GetFileName(qcow2Source));
                overHttp.Cmdlet = $"Convert-VDisk -LiteralPath {Quote(url)} -Destination {Quote(Out("http.raw"))} -Format raw";
                if (qemuCurl)
                {
                    overHttp.PeerArguments[overHttp.PeerArguments.Length - 2] = url;
                }
            };
            overHttp.Finish = () => web?.Dispose();
            yield return overHttp;
            yield return Convert("raw->vmdk", source, "raw", Out("out.vmdk"), "vmdk", "vmdk");
            yield return Convert("raw->vhdx", source, "raw", Out("out.vhdx"), "vhdx", "vhdx");
            yield return Convert("raw->vhd", source, "raw", Out("out.vhd"), "vpc", "vhd");
            yield return Convert("raw->vdi", source, "raw", Out("out.vdi"), "vdi", "vdi");
            var vmdkToVhdx = Convert("vmdk->vhdx", vmdkSource, "vmdk", Out("from-vmdk.vhdx"), "vhdx", "vhdx");
            vmdkToVhdx.Prepare = () => Tools.CreateOnce(vmdkSource, "convert", "-f", "raw", "-O", "vmdk", source, vmdkSource);
            yield return vmdkToVhdx;
            var vhdxToQcow2 = Convert("vhdx->qcow2", vhdxSource, "vhdx", Out("from-vhdx.qcow2"), "qcow2", "qcow2");
            vhdxToQcow2.Prepare = () => Tools.CreateOnce(vhdxSource, "convert", "-f", "raw", "-O", "vhdx", source, vhdxSource);
            yield return vhdxToQcow2;
            yield return Convert("raw->qcow2 compressed zlib", source, "raw", Out("outc.qcow2"), "qcow2", "qcow2", compress: true);
            yield return Convert("raw->qcow2 compressed zstd", source, "raw", Out("outz.qcow2"), "qcow2", "qcow2", compress: true, compressionType: "zstd");
            yield return Convert("raw->streamOptimized", source, "raw", Out("outs.vmdk"), "vmdk", "vmdk", compress: true, options: "subformat=streamOptimized");

            // An appliance: the mixed raw image as an OVA (descriptor, streamOptimized disk, SHA256
            // manifest). The peer is what a script does without the module: qemu-img writes the
            // streamOptimized VMDK to a temporary file, sha256sum hashes it, GNU tar packs it.
            string ova = Out("appliance.ova");
            string peerFolder = Out("ova-peer");
            yield return new BenchCase
            {
                Name = "raw->OVA vs qemu-img + tar",
                PeerCommand = "sh",
                PeerArguments = new[]
                {
                    "-c",
                    $"cd {Quote(peerFolder)} && qemu-img convert -W -m 8 -f raw -O vmdk -o subformat=streamOptimized {Quote(source)} bench-disk1.vmdk"
                    + $" && sha256sum --tag bench.ovf bench-disk1.vmdk > bench.mf && tar --format=ustar -cf {Quote(ova)} bench.ovf bench-disk1.vmdk bench.mf && rm bench-disk1.vmdk",
                },
                Cmdlet = $"$null = Export-VDiskOva -LiteralPath {Quote(source)} -Destination {Quote(ova)} -Name bench",
                Outputs = new[] { ova },
                Prepare = () =>
                {
                    Directory.CreateDirectory(peerFolder);
                    File.WriteAllText(Path.Combine(peerFolder, "bench.ovf"), "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Envelope xmlns=\"http://schemas.dmtf.org/ovf/envelope/1\"/>\n");
                },
                Verify = () =>
                {
                    string extracted = Out("ova-extracted");
                    Directory.CreateDirectory(extracted);
                    try
                    {
                        Tools.Run("tar", "-xf", ova, "-C", extracted, "bench-disk1.vmdk");
                        Check.Output(Path.Combine(extracted, "bench-disk1.vmdk"), "vmdk", source, "raw");
                    }
                    finally
                    {
                        Directory.Delete(extracted, true);
                    }
                },
            };

            yield return new BenchCase
            {
                Name = "compare raw vs qcow2",
                PeerArguments = new[] { "compare", "-f", "raw", "-F", "qcow2", source, qcow2Source },
                Cmdlet = $"if (-not (Compare-VDisk -ReferencePath {Quote(source)} -DifferencePath {Quote(qcow2Source)} -Quiet)) {{ throw 'the images differ' }}",
                Prepare = makeQcow2,
            };

            // A 2-level chain: the mixed image as a qcow2 base and an overlay holding a quarter of it
            // as new data (256 MiB of 1 GiB). Every commit's base must read as the chain did before.
            string chainBase = Out("chain-base.qcow2");
            string chainTop = Out("chain-top.qcow2");
            string pristineBase = Out("pristine-base.qcow2");
            string pristineTop = Out("pristine-top.qcow2");
            string chainContent = Out("chain-content.raw");
            yield return new BenchCase
            {
                Name = "commit 2-level chain",
                PeerArguments = new[] { "commit", "-f", "qcow2", chainTop },
                Cmdlet = $"Invoke-VDiskCommit -LiteralPath {Quote(chainTop)} -Confirm:$false",
                Prepare = () =>
                {
                    makeQcow2();
                    File.Copy(qcow2Source, pristineBase, true);
                    File.Copy(qcow2Source, chainBase, true);
                    Tools.Run("qemu-img", "create", "-q", "-f", "qcow2", "-b", "chain-base.qcow2", "-F", "qcow2", pristineTop);
                    string eighth = (size / 8).ToString(System.Globalization.CultureInfo.InvariantCulture);
                    string at1 = (size / 16).ToString(System.Globalization.CultureInfo.InvariantCulture);
                    string at2 = (size / 16 * 10).ToString(System.Globalization.CultureInfo.InvariantCulture);
                    Tools.Run("qemu-io", "-f", "qcow2", "-c", $"write -P 0x5c {at1} {eighth}", "-c", $"write -P 0xa7 {at2} {eighth}", pristineTop);
                    File.Copy(pristineTop, chainTop, true);
                    Tools.Run("qemu-img", "convert", "-f", "qcow2", "-O", "raw", chainTop, chainContent);
                },
                BeforeEach = () =>
                {
                    File.Copy(pristineBase, chainBase, true);
                    File.Copy(pristineTop, chainTop, true);
                },
                Verify = () => Check.Output(chainBase, "qcow2", chainContent, "raw"),
            };

            // 1 TiB images holding 64 MiB of data: time must follow the data, not the virtual size.
            string sparse = Out("sparse-1t.raw");
            Action makeSparse = () =>
            {
                if (!File.Exists(sparse))
                {
                    using var file = new FileStream(sparse, FileMode.Create, FileAccess.Write);
                    file.SetLength(1L << 40);
                    var data = new byte[1 << 20];
                    new Random(7).NextBytes(data);
                    for (long i = 0; i < 64; i++)
                    {
                        file.Position = i * (16L << 30);
                        file.Write(data, 0, data.Length);
                    }
                }
            };
            var sparseToQcow2 = Convert("1 TiB sparse raw->qcow2", sparse, "raw", Out("sparse-out.qcow2"), "qcow2", "qcow2");
            sparseToQcow2.Prepare = makeSparse;
            yield return sparseToQcow2;
            string sparseVhdx = Out("sparse-1t.vhdx");
            var sparseVhdxToQcow2 = Convert("1 TiB sparse vhdx->qcow2", sparseVhdx, "vhdx", Out("sparse-vhdx-out.qcow2"), "qcow2", "qcow2");
            sparseVhdxToQcow2.Prepare = () =>
            {
                makeSparse();
                Tools.CreateOnce(sparseVhdx, "convert", "-f", "raw", "-O", "vhdx", sparse, sparseVhdx);
            };
            yield return sparseVhdxToQcow2;
            string sparseQcow2 = Out("sparse-1t.qcow2");
            yield return new BenchCase
            {
                Name = "1 TiB sparse qcow2 map",
                PeerArguments = new[] { "map", "--output=json", "-f", "qcow2", sparseQcow2 },
                Cmdlet = $"$null = Get-VDiskMap -LiteralPath {Quote(sparseQcow2)}",
                Prepare = () =>
                {
                    makeSparse();
                    Tools.CreateOnce(sparseQcow2, "convert", "-f", "raw", "-O", "qcow2", sparse, sparseQcow2);
                },
            };

            // Memory must not follow the image: a 64 GiB source with 1 MiB of data every 64 MiB (1 GiB in
            // all, spread over every L2 table's range of the output) converts within 256 MiB of the baseline.
            string wide = Out("wide-64g.raw");
            var wideToQcow2 = Convert("64 GiB raw->qcow2 memory", wide, "raw", Out("wide-out.qcow2"), "qcow2", "qcow2");
            wideToQcow2.PeakLimitAboveBaseline = 256L << 20;
            wideToQcow2.Prepare = () =>
            {
                if (!File.Exists(wide))
                {
                    using var file = new FileStream(wide, FileMode.Create, FileAccess.Write);
                    file.SetLength(64L << 30);
                    var data = new byte[1 << 20];
                    var random = new Random(9);
                    for (long i = 0; i < 1024; i++)
                    {
                        random.NextBytes(data);
                        file.Position = i * (64L << 20);
                        file.Write(data, 0, data.Length);
                    }
                }
            };
            yield return wideToQcow2;

            // NBD, both directions, on Unix sockets. libnbd's nbdcopy with 4 connections copies the same
            // qcow2 from our server and from qemu-nbd (each started and stopped inside the timed run).
            string nbdcopyOut = Out("nbdcopy.raw");
            string ourSocket = Out("ours.sock");
            string qemuSocket = Out("qemu-nbd.sock");
            yield return new BenchCase
            {
                Name = "nbdcopy 4 connections: Start-VDiskServer vs qemu-nbd",
                PeerCommand = "sh",
                PeerArguments = new[]
                {
                    "-c",
                    $"rm -f {Quote(qemuSocket)}; qemu-nbd -r -e 4 -f qcow2 -x disk -k {Quote(qemuSocket)} {Quote(qcow2Source)} & pid=$!; " +
                    $"while [ ! -S {Quote(qemuSocket)} ]; do sleep 0.01; done; nbdcopy --connections=4 'nbd+unix:///disk?socket={qemuSocket}' {Quote(nbdcopyOut)}; rc=$?; kill $pid; wait $pid; exit $rc",
                },
                Cmdlet = $"$s = Start-VDiskServer -LiteralPath {Quote(qcow2Source)} -Format qcow2 -UnixSocket {Quote(ourSocket)} -ExportName disk; " +
                    $"try {{ nbdcopy --connections=4 $s.Uri {Quote(nbdcopyOut)}; if ($LASTEXITCODE) {{ throw 'nbdcopy failed' }} }} finally {{ $s | Stop-VDiskServer }}",
                Outputs = new[] { nbdcopyOut },
                Prepare = makeQcow2,
                Verify = () => Check.Output(nbdcopyOut, "raw", source, "raw"),
            };

            // Our NBD client against qemu-img's, both reading one persistent qemu-nbd.
            string servedSocket = Out("served.sock");
            string servedUri = $"nbd+unix:///disk?socket={servedSocket}";
            Process served = null;
            var fromNbd = Convert("nbd client: qemu-nbd -> raw", servedUri, "raw", Out("from-nbd.raw"), "raw", "raw");
            fromNbd.Verify = () => Check.Output(Out("from-nbd.raw"), "raw", source, "raw");
            fromNbd.Prepare = () =>
            {
                makeQcow2();
                File.Delete(servedSocket);
                served = Process.Start("qemu-nbd", $"-t -r -e 8 -f qcow2 -x disk -k {servedSocket} {qcow2Source}");
                for (int wait = 0; !File.Exists(servedSocket); wait++)
                {
                    if (served.HasExited || wait > 2000)
                    {
                        throw new InvalidOperationException("qemu-nbd did not start");
                    }

                    System.Threading.Thread.Sleep(10);
                }
            };
            fromNbd.Finish = () =>
            {
                served?.Kill();
                served?.WaitForExit();
            };
            yield return fromNbd;

            // Cold start: a fresh pwsh importing the module and converting 16 MiB, whole process.
            string small = Out("small.raw");
            var cold = Convert("cold: import + convert 16 MiB", small, "raw", Out("small-out.qcow2"), "qcow2", "qcow2");
            cold.WholeProcessOnly = true;
            cold.Prepare = () =>
            {
                if (!File.Exists(small))
                {
                    MixedImage.Generate(small, 16L << 20);
                }
            };
            yield return cold;
        }
    }

    /// <summary>The judges of every timed output: qemu-img check (where qemu has one) and compare.</summary>
    internal static class Check
    {
        public static void Output(string output, string outputFormat, string reference, string referenceFormat)
        {
            if (outputFormat == "qcow2" || outputFormat == "vmdk" || outputFormat == "vdi" || outputFormat == "vhdx")
            {
                Tools.Run("qemu-img", "check", "-q", "-f", outputFormat, output);
            }

            Tools.Run("qemu-img", "compare", "-q", "-f", referenceFormat, "-F", outputFormat, reference, output);
        }
    }
}
