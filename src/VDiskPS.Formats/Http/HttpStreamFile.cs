using System;
using System.IO;
using System.Net.Http;
using System.Threading;

namespace VDiskPS.Formats.Http
{
    /// <summary>
    /// An HTTP resource from a server that ignores range requests, as a forward-only
    /// <see cref="HostFile"/>: the body of the one whole-file answer, read in order. The last
    /// <see cref="WindowBytes"/> bytes read stay in a window, so readers working a little out of order
    /// (the copy's parallel workers, a header read again) still find them; a read further ahead reads
    /// forward, keeping what passes in the window. A read behind the window is refused, never fetched
    /// again: the server sends the file only whole. A failure mid-body cannot be resumed without ranges.
    /// </summary>
    internal sealed class HttpStreamFile : HttpFile
    {
        /// <summary>The most bytes kept behind the stream's position (32 MiB).</summary>
        internal const int WindowBytes = 32 << 20;

        /// <summary>One read of the body, at most: a read of the window's half is answered whole before what it needs leaves the window.</summary>
        private const int BodyReadBytes = 1 << 20;

        // How long one read of the body may wait for the server.
        private static readonly TimeSpan ReadTimeout = TimeSpan.FromSeconds(100);

        private readonly Stream _body;
        private readonly long _length;
        private readonly object _gate = new object();
        private byte[] _window;
        private long _position;

        private HttpStreamFile(string location, HttpRangeReader reader)
            : base(location, reader)
        {
            _body = reader.WholeBody;
            _length = reader.Length;
        }

        public override long Length => _length;

        public override bool IsSequential => true;

        /// <summary>How many bytes the window holds now (never more than <see cref="WindowBytes"/>).</summary>
        internal int WindowLength => _window?.Length ?? 0;

        /// <summary>How far the body has been read.</summary>
        internal long StreamPosition
        {
            get
            {
                lock (_gate)
                {
                    return _position;
                }
            }
        }

        /// <summary>The bytes before this offset are gone: read past and out of the window.</summary>
        private long WindowStart => Math.Max(0, _position - (_window?.Length ?? 0));

        /// <summary>A stream over the open whole-file answer of <paramref name="reader"/>, which it then owns.</summary>
        public static HttpStreamFile Open(string location, HttpRangeReader reader) => new HttpStreamFile(location, reader);

        public override ImageException RandomAccessRefused() => HttpRangeReader.RangesIgnored(Path);

        public override int ReadAt(long offset, Span<byte> buffer)
        {
            if (offset < 0)
            {
                throw new ImageIOException(Path, $"read at negative offset {offset}");
            }

            if (offset >= _length || buffer.Length == 0)
            {
                return 0;
            }

            int count = (int)Math.Min(buffer.Length, _length - offset);
            lock (_gate)
            {
                // The window is as large as the file where that is less than its bound.
                _window ??= new byte[(int)Math.Min(_length, WindowBytes)];
                int piece = Math.Max(1, _window.Length / 2);
                for (int done = 0; done < count; done += piece)
                {
                    int n = Math.Min(piece, count - done);
                    ReadPiece(offset + done, buffer.Slice(done, n));
                }
            }

            return count;
        }

        /// <summary>One piece, at most half the window: read forward to its end, then copied out of the window. Under <see cref="_gate"/>.</summary>
        private void ReadPiece(long offset, Span<byte> target)
        {
            if (offset < WindowStart)
            {
                throw new ImageNotSupportedException(Path, "Range", offset,
                    $"the read at offset {offset} lies behind what is kept of the stream (bytes {WindowStart} to {_position}): the server ignores range requests, so the file is read once front to back, and this image is not laid out to be read front to back");
            }

            while (_position < offset + target.Length)
            {
                Fill();
            }

            int at = (int)(offset % _window.Length);
            int first = Math.Min(target.Length, _window.Length - at);
            _window.AsSpan(at, first).CopyTo(target);
            _window.AsSpan(0, target.Length - first).CopyTo(target.Slice(first));
        }

        /// <summary>Reads the next part of the body into the window, over its oldest bytes.</summary>
        private void Fill()
        {
            int at = (int)(_position % _window.Length);
            int n = (int)Math.Min(Math.Min(BodyReadBytes, _window.Length - at), _length - _position);
            int read;
            using (var timeout = CancellationTokenSource.CreateLinkedTokenSource(Disposed.Token))
            {
                timeout.CancelAfter(ReadTimeout);
                try
                {
                    read = _body.ReadAsync(_window, at, n, timeout.Token).GetAwaiter().GetResult();
                }
                catch (OperationCanceledException e) when (Disposed.IsCancellationRequested)
                {
                    throw ClosedWhileWaiting(e);
                }
                catch (OperationCanceledException e)
                {
                    throw CutShort($"the server sent nothing for {ReadTimeout.TotalSeconds:0} seconds", e);
                }
                catch (Exception e) when (e is IOException || e is HttpRequestException || e is ObjectDisposedException)
                {
                    throw CutShort(e.Message, e);
                }
            }

            if (read == 0)
            {
                throw CutShort($"the body ended before the {_length} bytes its Content-Length promised", null);
            }

            _position += read;
        }

        private ImageRemoteException CutShort(string why, Exception inner)
            => new ImageRemoteException(Path, RemoteFailure.Failed, 200, $"the stream of the whole file failed at offset {_position} ({why}); the server ignores range requests, so the read cannot be resumed there", inner);
    }
}
