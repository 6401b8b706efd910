using System;
using System.Diagnostics;
using System.IO;
using System.Reflection;

namespace VDiskPS.Formats.Tests.Crash
{
    /// <summary>Starts tests/VDiskPS.CrashChild (the real engine in its own process) and kills it with SIGKILL.</summary>
    public static class CrashChild
    {
        /// <summary>Kills per operation: VDISKPS_CRASH_SEEDS, else a short run of 3.</summary>
        public static int Seeds => int.TryParse(Environment.GetEnvironmentVariable("VDISKPS_CRASH_SEEDS"), out int n) && n > 0 ? n : 3;

        /// <summary>Runs per operation at most, for kills whose seeded moment falls after the run ended.</summary>
        public static int MaxAttempts => 3 * Seeds;

        private static string ChildPath
        {
            get
            {
                string configuration = typeof(CrashChild).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>()
                    .FirstOrDefaultValue("Configuration") ?? "Release";
                string testBin = Path.GetDirectoryName(typeof(CrashChild).Assembly.Location);
                string path = Path.GetFullPath(Path.Combine(testBin, "..", "..", "..", "..", "VDiskPS.CrashChild", "bin", configuration, "net10.0", "VDiskPS.CrashChild.dll"));
                return File.Exists(path) ? path : throw new FileNotFoundException("the crash child is not built (dotnet build VDiskPS.sln)", path);
            }
        }

        /// <summary>Runs the operation to its end; returns its exit code, its stderr, and how long it ran after "ready".</summary>
        public static (int ExitCode, string Error, TimeSpan Duration) Run(params string[] args)
        {
            using Process process = Start(args);
            var clock = Stopwatch.StartNew();
            var error = process.StandardError.ReadToEndAsync();
            process.WaitForExit();
            return (process.ExitCode, error.Result, clock.Elapsed);
        }

        /// <summary>
        /// Runs the operation and kills it (SIGKILL: no finally block, dispose or flush runs in the child)
        /// <paramref name="delay"/> after it started. Returns whether the kill came before its end, and
        /// otherwise how long the run took (else the delay) and its exit code and stderr.
        /// </summary>
        public static (bool Killed, TimeSpan Ran, int ExitCode, string Error) RunAndKill(TimeSpan delay, params string[] args)
        {
            using Process process = Start(args);
            var clock = Stopwatch.StartNew();
            var error = process.StandardError.ReadToEndAsync();
            if (process.WaitForExit(delay))
            {
                process.WaitForExit();
                return (false, clock.Elapsed, process.ExitCode, error.Result);
            }

            process.Kill();
            process.WaitForExit();
            return (true, delay, -1, null);
        }

        /// <summary>
        /// Seeded kill moments within a run's duration, which shrinks to the shortest run seen (on a
        /// busy machine the measured run can be much slower than the next ones).
        /// </summary>
        public sealed class KillClock
        {
            private readonly Random _random;
            private TimeSpan _window;

            public KillClock(int seed, TimeSpan measured)
            {
                _random = new Random(seed);
                _window = measured;
            }

            public TimeSpan Next() => TimeSpan.FromTicks((long)(_random.NextDouble() * _window.Ticks));

            public bool Run(params string[] args)
            {
                var (killed, ran, _, _) = RunAndKill(Next(), args);
                if (!killed && ran < _window)
                {
                    _window = ran;
                }

                return killed;
            }
        }

        /// <summary>Starts the child and returns once it printed "ready" (the operation starts right after).</summary>
        private static Process Start(string[] args)
        {
            var psi = new ProcessStartInfo(Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") ?? "dotnet")
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            psi.ArgumentList.Add(ChildPath);
            foreach (string a in args)
            {
                if (a != null)
                {
                    psi.ArgumentList.Add(a);
                }
            }

            Process process = Process.Start(psi);
            string first = process.StandardOutput.ReadLine();
            if (first != "ready")
            {
                process.WaitForExit();
                throw new InvalidOperationException($"the crash child did not start ({string.Join(" ", args)}): {first} {process.StandardError.ReadToEnd()}");
            }

            return process;
        }

        private static string FirstOrDefaultValue(this System.Collections.Generic.IEnumerable<AssemblyMetadataAttribute> attributes, string key)
        {
            foreach (var attribute in attributes)
            {
                if (attribute.Key == key)
                {
                    return attribute.Value;
                }
            }

            return null;
        }
    }
}
