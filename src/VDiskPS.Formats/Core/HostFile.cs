using System;
using System.Buffers;

namespace VDiskPS.Formats
{
    /// <summary>How an image file is opened on the host.</summary>
    public enum HostAccess
    {
        /// <summary>Read-only, shared with other readers; refused while a writer holds the file.</summary>
        Read,

        /// <summary>Read-only, even while a writer holds the file (qemu-img -U / -Force).</summary>
        ReadIgnoringWriters,

        /// <summary>Read and write, exclusive.</summary>
        ReadWrite,
    }

    /// <summary>
    /// The bytes beneath a format: a local file, an NBD export, an HTTP resource or a member of an
    /// archive. Positional and thread-safe. <see cref="Open"/> picks the transport from the location
    /// (<see cref="Transports"/>); everything else is a local file (<see cref="LocalFile"/>).
    /// </summary>
    public abstract class HostFile : IDisposable
    {
        protected HostFile(string path, bool canWrite)
        {
            Path = path;
            CanWrite = canWrite;
        }

        /// <summary>The full location: a rooted path, or a URL for remote sources.</summary>
        public string Path { get; }

        public bool CanWrite { get; }

        public abstract long Length { get; }

        /// <summary>
        /// The source can be read only front to back, once (an HTTP server that ignores range requests):
        /// only a format that reads front to back (<see cref="FormatDriver.ReadsFrontToBack"/>) opens it.
        /// </summary>
        public virtual bool IsSequential => false;

        /// <summary>The refusal of a format that must read this <see cref="IsSequential"/> source out of order.</summary>
        public virtual ImageException RandomAccessRefused()
            => new ImageNotSupportedException(Path, null, null, "the source can only be read front to back, and this image is not laid out to be read so");

        /// <summary>Opens the source at <paramref name="location"/> (a path or a URL a transport claims).</summary>
        public static HostFile Open(string location, HostAccess access)
            => Transports.Find(location)?.Open(location, access) ?? LocalFile.Open(location, access);

        /// <summary>
        /// Creates a new local file (or truncates an existing one when <paramref name="overwrite"/>), exclusive.
        /// Without <paramref name="syncOnFlush"/>, flushes leave the data to the OS cache instead of
        /// waiting for the device (qemu-img convert's default cache mode, "unsafe").
        /// A remote location cannot be created: it is written only where it exists.
        /// </summary>
        public static HostFile Create(string location, bool overwrite, bool syncOnFlush = true)
        {
            RefuseRemoteCreate(location);
            return LocalFile.Create(location, overwrite, syncOnFlush);
        }

        /// <summary>Throws for a remote location: it is written only where it exists, never created.</summary>
        internal static void RefuseRemoteCreate(string location)
        {
            IHostTransport transport = Transports.Find(location);
            if (transport != null)
            {
                throw new ImageNotSupportedException(location, "location", null, $"{transport.Name} locations cannot be created; they can only be written where they already exist");
            }
        }

        /// <summary>Reads up to buffer.Length bytes at <paramref name="offset"/>; returns fewer only at the end of the source.</summary>
        public abstract int ReadAt(long offset, Span<byte> buffer);

        public abstract void WriteAt(long offset, ReadOnlySpan<byte> data);

        public abstract void SetLength(long length);

        /// <summary>Flushes to stable storage when <paramref name="durable"/>, so later writes are ordered after it.</summary>
        public abstract void Flush(bool durable = true);

        /// <summary>
        /// Deallocates [offset, offset+length) without changing the length, so the range reads as
        /// zeros. Returns false where the source cannot.
        /// </summary>
        public virtual bool PunchHole(long offset, long length) => false;

        /// <summary>
        /// Punches the parts of [start, end) the file holds data for (all of it where the host cannot tell its
        /// holes); returns the bytes released, or -1 when the host cannot punch holes at all.
        /// </summary>
        public long PunchDataIn(long start, long end)
        {
            long punched = 0;
            long at = start;
            while (at < end)
            {
                var allocation = QueryAllocation(at, end - at);
                long length = allocation?.Length ?? end - at;
                if (length <= 0)
                {
                    break;
                }

                if (allocation == null || allocation.Value.IsData)
                {
                    if (!PunchHole(at, length))
                    {
                        return punched > 0 ? punched : -1;
                    }

                    punched += length;
                }

                at += length;
            }

            return punched;
        }

        /// <summary>
        /// Where the source's data and holes are: returns the kind at <paramref name="offset"/> and the
        /// length of the run of that kind (bounded by <paramref name="maxLength"/>), or null where the
        /// source cannot tell (then callers treat everything as data and detect zeros).
        /// </summary>
        public virtual (bool IsData, long Length)? QueryAllocation(long offset, long maxLength) => null;

        public abstract void Dispose();

        /// <summary>Throws when the source is now shorter than it was and <paramref name="offset"/> lies in the lost part.</summary>
        protected virtual void ThrowIfShrunk(long offset)
        {
        }

        /// <summary>Reserves [offset, offset+length) where the source can; false where it cannot; throws when the space is not there.</summary>
        protected virtual bool TryFallocate(long offset, long length) => false;

        /// <summary>Reads exactly buffer.Length bytes; a short read is a truncated image, named by <paramref name="field"/>.</summary>
        public void ReadExactly(long offset, Span<byte> buffer, string field)
        {
            if (offset < 0)
            {
                throw new ImageCorruptException(Path, field, offset, "negative offset");
            }

            int n = ReadAt(offset, buffer);
            if (n != buffer.Length)
            {
                throw new ImageCorruptException(Path, field, offset, $"the file ends at {Length} bytes, inside this structure ({buffer.Length} bytes needed)");
            }
        }

        /// <summary>
        /// Reads image data like <see cref="ReadAt"/> and zero-fills what lies past the end of the file
        /// (as qemu's file driver does), but a read cut short where the file used to have bytes means
        /// the file shrank under the read: that is an <see cref="ImageCorruptException"/> naming the
        /// offset, never zeros in place of data.
        /// </summary>
        public void ReadZeroPadded(long offset, Span<byte> buffer)
        {
            int n = ReadAt(offset, buffer);
            if (n < buffer.Length)
            {
                ThrowIfShrunk(offset + n);
                buffer.Slice(n).Clear();
            }
        }

        /// <summary>Writes <paramref name="length"/> zero bytes at <paramref name="offset"/> (real blocks, not a hole).</summary>
        public virtual void WriteZeros(long offset, long length)
        {
            byte[] zeros = ArrayPool<byte>.Shared.Rent((int)Math.Min(Math.Max(length, 1), 1 << 20));
            try
            {
                Array.Clear(zeros, 0, zeros.Length);
                while (length > 0)
                {
                    int n = (int)Math.Min(length, zeros.Length);
                    WriteAt(offset, zeros.AsSpan(0, n));
                    offset += n;
                    length -= n;
                }
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(zeros);
            }
        }

        /// <summary>
        /// Gives [offset, offset+length) the blocks <paramref name="mode"/> promises and extends the file
        /// to cover it (qemu's preallocation modes):
        /// Full writes zeros, so the blocks are real on every host (fallocate first on Linux, which
        /// fails fast when the space is not there);
        /// Falloc reserves the blocks with posix_fallocate on Linux; where the host has no fallocate
        /// (macOS) or the file system cannot, it only extends the file, which on Windows allocates the
        /// clusters of a (non-sparse NTFS) file and elsewhere may leave it sparse;
        /// Off and Metadata only extend the file (sparse where the file system allows).
        /// Too little space is an <see cref="ImageIOException"/>; the file keeps its old length then.
        /// </summary>
        public void Preallocate(long offset, long length, Preallocation mode)
        {
            long oldLength = Length;
            try
            {
                if (length > 0 && (mode == Preallocation.Full || mode == Preallocation.Falloc))
                {
                    TryFallocate(offset, length);
                }

                if (oldLength < offset + length)
                {
                    SetLength(offset + length);
                }

                if (mode == Preallocation.Full)
                {
                    WriteZeros(offset, length);
                }
            }
            catch (ImageIOException)
            {
                if (Length > oldLength)
                {
                    try
                    {
                        SetLength(oldLength);
                    }
                    catch (ImageIOException)
                    {
                        // The error being reported matters more than the length the file is left with.
                    }
                }

                throw;
            }
        }

    }
}
