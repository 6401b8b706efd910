using System;
using System.Buffers;
using System.Collections.Generic;
using System.Linq;
using System.Security.Cryptography;

namespace VDiskPS.Formats.Ova
{
    /// <summary>
    /// A digest of a member's bytes taken front to back as they pass, so that the member need not be
    /// read a second time to check it against the manifest. Bytes are hashed once, in order: a pass
    /// behind what was hashed adds nothing; a pass just ahead (within <see cref="SmallGap"/>: markers
    /// and tables a reader skips) first hashes the gap, read from the source; a pass further ahead
    /// (parallel readers finish out of order) is kept, up to <see cref="PendingLimit"/> bytes, until the
    /// front reaches it; beyond that it waits for <see cref="Finish"/>, which reads what is left.
    /// </summary>
    internal sealed class MemberDigest : IDisposable
    {
        /// <summary>A gap this small before a read is read from the source and hashed at once.</summary>
        public const long SmallGap = 64L << 10;

        /// <summary>How many bytes of reads ahead of the front are kept for hashing later.</summary>
        public const long PendingLimit = 64L << 20;

        private readonly IncrementalHash _hash;
        private readonly string _path;
        private readonly object _gate = new object();
        private readonly SortedDictionary<long, byte[]> _pending = new SortedDictionary<long, byte[]>();
        private long _pendingBytes;
        private long _hashed;

        public MemberDigest(string algorithm, string path)
        {
            Algorithm = algorithm;
            _path = path;
            _hash = IncrementalHash.CreateHash(algorithm == "SHA1" ? HashAlgorithmName.SHA1 : algorithm == "SHA512" ? HashAlgorithmName.SHA512 : HashAlgorithmName.SHA256);
        }

        /// <summary>"SHA1", "SHA256" or "SHA512", as the manifest names it.</summary>
        public string Algorithm { get; }

        /// <summary>How many leading bytes are hashed.</summary>
        public long Hashed
        {
            get
            {
                lock (_gate)
                {
                    return _hashed;
                }
            }
        }

        /// <summary>
        /// Takes bytes read at <paramref name="offset"/>; <paramref name="readGap"/> reads source bytes the
        /// digest needs before them.
        /// </summary>
        public void Observe(long offset, ReadOnlySpan<byte> data, Func<long, byte[], int, int> readGap)
        {
            lock (_gate)
            {
                long end = offset + data.Length;
                if (end <= _hashed)
                {
                    return;
                }

                if (offset > _hashed + SmallGap)
                {
                    if (_pendingBytes + data.Length <= PendingLimit && !_pending.ContainsKey(offset))
                    {
                        _pending.Add(offset, data.ToArray());
                        _pendingBytes += data.Length;
                    }

                    return;
                }

                HashFromSource(offset, readGap);
                Append(data.Slice((int)(_hashed - offset)));
                Drain(readGap);
            }
        }

        /// <summary>Takes bytes written at <paramref name="offset"/>, which must not lie behind the hashed front; the gap before them is zeros.</summary>
        public void ObserveWrite(long offset, ReadOnlySpan<byte> data)
        {
            lock (_gate)
            {
                if (offset < _hashed)
                {
                    throw new ImageNotSupportedException(_path, null, offset, $"an archive member is written front to back; a write at {offset}, behind the {_hashed} bytes already written, cannot be taken");
                }

                AppendZeros(offset - _hashed);
                Append(data);
            }
        }

        /// <summary>Hashes what is left up to <paramref name="length"/> (read from the source, or zeros when <paramref name="readGap"/> is null) and returns the digest as lowercase hex.</summary>
        public string Finish(long length, Func<long, byte[], int, int> readGap)
        {
            lock (_gate)
            {
                if (readGap == null)
                {
                    AppendZeros(length - _hashed);
                }
                else
                {
                    Drain(readGap);
                    HashFromSource(length, readGap);
                }

                _pending.Clear();
                _pendingBytes = 0;

                byte[] digest = _hash.GetHashAndReset();
                _hashed = 0;
                var hex = new System.Text.StringBuilder(digest.Length * 2);
                foreach (byte b in digest)
                {
                    hex.Append(b.ToString("x2", System.Globalization.CultureInfo.InvariantCulture));
                }

                return hex.ToString();
            }
        }

        public void Dispose() => _hash.Dispose();

        /// <summary>Hashes the kept reads the front has reached (or nearly reached), in order.</summary>
        private void Drain(Func<long, byte[], int, int> readGap)
        {
            while (_pending.Count > 0)
            {
                var first = _pending.First();
                if (first.Key > _hashed + SmallGap)
                {
                    return;
                }

                _pending.Remove(first.Key);
                _pendingBytes -= first.Value.Length;
                long end = first.Key + first.Value.Length;
                if (end <= _hashed)
                {
                    continue;
                }

                HashFromSource(first.Key, readGap);
                Append(first.Value.AsSpan((int)(_hashed - first.Key)));
            }
        }

        private void HashFromSource(long until, Func<long, byte[], int, int> readGap)
        {
            byte[] buffer = ArrayPool<byte>.Shared.Rent(1 << 20);
            try
            {
                while (_hashed < until)
                {
                    int want = (int)Math.Min(buffer.Length, until - _hashed);
                    int n = readGap(_hashed, buffer, want);
                    if (n <= 0)
                    {
                        throw new ImageCorruptException(_path, "archive member", _hashed, "the member ends before the length its header gives");
                    }

                    _hash.AppendData(buffer, 0, n);
                    _hashed += n;
                }
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(buffer);
            }
        }

        private void Append(ReadOnlySpan<byte> data)
        {
            byte[] buffer = ArrayPool<byte>.Shared.Rent(Math.Min(data.Length, 1 << 20));
            try
            {
                while (data.Length > 0)
                {
                    int n = Math.Min(buffer.Length, data.Length);
                    data.Slice(0, n).CopyTo(buffer);
                    _hash.AppendData(buffer, 0, n);
                    _hashed += n;
                    data = data.Slice(n);
                }
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(buffer);
            }
        }

        private void AppendZeros(long count)
        {
            if (count <= 0)
            {
                return;
            }

            byte[] zeros = new byte[(int)Math.Min(count, 1 << 20)];
            while (count > 0)
            {
                int n = (int)Math.Min(zeros.Length, count);
                _hash.AppendData(zeros, 0, n);
                _hashed += n;
                count -= n;
            }
        }
    }
}
