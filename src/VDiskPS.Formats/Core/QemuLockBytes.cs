using System;
using System.Diagnostics;
using System.IO;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace VDiskPS.Formats
{
    /// <summary>
    /// QEMU's image locking (block/file-posix.c, raw_apply_lock_bytes / raw_check_lock_bytes), so
    /// that QEMU and VDiskPS respect each other's opens. Each QEMU permission (block-common.h
    /// BLK_PERM_*: bit 0 consistent read, 1 write, 2 write unchanged, 3 resize) has two bytes in the
    /// file: a shared open-file-description lock on byte 100+bit says "I hold it", on byte 200+bit
    /// "I do not let others hold it". An opener first takes its bytes, then tests with F_OFD_GETLK
    /// whether anyone else holds the "refuse" byte of a permission it holds, or the "hold" byte of a
    /// permission it refuses. Linux on x86-64 and arm64 only; elsewhere a no-op.
    /// </summary>
    internal static class QemuLockBytes
    {
        private const int PermissionBase = 100;
        private const int SharedBase = 200;
        private const int PermissionCount = 4;

        private static readonly string[] s_permissionNames = { "consistent read", "write", "write unchanged", "resize" };

        // struct flock has the same layout on x86-64 and arm64 Linux; other hosts have no OFD locks.
        private static bool s_supported = RuntimeInformation.IsOSPlatform(OSPlatform.Linux)
            && (RuntimeInformation.ProcessArchitecture == Architecture.X64 || RuntimeInformation.ProcessArchitecture == Architecture.Arm64);

        [Flags]
        private enum Permission
        {
            None = 0,
            ConsistentRead = 1 << 0,
            Write = 1 << 1,
            Resize = 1 << 3,
        }

        /// <summary>
        /// Takes and tests the lock bytes QEMU would for <paramref name="access"/>; throws
        /// <see cref="ImageLockedException"/> when another opener conflicts. The caller closes the
        /// file on failure, which drops whatever bytes were taken.
        /// </summary>
        public static void Acquire(SafeFileHandle handle, string path, HostAccess access)
        {
            if (!s_supported)
            {
                return;
            }

            // As qemu-io/qemu-img on a qcow2 file: a writer holds consistent read, write and resize;
            // a reader holds consistent read; both refuse others write and resize. A forced reader
            // (qemu-img -U) refuses nothing.
            Permission held = access == HostAccess.ReadWrite
                ? Permission.ConsistentRead | Permission.Write | Permission.Resize
                : Permission.ConsistentRead;
            Permission refused = access == HostAccess.ReadIgnoringWriters ? Permission.None : Permission.Write | Permission.Resize;
            int fd = (int)handle.DangerousGetHandle();

            // Take before testing, as QEMU does: of two openers racing, at least one sees the other.
            for (int bit = 0; bit < PermissionCount; bit++)
            {
                if (((int)held & (1 << bit)) != 0 && !Take(fd, path, PermissionBase + bit))
                {
                    return;
                }

                if (((int)refused & (1 << bit)) != 0 && !Take(fd, path, SharedBase + bit))
                {
                    return;
                }
            }

            // Others must not refuse what we hold, nor hold what we refuse.
            Check(fd, path, access, held, SharedBase, "does not let others hold the \"{0}\" permission on it");
            Check(fd, path, access, refused, PermissionBase, "holds the \"{0}\" permission on it");
        }

        /// <summary>
        /// Drops this file's lock bytes before it is closed. A child process between fork and exec
        /// shares the open file description, so closing alone could leave the locks held a moment.
        /// </summary>
        public static void Release(SafeFileHandle handle)
        {
            if (!s_supported || handle.IsClosed || handle.IsInvalid)
            {
                return;
            }

            var request = new Flock { Type = Native.F_UNLCK, Whence = 0, Start = PermissionBase, Length = SharedBase + PermissionCount - PermissionBase };
            Native.fcntl((int)handle.DangerousGetHandle(), Native.F_OFD_SETLK, ref request);
        }

        /// <summary>Throws if another open file holds byte <paramref name="lockBase"/>+bit for a permission in <paramref name="permissions"/>.</summary>
        private static void Check(int fd, string path, HostAccess access, Permission permissions, int lockBase, string what)
        {
            for (int bit = 0; bit < PermissionCount; bit++)
            {
                if (((int)permissions & (1 << bit)) == 0)
                {
                    continue;
                }

                int? holder = Test(fd, path, lockBase + bit);
                if (holder.HasValue)
                {
                    throw Conflict(path, access, fd, lockBase + bit, holder.Value, string.Format(what, s_permissionNames[bit]), bit);
                }
            }
        }

        private static ImageLockedException Conflict(string path, HostAccess access, int fd, int lockByte, int pid, string what, int bit)
        {
            string holder = DescribeHolder(fd, lockByte, pid);
            string subject = holder ?? "another process (for example a running VM or qemu-io)";
            string qemuWords = lockByte >= SharedBase
                ? $"QEMU: Failed to get \"{s_permissionNames[bit]}\" lock"
                : $"QEMU: Failed to get shared \"{s_permissionNames[bit]}\" lock";
            bool writerBlocksReading = access != HostAccess.ReadWrite && lockByte < SharedBase;
            string advice = writerBlocksReading
                ? "its content may change while it is read"
                : "close the image there (shut the VM down) first";
            return new ImageLockedException(path, $"the image is in use: {subject} {what} ({qemuWords}, lock byte {lockByte}); {advice}", writerBlocksReading);
        }

        /// <summary>Takes a shared lock on one byte; false when this file system or kernel has no such locks.</summary>
        private static bool Take(int fd, string path, int lockByte)
        {
            var request = new Flock { Type = Native.F_RDLCK, Whence = 0, Start = lockByte, Length = 1 };
            if (Native.fcntl(fd, Native.F_OFD_SETLK, ref request) == 0)
            {
                return true;
            }

            int errno = Marshal.GetLastWin32Error();
            if (errno == Native.EAGAIN || errno == Native.EACCES)
            {
                // Someone holds this byte exclusively; QEMU never does, so name whoever does.
                throw new ImageLockedException(path, $"the image is in use: {DescribeHolder(fd, lockByte, -1) ?? "another process"} holds an exclusive lock on byte {lockByte}; close the image there first");
            }

            return Unsupported(errno, path);
        }

        /// <summary>Whether another open file holds a lock on the byte: null if not, else its pid (-1 for OFD locks).</summary>
        private static int? Test(int fd, string path, int lockByte)
        {
            var probe = new Flock { Type = Native.F_WRLCK, Whence = 0, Start = lockByte, Length = 1 };
            if (Native.fcntl(fd, Native.F_OFD_GETLK, ref probe) != 0)
            {
                Unsupported(Marshal.GetLastWin32Error(), path);
                return null;
            }

            return probe.Type == Native.F_UNLCK ? (int?)null : probe.Pid;
        }

        /// <summary>
        /// Kernels without OFD locks (EINVAL; QEMU then skips locking too) and file systems without
        /// byte-range locks (where no QEMU can lock either) leave nothing to respect: return false.
        /// Anything else is an I/O error.
        /// </summary>
        private static bool Unsupported(int errno, string path)
        {
            if (errno == Native.EINVAL)
            {
                s_supported = false;
                return false;
            }

            if (errno == Native.ENOLCK || errno == Native.EOPNOTSUPP)
            {
                return false;
            }

            throw new ImageIOException(path, $"could not lock the image (errno {errno})");
        }

        /// <summary>
        /// "process 1234 (qemu-io)" for whoever holds <paramref name="lockByte"/>, or null. A classic
        /// POSIX lock reports its pid; an OFD lock does not, so look for it among the fdinfo of the
        /// processes this user may see, keyed by the device and inode /proc shows for our own locks.
        /// </summary>
        private static string DescribeHolder(int fd, int lockByte, int pid)
        {
            try
            {
                if (pid > 0)
                {
                    return Name(pid);
                }

                int self = Process.GetCurrentProcess().Id;
                string key = null;
                foreach (string line in File.ReadAllLines($"/proc/self/fdinfo/{fd}"))
                {
                    string[] lockFields = LockFields(line);
                    if (lockFields != null)
                    {
                        key = lockFields[0];
                        break;
                    }
                }

                if (key == null)
                {
                    return null;
                }

                foreach (string processDir in Directory.EnumerateDirectories("/proc"))
                {
                    if (!int.TryParse(System.IO.Path.GetFileName(processDir), out int candidate))
                    {
                        continue;
                    }

                    string[] fdInfos;
                    try
                    {
                        fdInfos = Directory.GetFiles(System.IO.Path.Combine(processDir, "fdinfo"));
                    }
                    catch (Exception e) when (e is IOException || e is UnauthorizedAccessException)
                    {
                        continue;
                    }

                    foreach (string fdInfo in fdInfos)
                    {
                        if (candidate == self && System.IO.Path.GetFileName(fdInfo) == fd.ToString())
                        {
                            continue;
                        }

                        if (HoldsByte(fdInfo, key, lockByte))
                        {
                            return Name(candidate);
                        }
                    }
                }
            }
            catch (Exception e) when (e is IOException || e is UnauthorizedAccessException)
            {
            }

            return null;
        }

        private static bool HoldsByte(string fdInfo, string key, int lockByte)
        {
            try
            {
                foreach (string line in File.ReadAllLines(fdInfo))
                {
                    string[] fields = LockFields(line);
                    if (fields != null && fields[3] != "FLOCK" && fields[0] == key
                        && long.TryParse(fields[1], out long start) && start <= lockByte
                        && (fields[2] == "EOF" || (long.TryParse(fields[2], out long end) && end >= lockByte)))
                    {
                        return true;
                    }
                }
            }
            catch (Exception e) when (e is IOException || e is UnauthorizedAccessException)
            {
            }

            return false;
        }

        /// <summary>From "lock:\t1: OFDLCK ADVISORY READ -1 fe:00:1234 100 101": the device:inode, first and last byte, lock kind.</summary>
        private static string[] LockFields(string line)
        {
            if (!line.StartsWith("lock:", StringComparison.Ordinal) || line.IndexOf("->", StringComparison.Ordinal) >= 0)
            {
                return null;
            }

            string[] fields = line.Split(new[] { ' ', '\t' }, StringSplitOptions.RemoveEmptyEntries);
            return fields.Length >= 9 ? new[] { fields[6], fields[7], fields[8], fields[2] } : null;
        }

        private static string Name(int pid)
        {
            string comm = null;
            try
            {
                comm = File.ReadAllText($"/proc/{pid}/comm").Trim();
            }
            catch (Exception e) when (e is IOException || e is UnauthorizedAccessException)
            {
            }

            return string.IsNullOrEmpty(comm) ? $"process {pid}" : $"process {pid} ({comm})";
        }

        // struct flock of x86-64 and arm64 Linux: short l_type, short l_whence, off_t l_start, off_t l_len, pid_t l_pid.
        [StructLayout(LayoutKind.Sequential)]
        private struct Flock
        {
            public short Type;
            public short Whence;
            public long Start;
            public long Length;
            public int Pid;
        }

        private static class Native
        {
            public const int F_OFD_GETLK = 36;
            public const int F_OFD_SETLK = 37;
            public const short F_RDLCK = 0;
            public const short F_WRLCK = 1;
            public const short F_UNLCK = 2;
            public const int EAGAIN = 11;
            public const int EACCES = 13;
            public const int EINVAL = 22;
            public const int ENOLCK = 37;
            public const int EOPNOTSUPP = 95;

            [DllImport("libc", SetLastError = true)]
            public static extern int fcntl(int fd, int cmd, ref Flock lockRequest);
        }
    }
}
