using System;
using VDiskPS.Formats.Tests.Crash;
using Xunit;

namespace VDiskPS.Formats.Tests.Operations
{
    /// <summary>
    /// A real SIGKILL: the commit runs in its own process (tests/VDiskPS.CrashChild), slowed by its rate
    /// limit, and is killed at a seeded moment; what it leaves must open, read the top's content and let a
    /// rerun complete. VDISKPS_CRASH_SEEDS sets how many moments per format (3 by default; 20 or more for a long run).
    /// </summary>
    public class CommitKillTests
    {
        private const long MiB = 1 << 20;

        public static TheoryData<string> Formats => new TheoryData<string> { "qcow2", "vmdk", "vhd", "vhdx", "vdi" };

        [Theory]
        [MemberData(nameof(Formats))]
        public void KilledCommitProcessLeavesAReadableChainThatARerunCompletes(string format)
        {
            var kind = CommitChains.Kinds[format];
            for (int seed = 0; seed < CrashChild.Seeds; seed++)
            {
                using var dir = new TempDir();
                string top = CommitChains.Build(dir, kind, layers: 3);
                var expected = CommitChains.Content(kind, top, dir.Path);
                string basePath = dir.File("base." + kind.Extension);

                // About 14 MiB to commit at 6 MiB/s: the kill lands anywhere from before the first write to after the end.
                int delay = new Random((seed * 7919) + format.Length).Next(0, 2600);
                var run = CrashChild.RunAndKill(TimeSpan.FromMilliseconds(delay), "commit-into", top, basePath, "0", (6 * MiB).ToString(System.Globalization.CultureInfo.InvariantCulture));
                Assert.True(run.Killed || run.ExitCode == 0, $"the commit failed: {run.Error}");
                bool finished = !run.Killed;
                CommitChains.AssertReadsAndCompletes(dir.Path, kind, top, expected, "base." + kind.Extension, $"seed {seed}: {(finished ? "not killed" : $"killed after {delay} ms")}", new CommitOptions { BasePath = basePath });
            }
        }
    }
}
