using System;
using System.Threading;

namespace VDiskPS.Formats.Http
{
    /// <summary>
    /// What every HTTP source has: the one resource's range reader, read-only, nothing to flush, and a
    /// cancellation that ends the reads still waiting when it is closed.
    /// </summary>
    internal abstract class HttpFile : HostFile
    {
        protected HttpFile(string location, HttpRangeReader reader)
            : base(location, canWrite: false)
        {
            Reader = reader;
        }

        protected HttpRangeReader Reader { get; }

        /// <summary>Cancelled on <see cref="Dispose"/>: reads still waiting for the server end.</summary>
        protected CancellationTokenSource Disposed { get; } = new CancellationTokenSource();

        public override void WriteAt(long offset, ReadOnlySpan<byte> data) => throw HttpTransport.ReadOnly(Path);

        public override void SetLength(long length) => throw HttpTransport.ReadOnly(Path);

        /// <summary>Nothing is ever written, so there is nothing to flush.</summary>
        public override void Flush(bool durable = true)
        {
        }

        /// <summary>The error of a read that was waiting for the server when the source was closed.</summary>
        protected ImageIOException ClosedWhileWaiting(Exception inner)
            => new ImageIOException(Path, "the HTTP source was closed while a read was waiting for it", inner);

        public override void Dispose()
        {
            Disposed.Cancel();
            Reader.Dispose();
        }
    }
}
