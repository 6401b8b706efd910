using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Threading;
using VDiskPS.Formats;

namespace VDiskPS.Bench
{
    /// <summary>
    /// Times the engine against qemu-img on the same data in the same run. Each case runs both
    /// tools N times (default 5) in separate processes, alternating, and reports the medians, the
    /// ratio (ours / qemu-img) and each side's peak resident memory. qemu-img is timed as a whole
    /// process; the engine's conversion is timed inside its process after a small warm-up run
    /// (the steady state of an imported module, without .NET start-up and JIT).
    ///
    ///   dotnet run -c Release --project bench/VDiskPS.Bench -- [--size 1G] [--runs 5] [--dir DIR] [--cases a,b]
    /// </summary>
    public static class Program
    {
        public static int Main(string[] args)
        {
            if (args.Length > 0 && args[0] == "engine")
            {
                return EngineWorker.Run(args.Skip(1).ToArray());
            }

            long size = DiskSize.Parse(Arg(args, "--size") ?? "1G").Bytes;
            int runs = int.Parse(Arg(args, "--runs") ?? "5", CultureInfo.InvariantCulture);
            string dir = Path.GetFullPath(Arg(args, "--dir") ?? Path.Combine(Path.GetTempPath(), "vdiskps-bench"));
            var only = Arg(args, "--cases")?.Split(',').ToHashSet(StringComparer.OrdinalIgnoreCase);
            Directory.CreateDirectory(dir);

            string source = Path.Combine(dir, "mixed.raw");
            if (!File.Exists(source) || new FileInfo(source).Length != size)
            {
                Console.WriteLine($"Generating {DiskSize.Format(size)} mixed image {source} ...");
                MixedImage.Generate(source, size);
            }

            Console.WriteLine($"qemu: {Tools.Run("qemu-img", "--version").Split('\n')[0]}; cores: {Environment.ProcessorCount}; runs per side: {runs}");
            var results = new List<CaseResult>();
            foreach (BenchCase c in BenchCase.All(dir, source))
            {
                if (only != null && !only.Contains(c.Name))
                {
                    continue;
                }

                if (!c.IsAvailable(out string why))
                {
                    Console.WriteLine($"{c.Name}: skipped ({why})");
                    continue;
                }

                c.Prepare?.Invoke();
                var ours = new List<Sample>();
                var theirs = new List<Sample>();
                for (int i = 0; i < runs; i++)
                {
                    c.Cleanup();
                    c.BeforeEach?.Invoke();
                    Tools.Settle();
                    theirs.Add(Tools.Measure("qemu-img", c.QemuArguments));
                    c.Cleanup();
                    c.BeforeEach?.Invoke();
                    Tools.Settle();
                    ours.Add(Tools.Measure(Tools.SelfCommand, Tools.SelfArguments(c.EngineArguments)));
                }

                c.Verify?.Invoke();
                c.Cleanup();
                var result = new CaseResult(c.Name, ours, theirs);
                results.Add(result);
                Console.WriteLine(result.Line());
            }

            Console.WriteLine();
            Console.WriteLine("| case | VDiskPS (s) | qemu-img (s) | ratio | VDiskPS peak MiB | qemu-img peak MiB |");
            Console.WriteLine("|---|---:|---:|---:|---:|---:|");
            foreach (var r in results)
            {
                Console.WriteLine(r.Row());
            }

            return 0;
        }

        internal static string Arg(string[] args, string name)
        {
            int i = Array.IndexOf(args, name);
            return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
        }
    }

    internal readonly struct Sample
    {
        public Sample(double seconds, long peakBytes)
        {
            Seconds = seconds;
            PeakBytes = peakBytes;
        }

        public double Seconds { get; }

        public long PeakBytes { get; }
    }

    internal sealed class CaseResult
    {
        public CaseResult(string name, List<Sample> ours, List<Sample> theirs)
        {
            Name = name;
            Ours = Median(ours.Select(s => s.Seconds));
            Theirs = Median(theirs.Select(s => s.Seconds));
            OursPeak = ours.Max(s => s.PeakBytes);
            TheirsPeak = theirs.Max(s => s.PeakBytes);
        }

        public string Name { get; }
        public double Ours { get; }
        public double Theirs { get; }
        public long OursPeak { get; }
        public long TheirsPeak { get; }
        public double Ratio => Theirs <= 0 ? double.NaN : Ours / Theirs;

        public string Line() => FormattableString.Invariant($"{Name}: VDiskPS {Ours:0.000}s, qemu-img {Theirs:0.000}s, ratio {Ratio:0.00}, peak {OursPeak >> 20} MiB vs {TheirsPeak >> 20} MiB");

        public string Row() => FormattableString.Invariant($"| {Name} | {Ours:0.000} | {Theirs:0.000} | {Ratio:0.00} | {OursPeak >> 20} | {TheirsPeak >> 20} |");

        private static double Median(IEnumerable<double> values)
        {
            var sorted = values.OrderBy(v => v).ToList();
            int n = sorted.Count;
            return n % 2 == 1 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
        }
    }

    /// <summary>The 1 GiB mixed image: random, compressible, explicit zeros and holes, in 4 MiB stripes.</summary>
    internal static class MixedImage
    {
        public static void Generate(string path, long size)
        {
            const int Stripe = 4 << 20;
            var rng = new Random(20261121);
            byte[] random = new byte[Stripe];
            byte[] text = new byte[Stripe];
            byte[] zeros = new byte[Stripe];
            byte[] phrase = System.Text.Encoding.ASCII.GetBytes("VDiskPS compressible log line 0000000000 status=ok latency=12ms\n");
            using var file = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20);
            file.SetLength(size);
            for (long offset = 0, i = 0; offset < size; offset += Stripe, i++)
            {
                int n = (int)Math.Min(Stripe, size - offset);
                switch (i % 4)
                {
                    case 0:
                        rng.NextBytes(random);
                        file.Position = offset;
                        file.Write(random, 0, n);
                        break;
                    case 1:
                        for (int j = 0; j < n; j++)
                        {
                            text[j] = phrase[(j + (int)i) % phrase.Length];
                        }

                        text[rng.Next(n)] = (byte)rng.Next(256);
                        file.Position = offset;
                        file.Write(text, 0, n);
                        break;
                    case 2:
                        file.Position = offset;
                        file.Write(zeros, 0, n);
                        break;
                    default:
                        break; // a hole
                }
            }
        }
    }

    /// <summary>
    /// The engine side of a case, run in its own process so that its memory is its own. The code is
    /// first run once on a small image (untimed) so that the timed run sees the steady state of a
    /// loaded PowerShell module rather than .NET start-up and JIT compilation; the timed run's
    /// seconds are printed on the last line for the harness.
    /// </summary>
    internal static class EngineWorker
    {
        public static int Run(string[] args)
        {
            string verb = args[0];
            switch (verb)
            {
                case "convert":
                    {
                        // convert SRC DST TARGETFORMAT compress|plain [options]
                        string warmSource = WarmUpSource(args[1]);
                        string warmTarget = args[2] + ".warmup";
                        Convert(warmSource, warmTarget, args);
                        File.Delete(warmTarget);
                        Timed(() => Convert(args[1], args[2], args));
                        break;
                    }

                case "compare":
                    {
                        // compare A B
                        string warm = WarmUpSource(args[1]);
                        CompareOperation.Run(warm, warm);
                        Timed(() =>
                        {
                            if (!CompareOperation.Run(args[1], args[2]).Identical)
                            {
                                throw new InvalidOperationException("the images differ");
                            }
                        });
                        break;
                    }

                case "commit":
                    {
                        // commit TOP (into its parent); warmed up on a small qcow2 chain
                        string dir = Path.GetDirectoryName(args[1]);
                        string warmBase = Path.Combine(dir, "warm-base.qcow2");
                        string warmTop = Path.Combine(dir, "warm-top.qcow2");
                        ConvertOperation.Run(WarmUpSource(args[1]), warmBase, new ConvertOptions { TargetFormat = DiskFormat.Qcow2, Target = new CreateRequest { Overwrite = true } });
                        CreateOperation.Create(warmTop, DiskFormat.Qcow2, new CreateRequest { Overwrite = true, Backing = new BackingReference("warm-base.qcow2", DiskFormat.Qcow2) });
                        CommitOperation.Run(warmTop);
                        File.Delete(warmBase);
                        File.Delete(warmTop);
                        Timed(() => CommitOperation.Run(args[1]));
                        break;
                    }

                default:
                    Console.Error.WriteLine("unknown engine verb " + verb);
                    return 2;
            }

            return 0;
        }

        private static string WarmUpSource(string besides)
        {
            string warm = Path.Combine(Path.GetDirectoryName(besides), "warmup.raw");
            if (!File.Exists(warm))
            {
                MixedImage.Generate(warm, 16L << 20);
            }

            return warm;
        }

        private static void Timed(Action action)
        {
            var watch = Stopwatch.StartNew();
            action();
            Console.WriteLine(watch.Elapsed.TotalSeconds.ToString("R", CultureInfo.InvariantCulture));
        }

        private static void Convert(string source, string target, string[] args)
        {
            var options = new ConvertOptions
            {
                TargetFormat = DiskFormatNames.Parse(args[3]),
                Compress = args.Length > 4 && args[4] == "compress",
                Target = new CreateRequest { Overwrite = true, Options = OptionSet.Parse(args.Length > 5 ? args[5] : null) },
            };
            ConvertOperation.Run(source, target, options);
        }
    }

    internal static class Tools
    {
        public static string SelfCommand => Environment.ProcessPath;

        public static string[] SelfArguments(string[] engineArguments)
        {
            // Under "dotnet run" the process is the apphost; under "dotnet X.dll" it is dotnet itself.
            string self = typeof(Program).Assembly.Location;
            return Path.GetFileNameWithoutExtension(Environment.ProcessPath) == "dotnet"
                ? new[] { self, "engine" }.Concat(engineArguments).ToArray()
                : new[] { "engine" }.Concat(engineArguments).ToArray();
        }

        /// <summary>
        /// Writes back every dirty page (and lets deleted files' discards finish) so that no run
        /// pays for the write-back of the run before it.
        /// </summary>
        public static void Settle()
        {
            Run("sync");
            Thread.Sleep(500);
        }

        public static string Run(string exe, params string[] args)
        {
            var psi = new ProcessStartInfo(exe) { RedirectStandardOutput = true, RedirectStandardError = true };
            foreach (string a in args)
            {
                psi.ArgumentList.Add(a);
            }

            using var p = Process.Start(psi);
            string output = p.StandardOutput.ReadToEnd() + p.StandardError.ReadToEnd();
            p.WaitForExit();
            if (p.ExitCode != 0)
            {
                throw new InvalidOperationException($"{exe} {string.Join(" ", args)} failed: {output}");
            }

            return output;
        }

        /// <summary>Runs a process, returning wall time and peak RSS (VmHWM sampled from /proc).</summary>
        public static Sample Measure(string exe, string[] args)
        {
            var psi = new ProcessStartInfo(exe) { RedirectStandardOutput = true, RedirectStandardError = true };
            foreach (string a in args)
            {
                psi.ArgumentList.Add(a);
            }

            var watch = Stopwatch.StartNew();
            using var p = Process.Start(psi);
            var stdout = p.StandardOutput.ReadToEndAsync();
            var stderr = p.StandardError.ReadToEndAsync();
            long peak = 0;
            string status = $"/proc/{p.Id}/status";
            while (!p.WaitForExit(5))
            {
                peak = Math.Max(peak, ReadHighWaterMark(status));
            }

            watch.Stop();
            if (p.ExitCode != 0)
            {
                throw new InvalidOperationException($"{exe} {string.Join(" ", args)} failed: {stdout.Result}{stderr.Result}");
            }

            // The engine worker reports the time of its own timed run; qemu-img's is its whole run.
            string last = stdout.Result.Trim().Split('\n').LastOrDefault();
            double seconds = double.TryParse(last, NumberStyles.Float, CultureInfo.InvariantCulture, out double reported) ? reported : watch.Elapsed.TotalSeconds;
            return new Sample(seconds, peak);
        }

        private static long ReadHighWaterMark(string statusFile)
        {
            try
            {
                foreach (string line in File.ReadLines(statusFile))
                {
                    if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
                    {
                        return long.Parse(line.Substring(6).Trim().Split(' ')[0], CultureInfo.InvariantCulture) * 1024;
                    }
                }
            }
            catch (IOException)
            {
            }
            catch (UnauthorizedAccessException)
            {
            }

            return 0;
        }
    }
}
