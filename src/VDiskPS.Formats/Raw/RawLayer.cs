using System;
using System.Buffers;

namespace VDiskPS.Formats.Raw
{
    /// <summary>A raw image. Holes in the host file are its zero runs.</summary>
    public sealed class RawLayer : ImageLayer, IResizableLayer
    {
        private const int ReportedCluster = 64 * 1024;
        private readonly HostFile _file;
        private long _size;

        internal RawLayer(HostFile file)
            : base(file.Path, file.CanWrite)
        {
            _file = file;
            _size = file.Length;
        }

        public override DiskFormat Format => DiskFormat.Raw;

        public override long Size => _size;

        public override int ClusterSize => ReportedCluster;

        public override DiskType DiskType => DiskType.Fixed;

        public override BlockStatus GetBlockStatus(long offset, long maxLength)
        {
            maxLength = Math.Min(maxLength, _size - offset);
            var allocation = _file.QueryAllocation(offset, maxLength);
            if (allocation == null || allocation.Value.IsData)
            {
                long length = allocation?.Length ?? maxLength;
                return new BlockStatus(offset, Math.Max(1, length), ExtentKind.Data, offset);
            }

            // A hole still maps to the same host offset (qemu-img map reports it).
            return new BlockStatus(offset, Math.Max(1, allocation.Value.Length), ExtentKind.Zero, offset);
        }

        public void Resize(long newSize, bool allowShrink, Preallocation preallocation)
        {
            EnsureWritable();
            if (newSize < _size && !allowShrink)
            {
                throw new ImageOptionException(Path, "size", $"shrinking from {_size} to {newSize} bytes discards data; use -Shrink to allow it");
            }

            if (newSize < _size)
            {
                _file.SetLength(newSize);
                _size = newSize;
                return;
            }

            Extend(newSize, preallocation);
        }

        internal void Extend(long newSize, Preallocation preallocation)
        {
            long oldSize = _size;
            switch (preallocation)
            {
                case Preallocation.Full:
                    _file.SetLength(newSize);
                    WriteZeroBlocks(oldSize, newSize - oldSize);
                    break;
                case Preallocation.Falloc:
                    _file.Allocate(oldSize, newSize - oldSize);
                    _file.SetLength(newSize);
                    break;
                default:
                    _file.SetLength(newSize);
                    break;
            }

            _size = newSize;
        }

        public override void Flush() => _file.Flush();

        protected override void ReadData(long offset, Span<byte> buffer, BlockStatus status) => _file.ReadZeroPadded(offset, buffer);

        protected override void WriteCore(long offset, ReadOnlySpan<byte> data) => _file.WriteAt(offset, data);

        protected override void Dispose(bool disposing)
        {
            if (IsWritable)
            {
                _file.Flush();
            }

            _file.Dispose();
        }

        private void WriteZeroBlocks(long offset, long length)
        {
            byte[] zeros = ArrayPool<byte>.Shared.Rent(1 << 20);
            try
            {
                Array.Clear(zeros, 0, zeros.Length);
                while (length > 0)
                {
                    int n = (int)Math.Min(length, 1 << 20);
                    _file.WriteAt(offset, zeros.AsSpan(0, n));
                    offset += n;
                    length -= n;
                }
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(zeros);
            }
        }
    }
}
