using System;
using System.Buffers;
using System.Threading;

namespace VDiskPS.Formats.Raw
{
    /// <summary>A raw image. Holes in the host file are its zero runs.</summary>
    public sealed class RawLayer : ImageLayer, IResizableLayer, IOptimizableLayer, IConcurrentWriteLayer
    {
        private const int ReportedCluster = 64 * 1024;
        private const int HoleBlock = 4096;
        private const int OptimizeChunk = 1 << 20;
        private readonly HostFile _file;
        private long _size;

        internal RawLayer(HostFile file)
            : base(file.Path, file.CanWrite)
        {
            _file = file;
            _size = file.Length;
        }

        public override DiskFormat Format => RawDriver.Id;

        public override long Size => _size;

        public override int ClusterSize => ReportedCluster;

        public override DiskType DiskType => DiskType.Fixed;

        public override bool IsStreamed => _file.IsSequential;

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
                throw ImageOptionException.ShrinkNotAllowed(Path, _size, newSize);
            }

            if (newSize < _size)
            {
                _file.SetLength(newSize);
                _size = newSize;
                return;
            }

            Extend(newSize, preallocation);
        }

        /// <summary>Punches holes where stored blocks hold only zeros; returns the bytes released.</summary>
        public long Optimize(IProgress<OperationProgress> progress, CancellationToken cancel)
        {
            EnsureWritable();
            byte[] buffer = ArrayPool<byte>.Shared.Rent(OptimizeChunk);
            long released = 0;
            try
            {
                long offset = 0;
                while (offset < _size)
                {
                    cancel.ThrowIfCancellationRequested();
                    BlockStatus status = GetBlockStatus(offset, _size - offset);
                    if (status.Kind != ExtentKind.Data)
                    {
                        offset = status.End;
                        continue;
                    }

                    // Whole host blocks only, so a hole never cuts into a block that also holds data.
                    long start = (offset + HoleBlock - 1) / HoleBlock * HoleBlock;
                    long end = Math.Min(status.End, start + OptimizeChunk) / HoleBlock * HoleBlock;
                    if (end <= start)
                    {
                        offset = Math.Max(status.End, offset + 1);
                        continue;
                    }

                    released += PunchZeroBlocks(start, buffer.AsSpan(0, (int)(end - start)));
                    offset = end;
                    progress?.Report(new OperationProgress("Optimizing", offset, _size));
                }

                return released;
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(buffer);
            }
        }

        internal void Extend(long newSize, Preallocation preallocation)
        {
            _file.Preallocate(_size, newSize - _size, preallocation);
            _size = newSize;
        }

        public override void Flush() => _file.Flush();

        /// <summary>One host read for the whole range: a raw file's holes read as zeros from the host too, so a range of many short runs is not one read (an NBD round trip) per run.</summary>
        public override void Read(long offset, Span<byte> buffer)
        {
            CheckRange(offset, buffer.Length);
            _file.ReadZeroPadded(offset, buffer);
        }

        protected override void ReadData(long offset, Span<byte> buffer, BlockStatus status) => _file.ReadZeroPadded(offset, buffer);

        protected override void WriteCore(long offset, ReadOnlySpan<byte> data) => _file.WriteAt(offset, data);

        // The host file's own zeroing: WRITE_ZEROES on an NBD export, zero buffers on a local file.
        protected override void WriteZeroesCore(long offset, long length) => _file.WriteZeros(offset, length);

        protected override void Dispose(bool disposing)
        {
            try
            {
                if (IsWritable)
                {
                    _file.Flush();
                }
            }
            finally
            {
                _file.Dispose();
            }
        }

        private long PunchZeroBlocks(long offset, Span<byte> buffer)
        {
            _file.ReadZeroPadded(offset, buffer);
            long released = 0;
            int runStart = -1;
            for (int block = 0; block <= buffer.Length; block += HoleBlock)
            {
                bool zero = block < buffer.Length && ZeroDetector.IsZero(buffer.Slice(block, HoleBlock));
                if (zero && runStart < 0)
                {
                    runStart = block;
                }
                else if (!zero && runStart >= 0)
                {
                    if (!_file.PunchHole(offset + runStart, block - runStart))
                    {
                        throw ImageNotSupportedException.Capability(RawDriver.Id, "punching holes on this host file system", Path);
                    }

                    released += block - runStart;
                    runStart = -1;
                }
            }

            return released;
        }
    }
}
