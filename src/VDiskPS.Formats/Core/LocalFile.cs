using System;
using System.Buffers;
using System.IO;
using System.Reflection;
using System.Runtime.InteropServices;
using System.Threading;
using Microsoft.Win32.SafeHandles;

namespace VDiskPS.Formats
{
    /// <summary>
    /// A local host file with positional, thread-safe reads and writes. Uses RandomAccess (pread/pwrite)
    /// where the runtime has it and a locked seek+read otherwise. Implements the locking rule:
    /// a writer holds the file exclusively, readers share, a forced reader ignores writers; on
    /// Linux also against QEMU, through its lock bytes (<see cref="QemuLockBytes"/>).
    /// </summary>
    internal sealed class LocalFile : HostFile
    {
        private delegate int ReadAtFn(SafeFileHandle handle, Span<byte> buffer, long offset);

        private delegate void WriteAtFn(SafeFileHandle handle, ReadOnlySpan<byte> buffer, long offset);

        private static readonly ReadAtFn s_readAt = BindRandomAccess<ReadAtFn>("Read", typeof(Span<byte>));
        private static readonly WriteAtFn s_writeAt = BindRandomAccess<WriteAtFn>("Write", typeof(ReadOnlySpan<byte>));
        private static readonly bool s_isWindows = RuntimeInformation.IsOSPlatform(OSPlatform.Windows);
        private static readonly bool s_isLinux = RuntimeInformation.IsOSPlatform(OSPlatform.Linux);

        private readonly FileStream _stream;

        // Taken once: FileStream.SafeFileHandle re-seeks the descriptor on every access.
        private readonly SafeFileHandle _handle;
        private readonly object _gate = new object();
        private readonly bool _syncOnFlush;
        private Extent _lastExtent;
        private bool _sparseQueryBroken;

        // The length the file had when opened, as this handle's own writes and truncations moved it
        // since: a file found shorter than that was shrunk by someone else while it was being read.
        private long _knownLength;

        private LocalFile(string path, FileStream stream, bool writable, bool syncOnFlush = true)
            : base(path, writable)
        {
            _syncOnFlush = syncOnFlush;
            _stream = stream;
            _handle = stream.SafeFileHandle;
            _knownLength = stream.Length;
        }

        public override long Length
        {
            get
            {
                lock (_gate)
                {
                    return _stream.Length;
                }
            }
        }

        public static new LocalFile Open(string path, HostAccess access)
        {
            path = System.IO.Path.GetFullPath(path);
            try
            {
                switch (access)
                {
                    case HostAccess.ReadWrite:
                        // Windows: others may only read with FileShare.ReadWrite (forced readers).
                        // Unix: FileShare.None takes an exclusive flock that plain readers respect.
                        return Locked(path, new FileStream(path, FileMode.Open, FileAccess.ReadWrite, s_isWindows ? FileShare.Read : FileShare.None, 1, FileOptions.None), access);
                    case HostAccess.ReadIgnoringWriters:
                        if (!s_isWindows)
                        {
                            return Locked(path, OpenUnlockedUnix(path), access);
                        }

                        return Locked(path, new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete, 1, FileOptions.None), access);
                    default:
                        return Locked(path, new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.None), access);
                }
            }
            catch (FileNotFoundException e)
            {
                throw new ImageIOException(path, "file not found", e);
            }
            catch (DirectoryNotFoundException e)
            {
                throw new ImageIOException(path, "directory not found", e);
            }
            catch (UnauthorizedAccessException e)
            {
                throw new ImageIOException(path, access == HostAccess.ReadWrite ? "access denied (is the file read-only?)" : "access denied", e);
            }
            catch (IOException e) when (IsSharingViolation(e))
            {
                throw InUse(path, access, e);
            }
            catch (IOException e)
            {
                throw new ImageIOException(path, e.Message, e);
            }
        }

        /// <summary>
        /// Creates a new file (or truncates an existing one when <paramref name="overwrite"/>), exclusive.
        /// Without <paramref name="syncOnFlush"/>, flushes leave the data to the OS cache instead of
        /// waiting for the device (qemu-img convert's default cache mode, "unsafe").
        /// </summary>
        public static new LocalFile Create(string path, bool overwrite, bool syncOnFlush = true)
        {
            path = System.IO.Path.GetFullPath(path);
            try
            {
                // Outside Windows an existing file is truncated only once its lock bytes are ours,
                // so overwriting never empties a disk a VM holds.
                FileMode mode = !overwrite ? FileMode.CreateNew : s_isWindows ? FileMode.Create : FileMode.OpenOrCreate;
                var stream = new FileStream(path, mode, FileAccess.ReadWrite, s_isWindows ? FileShare.Read : FileShare.None, 1, FileOptions.None);
                LocalFile file = Locked(path, stream, HostAccess.ReadWrite, syncOnFlush);
                if (mode == FileMode.OpenOrCreate)
                {
                    file.SetLength(0);
                }

                return file;
            }
            catch (IOException e) when (!overwrite && File.Exists(path))
            {
                throw ImageIOException.OutputExists(path, e);
            }
            catch (UnauthorizedAccessException e)
            {
                throw new ImageIOException(path, "access denied", e);
            }
            catch (DirectoryNotFoundException e)
            {
                throw new ImageIOException(path, "directory not found", e);
            }
            catch (IOException e) when (IsSharingViolation(e))
            {
                throw InUse(path, HostAccess.ReadWrite, e);
            }
            catch (IOException e)
            {
                throw new ImageIOException(path, e.Message, e);
            }
        }

        /// <summary>Reads up to buffer.Length bytes at <paramref name="offset"/>; returns fewer only at end of file.</summary>
        public override int ReadAt(long offset, Span<byte> buffer)
        {
            int total = 0;
            try
            {
                while (total < buffer.Length)
                {
                    int n = ReadOnce(offset + total, buffer.Slice(total));
                    if (n <= 0)
                    {
                        break;
                    }

                    total += n;
                }
            }
            catch (IOException e)
            {
                throw new ImageReadException(Path, offset, buffer.Length, $"read of {buffer.Length} bytes failed: {e.Message}", e);
            }

            return total;
        }

        /// <summary>Throws when the file is now shorter than it was when opened (or last extended here) and <paramref name="offset"/> lies in the lost part.</summary>
        protected override void ThrowIfShrunk(long offset)
        {
            long known = Interlocked.Read(ref _knownLength);
            if (offset < known)
            {
                long now = Length;
                if (now < known && offset >= now)
                {
                    throw new ImageCorruptException(Path, "data", offset, $"the file now ends at {now} bytes but was {known} bytes long: it shrank while it was being read");
                }
            }
        }

        public override void WriteAt(long offset, ReadOnlySpan<byte> data)
        {
            if (!CanWrite)
            {
                throw new ImageIOException(Path, "the file is open read-only");
            }

            try
            {
                if (s_writeAt != null)
                {
                    s_writeAt(_handle, data, offset);
                    NoteWritten(offset + data.Length);
                    return;
                }

                byte[] rented = ArrayPool<byte>.Shared.Rent(Math.Min(data.Length, 1 << 20));
                try
                {
                    lock (_gate)
                    {
                        int done = 0;
                        while (done < data.Length)
                        {
                            int n = Math.Min(rented.Length, data.Length - done);
                            data.Slice(done, n).CopyTo(rented);
                            _stream.Seek(offset + done, SeekOrigin.Begin);
                            _stream.Write(rented, 0, n);
                            done += n;
                        }
                    }

                    NoteWritten(offset + data.Length);
                }
                finally
                {
                    ArrayPool<byte>.Shared.Return(rented);
                }
            }
            catch (IOException e)
            {
                throw new ImageIOException(Path, $"write of {data.Length} bytes at offset {offset} failed: {e.Message}", e);
            }
        }

        public override void SetLength(long length)
        {
            try
            {
                lock (_gate)
                {
                    _stream.SetLength(length);
                    Interlocked.Exchange(ref _knownLength, length);
                }
            }
            catch (IOException e)
            {
                throw new ImageIOException(Path, $"could not set the file length to {length}: {e.Message}", e);
            }
        }

        /// <summary>Flushes to the device when <paramref name="durable"/>, so later writes are ordered after it.</summary>
        public override void Flush(bool durable = true)
        {
            if (!CanWrite)
            {
                return;
            }

            try
            {
                lock (_gate)
                {
                    _stream.Flush(durable && _syncOnFlush);
                }
            }
            catch (IOException e)
            {
                throw new ImageIOException(Path, "flush failed: " + e.Message, e);
            }
        }

        /// <summary>posix_fallocate where the host has it; false where the host or file system cannot; throws when the space is not there.</summary>
        protected override bool TryFallocate(long offset, long length)
        {
            if (!s_isLinux)
            {
                return false;
            }

            int error;
            try
            {
                // posix_fallocate returns the error number (it does not set errno).
                error = NativeUnix.posix_fallocate((int)_handle.DangerousGetHandle(), offset, length);
            }
            catch (Exception e) when (e is DllNotFoundException || e is EntryPointNotFoundException)
            {
                return false;
            }

            switch (error)
            {
                case 0:
                    NoteWritten(offset + length);
                    return true;
                case NativeUnix.EOPNOTSUPP:
                case NativeUnix.EINVAL:
                case NativeUnix.ENODEV:
                case NativeUnix.ESPIPE:
                    return false;
                case NativeUnix.ENOSPC:
                case NativeUnix.EDQUOT:
                case NativeUnix.EFBIG:
                    throw new ImageIOException(Path, $"no space left on device: {length} bytes at offset {offset} could not be allocated (error {error})");
                default:
                    throw new ImageIOException(Path, $"allocating {length} bytes at offset {offset} failed (error {error})");
            }
        }

        /// <summary>
        /// Deallocates [offset, offset+length) without changing the file length, so the range reads as
        /// zeros and frees its blocks (Linux fallocate PUNCH_HOLE|KEEP_SIZE). Returns false where the
        /// host or file system cannot.
        /// </summary>
        public override bool PunchHole(long offset, long length)
        {
            if (!s_isLinux || !CanWrite)
            {
                return false;
            }

            try
            {
                int fd = (int)_handle.DangerousGetHandle();
                return NativeUnix.fallocate(fd, NativeUnix.FALLOC_FL_KEEP_SIZE | NativeUnix.FALLOC_FL_PUNCH_HOLE, offset, length) == 0;
            }
            catch (Exception e) when (e is DllNotFoundException || e is EntryPointNotFoundException)
            {
                return false;
            }
        }

        /// <summary>
        /// Where the host file's data and holes are: returns the kind at <paramref name="offset"/> and the
        /// length of the run of that kind (bounded by <paramref name="maxLength"/>), or null where the
        /// platform cannot tell (then callers treat everything as data and detect zeros).
        /// </summary>
        public override (bool IsData, long Length)? QueryAllocation(long offset, long maxLength)
        {
            if (!s_isLinux || _sparseQueryBroken)
            {
                return null;
            }

            // A read-only file does not change under us: answer from the last run found.
            Extent last = _lastExtent;
            if (last != null && offset >= last.Start && offset < last.End)
            {
                return (last.IsData, Math.Min(last.End - offset, maxLength));
            }

            try
            {
                int fd = (int)_handle.DangerousGetHandle();
                long data = NativeUnix.lseek(fd, offset, NativeUnix.SEEK_DATA);
                if (data < 0)
                {
                    // ENXIO: no data at or after offset (also past end of file): a hole to EOF.
                    if (Marshal.GetLastWin32Error() == NativeUnix.ENXIO)
                    {
                        // Also the answer past a new end of file: data the tables promised is not "a hole".
                        ThrowIfShrunk(offset);
                        return Remember(new Extent(offset, long.MaxValue, false), offset, maxLength);
                    }

                    _sparseQueryBroken = true;
                    return null;
                }

                if (data > offset)
                {
                    return Remember(new Extent(offset, data, false), offset, maxLength);
                }

                long hole = NativeUnix.lseek(fd, offset, NativeUnix.SEEK_HOLE);
                if (hole < 0)
                {
                    _sparseQueryBroken = true;
                    return null;
                }

                return Remember(new Extent(offset, hole, true), offset, maxLength);
            }
            catch (Exception e) when (e is DllNotFoundException || e is EntryPointNotFoundException)
            {
                _sparseQueryBroken = true;
                return null;
            }
        }

        public override void Dispose()
        {
            QemuLockBytes.Release(_handle);
            _stream.Dispose();
        }

        private void NoteWritten(long end)
        {
            long known = Interlocked.Read(ref _knownLength);
            while (end > known)
            {
                long seen = Interlocked.CompareExchange(ref _knownLength, end, known);
                if (seen == known)
                {
                    return;
                }

                known = seen;
            }
        }

        private (bool IsData, long Length) Remember(Extent extent, long offset, long maxLength)
        {
            if (!CanWrite)
            {
                _lastExtent = extent;
            }

            return (extent.IsData, Math.Min(extent.End - offset, maxLength));
        }

        private int ReadOnce(long offset, Span<byte> buffer)
        {
            if (s_readAt != null)
            {
                return s_readAt(_handle, buffer, offset);
            }

            byte[] rented = ArrayPool<byte>.Shared.Rent(Math.Min(buffer.Length, 1 << 20));
            try
            {
                int want = Math.Min(rented.Length, buffer.Length);
                int n;
                lock (_gate)
                {
                    _stream.Seek(offset, SeekOrigin.Begin);
                    n = _stream.Read(rented, 0, want);
                }

                rented.AsSpan(0, n).CopyTo(buffer);
                return n;
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(rented);
            }
        }

        /// <summary>Wraps an open stream once QEMU's lock bytes for <paramref name="access"/> are taken; closes it if they are not.</summary>
        private static LocalFile Locked(string path, FileStream stream, HostAccess access, bool syncOnFlush = true)
        {
            try
            {
                QemuLockBytes.Acquire(stream.SafeFileHandle, path, access);
            }
            catch
            {
                QemuLockBytes.Release(stream.SafeFileHandle);
                stream.Dispose();
                throw;
            }

            return new LocalFile(path, stream, access == HostAccess.ReadWrite, syncOnFlush);
        }

        /// <summary>
        /// The error for an open the OS refused as a sharing violation (another VDiskPS holds the file).
        /// On Linux the holder's lock bytes say who it is, so ask them through a lock-free descriptor.
        /// </summary>
        private static ImageLockedException InUse(string path, HostAccess access, IOException e)
        {
            if (s_isLinux)
            {
                try
                {
                    using (FileStream probe = OpenUnlockedUnix(path))
                    {
                        try
                        {
                            QemuLockBytes.Acquire(probe.SafeFileHandle, path, access);
                        }
                        finally
                        {
                            QemuLockBytes.Release(probe.SafeFileHandle);
                        }
                    }
                }
                catch (ImageLockedException named)
                {
                    return new ImageLockedException(path, named.Reason, named.WriterBlocksReading, e);
                }
                catch (Exception other) when (other is IOException || other is ImageException)
                {
                }
            }

            return access == HostAccess.ReadWrite
                ? new ImageLockedException(path, "the image is in use by another process; close it there first", false, e)
                : new ImageLockedException(path, "the image is being written by another process; its content may change while it is read", true, e);
        }

        private static bool IsSharingViolation(IOException e)
        {
            const int ERROR_SHARING_VIOLATION = unchecked((int)0x80070020);
            const int ERROR_LOCK_VIOLATION = unchecked((int)0x80070021);
            return e.HResult == ERROR_SHARING_VIOLATION || e.HResult == ERROR_LOCK_VIOLATION
                || e.HResult == 11 /* EWOULDBLOCK/EAGAIN on Unix */
                || e.Message.IndexOf("being used by another process", StringComparison.OrdinalIgnoreCase) >= 0;
        }

        private static FileStream OpenUnlockedUnix(string path)
        {
            // A plain open(2) takes no flock, so a writer's exclusive lock does not stop this reader.
            int fd = NativeUnix.open(path, NativeUnix.O_RDONLY | (s_isLinux ? NativeUnix.O_CLOEXEC : 0));
            if (fd < 0)
            {
                int errno = Marshal.GetLastWin32Error();
                if (errno == 2)
                {
                    throw new FileNotFoundException("file not found", path);
                }

                throw new IOException($"open failed (errno {errno})");
            }

            return new FileStream(new SafeFileHandle((IntPtr)fd, true), FileAccess.Read, 1);
        }

        private static T BindRandomAccess<T>(string name, Type bufferType)
            where T : Delegate
        {
            Type randomAccess = Type.GetType("System.IO.RandomAccess, System.Runtime", false)
                ?? typeof(File).Assembly.GetType("System.IO.RandomAccess", false);
            MethodInfo method = randomAccess?.GetMethod(name, BindingFlags.Public | BindingFlags.Static, null, new[] { typeof(SafeFileHandle), bufferType, typeof(long) }, null);
            return method == null ? null : (T)Delegate.CreateDelegate(typeof(T), method, false);
        }

        private sealed class Extent
        {
            public Extent(long start, long end, bool isData)
            {
                Start = start;
                End = end;
                IsData = isData;
            }

            public long Start { get; }

            public long End { get; }

            public bool IsData { get; }
        }

        /// <summary>
        /// Bytes the host file system allocates to the file (st_blocks * 512, what du and qemu-img's
        /// actual-size report; the compressed or sparse size on Windows); null where the platform does not tell.
        /// </summary>
        public static long? AllocatedBytes(string path)
        {
            try
            {
                if (s_isWindows)
                {
                    uint low = NativeWindows.GetCompressedFileSizeW(path, out uint high);
                    return low == uint.MaxValue && Marshal.GetLastWin32Error() != 0 ? (long?)null : ((long)high << 32) | low;
                }

                if (!s_isLinux)
                {
                    return null;
                }

                // struct stat of glibc on x86-64 and arm64 alike: st_blocks (512-byte units) at offset 64.
                var buffer = new byte[256];
                int result;
                try
                {
                    result = NativeUnix.stat(path, buffer);
                }
                catch (EntryPointNotFoundException)
                {
                    result = NativeUnix.__xstat(RuntimeInformation.ProcessArchitecture == Architecture.X64 ? 1 : 0, path, buffer);
                }

                return result == 0 ? BitConverter.ToInt64(buffer, 64) * 512 : (long?)null;
            }
            catch (Exception e) when (e is DllNotFoundException || e is EntryPointNotFoundException)
            {
                return null;
            }
        }

        private static class NativeWindows
        {
            [DllImport("kernel32", SetLastError = true, CharSet = CharSet.Unicode)]
            public static extern uint GetCompressedFileSizeW(string path, out uint high);
        }

        private static class NativeUnix
        {
            [DllImport("libc", SetLastError = true, CharSet = CharSet.Ansi)]
            public static extern int stat(string path, byte[] buffer);

            [DllImport("libc", SetLastError = true, CharSet = CharSet.Ansi)]
            public static extern int __xstat(int version, string path, byte[] buffer);

            public const int SEEK_DATA = 3;
            public const int SEEK_HOLE = 4;
            public const int ENXIO = 6;
            public const int ENODEV = 19;
            public const int EINVAL = 22;
            public const int EFBIG = 27;
            public const int ENOSPC = 28;
            public const int ESPIPE = 29;
            public const int EOPNOTSUPP = 95;
            public const int EDQUOT = 122;
            public const int O_RDONLY = 0;
            public const int O_CLOEXEC = 0x80000;

            [DllImport("libc", SetLastError = true)]
            public static extern long lseek(int fd, long offset, int whence);

            public const int FALLOC_FL_KEEP_SIZE = 1;
            public const int FALLOC_FL_PUNCH_HOLE = 2;

            [DllImport("libc", SetLastError = true)]
            public static extern int posix_fallocate(int fd, long offset, long len);

            [DllImport("libc", SetLastError = true)]
            public static extern int fallocate(int fd, int mode, long offset, long len);

            [DllImport("libc", SetLastError = true, CharSet = CharSet.Ansi)]
            public static extern int open(string path, int flags);
        }
    }
}
