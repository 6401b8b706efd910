using System.Collections.Generic;
using System.IO;
using System.Linq;
using Xunit;

namespace VDiskPS.Formats.Tests.Operations
{
    /// <summary>Every format pair, with qemu-img making the sources and judging the results.</summary>
    public class ConvertMatrixTests
    {
        private const long Size = 9L << 20;

        /// <summary>Every readable source with a sample maker × every format this build writes, from the registry.</summary>
        public static IEnumerable<object[]> Pairs()
        {
            foreach (string source in FormatSamples.Sources)
            {
                foreach (string target in FormatRegistry.Default.CreatableNames)
                {
                    yield return new object[] { source, target };
                }
            }
        }

        [Fact]
        public void EveryReadableFormatIsASourceOfTheMatrix()
            => Assert.Equal(FormatRegistry.Default.ReadableNames.OrderBy(n => n), FormatSamples.Sources.OrderBy(n => n));

        /// <summary>A raw image with data at unaligned places, explicit zeros and holes.</summary>
        private static string MakeRaw(TempDir dir)
        {
            string raw = dir.File("pattern.raw");
            using (var file = new FileStream(raw, FileMode.Create))
            {
                file.SetLength(Size);
                file.Position = 0;
                file.Write(TestData.Pattern(300_000, 1));
                file.Position = (3L << 20) + 4096;
                file.Write(new byte[1 << 20]);
                file.Position = (5L << 20) + 777;
                file.Write(TestData.Pattern(1_500_000, 2));
                file.Position = Size - 512;
                file.Write(TestData.Pattern(512, 3));
            }

            return raw;
        }

        [Theory]
        [MemberData(nameof(Pairs))]
        public void ConvertsAndQemuJudgesIdentical(string sourceName, string targetName)
        {
            DiskFormat targetFormat = DiskFormat.Parse(targetName);
            using var dir = new TempDir();
            string raw = MakeRaw(dir);
            string source = FormatSamples.Make(sourceName, dir, raw);
            string target = dir.File("target." + targetFormat.ToName());

            // Encrypted images open with the test password; a luks target's key derivation is kept short.
            bool encryptedTarget = FormatSamples.IsEncrypted(targetName);
            using (FormatSamples.IsEncrypted(sourceName) || encryptedTarget ? ImageSecrets.Use(ImageSecrets.FromString(Qemu.Password)) : null)
            {
                ConvertOperation.Run(source, target, new ConvertOptions
                {
                    TargetFormat = targetFormat,
                    Target = encryptedTarget ? new CreateRequest { Options = OptionSet.Parse("iter-time=10") } : new CreateRequest(),
                });
            }

            Assert.Equal(targetFormat, FormatRegistry.Default.Probe(target));
            var (identical, output) = Qemu.Compare(raw, "raw", target, targetFormat.ToQemuName());
            Assert.True(identical, output);
            // qemu-img check exits 63 for a format it has no check for (raw, vpc, qcow, luks): compare is the judge then.
            if (!encryptedTarget)
            {
                var (code, check) = Qemu.Check(target, targetFormat.ToQemuName());
                Assert.True(code == 0 || (code == 63 && check.Contains("does not support checks")), check);
            }
        }

        [Fact]
        public void MixedFormatChainFlattensIntoOneImage()
        {
            using var dir = new TempDir();
            string raw = MakeRaw(dir);
            string baseImage = dir.File("base.vhdx");
            Qemu.Img("convert", "-f", "raw", "-O", "vhdx", raw, baseImage);
            string overlay = dir.File("overlay.qcow2");
            Qemu.Img("create", "-f", "qcow2", "-b", "base.vhdx", "-F", "vhdx", overlay);
            Qemu.Io("-f", "qcow2", "-c", "write -P 0x5a 1M 64k", "-c", "write -z 6M 128k", overlay);

            string flat = dir.File("flat.vmdk");
            ConvertOperation.Run(overlay, flat, new ConvertOptions { TargetFormat = Fmt.Vmdk });
            var (identical, output) = Qemu.Compare(overlay, "qcow2", flat, "vmdk");
            Assert.True(identical, output);
            Assert.Null(ImageInspector.Get(flat).ParentPath);
        }

        [Fact]
        public void DeltaAgainstAParentHoldsOnlyTheDifferences()
        {
            using var dir = new TempDir();
            string raw = MakeRaw(dir);
            string gold = dir.File("gold.qcow2");
            Qemu.Img("convert", "-f", "raw", "-O", "qcow2", raw, gold);
            string changed = dir.File("changed.qcow2");
            Qemu.Img("convert", "-f", "raw", "-O", "qcow2", raw, changed);
            Qemu.Io("-f", "qcow2", "-c", "write -P 0x11 2M 64k", "-c", "write -z 0 64k", changed);

            string delta = dir.File("delta.qcow2");
            ConvertOperation.Run(changed, delta, new ConvertOptions
            {
                TargetFormat = Fmt.Qcow2,
                Target = new CreateRequest { Backing = new BackingReference("gold.qcow2", null) },
            });

            // The probed parent format is recorded, so qemu need not probe.
            using (var info = Qemu.Info(delta, "qcow2"))
            {
                Assert.Equal("qcow2", info.RootElement.GetProperty("backing-filename-format").GetString());
            }

            var (identical, output) = Qemu.Compare(changed, "qcow2", delta, "qcow2");
            Assert.True(identical, output);
            Assert.Equal(0, Qemu.Check(delta, "qcow2").ExitCode);
            // Only the two changed 64 KiB clusters are the overlay's own.
            long own = 0;
            foreach (var extent in MapOperation.Run(delta))
            {
                if (extent.Depth == 0 && extent.Present)
                {
                    own += extent.Length;
                }
            }

            Assert.Equal(128L << 10, own);
        }
    }
}
