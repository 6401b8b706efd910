using System;

namespace VDiskPS.Formats.Ova
{
    /// <summary>
    /// The byte source a disk of a package is written to: a window of the output file that starts at
    /// <c>start</c> and grows as the format appends, hashing every byte as it is written (bytes never
    /// written are zeros), so the manifest digest needs no second pass. Writes must come front to back,
    /// as the streamOptimized VMDK writer makes them.
    /// </summary>
    internal sealed class MemberOutputFile : HostFile
    {
        private readonly HostFile _output;
        private readonly long _start;
        private readonly MemberDigest _digest;
        private readonly object _gate = new object();
        private long _length;

        public MemberOutputFile(HostFile output, long start, string path, string algorithm)
            : base(path, true)
        {
            _output = output;
            _start = start;
            _digest = new MemberDigest(algorithm, path);
        }

        public override long Length
        {
            get
            {
                lock (_gate)
                {
                    return _length;
                }
            }
        }

        public override int ReadAt(long offset, Span<byte> buffer)
        {
            long length = Length;
            if (offset >= length)
            {
                return 0;
            }

            return _output.ReadAt(_start + offset, buffer.Slice(0, (int)Math.Min(buffer.Length, length - offset)));
        }

        public override void WriteAt(long offset, ReadOnlySpan<byte> data)
        {
            lock (_gate)
            {
                _digest.ObserveWrite(offset, data);
                _output.WriteAt(_start + offset, data);
                _length = Math.Max(_length, offset + data.Length);
            }
        }

        public override void SetLength(long length)
        {
            lock (_gate)
            {
                if (length < _digest.Hashed)
                {
                    throw new ImageNotSupportedException(Path, null, length, $"an archive member only grows; it cannot be cut to {length} bytes after {_digest.Hashed} were written");
                }

                if (_output.Length < _start + length)
                {
                    _output.SetLength(_start + length);
                }

                _length = length;
            }
        }

        public override void Flush(bool durable = true) => _output.Flush(durable);

        /// <summary>The member's final length and the digest of its bytes (lowercase hex).</summary>
        public (long Length, string Digest) Finish()
        {
            lock (_gate)
            {
                string digest = _digest.Finish(_length, null);
                _digest.Dispose();
                return (_length, digest);
            }
        }

        /// <summary>The output file stays open (it belongs to the package writer), and so does the digest until <see cref="Finish"/>.</summary>
        public override void Dispose()
        {
        }
    }
}
