using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using VDiskPS.Formats;

namespace VDiskPS.Bench
{
    /// <summary>One benchmark case: the same job for qemu-img and for the engine.</summary>
    internal sealed class BenchCase
    {
        public string Name { get; set; }
        public string[] QemuArguments { get; set; }
        public string[] EngineArguments { get; set; }
        public DiskFormat[] Needs { get; set; } = Array.Empty<DiskFormat>();
        public string[] Outputs { get; set; } = Array.Empty<string>();
        public Action Prepare { get; set; }

        /// <summary>Runs before each timed run of either tool (for cases that change their input).</summary>
        public Action BeforeEach { get; set; }
        public Action Verify { get; set; }

        public bool IsAvailable(out string why)
        {
            var missing = Needs.Where(f => FormatRegistry.Default.Drivers.All(d => d.Format != f)).ToList();
            why = missing.Count == 0 ? null : "format not in this build: " + string.Join(", ", missing.Select(f => f.ToName()));
            return missing.Count == 0;
        }

        public void Cleanup()
        {
            foreach (string output in Outputs)
            {
                foreach (string file in Directory.GetFiles(Path.GetDirectoryName(output), Path.GetFileNameWithoutExtension(output) + "*"))
                {
                    File.Delete(file);
                }
            }
        }

        /// <summary>Every case, in the order the README's table lists them.</summary>
        public static IEnumerable<BenchCase> All(string dir, string source)
        {
            string Out(string name) => Path.Combine(dir, name);
            BenchCase Convert(string name, string src, string srcFormat, string target, DiskFormat format, string qemuFormat, bool compress = false, string options = null, params DiskFormat[] needs)
            {
                var qemu = new List<string> { "convert", "-f", srcFormat, "-O", qemuFormat };
                if (compress)
                {
                    qemu.Add("-c");
                }

                if (options != null)
                {
                    qemu.Add("-o");
                    qemu.Add(options);
                }

                qemu.Add(src);
                qemu.Add(target);
                var engine = new List<string> { "convert", src, target, format.ToName(), compress ? "compress" : "plain" };
                if (options != null)
                {
                    engine.Add(options);
                }

                return new BenchCase
                {
                    Name = name,
                    QemuArguments = qemu.ToArray(),
                    EngineArguments = engine.ToArray(),
                    Needs = needs.Concat(new[] { format }).ToArray(),
                    Outputs = new[] { target },
                    Verify = () => Compare(src, srcFormat, target, qemuFormat),
                };
            }

            yield return Convert("raw->raw", source, "raw", Out("out.raw"), DiskFormat.Raw, "raw");
            yield return Convert("raw->qcow2", source, "raw", Out("out.qcow2"), DiskFormat.Qcow2, "qcow2");
            var qcow2Source = Out("src.qcow2");
            var toRaw = Convert("qcow2->raw", qcow2Source, "qcow2", Out("back.raw"), DiskFormat.Raw, "raw", needs: DiskFormat.Qcow2);
            toRaw.Prepare = () =>
            {
                if (!File.Exists(qcow2Source))
                {
                    Tools.Run("qemu-img", "convert", "-f", "raw", "-O", "qcow2", source, qcow2Source);
                }
            };
            yield return toRaw;
            yield return Convert("raw->vmdk", source, "raw", Out("out.vmdk"), DiskFormat.Vmdk, "vmdk");
            yield return Convert("raw->vhdx", source, "raw", Out("out.vhdx"), DiskFormat.Vhdx, "vhdx");
            yield return Convert("raw->vhd", source, "raw", Out("out.vhd"), DiskFormat.Vhd, "vpc");
            yield return Convert("raw->vdi", source, "raw", Out("out.vdi"), DiskFormat.Vdi, "vdi");
            yield return Convert("raw->qcow2 compressed", source, "raw", Out("outc.qcow2"), DiskFormat.Qcow2, "qcow2", compress: true);
            yield return Convert("raw->streamOptimized", source, "raw", Out("outs.vmdk"), DiskFormat.Vmdk, "vmdk", compress: true, options: "subformat=streamOptimized");

            yield return new BenchCase
            {
                Name = "compare raw vs qcow2",
                QemuArguments = new[] { "compare", "-f", "raw", "-F", "qcow2", source, qcow2Source },
                EngineArguments = new[] { "compare", source, qcow2Source },
                Needs = new[] { DiskFormat.Qcow2 },
                Prepare = toRaw.Prepare,
            };

            // A 2-level chain: the mixed image as a qcow2 base and an overlay holding 256 MiB of new data.
            string chainBase = Out("chain-base.qcow2");
            string chainTop = Out("chain-top.qcow2");
            string pristineBase = Out("pristine-base.qcow2");
            string pristineTop = Out("pristine-top.qcow2");
            yield return new BenchCase
            {
                Name = "commit 2-level chain",
                QemuArguments = new[] { "commit", "-f", "qcow2", chainTop },
                EngineArguments = new[] { "commit", chainTop },
                Needs = new[] { DiskFormat.Qcow2 },
                Prepare = () =>
                {
                    toRaw.Prepare();
                    File.Copy(qcow2Source, pristineBase, true);
                    File.Copy(qcow2Source, chainBase, true);
                    Tools.Run("qemu-img", "create", "-q", "-f", "qcow2", "-b", "chain-base.qcow2", "-F", "qcow2", pristineTop);
                    Tools.Run("qemu-io", "-f", "qcow2", "-c", "write -P 0x5c 64M 128M", "-c", "write -P 0xa7 640M 128M", pristineTop);
                },
                BeforeEach = () =>
                {
                    File.Copy(pristineBase, chainBase, true);
                    File.Copy(pristineTop, chainTop, true);
                },
            };

            // A 1 TiB image holding 64 MiB of data: time must follow the data, not the virtual size.
            string sparse = Out("sparse-1t.raw");
            var sparseCase = Convert("1 TiB sparse raw->qcow2", sparse, "raw", Out("sparse-out.qcow2"), DiskFormat.Qcow2, "qcow2");
            sparseCase.Prepare = () =>
            {
                if (!File.Exists(sparse))
                {
                    using (var file = new FileStream(sparse, FileMode.Create, FileAccess.Write))
                    {
                        file.SetLength(1L << 40);
                        var data = new byte[1 << 20];
                        new Random(7).NextBytes(data);
                        for (long i = 0; i < 64; i++)
                        {
                            file.Position = i * (16L << 30);
                            file.Write(data, 0, data.Length);
                        }
                    }
                }
            };
            yield return sparseCase;
        }

        private static void Compare(string a, string formatA, string b, string formatB)
        {
            Tools.Run("qemu-img", "compare", "-f", formatA, "-F", formatB, a, b);
        }
    }
}
