using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Security.Cryptography;
using Xunit;
using Xunit.Abstractions;

namespace VDiskPS.Formats.Tests.Crash
{
    /// <summary>
    /// Kills a real conversion (tests/VDiskPS.CrashChild) with SIGKILL at seeded moments and judges what
    /// it left with qemu-img: the destination is absent or complete (qemu-img compare identical with the
    /// source, qemu-img check clean), never a file under its name that opens and holds part of the data.
    /// What a kill may leave is a partial file clearly named as one (".NAME.vdiskps-partial-..."), which
    /// the next conversion to that destination removes. The source is never changed.
    /// Kills per pair: VDISKPS_CRASH_SEEDS (default 3; 20 or more for the long run); a seeded delay that
    /// lands after the run's end counts as a run but not as a kill, and another seed follows.
    /// </summary>
    public class ConvertCrashTests
    {
        private const int SourceMiB = 64;

        private readonly ITestOutputHelper _output;

        public ConvertCrashTests(ITestOutputHelper output) => _output = output;

        public static IEnumerable<object[]> Pairs => new[]
        {
            new object[] { "raw", "qcow2" },
            new object[] { "qcow2", "vhdx" },
            new object[] { "vmdk", "vhdx" },
            new object[] { "raw", "vmdk-stream" },
            new object[] { "raw", "vdi" },
            new object[] { "raw", "vhd" },
        };

        [Theory]
        [MemberData(nameof(Pairs))]
        public void KilledConvertLeavesTheDestinationAbsentOrComplete(string sourceFormat, string targetName)
        {
            OutputTarget target = OutputTarget.Named(targetName);
            using var dir = new TempDir();
            string content = OutputTarget.RandomRaw(dir.File("content.raw"), SourceMiB, sourceFormat.Length * 31 + targetName.Length);
            string source = content;
            if (sourceFormat != "raw")
            {
                source = dir.File("source." + sourceFormat);
                Qemu.Img("convert", "-f", "raw", "-O", sourceFormat, content, source);
            }

            string sourceHash = Hash(source);
            string work = Path.Combine(dir.Path, "out");
            Directory.CreateDirectory(work);
            string destination = Path.Combine(work, "dst" + target.Extension);
            string[] convert = { "convert", source, destination, target.Format.ToName(), target.Subformat };

            var measured = CrashChild.Run(convert);
            Assert.True(measured.ExitCode == 0, measured.Error);
            AssertComplete(content, destination, target);
            File.Delete(destination);

            var tally = new Tally();
            var clock = new CrashChild.KillClock((sourceFormat + targetName).Aggregate(17, (h, c) => (h * 31) + c), measured.Duration);
            for (int attempt = 0; tally.Kills < CrashChild.Seeds && attempt < CrashChild.MaxAttempts; attempt++)
            {
                bool killed = clock.Run(convert);
                Judge(content, destination, target, killed, tally);

                if (File.Exists(destination))
                {
                    File.Delete(destination);
                }

                // Whatever a kill left, the next conversion to the same place succeeds and cleans up
                // (shown once per pair, to keep the short run short).
                if (tally.LastLeftPartials && !tally.CleanedUp)
                {
                    tally.CleanedUp = true;
                    var rerun = CrashChild.Run(convert);
                    Assert.True(rerun.ExitCode == 0, rerun.Error);
                    Assert.Equal(new[] { Path.GetFileName(destination) }, OutputTarget.FilesIn(work));
                    AssertComplete(content, destination, target);
                    File.Delete(destination);
                }
            }

            _output.WriteLine($"{sourceFormat} -> {targetName}: {tally.Runs} runs for {CrashChild.Seeds} kills, unkilled run {measured.Duration.TotalMilliseconds:0} ms; {tally}");
            Assert.Equal(sourceHash, Hash(source));
            Assert.Equal(0, tally.SilentPartial);
            Assert.Equal(0, tally.Unexpected);
        }

        [Fact]
        public void KilledConvertIntoAQcow2LeavesItFlaggedCorruptOrComplete()
        {
            using var dir = new TempDir();
            string content = OutputTarget.RandomRaw(dir.File("content.raw"), SourceMiB, 5);
            string destination = dir.File("dst.qcow2");
            OutputTarget target = OutputTarget.Named("qcow2");
            string[] convert = { "convert-into", content, destination, "qcow2" };
            void Fresh()
            {
                File.Delete(destination);
                Qemu.Img("create", "-q", "-f", "qcow2", destination, SourceMiB + "M");
            }

            Fresh();
            var measured = CrashChild.Run(convert);
            Assert.True(measured.ExitCode == 0, measured.Error);
            AssertComplete(content, destination, target);
            Assert.False(InPlaceConvertTests.QemuSaysCorrupt(destination));

            int kills = 0, untouched = 0, flagged = 0, complete = 0, silentPartial = 0, inconsistent = 0;
            var clock = new CrashChild.KillClock(4242, measured.Duration);
            int runs = 0;
            for (; kills < CrashChild.Seeds && runs < CrashChild.MaxAttempts; runs++)
            {
                Fresh();
                string freshHash = Hash(destination);
                kills += clock.Run(convert) ? 1 : 0;
                if (Hash(destination) == freshHash)
                {
                    // Killed before its first write: the image is as it was.
                    untouched++;
                    continue;
                }

                // Flagged or not, the structure is consistent or merely leaking (qemu-img check 0 or 3).
                int check = Qemu.Check(destination, "qcow2").ExitCode;
                inconsistent += check == 0 || check == 3 ? 0 : 1;
                if (InPlaceConvertTests.QemuSaysCorrupt(destination))
                {
                    flagged++;
                }
                else if (IsComplete(content, destination, target))
                {
                    complete++;
                }
                else
                {
                    silentPartial++;
                }
            }

            _output.WriteLine($"raw -> existing qcow2: {runs} runs for {CrashChild.Seeds} kills, unkilled run {measured.Duration.TotalMilliseconds:0} ms; killed mid-run {kills}; untouched {untouched}, flagged corrupt {flagged}, complete {complete}, silently partial {silentPartial}; inconsistent {inconsistent}");
            Assert.Equal(0, silentPartial);
            Assert.Equal(0, inconsistent);
        }

        private static void Judge(string content, string destination, OutputTarget target, bool killed, Tally tally)
        {
            string folder = Path.GetDirectoryName(destination);
            string partialPrefix = "." + Path.GetFileName(destination) + StagedOutput.PartialMarker;
            string[] files = OutputTarget.FilesIn(folder);
            tally.Runs++;
            tally.Kills += killed ? 1 : 0;
            tally.LastLeftPartials = files.Any(f => f.StartsWith(partialPrefix, StringComparison.Ordinal));
            tally.LeftPartials += tally.LastLeftPartials ? 1 : 0;
            tally.Unexpected += files.Count(f => f != Path.GetFileName(destination) && !f.StartsWith(partialPrefix, StringComparison.Ordinal));
            if (!File.Exists(destination))
            {
                tally.Absent++;
                return;
            }

            if (IsComplete(content, destination, target))
            {
                tally.Complete++;
            }
            else
            {
                tally.SilentPartial++;
            }
        }

        private static bool IsComplete(string content, string destination, OutputTarget target)
        {
            if (!Qemu.Compare(content, "raw", destination, target.QemuFormat).Identical)
            {
                return false;
            }

            // qemu-img has no check for raw and vpc; compare above is the judge there.
            return target.Format == Fmt.Raw || target.Format == Fmt.Vhd || Qemu.Check(destination, target.QemuFormat).ExitCode == 0;
        }

        private static void AssertComplete(string content, string destination, OutputTarget target)
            => Assert.True(IsComplete(content, destination, target), $"{destination} is not a complete copy of {content}");

        private static string Hash(string path)
        {
            using var stream = File.OpenRead(path);
            return Convert.ToHexString(SHA256.HashData(stream));
        }

        private sealed class Tally
        {
            public int Runs { get; set; }

            public int Kills { get; set; }

            public int Absent { get; set; }

            public int Complete { get; set; }

            public int SilentPartial { get; set; }

            public int LeftPartials { get; set; }

            public int Unexpected { get; set; }

            public bool LastLeftPartials { get; set; }

            public bool CleanedUp { get; set; }

            public override string ToString()
                => $"killed mid-run {Kills}; destination absent {Absent}, complete {Complete}, silently partial {SilentPartial}; runs leaving a named partial file {LeftPartials} (removed by the next convert: {(CleanedUp ? "shown" : "none to show")}); unexpected files {Unexpected}";
        }
    }
}
