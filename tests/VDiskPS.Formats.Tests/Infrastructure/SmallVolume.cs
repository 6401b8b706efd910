using System;
using System.Threading;

namespace VDiskPS.Formats.Tests
{
    /// <summary>
    /// A tmpfs of a given size mounted for a test (the suite runs as root), so that a full disk is the
    /// kernel's own ENOSPC. Unmounted after; a process another test forks at that moment may hold a
    /// descriptor of it for an instant, so a busy unmount is retried and finally done lazily.
    /// </summary>
    internal sealed class SmallVolume : IDisposable
    {
        private readonly TempDir _dir = new TempDir();

        public SmallVolume(string size)
        {
            Path = _dir.File("volume");
            System.IO.Directory.CreateDirectory(Path);
            Qemu.Run("mount", new[] { "-t", "tmpfs", "-o", "size=" + size, "tmpfs", Path }, expectSuccess: true);
        }

        public string Path { get; }

        public void Dispose()
        {
            for (int attempt = 0; ; attempt++)
            {
                var result = Qemu.Run("umount", new[] { Path }, expectSuccess: false);
                if (result.ExitCode == 0)
                {
                    break;
                }

                if (attempt == 20)
                {
                    Qemu.Run("umount", new[] { "-l", Path }, expectSuccess: true);
                    break;
                }

                GC.Collect();
                GC.WaitForPendingFinalizers();
                Thread.Sleep(100);
            }

            _dir.Dispose();
        }
    }
}
