using System;
using System.IO;
using System.Linq;
using Xunit;

namespace VDiskPS.Formats.Tests.Operations
{
    /// <summary>
    /// A source whose file shrinks or grows while it is converted: the conversion fails naming the
    /// file and offset and leaves no output, instead of writing zeros where the data was.
    /// </summary>
    public class ShrinkingSourceTests
    {
        private const int Size = 32 << 20;

        [Theory]
        [InlineData("raw")]
        [InlineData("qcow2")]
        [InlineData("vmdk")]
        [InlineData("vhdx")]
        [InlineData("vpc")]
        [InlineData("vdi")]
        public void ASourceTruncatedDuringConvertFailsWithTheFileAndOffset(string qemuFormat)
        {
            using var dir = new TempDir();
            string source = MakeSource(dir, qemuFormat);
            string[] before = Directory.GetFiles(dir.Path);
            long cut = new FileInfo(source).Length / 8;

            var e = Assert.ThrowsAny<ImageException>(() => Convert(source, dir.File("out.qcow2"), () => Truncate(source, cut)));

            Assert.Equal(source, e.FilePath);
            Assert.Equal("CorruptImage", e.ErrorId);
            Assert.True(e.Offset >= cut, e.Message);
            Assert.Equal(before, Directory.GetFiles(dir.Path));
        }

        [Fact]
        public void ABackingFileTruncatedDuringConvertFailsWithItsName()
        {
            using var dir = new TempDir();
            string baseImage = MakeSource(dir, "raw");
            string top = dir.File("top.qcow2");
            Qemu.Img("create", "-q", "-f", "qcow2", "-b", "source.raw", "-F", "raw", top);
            Qemu.Io("-f", "qcow2", "-c", "write -P 0x5a 0 64k", top);
            string[] before = Directory.GetFiles(dir.Path);

            var e = Assert.ThrowsAny<ImageException>(() => Convert(top, dir.File("out.vhdx"), () => Truncate(baseImage, 1 << 20)));

            Assert.Equal(baseImage, e.FilePath);
            Assert.Equal("CorruptImage", e.ErrorId);
            Assert.Equal(before, Directory.GetFiles(dir.Path));
        }

        [Fact]
        public void ARawSourceThatGrowsDuringConvertFails()
        {
            using var dir = new TempDir();
            string source = MakeSource(dir, "raw");
            string[] before = Directory.GetFiles(dir.Path);

            // The copy has the size seen at open; what was appended (or rewritten meanwhile) is not in it.
            var e = Assert.ThrowsAny<ImageException>(() => Convert(source, dir.File("out.vmdk"), () => Truncate(source, Size + (1 << 20))));

            Assert.Equal(source, e.FilePath);
            Assert.Contains("changed while it was being read", e.Message);
            Assert.Equal(before.Length, Directory.GetFiles(dir.Path).Length);
        }

        [Fact]
        public void ASourceDeletedDuringConvertIsStillCopiedWhole()
        {
            using var dir = new TempDir();
            string source = MakeSource(dir, "raw");
            string keep = dir.File("keep.raw");
            File.Copy(source, keep);
            string output = dir.File("out.qcow2");

            // The open handle still reads the unlinked file whole: the copy is complete and right.
            Convert(source, output, () => File.Delete(source));

            var compare = Qemu.Compare(keep, "raw", output, "qcow2");
            Assert.True(compare.Identical, compare.Output);
        }

        /// <summary>A data-heavy image of the given qemu format named source.*, every cluster allocated.</summary>
        private static string MakeSource(TempDir dir, string qemuFormat)
        {
            string raw = dir.File(qemuFormat == "raw" ? "source.raw" : "data.raw");
            File.WriteAllBytes(raw, TestData.Pattern(Size, 3));
            if (qemuFormat == "raw")
            {
                return raw;
            }

            string image = dir.File("source." + (qemuFormat == "vpc" ? "vhd" : qemuFormat));
            Qemu.Img("convert", "-q", "-f", "raw", "-O", qemuFormat, raw, image);
            File.Delete(raw);
            return image;
        }

        private static void Convert(string source, string destination, Action atFirstProgress)
        {
            var options = new ConvertOptions
            {
                TargetFormat = DiskFormat.Parse(Path.GetExtension(destination).TrimStart('.')),
                ChunkSize = 256 << 10,
                ThrottleLimit = 1,
            };
            ConvertOperation.Run(source, destination, options, new OnFirstReport(atFirstProgress));
        }

        private static void Truncate(string path, long length)
        {
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Write, FileShare.ReadWrite | FileShare.Delete);
            stream.SetLength(length);
        }

        private sealed class OnFirstReport : IProgress<OperationProgress>
        {
            private Action _action;

            public OnFirstReport(Action action) => _action = action;

            public void Report(OperationProgress value)
            {
                Action action = _action;
                _action = null;
                action?.Invoke();
            }
        }
    }
}
