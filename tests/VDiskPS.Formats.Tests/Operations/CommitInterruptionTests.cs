using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Threading;
using Xunit;

namespace VDiskPS.Formats.Tests.Operations
{
    /// <summary>
    /// A commit interrupted anywhere leaves a chain that opens with no override and reads the top's
    /// content, and running the commit again completes it. A crash is emulated deterministically: at
    /// every step of one commit (each write into the base among them) the chain's files are copied as
    /// they are on disk at that moment, which is what a killed process leaves behind.
    /// </summary>
    public class CommitInterruptionTests
    {
        private const long MiB = 1 << 20;

        /// <summary>Every how many writes into the base an interruption is checked: COMMIT_CRASH_STRIDE, 3 by default (1 for every write).</summary>
        private static int Stride => Environment.GetEnvironmentVariable("COMMIT_CRASH_STRIDE") is string stride ? int.Parse(stride) : 3;

        public static IEnumerable<object[]> Formats()
        {
            foreach (string name in new[] { "qcow2", "vmdk", "vhd", "vhdx", "vdi" })
            {
                yield return new object[] { name };
            }
        }

        [Theory]
        [MemberData(nameof(Formats))]
        public void KilledCommitIntoTheParentLeavesAReadableChainThatARerunCompletes(string format)
        {
            CrashEveryStep(format, layers: 2, options => { });
        }

        [Theory]
        [MemberData(nameof(Formats))]
        public void KilledCommitIntoTheGrandparentLeavesAReadableChainThatARerunCompletes(string format)
        {
            CrashEveryStep(format, layers: 3, options => options.BasePath = "base");
        }

        [Theory]
        [MemberData(nameof(Formats))]
        public void KilledCommitThatKeepsTheTopLeavesAReadableChainThatARerunCompletes(string format)
        {
            CrashEveryStep(format, layers: 2, options => options.KeepTop = true);
        }

        [Theory]
        [MemberData(nameof(Formats))]
        public void CancelledCommitLeavesAReadableChainThatARerunCompletes(string format)
        {
            var kind = CommitChains.Kinds[format];
            int steps = CountSteps(kind, layers: 3, basePath: true);
            for (int stopAt = 1; stopAt <= steps; stopAt += stopAt + Stride <= steps ? Stride : Math.Max(1, steps - stopAt))
            {
                using var dir = new TempDir();
                string top = CommitChains.Build(dir, kind, layers: 3);
                var expected = CommitChains.Content(kind, top, dir.Path);
                using var cancel = new CancellationTokenSource();
                int seen = 0;
                var options = new CommitOptions { BasePath = dir.File("base." + kind.Extension) };
                options.StepObserver = _ =>
                {
                    if (++seen == stopAt)
                    {
                        cancel.Cancel();
                    }
                };
                try
                {
                    CommitOperation.Run(top, options, null, cancel.Token);
                }
                catch (OperationCanceledException)
                {
                }

                CommitChains.AssertReadsAndCompletes(dir.Path, kind, top, expected, "base." + kind.Extension, $"cancelled at step {stopAt}", new CommitOptions { BasePath = options.BasePath });
            }
        }

        [Fact]
        public void AnInterruptedVhdxCommitPinsTheBasesNewDataWriteGuidAndKeepsTheOldAsParentLinkage2()
        {
            var kind = CommitChains.Kinds["vhdx"];
            using var dir = new TempDir();
            string top = CommitChains.Build(dir, kind, layers: 2);
            Guid before = global::VDiskPS.Formats.Vhdx.VhdxLayer.ReadDataWriteGuid(dir.File("base.vhdx"), HostAccess.Read, top);
            string crashed = CrashAtFirstWrite(dir, top);
            Guid after = global::VDiskPS.Formats.Vhdx.VhdxLayer.ReadDataWriteGuid(Path.Combine(crashed, "base.vhdx"), HostAccess.Read, top);
            string locator = CommitChains.VhdxLocatorText(Path.Combine(crashed, "top.vhdx"));
            Assert.NotEqual(before, after);
            Assert.Contains("parent_linkage2", locator);
            Assert.Contains(before.ToString("B"), locator);
            Assert.Contains(after.ToString("B"), locator);

            // libvhdi compares parent_linkage alone with the parent's DataWriteGuid.
            Assert.Equal(after, Libvhdi.ParentIdentifier(Path.Combine(crashed, "top.vhdx")));
        }

        [Fact]
        public void AnInterruptedVmdkCommitPinsTheBasesNewCidAndKeepsTheOldInTheDiskDatabase()
        {
            var kind = CommitChains.Kinds["vmdk"];
            using var dir = new TempDir();
            string top = CommitChains.Build(dir, kind, layers: 2);
            string cidBefore = DescriptorValue(CommitChains.VmdkDescriptorText(dir.File("base.vmdk")), "CID");
            string crashed = CrashAtFirstWrite(dir, top);
            string cidAfter = DescriptorValue(CommitChains.VmdkDescriptorText(Path.Combine(crashed, "base.vmdk")), "CID");
            string child = CommitChains.VmdkDescriptorText(Path.Combine(crashed, "top.vmdk"));
            Assert.NotEqual(cidBefore, cidAfter);
            Assert.Equal(cidAfter, DescriptorValue(child, "parentCID"));
            Assert.Equal(cidBefore, DescriptorValue(child, "ddb.vdiskps.commitParentCID"));
        }

        [Fact]
        public void AFinishedVhdxCommitLeavesNoParentLinkage2()
        {
            var kind = CommitChains.Kinds["vhdx"];
            using var dir = new TempDir();
            string top = CommitChains.Build(dir, kind, layers: 2);
            CommitOperation.Run(top, new CommitOptions { KeepTop = true });
            Assert.DoesNotContain("parent_linkage2", CommitChains.VhdxLocatorText(top));
        }

        [Fact]
        public void AFinishedVmdkCommitLeavesNoPendingParentCid()
        {
            var kind = CommitChains.Kinds["vmdk"];
            using var dir = new TempDir();
            string top = CommitChains.Build(dir, kind, layers: 2);
            CommitOperation.Run(top, new CommitOptions { KeepTop = true });
            Assert.DoesNotContain("ddb.vdiskps.commitParentCID", CommitChains.VmdkDescriptorText(top));
        }

        [Fact]
        public void TheLayerDroppedByACommitIntoTheGrandparentNoLongerOpensOverTheChangedBase()
        {
            var kind = CommitChains.Kinds["vmdk"];
            using var dir = new TempDir();
            string top = CommitChains.Build(dir, kind, layers: 3);
            CommitOperation.Run(top, new CommitOptions { BasePath = dir.File("base.vmdk") });
            Assert.DoesNotContain("ddb.vdiskps.commitParentCID", CommitChains.VmdkDescriptorText(dir.File("mid.vmdk")));
            Assert.Throws<ImageParentMismatchException>(() => TestData.ReadAll(dir.File("mid.vmdk")));
        }

        /// <summary>Runs the commit and returns a copy of the chain's files as they were after its first write into the base.</summary>
        private static string CrashAtFirstWrite(TempDir dir, string top)
        {
            string crashed = null;
            var options = new CommitOptions
            {
                KeepTop = true,
                StepObserver = step =>
                {
                    if (step == "write" && crashed == null)
                    {
                        crashed = CommitChains.CopyFiles(dir.Path, Path.Combine(dir.Path, "crash"));
                    }
                },
            };
            CommitOperation.Run(top, options);
            return crashed;
        }

        private static string DescriptorValue(string descriptor, string key)
        {
            foreach (string line in descriptor.Split('\n'))
            {
                string[] parts = line.Split('=', 2);
                if (parts.Length == 2 && parts[0].Trim() == key)
                {
                    return parts[1].Trim().Trim('"');
                }
            }

            throw new Xunit.Sdk.XunitException($"the descriptor has no {key}: {descriptor}");
        }

        private static int CountSteps(CommitChains.Kind kind, int layers, bool basePath)
        {
            using var dir = new TempDir();
            string top = CommitChains.Build(dir, kind, layers);
            int steps = 0;
            var options = new CommitOptions { StepObserver = _ => steps++ };
            if (basePath)
            {
                options.BasePath = dir.File("base." + kind.Extension);
            }

            CommitOperation.Run(top, options);
            return steps;
        }

        private static void CrashEveryStep(string format, int layers, Action<CommitOptions> configure)
        {
            var kind = CommitChains.Kinds[format];
            using var dir = new TempDir();
            string top = CommitChains.Build(dir, kind, layers);
            var expected = CommitChains.Content(kind, top, dir.Path);
            var options = new CommitOptions();
            configure(options);
            string baseName = options.BasePath != null ? "base." + kind.Extension : (layers == 2 ? "base." + kind.Extension : "mid." + kind.Extension);
            if (options.BasePath != null)
            {
                options.BasePath = dir.File(baseName);
            }

            var crashes = new List<(string Step, string Folder)>();
            options.StepObserver = step => crashes.Add((step, CommitChains.CopyFiles(dir.Path, Path.Combine(dir.Path, "crash" + crashes.Count))));
            CommitOperation.Run(top, options);
            Assert.True(crashes.Count(c => c.Step == "write") >= 4, $"only {crashes.Count} steps: the chain gives too few write points");

            var rerun = new CommitOptions { KeepTop = options.KeepTop };
            int writes = 0;
            foreach (var (step, folder) in crashes)
            {
                if (step == "write" && writes++ % Stride != 0)
                {
                    continue;
                }

                if (options.BasePath != null)
                {
                    rerun.BasePath = Path.Combine(folder, baseName);
                }

                CommitChains.AssertReadsAndCompletes(folder, kind, Path.Combine(folder, "top." + kind.Extension), expected, baseName, $"killed after step '{step}' ({folder})", rerun);
            }
        }
    }
}
