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
    /// Times VDiskPS against qemu-img on the same data in the same run, as users run it: each run of
    /// our side is a fresh pwsh that imports the staged module and runs the cmdlet once, so the first
    /// call (JIT included) is what is timed "in session", and the whole process is the second column.
    /// qemu-img runs with its fastest flags (-W -m 8) as a whole process. Sides alternate, the median
    /// of N runs (default 5) is reported with the spread (min-max) and the load average, and every
    /// timed output of either side is judged by qemu-img check and compare; a failed check, or a case
    /// whose peak memory passes its limit above the pwsh + Import-Module baseline, stops the bench
    /// with exit code 1.
    ///
    ///   dotnet run -c Release --project bench/VDiskPS.Bench -- [--size 1G] [--runs 5] [--dir DIR]
    ///       [--cases a,b] [--pwsh PATH] [--module out/VDiskPS]
    /// </summary>
    public static class Program
    {
        public static int Main(string[] args)
        {
            try
            {
                return Run(args);
            }
            catch (Exception e)
            {
                Console.Error.WriteLine("BENCH FAILED: " + e.Message);
                return 1;
            }
        }

        private static int Run(string[] args)
        {
            long size = DiskSize.Parse(Arg(args, "--size") ?? "1G").Bytes;
            int runs = int.Parse(Arg(args, "--runs") ?? "5", CultureInfo.InvariantCulture);
            string dir = Path.GetFullPath(Arg(args, "--dir") ?? Path.Combine(Path.GetTempPath(), "vdiskps-bench"));
            var only = Arg(args, "--cases")?.Split(',').ToHashSet(StringComparer.OrdinalIgnoreCase);
            var session = new PowerShellSide(Arg(args, "--pwsh"), Arg(args, "--module"));
            Directory.CreateDirectory(dir);

            string source = Path.Combine(dir, "mixed.raw");
            if (!File.Exists(source) || new FileInfo(source).Length != size)
            {
                Console.WriteLine($"Generating {DiskSize.Format(size)} mixed image {source} ...");
                MixedImage.Generate(source, size);
            }

            Console.WriteLine($"qemu: {Tools.Run("qemu-img", "--version").Split('\n')[0]}; pwsh {session.Version}; module {session.Module}");
            Console.WriteLine($"cores: {Environment.ProcessorCount}; runs per side: {runs}; load average at start: {Tools.LoadAverage()}");
            var baseline = session.MeasureBaseline(runs);
            Console.WriteLine(FormattableString.Invariant($"empty pwsh: {baseline.EmptySeconds:0.000}s; pwsh + Import-Module: {baseline.ImportSeconds:0.000}s, peak {baseline.ImportPeak >> 20} MiB (the memory baseline)"));

            var results = new List<CaseResult>();
            var stalled = new List<string>();
            foreach (BenchCase c in BenchCase.All(dir, source, size))
            {
                if (only != null && !only.Contains(c.Name))
                {
                    continue;
                }

                string load = Tools.LoadAverage();
                var ours = new List<Sample>();
                var theirs = new List<Sample>();
                try
                {
                    c.Prepare?.Invoke();
                    RunSides(c, runs, session, ours, theirs);
                }
                catch (PeerStalledException e) when (c.FallbackPeer != null)
                {
                    // The same job on the local file is timed instead, and the row says so.
                    Console.WriteLine($"{c.Name}: the peer stalled ({e.Message}); timing {c.FallbackPeer.Value.Name}");
                    stalled.Add(c.Name);
                    c.PeerArguments = c.FallbackPeer.Value.Arguments;
                    c.Name = c.FallbackPeer.Value.Name;
                    c.PeerTimeout = null;
                    ours.Clear();
                    theirs.Clear();
                    RunSides(c, runs, session, ours, theirs);
                }
                catch (PeerStalledException e)
                {
                    // Our side is never excused: only a peer that stalls leaves its case out, said so.
                    Console.WriteLine($"{c.Name}: left out, the peer stalled: {e.Message}");
                    stalled.Add(c.Name);
                    c.Cleanup();
                    continue;
                }
                finally
                {
                    c.Finish?.Invoke();
                }

                c.Cleanup();
                var result = new CaseResult(c, ours, theirs, baseline, load) { OwnLocalCase = c.OwnLocalCase };
                results.Add(result);
                Console.WriteLine(result.Line());
                if (c.PeakLimitAboveBaseline is long limit && result.OursPeakAboveBaseline > limit)
                {
                    throw new InvalidOperationException($"{c.Name}: VDiskPS peaked {result.OursPeakAboveBaseline >> 20} MiB above the baseline, over the {limit >> 20} MiB limit");
                }
            }

            Console.WriteLine();
            Console.WriteLine($"load average at end: {Tools.LoadAverage()}");
            if (stalled.Count > 0)
            {
                Console.WriteLine($"the peer stalled in: {string.Join(", ", stalled)}");
            }

            Console.WriteLine("| case | VDiskPS in session (s) | VDiskPS whole process (s) | peer (s) | ratio in session | ratio whole process | spread ours / peer (s) | VDiskPS peak above baseline MiB | peer peak MiB | load |");
            Console.WriteLine("|---|---:|---:|---:|---:|---:|---|---:|---:|---|");
            foreach (var r in results)
            {
                Console.WriteLine(r.Row());
            }

            foreach (var r in results.Where(r => r.OwnLocalCase != null))
            {
                var local = results.FirstOrDefault(l => l.Name == r.OwnLocalCase);
                if (local != null)
                {
                    Console.WriteLine(FormattableString.Invariant(
                        $"{r.Name}: VDiskPS against its own {local.Name} of the same image in this run: {r.Session / local.Session:0.00} in session ({r.Session:0.000} s / {local.Session:0.000} s), {r.Process / local.Process:0.00} whole process"));
                }
            }

            return 0;
        }

        /// <summary>The sides alternate, each output verified.</summary>
        private static void RunSides(BenchCase c, int runs, PowerShellSide session, List<Sample> ours, List<Sample> theirs)
        {
            for (int i = 0; i < runs; i++)
            {
                c.Cleanup();
                c.BeforeEach?.Invoke();
                Tools.Settle();
                try
                {
                    theirs.Add(Tools.Measure(c.PeerCommand, c.PeerArguments, c.PeerTimeout));
                }
                catch (TimeoutException e)
                {
                    throw new PeerStalledException(e.Message);
                }

                Verify(c, c.PeerCommand, i);
                c.Cleanup();
                c.BeforeEach?.Invoke();
                Tools.Settle();
                ours.Add(session.Measure(c.Cmdlet));
                Verify(c, "VDiskPS", i);
            }
        }

        private static void Verify(BenchCase c, string side, int run)
        {
            try
            {
                c.Verify?.Invoke();
            }
            catch (Exception e)
            {
                throw new InvalidOperationException($"{c.Name}: the output of {side} (run {run + 1}) failed verification: {e.Message}", e);
            }
        }

        internal static string Arg(string[] args, string name)
        {
            int i = Array.IndexOf(args, name);
            return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
        }
    }

    internal readonly struct Sample
    {
        public Sample(double seconds, double wallSeconds, long peakBytes)
        {
            Seconds = seconds;
            WallSeconds = wallSeconds;
            PeakBytes = peakBytes;
        }

        /// <summary>The job's own time: the cmdlet call inside pwsh, or the peer's whole process.</summary>
        public double Seconds { get; }

        /// <summary>The whole process, start to exit.</summary>
        public double WallSeconds { get; }

        public long PeakBytes { get; }
    }

    internal sealed class Baseline
    {
        public double EmptySeconds { get; set; }

        public double ImportSeconds { get; set; }

        public long ImportPeak { get; set; }
    }

    internal sealed class CaseResult
    {
        public CaseResult(BenchCase c, List<Sample> ours, List<Sample> theirs, Baseline baseline, string load)
        {
            Name = c.Name;
            Load = load;
            // Cold start: the whole process less an empty pwsh; there is no "in session" figure.
            Session = c.WholeProcessOnly ? double.NaN : Median(ours.Select(s => s.Seconds));
            Process = Median(ours.Select(s => s.WallSeconds)) - (c.WholeProcessOnly ? baseline.EmptySeconds : 0);
            Theirs = Median(theirs.Select(s => s.Seconds));
            Spread = FormattableString.Invariant($"{ours.Min(s => c.WholeProcessOnly ? s.WallSeconds : s.Seconds):0.000}-{ours.Max(s => c.WholeProcessOnly ? s.WallSeconds : s.Seconds):0.000} / {theirs.Min(s => s.Seconds):0.000}-{theirs.Max(s => s.Seconds):0.000}");
            OursPeakAboveBaseline = Math.Max(0, ours.Max(s => s.PeakBytes) - baseline.ImportPeak);
            TheirsPeak = theirs.Max(s => s.PeakBytes);
        }

        public string Name { get; }
        public string Load { get; }
        public double Session { get; }
        public double Process { get; }
        public double Theirs { get; }
        public string Spread { get; }
        public long OursPeakAboveBaseline { get; }
        public long TheirsPeak { get; }

        /// <summary>See <see cref="BenchCase.OwnLocalCase"/>.</summary>
        public string OwnLocalCase { get; init; }

        public string Line() => FormattableString.Invariant($"{Name}: VDiskPS {Cell(Session)}s in session, {Process:0.000}s whole process; peer {Theirs:0.000}s; ratios {Cell(Session / Theirs, "0.00")} / {Process / Theirs:0.00}; spread {Spread}; peak +{OursPeakAboveBaseline >> 20} MiB vs {TheirsPeak >> 20} MiB; load {Load}");

        public string Row() => FormattableString.Invariant($"| {Name} | {Cell(Session)} | {Process:0.000} | {Theirs:0.000} | {Cell(Session / Theirs, "0.00")} | {Process / Theirs:0.00} | {Spread} | {OursPeakAboveBaseline >> 20} | {TheirsPeak >> 20} | {Load} |");

        private static string Cell(double value, string format = "0.000") => double.IsNaN(value) ? "-" : value.ToString(format, CultureInfo.InvariantCulture);

        private static double Median(IEnumerable<double> values)
        {
            var sorted = values.OrderBy(v => v).ToList();
            int n = sorted.Count;
            return n % 2 == 1 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
        }
    }

    /// <summary>Our side: a fresh pwsh per run, the staged module imported, the cmdlet timed inside.</summary>
    internal sealed class PowerShellSide
    {
        public PowerShellSide(string pwsh, string module)
        {
            string repo = Tools.RepositoryRoot();
            Pwsh = pwsh ?? Environment.GetEnvironmentVariable("VDISKPS_PWSH")
                ?? new[] { Path.Combine(repo ?? ".", ".tools/pwsh/pwsh") }.FirstOrDefault(File.Exists)
                ?? "pwsh";
            Module = Path.GetFullPath(module ?? Path.Combine(repo ?? ".", "out/VDiskPS"));
            if (!File.Exists(Path.Combine(Module, "VDiskPS.psd1")))
            {
                throw new InvalidOperationException($"no staged module at {Module}: run ./build.ps1 (or tools/VDiskPS.Stage) first, or pass --module");
            }

            Version = Tools.Run(Pwsh, "-NoProfile", "-NonInteractive", "-Command", "$PSVersionTable.PSVersion.ToString()").Trim();
        }

        public string Pwsh { get; }

        public string Module { get; }

        public string Version { get; }

        public Baseline MeasureBaseline(int runs)
        {
            var empty = new List<Sample>();
            var import = new List<Sample>();
            for (int i = 0; i < runs; i++)
            {
                empty.Add(Tools.Measure(Pwsh, new[] { "-NoProfile", "-NonInteractive", "-Command", "exit 0" }));
                import.Add(Tools.Measure(Pwsh, new[] { "-NoProfile", "-NonInteractive", "-Command", $"Import-Module '{Module}'" }));
            }

            double Med(IEnumerable<double> v)
            {
                var s = v.OrderBy(x => x).ToList();
                return s[s.Count / 2];
            }

            return new Baseline
            {
                EmptySeconds = Med(empty.Select(s => s.WallSeconds)),
                ImportSeconds = Med(import.Select(s => s.WallSeconds)),
                ImportPeak = import.Max(s => s.PeakBytes),
            };
        }

        public Sample Measure(string cmdlet)
        {
            string script = "$ErrorActionPreference = 'Stop'; Import-Module '" + Module + "'; "
                + "$watch = [System.Diagnostics.Stopwatch]::StartNew(); " + cmdlet + "; $watch.Stop(); "
                + "$watch.Elapsed.TotalSeconds.ToString('R', [System.Globalization.CultureInfo]::InvariantCulture)";
            return Tools.Measure(Pwsh, new[] { "-NoProfile", "-NonInteractive", "-Command", script });
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

    internal static class Tools
    {
        /// <summary>The folder holding VDiskPS.sln above this program, or null.</summary>
        public static string RepositoryRoot()
        {
            for (var d = new DirectoryInfo(AppContext.BaseDirectory); d != null; d = d.Parent)
            {
                if (File.Exists(Path.Combine(d.FullName, "VDiskPS.sln")))
                {
                    return d.FullName;
                }
            }

            return null;
        }

        /// <summary>The 1, 5 and 15 minute load averages.</summary>
        public static string LoadAverage()
        {
            try
            {
                return string.Join(" ", File.ReadAllText("/proc/loadavg").Split(' ').Take(3));
            }
            catch (IOException)
            {
                return "n/a";
            }
        }

        /// <summary>Makes a derived input once per bench folder.</summary>
        public static void CreateOnce(string path, params string[] qemuImgArguments)
        {
            if (!File.Exists(path))
            {
                Run("qemu-img", qemuImgArguments);
            }
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

        /// <summary>The longest one timed run may take (the slowest cases take about 60 s).</summary>
        private static readonly TimeSpan RunTimeout = TimeSpan.FromMinutes(5);

        /// <summary>Runs a process, returning wall time and peak RSS (VmHWM sampled from /proc); one that runs past <see cref="RunTimeout"/> is killed and ends the bench.</summary>
        public static Sample Measure(string exe, string[] args, TimeSpan? timeout = null)
        {
            TimeSpan limit = timeout ?? RunTimeout;
            var psi = new ProcessStartInfo(exe) { RedirectStandardOutput = true, RedirectStandardError = true };
            foreach (string a in args)
            {
                psi.ArgumentList.Add(a);
            }

            var watch = Stopwatch.StartNew();
            using var p = Process.Start(psi);
            var stdout = p.StandardOutput.ReadToEndAsync();
            var stderr = p.StandardError.ReadToEndAsync();
            // The peak of the whole process tree: a pwsh installed as a dotnet tool is a launcher
            // whose child process does the work.
            long peak = 0;
            while (!p.WaitForExit(5))
            {
                peak = Math.Max(peak, TreeHighWaterMark(p.Id));
                if (watch.Elapsed > limit)
                {
                    // A stalled side (qemu-img's curl driver has stalled mid-image here) ends the bench, named, instead of hanging it.
                    p.Kill(entireProcessTree: true);
                    throw new TimeoutException($"{exe} {string.Join(" ", args)} did not finish in {limit.TotalSeconds:0} s");
                }
            }

            watch.Stop();
            if (p.ExitCode != 0)
            {
                throw new InvalidOperationException($"{exe} {string.Join(" ", args)} failed: {stdout.Result}{stderr.Result}");
            }

            // pwsh prints the time of the cmdlet call on its last line; the peer's time is its whole run.
            string last = stdout.Result.Trim().Split('\n').LastOrDefault();
            double wall = watch.Elapsed.TotalSeconds;
            double seconds = double.TryParse(last, NumberStyles.Float, CultureInfo.InvariantCulture, out double reported) ? reported : wall;
            return new Sample(seconds, wall, peak);
        }

        private static long TreeHighWaterMark(int pid)
        {
            long sum = ReadHighWaterMark($"/proc/{pid}/status");
            try
            {
                foreach (string task in Directory.GetDirectories($"/proc/{pid}/task"))
                {
                    foreach (string child in File.ReadAllText(Path.Combine(task, "children")).Split(' ', StringSplitOptions.RemoveEmptyEntries))
                    {
                        sum += TreeHighWaterMark(int.Parse(child, CultureInfo.InvariantCulture));
                    }
                }
            }
            catch (IOException)
            {
            }
            catch (UnauthorizedAccessException)
            {
            }

            return sum;
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

    /// <summary>The peer side of a case ran past the run timeout.</summary>
    internal sealed class PeerStalledException : Exception
    {
        public PeerStalledException(string message)
            : base(message)
        {
        }
    }
}
