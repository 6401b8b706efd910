using System;
using System.IO;
using System.Linq;
using System.Security.Cryptography;
using System.Threading;
using Xunit;

namespace VDiskPS.Formats.Tests.Operations
{
    /// <summary>
    /// Operations cancelled while they run (from their own progress callback, after some bytes):
    /// a new output is gone, sources are byte-identical, an image changed in place is consistent
    /// (qemu-img check) and its chain reads as before (qemu-img compare against a copy made first).
    /// </summary>
    public class MidRunCancellationTests
    {
        private const int Size = 16 << 20;

        public static TheoryData<string> QemuFormats() => new TheoryData<string> { "raw", "qcow2", "vmdk", "vpc", "vhdx", "vdi" };

        public static TheoryData<string> LayeredFormats() => new TheoryData<string> { "qcow2", "vmdk", "vpc", "vhdx", "vdi" };

        [Theory]
        [MemberData(nameof(QemuFormats))]
        public void CancelledConvertLeavesNoFileAndTheSourceIntact(string target)
        {
            using var dir = new TempDir();
            string source = dir.File("source.raw");
            File.WriteAllBytes(source, TestData.Pattern(32 << 20, 1));
            byte[] hash = Hash(source);
            string[] before = Directory.GetFiles(dir.Path);
            var options = new ConvertOptions { TargetFormat = DiskFormat.Parse(target), ChunkSize = 256 << 10 };

            RunCancelled(cancel => ConvertOperation.Run(source, dir.File("out." + Extension(target)), options, cancel, cancel.Token));

            Assert.Equal(before, Directory.GetFiles(dir.Path));
            Assert.Equal(hash, Hash(source));
        }

        [Theory]
        [InlineData("qcow2")]
        [InlineData("vmdk")]
        [InlineData("vpc")]
        [InlineData("vhdx")]
        [InlineData("vdi")]
        public void CancelledCommitLeavesAConsistentBaseAndAChainThatReadsTheSame(string format)
        {
            using var dir = new TempDir();
            string top = MakeChain(dir, format, "base", "top");
            string copy = CopyFolder(dir, "before");

            RunCancelled(cancel => CommitOperation.Run(top, new CommitOptions(), cancel, cancel.Token));

            AssertConsistent(dir.File("base." + Extension(format)), format);
            AssertConsistent(top, format);
            AssertReadsTheSame(top, Path.Combine(copy, Path.GetFileName(top)), format);
        }

        [Theory]
        [MemberData(nameof(LayeredFormats))]
        public void CancelledRebaseKeepsTheOldParentAndTheContent(string format)
        {
            using var dir = new TempDir();
            string ext = Extension(format);
            string mid = MakeChain(dir, format, "base", "mid");
            string top = AddOverlay(dir, format, mid, "top", seed: 9, everyOther: 2);
            string copy = CopyFolder(dir, "before");
            string[] baseHash = { Convert.ToBase64String(Hash(dir.File("base." + ext))), Convert.ToBase64String(Hash(mid)) };

            RunCancelled(cancel => RebaseOperation.Run(top, new RebaseOptions { NewParentPath = "base." + ext }, cancel, cancel.Token));

            using (var chain = ImageChain.Open(top))
            {
                // VHD and VHDX record the relative path Windows-style (".\\mid.vhd").
                Assert.Equal("mid." + ext, Path.GetFileName(chain.Top.Backing.RecordedPath.Replace('\\', '/')));
            }

            AssertConsistent(top, format);
            AssertReadsTheSame(top, Path.Combine(copy, "top." + ext), format);
            Assert.Equal(baseHash, new[] { Convert.ToBase64String(Hash(dir.File("base." + ext))), Convert.ToBase64String(Hash(mid)) });
        }

        [Theory]
        [InlineData("qcow2", "Releasing zero clusters")]
        [InlineData("vmdk", "Releasing zero clusters")]
        [InlineData("vmdk", "Optimizing")]
        [InlineData("vpc", "Releasing zero clusters")]
        [InlineData("vpc", "Compacting")]
        [InlineData("vhdx", "Releasing zero clusters")]
        [InlineData("vhdx", "Moving blocks")]
        [InlineData("vdi", "Compacting")]
        public void CancelledOptimizeLeavesAConsistentImageThatReadsTheSame(string format, string phase)
        {
            using var dir = new TempDir();
            string raw = dir.File("data.raw");
            var data = new byte[Size];
            for (int mib = 0; mib < Size >> 20; mib += 2)
            {
                // Data in every other MiB: zero blocks lie between data blocks, so compaction moves blocks.
                TestData.Pattern(1 << 20, mib).CopyTo(data, (mib + 1) << 20);
            }

            File.WriteAllBytes(raw, data);
            string image = dir.File("disk." + Extension(format));
            string[] create = format == "vhdx" ? new[] { "-o", "block_size=1M" } : Array.Empty<string>();
            Qemu.Img(new[] { "convert", "-q", "-S", "0", "-f", "raw", "-O", format }.Concat(create).Concat(new[] { raw, image }).ToArray());
            string copy = CopyFolder(dir, "before");

            RunCancelled(cancel => OptimizeOperation.Run(image, new OptimizeOptions { Mode = OptimizeMode.Full }, cancel, cancel.Token), phase);

            AssertConsistent(image, format);
            var compare = Qemu.Compare(image, format, Path.Combine(copy, Path.GetFileName(image)), format);
            Assert.True(compare.Identical, compare.Output);
        }

        [Theory]
        [MemberData(nameof(QemuFormats))]
        public void CancelledSyncLeavesAConsistentDestinationAndTheSourceIntact(string format)
        {
            using var dir = new TempDir();
            string source = dir.File("source.raw");
            File.WriteAllBytes(source, TestData.Pattern(Size, 4));
            byte[] hash = Hash(source);
            string target = dir.File("target." + Extension(format));
            Qemu.Img("create", "-q", "-f", format, target, Size.ToString());

            RunCancelled(cancel => SyncOperation.Run(source, target, new SyncOptions { BlockSize = 64 << 10 }, cancel, cancel.Token));

            Assert.Equal(hash, Hash(source));
            AssertConsistent(target, format);

            // What was synchronized before the stop is the source's; the rest still reads zeros.
            byte[] written = Qemu.ToRawBytes(target, format, dir.Path);
            byte[] expected = File.ReadAllBytes(source);
            int firstZero = Enumerable.Range(0, Size / 4096).Select(i => i * 4096).FirstOrDefault(at => written.AsSpan(at, 4096).IndexOfAnyExcept((byte)0) < 0, Size);
            Assert.True(firstZero < Size, "the cancelled sync wrote everything");
            Assert.True(written.AsSpan(0, firstZero).SequenceEqual(expected.AsSpan(0, firstZero)));
            Assert.True(written.AsSpan(firstZero).IndexOfAnyExcept((byte)0) < 0);
        }

        /// <summary>Runs the work with a progress callback that cancels it at the first report (of <paramref name="phase"/> when given); asserts it stopped by cancellation.</summary>
        private static void RunCancelled(Action<CancelOnReport> work, string phase = null)
        {
            using var cancel = new CancelOnReport(phase);
            Assert.ThrowsAny<OperationCanceledException>(() => work(cancel));
            Assert.True(cancel.Fired, "the operation never reported progress in the phase asked for");
        }

        /// <summary>A base filled by qemu-img from 16 MiB of data and an overlay (written by the engine) with data over every third MiB.</summary>
        private static string MakeChain(TempDir dir, string format, string baseName, string topName)
        {
            string raw = dir.File("data.raw");
            File.WriteAllBytes(raw, TestData.Pattern(Size, 2));
            string baseImage = dir.File(baseName + "." + Extension(format));
            Qemu.Img("convert", "-q", "-f", "raw", "-O", format, raw, baseImage);
            File.Delete(raw);
            return AddOverlay(dir, format, baseImage, topName, seed: 5, everyOther: 3);
        }

        private static string AddOverlay(TempDir dir, string format, string parent, string name, int seed, int everyOther)
        {
            DiskFormat diskFormat = DiskFormat.Parse(format);
            string overlay = dir.File(name + "." + Extension(format));
            CreateOperation.Create(overlay, diskFormat, new CreateRequest { Backing = new BackingReference(Path.GetFileName(parent), diskFormat) });
            using var chain = ImageChain.Open(overlay, new ChainOptions { Writable = true });
            for (int mib = 0; mib < Size >> 20; mib += everyOther)
            {
                chain.Top.Write((long)mib << 20, TestData.Pattern(1 << 20, seed + mib));
            }

            chain.Top.Flush();
            return overlay;
        }

        /// <summary>
        /// qemu-img check where qemu has one for the format and opens the image. vpc and raw have no
        /// check, so qemu-img reads the whole image instead; qemu opens no differencing VHD (libvhdi's
        /// vhdiinfo judges it), nor differencing VHDX or VDI (only the engine's own check is left).
        /// </summary>
        private static void AssertConsistent(string image, string format)
        {
            bool differencing = IsDifferencing(image);
            if (format == "vpc" && differencing)
            {
                Qemu.Run("vhdiinfo", new[] { image }, expectSuccess: true);
            }
            else if (format == "raw" || format == "vpc")
            {
                string scratch = Path.Combine(Path.GetDirectoryName(image), "scratch");
                Directory.CreateDirectory(scratch);
                Qemu.ToRawBytes(image, format, scratch);
                Directory.Delete(scratch, true);
            }
            else if (differencing && (format == "vhdx" || format == "vdi"))
            {
                VDiskCheckResult result = CheckOperation.Run(image, DiskFormat.Parse(format), RepairMode.None);
                Assert.True(result.IsValid && result.Leaks == 0, $"{result.Corruptions} corruptions, {result.CheckErrors} errors, {result.Leaks} leaks");
            }
            else
            {
                var check = Qemu.Check(image, format);
                Assert.True(check.ExitCode == 0, check.Output);
            }
        }

        /// <summary>qemu-img compare where qemu reads the chain (qcow2, vmdk); VHD, VHDX and VDI differencing chains only the engine reads.</summary>
        private static void AssertReadsTheSame(string image, string copy, string format)
        {
            if (format == "qcow2" || format == "vmdk")
            {
                var compare = Qemu.Compare(image, format, copy, format);
                Assert.True(compare.Identical, compare.Output);
                return;
            }

            Assert.True(CompareOperation.Run(image, copy, new CompareOptions()).Identical);
        }

        private static bool IsDifferencing(string image)
        {
            using var chain = ImageChain.Open(image, new ChainOptions { NoBacking = true });
            return chain.Top.Backing != null;
        }

        private static string CopyFolder(TempDir dir, string name)
        {
            string copy = dir.File(name);
            Directory.CreateDirectory(copy);
            foreach (string file in Directory.GetFiles(dir.Path))
            {
                File.Copy(file, Path.Combine(copy, Path.GetFileName(file)));
            }

            return copy;
        }

        private static string Extension(string qemuFormat) => qemuFormat == "vpc" ? "vhd" : qemuFormat;

        private static byte[] Hash(string path)
        {
            using var stream = File.OpenRead(path);
            return SHA256.HashData(stream);
        }

        /// <summary>Cancels at the first progress report (of one phase when given), from the operation's own thread.</summary>
        private sealed class CancelOnReport : CancellationTokenSource, IProgress<OperationProgress>
        {
            private readonly string _phase;

            public CancelOnReport(string phase) => _phase = phase;

            public bool Fired { get; private set; }

            public void Report(OperationProgress value)
            {
                if (!Fired && value.BytesDone > 0 && value.BytesDone < value.BytesTotal && (_phase == null || value.Phase == _phase))
                {
                    Fired = true;
                    Cancel();
                }
            }
        }
    }
}
