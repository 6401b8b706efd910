using System;

namespace VDiskPS.Formats.Ova
{
    /// <summary>
    /// A read-only window [start, start+length) of another byte source: a member of a tar archive, or
    /// a whole file beside a descriptor, opened beneath any format. With a <see cref="MemberDigest"/>
    /// it hashes what is read, front to back, for the manifest check.
    /// </summary>
    internal sealed class WindowFile : HostFile
    {
        private readonly HostFile _inner;
        private readonly long _start;
        private readonly long _length;
        private readonly bool _ownsInner;

        public WindowFile(HostFile inner, long start, long length, string path, bool ownsInner)
            : base(path, false)
        {
            if (start < 0 || length < 0 || start > inner.Length - length)
            {
                throw new ImageCorruptException(inner.Path, "archive member", start, $"the member ({length} bytes at {start}) lies outside the {inner.Length}-byte file");
            }

            _inner = inner;
            _start = start;
            _length = length;
            _ownsInner = ownsInner;
        }

        public override long Length => _length;

        /// <summary>Hashes what is read, when set.</summary>
        public MemberDigest Digest { get; set; }

        public override int ReadAt(long offset, Span<byte> buffer)
        {
            int n = ReadRaw(offset, buffer);
            Digest?.Observe(offset, buffer.Slice(0, n), ReadGap);
            return n;
        }

        /// <summary>Finishes the digest: hashes what the reads left and returns the hex digest.</summary>
        public string FinishDigest() => Digest.Finish(_length, ReadGap);

        public override void WriteAt(long offset, ReadOnlySpan<byte> data) => throw ReadOnly();

        public override void SetLength(long length) => throw ReadOnly();

        public override void Flush(bool durable = true)
        {
        }

        public override (bool IsData, long Length)? QueryAllocation(long offset, long maxLength)
            => offset >= _length ? null : _inner.QueryAllocation(_start + offset, Math.Min(maxLength, _length - offset));

        public override void Dispose()
        {
            Digest?.Dispose();
            if (_ownsInner)
            {
                _inner.Dispose();
            }
        }

        private int ReadRaw(long offset, Span<byte> buffer)
        {
            if (offset < 0)
            {
                throw new ImageCorruptException(Path, null, offset, "negative offset");
            }

            if (offset >= _length)
            {
                return 0;
            }

            int want = (int)Math.Min(buffer.Length, _length - offset);
            int done = 0;
            while (done < want)
            {
                int n = _inner.ReadAt(_start + offset + done, buffer.Slice(done, want - done));
                if (n <= 0)
                {
                    throw new ImageCorruptException(_inner.Path, "archive member", _start + offset + done, $"the file ends inside the member {Path}");
                }

                done += n;
            }

            return done;
        }

        private int ReadGap(long offset, byte[] buffer, int count) => ReadRaw(offset, buffer.AsSpan(0, count));

        private ImageIOException ReadOnly() => new ImageIOException(Path, "a member of an archive is read-only");
    }
}
