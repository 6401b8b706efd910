using System;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Reflection;
using Xunit;

namespace VDiskPS.Formats.Tests.Operations
{
    /// <summary>
    /// A real SIGKILL: the commit runs in its own process (tests/VDiskPS.CommitChild), slowed by its rate
    /// limit, and is killed at a seeded moment; what it leaves must open, read the top's content and let a
    /// rerun complete. COMMIT_KILL_SEEDS sets how many moments per format (3 by default; 20 or more for a long run).
    /// </summary>
    public class CommitKillTests
    {
        private const long MiB = 1 << 20;

        public static TheoryData<string> Formats => new TheoryData<string> { "qcow2", "vmdk", "vhd", "vhdx", "vdi" };

        private static int Seeds => Environment.GetEnvironmentVariable("COMMIT_KILL_SEEDS") is string seeds ? int.Parse(seeds) : 3;

        [Theory]
        [MemberData(nameof(Formats))]
        public void KilledCommitProcessLeavesAReadableChainThatARerunCompletes(string format)
        {
            var kind = CommitChains.Kinds[format];
            for (int seed = 0; seed < Seeds; seed++)
            {
                using var dir = new TempDir();
                string top = CommitChains.Build(dir, kind, layers: 3);
                var expected = CommitChains.Content(kind, top, dir.Path);
                string basePath = dir.File("base." + kind.Extension);

                // About 14 MiB to commit at 6 MiB/s: the kill lands anywhere from before the first write to after the end.
                int delay = new Random((seed * 7919) + format.Length).Next(0, 2600);
                bool finished = RunAndKill(top, basePath, 6 * MiB, delay);
                CommitChains.AssertReadsAndCompletes(dir.Path, kind, top, expected, "base." + kind.Extension, $"seed {seed}: {(finished ? "not killed" : $"killed after {delay} ms")}", new CommitOptions { BasePath = basePath });
            }
        }

        /// <summary>Starts the child, waits until it starts committing, kills it after <paramref name="delayMs"/>; true when it ended first.</summary>
        private static bool RunAndKill(string top, string basePath, long rate, int delayMs)
        {
            var start = new ProcessStartInfo(Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") ?? "dotnet")
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            foreach (string arg in new[] { ChildPath(), top, basePath, "0", rate.ToString(System.Globalization.CultureInfo.InvariantCulture) })
            {
                start.ArgumentList.Add(arg);
            }

            using var child = Process.Start(start);
            var errors = child.StandardError.ReadToEndAsync();
            Assert.Equal("started", child.StandardOutput.ReadLine());
            if (child.WaitForExit(delayMs))
            {
                Assert.True(child.ExitCode == 0, $"the commit failed: {errors.Result}");
                return true;
            }

            // Process.Kill sends SIGKILL on Linux: no finally block, no dispose, no flush runs in the child.
            child.Kill();
            child.WaitForExit();
            return false;
        }

        private static string ChildPath()
        {
            string configuration = typeof(CommitKillTests).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>().First(a => a.Key == "Configuration").Value;
            string path = Path.GetFullPath(Path.Combine(AppContext.BaseDirectory, "..", "..", "..", "..", "VDiskPS.CommitChild", "bin", configuration, "net10.0", "VDiskPS.CommitChild.dll"));
            Assert.True(File.Exists(path), $"{path} is not built (it is built with the test project)");
            return path;
        }
    }
}
