using System;
using System.Collections.Generic;
using System.Reflection;
using System.Threading;

namespace VDiskPS.Formats.Nbd
{
    /// <summary>What to serve and how (qemu-nbd's command line, as options).</summary>
    public sealed class NbdExportOptions
    {
        public string Path { get; set; }

        /// <summary>The image's format; null to probe.</summary>
        public DiskFormat? Format { get; set; }

        /// <summary>The name clients ask for; the empty default export answers to any name too.</summary>
        public string ExportName { get; set; } = string.Empty;

        public bool Writable { get; set; }

        /// <summary>Serve an internal snapshot instead of the current disk (read-only).</summary>
        public string Snapshot { get; set; }

        /// <summary>Persistent bitmaps of the top image offered as qemu:dirty-bitmap:NAME contexts.</summary>
        public IReadOnlyList<string> Bitmaps { get; set; } = Array.Empty<string>();

        /// <summary>Read an image another process is writing (read-only exports only).</summary>
        public bool ShareWithWriters { get; set; }
    }

    /// <summary>
    /// The backend of an NBD export: the engine's chain answers reads, block status, writes, zeroes, trims
    /// and flushes. Requests of all connections meet here; reads share a lock that writers take alone,
    /// because a layer writes from one thread at a time.
    /// </summary>
    internal sealed class NbdExport : IDisposable
    {
        private readonly ImageChain _chain;
        private readonly ImageChain _view;
        private readonly ImageLayer _snapshot;
        private readonly ReaderWriterLockSlim _gate = new ReaderWriterLockSlim(LockRecursionPolicy.NoRecursion);
        private readonly IBitmapLayer _bitmapLayer;

        private NbdExport(NbdExportOptions options, ImageChain chain, ImageLayer snapshot, ImageChain view)
        {
            _chain = chain;
            _snapshot = snapshot;
            _view = view;
            Name = options.ExportName ?? string.Empty;
            Writable = options.Writable;
            Path = chain.Top.Path;
            Format = chain.Top.Format;
            CanTrim = Writable && chain.Top is IDiscardableLayer;
            CanFastZero = Writable && HasOwnZeroPath(chain.Top);
            Bitmaps = options.Bitmaps ?? Array.Empty<string>();
            if (Bitmaps.Count > 0)
            {
                _bitmapLayer = Capability.Require<IBitmapLayer>(chain.Top, "persistent bitmaps");
                foreach (string name in Bitmaps)
                {
                    // Unknown names fail here, before a client sees the export.
                    _bitmapLayer.GetBitmapRun(name, 0, 1, out _);
                }
            }
        }

        public string Name { get; }

        public string Path { get; }

        public DiskFormat Format { get; }

        public long Size => _view.Size;

        public bool Writable { get; }

        public bool CanTrim { get; }

        public bool CanFastZero { get; }

        public IReadOnlyList<string> Bitmaps { get; }

        /// <summary>Opens the image (writable exports exclusively, with QEMU's lock bytes).</summary>
        public static NbdExport Open(NbdExportOptions options)
        {
            if (options.Writable && !string.IsNullOrEmpty(options.Snapshot))
            {
                throw new ImageOptionException(options.Path, "snapshot", "a snapshot is served read-only");
            }

            if (options.Writable && options.ShareWithWriters)
            {
                throw new ImageOptionException(options.Path, "share", "an image another process may be writing can only be served read-only");
            }

            if (options.ExportName != null && System.Text.Encoding.UTF8.GetByteCount(options.ExportName) > NbdProtocol.MaxString)
            {
                throw new ImageOptionException(options.Path, "export name", $"an export name is at most {NbdProtocol.MaxString} bytes");
            }

            var chain = ImageChain.Open(options.Path, new ChainOptions
            {
                Format = options.Format,
                Writable = options.Writable,
                ShareWithWriters = options.ShareWithWriters,
            });
            ImageLayer snapshot = null;
            try
            {
                ImageChain view = chain;
                if (!string.IsNullOrEmpty(options.Snapshot))
                {
                    snapshot = Capability.Require<ISnapshotLayer>(chain.Top, "internal snapshots").OpenSnapshot(options.Snapshot);
                    view = chain.WithTop(snapshot);
                }

                return new NbdExport(options, chain, snapshot, view);
            }
            catch
            {
                snapshot?.Dispose();
                chain.Dispose();
                throw;
            }
        }

        public void Read(long offset, Span<byte> buffer)
        {
            _gate.EnterReadLock();
            try
            {
                _view.Read(offset, buffer);
            }
            finally
            {
                _gate.ExitReadLock();
            }
        }

        /// <summary>The chain's status of the run at <paramref name="offset"/>: true when it reads as zeros for certain.</summary>
        public bool ReadsAsZero(long offset, long maxLength, out long length)
        {
            _gate.EnterReadLock();
            try
            {
                BlockStatus status = _view.GetBlockStatus(offset, maxLength);
                length = status.Length;
                return status.ReadsAsZero;
            }
            finally
            {
                _gate.ExitReadLock();
            }
        }

        /// <summary>Whether the bitmap marks the run at <paramref name="offset"/> dirty, and its length.</summary>
        public bool IsDirty(string bitmap, long offset, long maxLength, out long length)
        {
            _gate.EnterReadLock();
            try
            {
                return _bitmapLayer.GetBitmapRun(bitmap, offset, maxLength, out length);
            }
            finally
            {
                _gate.ExitReadLock();
            }
        }

        public void Write(long offset, ReadOnlySpan<byte> data, bool flush)
        {
            _gate.EnterWriteLock();
            try
            {
                _chain.Top.Write(offset, data);
                if (flush)
                {
                    _chain.Top.Flush();
                }
            }
            finally
            {
                _gate.ExitWriteLock();
            }
        }

        /// <summary>Zeroes a run; with <paramref name="noHole"/> zero bytes are stored, so the run stays allocated.</summary>
        public void WriteZeroes(long offset, long length, bool noHole, bool flush)
        {
            _gate.EnterWriteLock();
            try
            {
                if (noHole)
                {
                    var zeros = new byte[(int)Math.Min(length, 1 << 20)];
                    for (long done = 0; done < length;)
                    {
                        int n = (int)Math.Min(zeros.Length, length - done);
                        _chain.Top.Write(offset + done, zeros.AsSpan(0, n));
                        done += n;
                    }
                }
                else
                {
                    _chain.Top.WriteZeroes(offset, length);
                }

                if (flush)
                {
                    _chain.Top.Flush();
                }
            }
            finally
            {
                _gate.ExitWriteLock();
            }
        }

        public void Trim(long offset, long length, bool flush)
        {
            _gate.EnterWriteLock();
            try
            {
                ((IDiscardableLayer)_chain.Top).Discard(offset, length);
                if (flush)
                {
                    _chain.Top.Flush();
                }
            }
            finally
            {
                _gate.ExitWriteLock();
            }
        }

        public void Flush()
        {
            if (!Writable)
            {
                return;
            }

            _gate.EnterWriteLock();
            try
            {
                _chain.Top.Flush();
            }
            finally
            {
                _gate.ExitWriteLock();
            }
        }

        public void Dispose()
        {
            _gate.EnterWriteLock();
            try
            {
                if (Writable)
                {
                    _chain.Top.Flush();
                }
            }
            finally
            {
                _gate.ExitWriteLock();
                _snapshot?.Dispose();
                _chain.Dispose();
                _gate.Dispose();
            }
        }

        /// <summary>
        /// A format that overrides the zero path stores zero markers or punches holes; the base class writes
        /// zero bytes, which is no faster than a write (so NBD_CMD_FLAG_FAST_ZERO must fail there).
        /// </summary>
        private static bool HasOwnZeroPath(ImageLayer layer)
        {
            MethodInfo method = layer.GetType().GetMethod("WriteZeroesCore", BindingFlags.Instance | BindingFlags.NonPublic, null, new[] { typeof(long), typeof(long) }, null);
            return method != null && method.DeclaringType != typeof(ImageLayer);
        }
    }
}
