using System.Text.Json;
using System;
using System.IO;
using System.Security.Cryptography;
using System.Threading;
using Xunit;

namespace VDiskPS.Formats.Tests.Crash
{
    /// <summary>
    /// A conversion into an existing qcow2 (qemu-img convert -n) cannot be renamed into place, so the
    /// image carries qcow2's corrupt bit until its last write is flushed: judged by qemu-img info
    /// ("corrupt") and by qemu-io, which refuses to open a flagged image for writing.
    /// </summary>
    public class InPlaceConvertTests
    {
        internal static bool QemuSaysCorrupt(string path)
        {
            // -U: the convert under test holds the image open for writing (QEMU's lock bytes).
            using var info = JsonDocument.Parse(Qemu.Img("info", "-U", "--output=json", "-f", "qcow2", path));
            return info.RootElement.GetProperty("format-specific").GetProperty("data").GetProperty("corrupt").GetBoolean();
        }

        private static ConvertOptions IntoQcow2() => new ConvertOptions { TargetFormat = Fmt.Qcow2, NoCreate = true };

        [Fact]
        public void ConvertIntoAQcow2IsFlaggedCorruptUntilItsLastWriteIsFlushed()
        {
            using var dir = new TempDir();
            string source = OutputTarget.RandomRaw(dir.File("src.raw"), 8, 1);
            string destination = dir.File("dst.qcow2");
            Qemu.Img("create", "-q", "-f", "qcow2", destination, "8M");
            bool? flaggedDuringRun = null;
            var progress = new OnProgress(p => flaggedDuringRun ??= QemuSaysCorrupt(destination));

            ConvertOperation.Run(source, destination, IntoQcow2(), progress);

            Assert.True(flaggedDuringRun);
            Assert.False(QemuSaysCorrupt(destination));
            Assert.Equal(0, Qemu.Check(destination, "qcow2").ExitCode);
            Assert.True(Qemu.Compare(source, "raw", destination, "qcow2").Identical);
        }

        [Fact]
        public void CancelledConvertIntoAQcow2LeavesItFlaggedSoQemuWillNotWriteIt()
        {
            using var dir = new TempDir();
            string source = OutputTarget.RandomRaw(dir.File("src.raw"), 8, 2);
            string destination = dir.File("dst.qcow2");
            Qemu.Img("create", "-q", "-f", "qcow2", destination, "8M");
            using var cts = new CancellationTokenSource();
            var progress = new OnProgress(p =>
            {
                if (p.BytesDone > 0)
                {
                    cts.Cancel();
                }
            });

            Assert.ThrowsAny<OperationCanceledException>(() => ConvertOperation.Run(source, destination, IntoQcow2(), progress, cts.Token));

            Assert.True(QemuSaysCorrupt(destination));
            var write = Qemu.Run("qemu-io", new[] { "-f", "qcow2", "-c", "write 0 4k", destination });
            Assert.NotEqual(0, write.ExitCode);
            Assert.Contains("Image is corrupt", write.Output);
        }

        [Fact]
        public void ConvertIntoAQcow2FlaggedCorruptIsRefusedAndChangesNothing()
        {
            using var dir = new TempDir();
            string source = OutputTarget.RandomRaw(dir.File("src.raw"), 1, 3);
            string destination = dir.File("dst.qcow2");
            Qemu.Img("create", "-q", "-f", "qcow2", destination, "1M");
            using (var file = new FileStream(destination, FileMode.Open, FileAccess.ReadWrite))
            {
                // Set incompatible_features bit 1 (corrupt) as QEMU does when it finds damage.
                file.Position = 79;
                file.WriteByte(2);
            }

            Assert.True(QemuSaysCorrupt(destination));
            byte[] before = SHA256.HashData(File.ReadAllBytes(destination));

            var e = Assert.Throws<ImageCorruptException>(() => ConvertOperation.Run(source, destination, IntoQcow2()));

            Assert.Contains("marked corrupt", e.Message);
            Assert.Equal("incompatible_features", e.Field);
            Assert.Equal(before, SHA256.HashData(File.ReadAllBytes(destination)));
        }
    }
}
