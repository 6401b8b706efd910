using System;
using System.Diagnostics;
using System.IO;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using System.Threading;
using System.Threading.Tasks;
using Xunit;

namespace VDiskPS.Formats.Tests.Core
{
    /// <summary>
    /// VDiskPS and QEMU respect each other's image locks (QEMU's lock bytes, block/file-posix.c).
    /// Judged by real qemu-io / qemu-img processes: one holds an image while the other tries it.
    /// </summary>
    public class QemuLockTests
    {
        private const string QemuWriteRefused = "Failed to get \"write\" lock";
        private const string QemuSharedWriteRefused = "Failed to get shared \"write\" lock";

        [Fact]
        public void ResizeOfAnImageQemuWritesIsRefusedAndLeavesItUnchanged()
        {
            using var dir = new TempDir();
            string path = NewQcow2(dir, "vm.qcow2");
            string before = Hash(path);
            using (var vm = QemuIoHolder.Start("-f", "qcow2", path))
            {
                var e = Assert.Throws<ImageLockedException>(() => ResizeOperation.Run(path, new ResizeOptions { Size = DiskSize.Parse("+1M") }));
                Assert.Equal(path, e.FilePath);
                Assert.Contains($"process {vm.Pid} (qemu-io)", e.Message);
                Assert.False(e.WriterBlocksReading);
            }

            Assert.Equal(before, Hash(path));
        }

        [Fact]
        public void SnapshotOfAnImageQemuWritesIsRefusedAndLeavesItUnchanged()
        {
            using var dir = new TempDir();
            string path = NewQcow2(dir, "vm.qcow2");
            string before = Hash(path);
            using (QemuIoHolder.Start("-f", "qcow2", path))
            {
                Assert.Throws<ImageLockedException>(() => SnapshotOperations.Create(path, "live"));
            }

            Assert.Equal(before, Hash(path));
            Assert.DoesNotContain("live", Qemu.Img("snapshot", "-l", path));
        }

        [Fact]
        public void OverwritingAnImageQemuWritesIsRefusedBeforeItIsTruncated()
        {
            using var dir = new TempDir();
            string path = NewQcow2(dir, "vm.qcow2");
            string before = Hash(path);
            using (QemuIoHolder.Start("-f", "qcow2", path))
            {
                Assert.Throws<ImageLockedException>(() => CreateOperation.Create(path, Fmt.Raw, new CreateRequest { Size = 1 << 20, Overwrite = true }));
                Assert.Equal(before, Hash(path));
            }
        }

        [Fact]
        public void CommitIntoTheBackingFileOfARunningVmIsRefused()
        {
            // Two overlays on one gold image; a VM runs on the first, so the gold image must not change.
            using var dir = new TempDir();
            string gold = NewQcow2(dir, "gold.qcow2");
            Qemu.Img("create", "-f", "qcow2", "-F", "qcow2", "-b", gold, dir.File("a.qcow2"));
            Qemu.Img("create", "-f", "qcow2", "-F", "qcow2", "-b", gold, dir.File("b.qcow2"));
            Qemu.Io("-f", "qcow2", "-c", "write -P 7 0 64k", dir.File("b.qcow2"));
            string before = Hash(gold);
            using (QemuIoHolder.Start("-f", "qcow2", dir.File("a.qcow2")))
            {
                var e = Assert.Throws<ImageLockedException>(() => CommitOperation.Run(dir.File("b.qcow2")));
                Assert.Equal(gold, e.FilePath);
            }

            Assert.Equal(before, Hash(gold));
        }

        [Fact]
        public void PlainReadOfAnImageQemuWritesIsRefusedAsQemuImgInfoIs()
        {
            using var dir = new TempDir();
            string path = NewQcow2(dir, "vm.qcow2");
            using (var vm = QemuIoHolder.Start("-f", "qcow2", path))
            {
                var info = Qemu.Run("qemu-img", new[] { "info", path });
                Assert.NotEqual(0, info.ExitCode);
                Assert.Contains(QemuSharedWriteRefused, info.Output);

                var e = Assert.Throws<ImageLockedException>(() => ImageInspector.Get(path));
                Assert.True(e.WriterBlocksReading);
                Assert.Contains($"process {vm.Pid} (qemu-io)", e.Message);
            }
        }

        [Fact]
        public void ReadSharedWithWritersWorksWhileQemuWrites()
        {
            using var dir = new TempDir();
            string path = NewQcow2(dir, "vm.qcow2");
            using (QemuIoHolder.Start("-f", "qcow2", path))
            {
                Assert.Equal(0, Qemu.Run("qemu-img", new[] { "info", "-U", path }).ExitCode);
                Assert.Equal(16L << 20, ImageInspector.Get(path, null, shareWithWriters: true).Size);
            }
        }

        [Fact]
        public void QemuCannotResizeOrWriteAnImageWeHoldWritable()
        {
            using var dir = new TempDir();
            string path = NewQcow2(dir, "base.qcow2");
            string before = Hash(path);
            using (FormatRegistry.Default.Open(path, null, new OpenOptions { Writable = true }))
            {
                var resize = Qemu.Run("qemu-img", new[] { "resize", path, "+1M" });
                Assert.NotEqual(0, resize.ExitCode);
                Assert.Contains(QemuWriteRefused, resize.Output);

                var write = Qemu.Run("qemu-io", new[] { "-f", "qcow2", "-c", "write 0 512", path });
                Assert.Contains(QemuWriteRefused, write.Output);
            }

            Assert.Equal(before, Hash(path));
            Assert.Equal(0, Qemu.Run("qemu-img", new[] { "resize", path, "+1M" }).ExitCode);
        }

        [Fact]
        public void QemuImgInfoNeedsForceShareOnAnImageWeHoldWritable()
        {
            // As against a qemu writer: plain info refuses, info -U reads.
            using var dir = new TempDir();
            string path = NewQcow2(dir, "base.qcow2");
            using (FormatRegistry.Default.Open(path, null, new OpenOptions { Writable = true }))
            {
                var plain = Qemu.Run("qemu-img", new[] { "info", path });
                Assert.NotEqual(0, plain.ExitCode);
                Assert.Contains(QemuSharedWriteRefused, plain.Output);
                Assert.Equal(0, Qemu.Run("qemu-img", new[] { "info", "-U", path }).ExitCode);
            }
        }

        [Fact]
        public void OurReaderAndQemuReadersShare()
        {
            using var dir = new TempDir();
            string path = NewQcow2(dir, "gold.qcow2");
            using (FormatRegistry.Default.Open(path, null, new OpenOptions()))
            {
                Assert.Equal(0, Qemu.Run("qemu-img", new[] { "info", path }).ExitCode);
                using (QemuIoHolder.Start("-r", "-f", "qcow2", path))
                {
                    Assert.Equal(16L << 20, ImageInspector.Get(path).Size);
                }
            }
        }

        [Fact]
        public void QemuReaderBlocksOurWriter()
        {
            using var dir = new TempDir();
            string path = NewQcow2(dir, "gold.qcow2");
            using (QemuIoHolder.Start("-r", "-f", "qcow2", path))
            {
                var e = Assert.Throws<ImageLockedException>(() => FormatRegistry.Default.Open(path, null, new OpenOptions { Writable = true }));
                Assert.Contains("\"write\"", e.Message);
            }
        }

        [Fact]
        public void QemuForcedReaderDoesNotBlockOurWriter()
        {
            using var dir = new TempDir();
            string path = NewQcow2(dir, "vm.qcow2");
            using (QemuIoHolder.Start("-r", "-U", "-f", "qcow2", path))
            {
                ResizeOperation.Run(path, new ResizeOptions { Size = DiskSize.Parse("+1M") });
            }

            Assert.Equal(17L << 20, Qemu.Info(path).RootElement.GetProperty("virtual-size").GetInt64());
        }

        [Theory]
        [InlineData("qcow2 data file")]
        [InlineData("vmdk extent")]
        public void QemuCannotWriteTheOtherFilesOfAnImageWeHoldWritable(string kind)
        {
            using var dir = new TempDir();
            string path = NewImageWithASecondFile(dir, kind, out string second);
            using (FormatRegistry.Default.Open(path, null, new OpenOptions { Writable = true }))
            {
                var write = Qemu.Run("qemu-io", new[] { "-f", "raw", "-c", "write 0 512", second });
                Assert.Contains(QemuWriteRefused, write.Output);
            }
        }

        [Theory]
        [InlineData("qcow2 data file")]
        [InlineData("vmdk extent")]
        public void AnImageWhoseOtherFileQemuWritesIsRefusedNamingThatFile(string kind)
        {
            using var dir = new TempDir();
            string path = NewImageWithASecondFile(dir, kind, out string second);
            using (QemuIoHolder.Start("-f", "raw", second))
            {
                var write = Assert.Throws<ImageLockedException>(() => FormatRegistry.Default.Open(path, null, new OpenOptions { Writable = true }));
                Assert.Equal(second, write.FilePath);
                var read = Assert.Throws<ImageLockedException>(() => FormatRegistry.Default.Open(path, null, new OpenOptions()));
                Assert.Equal(second, read.FilePath);
                Assert.True(read.WriterBlocksReading);
            }
        }

        [Fact]
        public void ClosingAnImageDropsItsLocksThoughACopyOfItsDescriptorLivesOn()
        {
            // A child process between fork and exec holds such a copy; QEMU must not see stale locks.
            using var dir = new TempDir();
            string path = NewQcow2(dir, "vm.qcow2");
            int copy;
            using (FormatRegistry.Default.Open(path, null, new OpenOptions { Writable = true }))
            {
                copy = Dup(OwnDescriptorOf(path));
            }

            try
            {
                var info = Qemu.Run("qemu-img", new[] { "info", path });
                Assert.True(info.ExitCode == 0, info.Output);
            }
            finally
            {
                Close(copy);
            }
        }

        [Fact]
        public void ASecondWriterInUseErrorNamesTheHoldingProcess()
        {
            // Our own exclusive-writer rule (flock) refuses first; the lock bytes name the holder.
            using var dir = new TempDir();
            string path = NewQcow2(dir, "vm.qcow2");
            using (FormatRegistry.Default.Open(path, null, new OpenOptions { Writable = true }))
            {
                var e = Assert.Throws<ImageLockedException>(() => FormatRegistry.Default.Open(path, null, new OpenOptions { Writable = true }));
                Assert.Contains($"process {Environment.ProcessId} (", e.Message);
            }
        }

        private static string NewQcow2(TempDir dir, string name)
        {
            string path = dir.File(name);
            Qemu.Img("create", "-q", "-f", "qcow2", path, "16M");
            return path;
        }

        private static string NewImageWithASecondFile(TempDir dir, string kind, out string second)
        {
            if (kind == "qcow2 data file")
            {
                string qcow2 = dir.File("vm.qcow2");
                second = dir.File("vm.data");
                Qemu.Img("create", "-q", "-f", "qcow2", "-o", "data_file=" + second, qcow2, "16M");
                return qcow2;
            }

            string vmdk = dir.File("disk.vmdk");
            Qemu.Img("create", "-q", "-f", "vmdk", "-o", "subformat=twoGbMaxExtentSparse", vmdk, "16M");
            second = dir.File("disk-s001.vmdk");
            Assert.True(File.Exists(second));
            return vmdk;
        }

        private static int OwnDescriptorOf(string path)
        {
            foreach (string link in Directory.GetFiles("/proc/self/fd"))
            {
                if (new FileInfo(link).LinkTarget == path)
                {
                    return int.Parse(System.IO.Path.GetFileName(link));
                }
            }

            throw new InvalidOperationException("the image is not open in this process: " + path);
        }

        [DllImport("libc", EntryPoint = "dup", SetLastError = true)]
        private static extern int Dup(int fd);

        [DllImport("libc", EntryPoint = "close", SetLastError = true)]
        private static extern int Close(int fd);

        private static string Hash(string path)
        {
            using var sha = SHA256.Create();
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
            return Convert.ToHexString(sha.ComputeHash(stream));
        }

        /// <summary>A qemu-io process holding an image open (as a running VM does) until disposed.</summary>
        private sealed class QemuIoHolder : IDisposable
        {
            private readonly Process _process;
            private readonly StringBuilder _output = new StringBuilder();

            private QemuIoHolder(Process process)
            {
                _process = process;
                Task.Run(() => Drain(process.StandardOutput));
                Task.Run(() => Drain(process.StandardError));
            }

            public int Pid => _process.Id;

            public static QemuIoHolder Start(params string[] args)
            {
                var psi = new ProcessStartInfo("qemu-io")
                {
                    RedirectStandardInput = true,
                    RedirectStandardOutput = true,
                    RedirectStandardError = true,
                    UseShellExecute = false,
                };
                foreach (string a in args)
                {
                    psi.ArgumentList.Add(a);
                }

                var holder = new QemuIoHolder(Process.Start(psi));
                holder.WaitUntilOpen();
                return holder;
            }

            public void Dispose()
            {
                try
                {
                    _process.Kill();
                }
                catch (InvalidOperationException)
                {
                }

                _process.WaitForExit();
                _process.Dispose();
            }

            private void Drain(StreamReader reader)
            {
                var buffer = new char[256];
                int n;
                while ((n = reader.Read(buffer, 0, buffer.Length)) > 0)
                {
                    lock (_output)
                    {
                        _output.Append(buffer, 0, n);
                    }
                }
            }

            private string Output()
            {
                lock (_output)
                {
                    return _output.ToString();
                }
            }

            /// <summary>Waits for qemu-io's prompt, which it shows once the image is open and its lock bytes taken.</summary>
            private void WaitUntilOpen()
            {
                var deadline = DateTime.UtcNow.AddSeconds(20);
                while (DateTime.UtcNow < deadline)
                {
                    if (Output().Contains("qemu-io>"))
                    {
                        return;
                    }

                    if (_process.HasExited)
                    {
                        Thread.Sleep(100);
                        string output = Output();
                        Dispose();
                        throw new InvalidOperationException("qemu-io exited before holding the image: " + output);
                    }

                    Thread.Sleep(20);
                }

                Dispose();
                throw new TimeoutException("qemu-io did not open the image within 20 s: " + Output());
            }
        }
    }
}
