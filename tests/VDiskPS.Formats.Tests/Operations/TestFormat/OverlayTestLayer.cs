using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.IO;
using System.Text;
using System.Threading;

namespace VDiskPS.Formats.Tests.Operations.TestFormat
{
    /// <summary>TEST DOUBLE: one image of <see cref="OverlayTestDriver"/>: clusters Unallocated, Zero or Data, in memory.</summary>
    internal sealed class OverlayTestLayer : ImageLayer, IResizableLayer, IDiscardableLayer, IParentChangeableLayer, IOptimizableLayer
    {
        private static readonly string[] s_formatNames = { "raw", "qcow2", "vmdk", "vhd", "vhdx", "vdi" };

        private const byte StateUnallocated = 0;
        private const byte StateZero = 1;
        private const byte StateData = 2;

        private readonly object _gate = new object();
        private readonly int _clusterSize;
        private readonly Dictionary<long, byte[]> _data = new Dictionary<long, byte[]>();
        private readonly HashSet<long> _zero = new HashSet<long>();
        private long _size;
        private BackingReference _backing;

        public OverlayTestLayer(string path, bool writable, long size, int clusterSize, BackingReference backing)
            : base(path, writable)
        {
            _size = size;
            _clusterSize = clusterSize;
            _backing = backing;
        }

        public override DiskFormat Format => Fmt.Qcow2;

        public override long Size => _size;

        public override int ClusterSize => _clusterSize;

        public override BackingReference Backing => _backing;

        /// <summary>Clusters holding data (for tests that check an overlay stayed minimal).</summary>
        public int DataClusterCount
        {
            get
            {
                lock (_gate)
                {
                    return _data.Count;
                }
            }
        }

        public static OverlayTestLayer Load(string path, byte[] bytes, bool writable)
        {
            int position = 4;
            long size = OverlayTestDriver.ReadInt64(bytes, ref position);
            int clusterSize = (int)OverlayTestDriver.ReadInt64(bytes, ref position);
            int pathLength = (int)OverlayTestDriver.ReadInt64(bytes, ref position);
            BackingReference backing = null;
            if (pathLength > 0)
            {
                string recorded = Encoding.UTF8.GetString(bytes, position, pathLength);
                position += pathLength;
                backing = new BackingReference(recorded, DiskFormat.Parse(s_formatNames[OverlayTestDriver.ReadInt64(bytes, ref position)]));
            }

            var layer = new OverlayTestLayer(path, writable, size, clusterSize, backing);
            long clusters = (size + clusterSize - 1) / clusterSize;
            int statePosition = position;
            int dataPosition = position + (int)clusters;
            for (long cluster = 0; cluster < clusters; cluster++)
            {
                switch (bytes[statePosition + cluster])
                {
                    case StateZero:
                        layer._zero.Add(cluster);
                        break;
                    case StateData:
                        layer._data[cluster] = bytes.AsSpan(dataPosition, clusterSize).ToArray();
                        dataPosition += clusterSize;
                        break;
                }
            }

            return layer;
        }

        public override BlockStatus GetBlockStatus(long offset, long maxLength)
        {
            maxLength = Math.Min(maxLength, _size - offset);
            lock (_gate)
            {
                ExtentKind kind = KindOf(offset / _clusterSize);
                long end = (offset / _clusterSize + 1) * _clusterSize;
                while (end < offset + maxLength && KindOf(end / _clusterSize) == kind)
                {
                    end += _clusterSize;
                }

                return new BlockStatus(offset, Math.Min(end, offset + maxLength) - offset, kind);
            }
        }

        public void Resize(long newSize, bool allowShrink, Preallocation preallocation)
        {
            EnsureWritable();
            if (newSize < _size && !allowShrink)
            {
                throw new ImageOptionException(Path, "size", "shrinking needs permission");
            }

            lock (_gate)
            {
                long clusters = (newSize + _clusterSize - 1) / _clusterSize;
                foreach (long cluster in new List<long>(_data.Keys))
                {
                    if (cluster >= clusters)
                    {
                        _data.Remove(cluster);
                    }
                }

                _zero.RemoveWhere(c => c >= clusters);
                _size = newSize;
            }
        }

        public void Discard(long offset, long length)
        {
            EnsureWritable();
            CheckRange(offset, length);
            lock (_gate)
            {
                // Only whole clusters can be discarded, as in qcow2; the image's last cluster may be partial.
                long first = (offset + _clusterSize - 1) / _clusterSize;
                long end = offset + length == _size ? (_size + _clusterSize - 1) / _clusterSize : (offset + length) / _clusterSize;
                for (long cluster = first; cluster < end; cluster++)
                {
                    _data.Remove(cluster);
                    _zero.Remove(cluster);
                }
            }
        }

        public void SetBacking(BackingReference backing, ImageLayer parent)
        {
            EnsureWritable();
            _backing = backing;
        }

        /// <summary>Drops zero markers that are not needed (no parent to hide); returns their bytes.</summary>
        public long Optimize(IProgress<OperationProgress> progress, System.Threading.CancellationToken cancel)
        {
            EnsureWritable();
            if (Parent != null)
            {
                return 0;
            }

            lock (_gate)
            {
                long released = (long)_zero.Count * _clusterSize;
                _zero.Clear();
                return released;
            }
        }

        public override void Flush()
        {
            if (!IsWritable)
            {
                return;
            }

            lock (_gate)
            {
                using (var stream = new MemoryStream())
                {
                    stream.Write(OverlayTestDriver.Magic, 0, 4);
                    WriteInt64(stream, _size);
                    WriteInt64(stream, _clusterSize);
                    byte[] path = _backing == null ? Array.Empty<byte>() : Encoding.UTF8.GetBytes(_backing.RecordedPath);
                    WriteInt64(stream, path.Length);
                    if (path.Length > 0)
                    {
                        stream.Write(path, 0, path.Length);
                        WriteInt64(stream, Array.IndexOf(s_formatNames, (_backing.Format ?? Fmt.Raw).Name));
                    }

                    long clusters = (_size + _clusterSize - 1) / _clusterSize;
                    for (long cluster = 0; cluster < clusters; cluster++)
                    {
                        stream.WriteByte(_data.ContainsKey(cluster) ? StateData : _zero.Contains(cluster) ? StateZero : StateUnallocated);
                    }

                    for (long cluster = 0; cluster < clusters; cluster++)
                    {
                        if (_data.TryGetValue(cluster, out byte[] data))
                        {
                            stream.Write(data, 0, data.Length);
                        }
                    }

                    File.WriteAllBytes(Path, stream.ToArray());
                }
            }
        }

        /// <summary>Called before each data read in this flow of execution (tests that watch how many reads overlap set it).</summary>
        public static AsyncLocal<Action> ReadObserver { get; } = new AsyncLocal<Action>();

        protected override void ReadData(long offset, Span<byte> buffer, BlockStatus status)
        {
            ReadObserver.Value?.Invoke();
            lock (_gate)
            {
                while (buffer.Length > 0)
                {
                    long cluster = offset / _clusterSize;
                    int within = (int)(offset % _clusterSize);
                    int n = Math.Min(buffer.Length, _clusterSize - within);
                    _data[cluster].AsSpan(within, n).CopyTo(buffer);
                    offset += n;
                    buffer = buffer.Slice(n);
                }
            }
        }

        protected override void WriteCore(long offset, ReadOnlySpan<byte> data)
        {
            while (data.Length > 0)
            {
                long cluster = offset / _clusterSize;
                int within = (int)(offset % _clusterSize);
                int n = Math.Min(data.Length, _clusterSize - within);
                byte[] contents;
                lock (_gate)
                {
                    _data.TryGetValue(cluster, out contents);
                }

                if (contents == null)
                {
                    // Copy-on-write: a new cluster starts as what the image read there before.
                    contents = new byte[_clusterSize];
                    long start = cluster * _clusterSize;
                    int visible = (int)Math.Min(_clusterSize, _size - start);
                    bool zero;
                    lock (_gate)
                    {
                        zero = _zero.Contains(cluster);
                    }

                    if (!zero)
                    {
                        ReadFromParent(start, contents.AsSpan(0, visible));
                    }
                }

                data.Slice(0, n).CopyTo(contents.AsSpan(within));
                lock (_gate)
                {
                    _data[cluster] = contents;
                    _zero.Remove(cluster);
                }

                offset += n;
                data = data.Slice(n);
            }
        }

        protected override void WriteZeroesCore(long offset, long length)
        {
            long end = offset + length;
            while (offset < end)
            {
                long cluster = offset / _clusterSize;
                long clusterEnd = Math.Min((cluster + 1) * _clusterSize, _size);
                long n = Math.Min(end, clusterEnd) - offset;
                if (offset == cluster * _clusterSize && offset + n == clusterEnd)
                {
                    lock (_gate)
                    {
                        _data.Remove(cluster);
                        _zero.Add(cluster);
                    }
                }
                else
                {
                    WriteCore(offset, new byte[n]);
                }

                offset += n;
            }
        }

        protected override void Dispose(bool disposing) => Flush();

        private static void WriteInt64(Stream stream, long value)
        {
            Span<byte> bytes = stackalloc byte[8];
            BinaryPrimitives.WriteInt64LittleEndian(bytes, value);
            stream.Write(bytes);
        }

        private ExtentKind KindOf(long cluster)
            => _data.ContainsKey(cluster) ? ExtentKind.Data : _zero.Contains(cluster) ? ExtentKind.Zero : ExtentKind.Unallocated;
    }
}
