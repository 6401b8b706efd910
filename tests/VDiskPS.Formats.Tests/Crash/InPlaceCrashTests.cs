using System.IO;
using Xunit;
using Xunit.Abstractions;

namespace VDiskPS.Formats.Tests.Crash
{
    /// <summary>
    /// Kills a real resize and a real snapshot creation of a qcow2 (tests/VDiskPS.CrashChild) with SIGKILL at
    /// seeded moments and judges the image with qemu-img: the guest's data is never lost, and the image is
    /// consistent or merely leaking (qemu-img check 0 or 3), which Repair-VDisk -Mode Leaks fixes. A snapshot
    /// cut between its refcount update and its L2 flag update may also show OFLAG_COPIED errors: qemu has
    /// the same window (the two live in different clusters), and qemu-img check -r all repairs them.
    /// Kills per operation: VDISKPS_CRASH_SEEDS (default 3).
    /// </summary>
    public class InPlaceCrashTests
    {
        private const int DataMiB = 32;

        private readonly ITestOutputHelper _output;

        public InPlaceCrashTests(ITestOutputHelper output) => _output = output;

        [Fact]
        public void KilledResizeLosesNoDataAndLeavesTheImageConsistentOrLeaking()
        {
            using var dir = new TempDir();
            var (content, pristine, image) = Qcow2WithData(dir, 61);
            string[] resize = { "resize", image, "1T" };
            var measured = MeasureUnkilled(pristine, image, resize);

            var clock = new CrashChild.KillClock(6161, measured);
            int kills = 0, runs = 0, leaking = 0, grown = 0;
            for (; kills < CrashChild.Seeds && runs < CrashChild.MaxAttempts; runs++)
            {
                File.Copy(pristine, image, true);
                kills += clock.Run(resize) ? 1 : 0;
                int check = Qemu.Check(image, "qcow2").ExitCode;
                Assert.True(check == 0 || check == 3, $"qemu-img check exited {check} after a killed resize");
                leaking += check == 3 ? 1 : 0;
                using (var info = Qemu.Info(image, "qcow2"))
                {
                    long size = info.RootElement.GetProperty("virtual-size").GetInt64();
                    Assert.True(size == DataMiB << 20 || size == 1L << 40, $"virtual size {size} is neither the old nor the new one");
                    grown += size == 1L << 40 ? 1 : 0;
                }

                // The guest's data reads as before (compare treats the grown tail as it must be: zeros).
                Assert.True(Qemu.Compare(content, "raw", image, "qcow2").Identical, "the data changed under a killed resize");
            }

            _output.WriteLine($"qcow2 resize: {runs} runs, {kills} killed mid-run, {grown} grown, {leaking} leaking");
        }

        [Fact]
        public void KilledSnapshotLosesNoDataAndLeavesARepairableImage()
        {
            using var dir = new TempDir();
            var (content, pristine, image) = Qcow2WithData(dir, 62);
            string[] snapshot = { "snapshot-create", image, "nightly" };
            var measured = MeasureUnkilled(pristine, image, snapshot);

            var clock = new CrashChild.KillClock(6262, measured);
            int kills = 0, runs = 0, clean = 0, leaking = 0, copiedFlags = 0, taken = 0;
            for (; kills < CrashChild.Seeds && runs < CrashChild.MaxAttempts; runs++)
            {
                File.Copy(pristine, image, true);
                kills += clock.Run(snapshot) ? 1 : 0;
                var check = Qemu.Check(image, "qcow2");
                if (check.ExitCode == 2)
                {
                    // Only the OFLAG_COPIED window, and qemu repairs it.
                    Assert.DoesNotContain("ERROR cluster", check.Output);
                    Assert.Contains("OFLAG_COPIED", check.Output);
                    copiedFlags++;
                    Qemu.Run("qemu-img", new[] { "check", "-q", "-r", "all", "-f", "qcow2", image });
                    Assert.Equal(0, Qemu.Check(image, "qcow2").ExitCode);
                }
                else
                {
                    Assert.True(check.ExitCode == 0 || check.ExitCode == 3, $"qemu-img check exited {check.ExitCode} after a killed snapshot: {check.Output}");
                    clean += check.ExitCode == 0 ? 1 : 0;
                    leaking += check.ExitCode == 3 ? 1 : 0;
                }

                Assert.True(Qemu.Compare(content, "raw", image, "qcow2").Identical, "the active disk changed under a killed snapshot");
                if (Qemu.Img("snapshot", "-l", image).Contains("nightly"))
                {
                    // A snapshot that is listed holds the disk as it was.
                    taken++;
                    string saved = dir.File("saved.raw");
                    Qemu.Img("convert", "-l", "snapshot.name=nightly", "-f", "qcow2", "-O", "raw", image, saved);
                    Assert.True(Qemu.Compare(content, "raw", saved, "raw").Identical, "a listed snapshot does not hold the disk as it was");
                    File.Delete(saved);
                }
            }

            _output.WriteLine($"qcow2 snapshot: {runs} runs, {kills} killed mid-run; clean {clean}, leaking {leaking}, OFLAG_COPIED (repaired) {copiedFlags}; snapshot taken {taken}");
        }

        /// <summary>A qcow2 of 4 KiB clusters holding random data (many clusters, so a kill lands mid-run), and the raw content.</summary>
        private static (string Content, string Pristine, string Image) Qcow2WithData(TempDir dir, int seed)
        {
            string content = OutputTarget.RandomRaw(dir.File("content.raw"), DataMiB, seed);
            string pristine = dir.File("pristine.qcow2");
            Qemu.Img("convert", "-f", "raw", "-O", "qcow2", "-o", "cluster_size=4096", content, pristine);
            return (content, pristine, dir.File("image.qcow2"));
        }

        /// <summary>Runs the operation once to its end on a fresh copy, for the kill window.</summary>
        private static System.TimeSpan MeasureUnkilled(string pristine, string image, string[] operation)
        {
            File.Copy(pristine, image, true);
            var measured = CrashChild.Run(operation);
            Assert.True(measured.ExitCode == 0, measured.Error);
            return measured.Duration;
        }
    }
}
