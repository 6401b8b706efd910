using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Threading;
using Xunit;

namespace VDiskPS.Formats.Tests.Crash
{
    /// <summary>
    /// A new output is written under a temporary name and renamed into place only when complete, so an
    /// interrupted or failed conversion never leaves a file under the destination's name. Judged by
    /// qemu-img (compare, check, info) on the finished outputs.
    /// </summary>
    public class StagedOutputTests
    {
        private const int SourceMiB = 8;

        private static string[] Partials(string folder, string destination)
            => OutputTarget.FilesIn(folder).Where(n => n.StartsWith("." + Path.GetFileName(destination) + StagedOutput.PartialMarker, StringComparison.Ordinal)).ToArray();

        [Theory]
        [MemberData(nameof(OutputTarget.Names), MemberType = typeof(OutputTarget))]
        public void NewOutputAppearsUnderItsNameOnlyWhenComplete(string name)
        {
            OutputTarget target = OutputTarget.Named(name);
            using var dir = new TempDir();
            string source = OutputTarget.RandomRaw(dir.File("src.raw"), SourceMiB, 1);
            string destination = dir.File("dst" + target.Extension);
            var seen = new List<(bool DestinationExists, int Partials)>();
            var progress = new OnProgress(p =>
            {
                if (p.BytesDone < p.BytesTotal)
                {
                    seen.Add((File.Exists(destination), Partials(dir.Path, destination).Length));
                }
            });

            ConvertOperation.Run(source, destination, target.Options(), progress);

            Assert.NotEmpty(seen);
            Assert.All(seen, s => Assert.False(s.DestinationExists));
            Assert.All(seen, s => Assert.True(s.Partials > 0));
            Assert.Empty(Partials(dir.Path, destination));
            Assert.True(Qemu.Compare(source, "raw", destination, target.QemuFormat).Identical);
            if (target.Format != Fmt.Raw && target.Format != Fmt.Vhd)
            {
                // qemu-img has no check for raw and vpc.
                Assert.Equal(0, Qemu.Check(destination, target.QemuFormat).ExitCode);
            }
        }

        [Fact]
        public void SplitVmdkDescriptorNamesTheFinalExtentFiles()
        {
            using var dir = new TempDir();
            string source = OutputTarget.RandomRaw(dir.File("src.raw"), SourceMiB, 2);
            string destination = dir.File("split.vmdk");
            ConvertOperation.Run(source, destination, OutputTarget.Named("vmdk-split").Options());

            Assert.Equal(new[] { "split-s001.vmdk", "split.vmdk", "src.raw" }, OutputTarget.FilesIn(dir.Path));
            using var info = Qemu.Info(destination, "vmdk");
            var extents = info.RootElement.GetProperty("format-specific").GetProperty("data").GetProperty("extents");
            Assert.Equal(dir.File("split-s001.vmdk"), extents[0].GetProperty("filename").GetString());
            Assert.True(Qemu.Compare(source, "raw", destination, "vmdk").Identical);
        }

        [Theory]
        [MemberData(nameof(OutputTarget.Names), MemberType = typeof(OutputTarget))]
        public void CancelledConvertLeavesNoFileBehind(string name)
        {
            OutputTarget target = OutputTarget.Named(name);
            using var dir = new TempDir();
            string source = OutputTarget.RandomRaw(dir.File("src.raw"), SourceMiB, 3);
            string destination = dir.File("dst" + target.Extension);
            using var cts = new CancellationTokenSource();
            bool midRun = false;
            var progress = new OnProgress(p =>
            {
                if (p.BytesDone > 0 && p.BytesDone < p.BytesTotal && !cts.IsCancellationRequested)
                {
                    midRun = Partials(dir.Path, destination).Length > 0;
                    cts.Cancel();
                }
            });

            Assert.ThrowsAny<OperationCanceledException>(() => ConvertOperation.Run(source, destination, target.Options(), progress, cts.Token));

            Assert.True(midRun, "the cancellation came while the partial output was being written");
            Assert.Equal(new[] { "src.raw" }, OutputTarget.FilesIn(dir.Path));
        }

        [Fact]
        public void ForcedConvertKeepsTheOldDestinationUntilTheNewOneIsComplete()
        {
            using var dir = new TempDir();
            string oldContent = OutputTarget.RandomRaw(dir.File("old.raw"), SourceMiB, 4);
            string source = OutputTarget.RandomRaw(dir.File("new.raw"), SourceMiB, 5);
            string destination = dir.File("dst.qcow2");
            Qemu.Img("convert", "-f", "raw", "-O", "qcow2", oldContent, destination);
            var oldIntact = new List<bool>();
            var progress = new OnProgress(p =>
            {
                if (p.BytesDone < p.BytesTotal && oldIntact.Count < 2)
                {
                    oldIntact.Add(Qemu.Compare(oldContent, "raw", destination, "qcow2").Identical);
                }
            });
            var options = OutputTarget.Named("qcow2").Options();
            options.Target.Overwrite = true;

            ConvertOperation.Run(source, destination, options, progress);

            Assert.Equal(new[] { true, true }, oldIntact);
            Assert.True(Qemu.Compare(source, "raw", destination, "qcow2").Identical);
            Assert.Empty(Partials(dir.Path, destination));
        }

        [Fact]
        public void ForcedConvertIsRefusedWhileAnotherWriterHoldsTheDestination()
        {
            using var dir = new TempDir();
            string source = OutputTarget.RandomRaw(dir.File("src.raw"), 1, 6);
            string destination = dir.File("dst.raw");
            File.WriteAllBytes(destination, new byte[4096]);
            var options = OutputTarget.Named("raw").Options();
            options.Target.Overwrite = true;
            using (HostFile.Open(destination, HostAccess.ReadWrite))
            {
                Assert.Throws<ImageLockedException>(() => ConvertOperation.Run(source, destination, options));
            }

            Assert.Equal(new byte[4096], File.ReadAllBytes(destination));
            Assert.Equal(new[] { "dst.raw", "src.raw" }, OutputTarget.FilesIn(dir.Path));
        }

        [Fact]
        public void ConvertWithoutOverwriteRefusesAnExistingDestination()
        {
            using var dir = new TempDir();
            string source = OutputTarget.RandomRaw(dir.File("src.raw"), 1, 7);
            string destination = dir.File("dst.vhdx");
            File.WriteAllText(destination, "keep me");
            var e = Assert.Throws<ImageIOException>(() => ConvertOperation.Run(source, destination, OutputTarget.Named("vhdx").Options()));
            Assert.Contains("already exists", e.Message);
            Assert.Equal("keep me", File.ReadAllText(destination));
            Assert.Equal(new[] { "dst.vhdx", "src.raw" }, OutputTarget.FilesIn(dir.Path));
        }

        [Fact]
        public void DestinationCreatedByAnotherProgramMeanwhileIsNotReplacedWithoutOverwrite()
        {
            using var dir = new TempDir();
            string source = OutputTarget.RandomRaw(dir.File("src.raw"), SourceMiB, 12);
            string destination = dir.File("dst.vmdk");
            var progress = new OnProgress(p =>
            {
                if (!File.Exists(destination))
                {
                    File.WriteAllText(destination, "written by someone else");
                }
            });

            var e = Assert.Throws<ImageIOException>(() => ConvertOperation.Run(source, destination, OutputTarget.Named("vmdk-split").Options(), progress));

            Assert.Contains("already exists", e.Message);
            Assert.Equal("written by someone else", File.ReadAllText(destination));
            Assert.Equal(new[] { "dst.vmdk", "src.raw" }, OutputTarget.FilesIn(dir.Path));
        }

        [Fact]
        public void NextConvertRemovesThePartialFilesOfAKilledRun()
        {
            using var dir = new TempDir();
            string source = OutputTarget.RandomRaw(dir.File("src.raw"), 1, 8);
            string destination = dir.File("dst.vmdk");
            File.WriteAllText(dir.File(".dst.vmdk" + StagedOutput.PartialMarker + "0123456789ab"), "left by a kill");
            File.WriteAllText(dir.File(".dst.vmdk" + StagedOutput.PartialMarker + "0123456789ab.dst-s001.vmdk"), "left by a kill");
            File.WriteAllText(dir.File(".other.vmdk" + StagedOutput.PartialMarker + "0123456789ab"), "another destination's");

            ConvertOperation.Run(source, destination, OutputTarget.Named("vmdk").Options());

            Assert.Equal(new[] { ".other.vmdk" + StagedOutput.PartialMarker + "0123456789ab", "dst.vmdk", "src.raw" }, OutputTarget.FilesIn(dir.Path));
        }

        [Fact]
        public void PartialFileStillOpenInARunningConvertIsKept()
        {
            using var dir = new TempDir();
            string source = OutputTarget.RandomRaw(dir.File("src.raw"), 1, 9);
            string destination = dir.File("dst.vdi");
            string running = dir.File(".dst.vdi" + StagedOutput.PartialMarker + "0123456789ab");
            using (HostFile.Create(running, false))
            {
                ConvertOperation.Run(source, destination, OutputTarget.Named("vdi").Options());
                Assert.True(File.Exists(running));
            }

            Assert.True(Qemu.Compare(source, "raw", destination, "vdi").Identical);
        }

        [Fact]
        public void NewDiskFromASourceIsCreatedAtTheRequestedSize()
        {
            using var dir = new TempDir();
            string source = OutputTarget.RandomRaw(dir.File("src.raw"), 2, 10);
            string destination = dir.File("big.qcow2");
            var plan = new NewDiskPlan { Path = destination, SourcePath = source, Size = 6L << 20 };
            var seenDestination = new List<bool>();
            plan.Execute(new OnProgress(p => seenDestination.Add(File.Exists(destination))));

            Assert.DoesNotContain(true, seenDestination);
            using var info = Qemu.Info(destination, "qcow2");
            Assert.Equal(6L << 20, info.RootElement.GetProperty("virtual-size").GetInt64());
            byte[] content = Qemu.ToRawBytes(destination, "qcow2", dir.Path);
            Assert.Equal(File.ReadAllBytes(source), content.AsSpan(0, 2 << 20).ToArray());
            Assert.True(content.AsSpan(2 << 20).IndexOfAnyExcept((byte)0) < 0);
        }

        [Fact]
        public void NewDiskFromASourceRefusesASizeBelowTheSourceAndLeavesNothing()
        {
            using var dir = new TempDir();
            string source = OutputTarget.RandomRaw(dir.File("src.raw"), 2, 11);
            string destination = dir.File("small.vhdx");
            var plan = new NewDiskPlan { Path = destination, SourcePath = source, Size = 1L << 20 };
            var e = Assert.Throws<ImageOptionException>(() => plan.Execute());
            Assert.Contains("smaller than the source", e.Message);
            Assert.Equal(new[] { "src.raw" }, OutputTarget.FilesIn(dir.Path));
        }

        [Fact]
        public void CreateWritesUnderATemporaryNameAndLeavesNoPartial()
        {
            using var dir = new TempDir();
            string destination = dir.File("new.vhdx");
            File.WriteAllText(destination, "old");
            CreateOperation.Create(destination, Fmt.Vhdx, new CreateRequest { Size = 4L << 20, Overwrite = true });
            Assert.Equal(new[] { "new.vhdx" }, OutputTarget.FilesIn(dir.Path));
            Assert.Equal(0, Qemu.Check(destination, "vhdx").ExitCode);
        }
    }
}
