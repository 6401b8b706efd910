using System;
using System.Buffers;
using System.Collections.Generic;
using System.IO;
using VDiskPS.Formats.Compression;

namespace VDiskPS.Formats.Vmdk
{
    /// <summary>
    /// A stream-optimized extent read front to back from a source that reads only so (an HTTP server
    /// that ignores range requests), where the grain directory (at the end, or filled in last) cannot be
    /// read first. The
    /// header gives the capacity and grain size; the markers (grain markers with their LBA and size, the
    /// GT, GD, footer and end-of-stream metadata markers) are walked in file order as reads ask for later
    /// virtual offsets: every writer (qemu-img, VMware, this module) puts the grains in ascending LBA
    /// order, so a run before the next grain's LBA is unallocated. The walk stops at the first grain that
    /// ends past what is asked (one grain ahead at most); a grain below one already passed is an error.
    /// Grains already passed are read again from the source's window, which bounds how far behind a read
    /// may be; the positions of at most <see cref="KeptGrains"/> grains are remembered.
    /// </summary>
    internal sealed class StreamReadExtent : VmdkExtent
    {
        /// <summary>Grain positions remembered behind the walk (the source's window holds no more grains than this anyway).</summary>
        internal const int KeptGrains = 1 << 16;

        private readonly object _gate = new object();
        private readonly SparseHeader _header;
        private readonly long _grainBytes;
        private readonly long _capacityBytes;
        private readonly List<Grain> _grains = new List<Grain>();
        private long _nextMarker;
        private long _lastGrain = -1;
        private long _knownFrom;
        private bool _ended;

        public StreamReadExtent(ExtentLine line, HostFile file, SparseHeader header)
            : base(line, file)
        {
            _header = header;
            _grainBytes = (long)header.GrainSize * SparseHeader.SectorSize;
            _capacityBytes = (long)header.Capacity * SparseHeader.SectorSize;
            long descriptorEnd = (long)(header.DescriptorOffset + header.DescriptorSize);
            _nextMarker = Math.Max((long)header.Overhead, Math.Max(1, descriptorEnd)) * SparseHeader.SectorSize;
        }

        /// <summary>
        /// True for a header that a stream can be read by: compressed grains behind markers, whether the
        /// grain directory is at the end (VMware, this module) or in the header's overhead (qemu-img,
        /// which fills it in place): either way the markers alone give the layout.
        /// </summary>
        public static bool CanStream(SparseHeader header) => !header.IsCowd && header.HasMarkers && header.Compressed;

        public override int? GrainBytes => (int)_grainBytes;

        public override bool Compressed => true;

        public override bool IsStreamed => true;

        public override string ReadOnlyReason => "a streamOptimized image read as a stream cannot be written";

        /// <summary>How many grain positions are remembered now (at most <see cref="KeptGrains"/>).</summary>
        internal int KnownGrains
        {
            get
            {
                lock (_gate)
                {
                    return _grains.Count;
                }
            }
        }

        public override BlockStatus GetStatus(long offset, long maxLength)
        {
            long end = Math.Min(offset + maxLength, Math.Max(_capacityBytes, offset + 1));
            if (offset >= _capacityBytes)
            {
                return new BlockStatus(offset, maxLength, ExtentKind.Unallocated);
            }

            lock (_gate)
            {
                WalkPast(offset);
                int index = Find(offset / _grainBytes);
                if (index >= 0)
                {
                    Grain grain = _grains[index];
                    long grainEnd = Math.Min((grain.Index + 1) * _grainBytes, end);
                    return new BlockStatus(offset, grainEnd - offset, ExtentKind.Data, -1, true, File.Path);
                }

                // Unallocated up to the next grain the walk has seen, or to the end once the stream has ended.
                int next = ~index;
                long runEnd = next < _grains.Count ? _grains[next].Index * _grainBytes : _ended ? _capacityBytes : (_lastGrain + 1) * _grainBytes;
                return new BlockStatus(offset, Math.Max(1, Math.Min(runEnd, end) - offset), ExtentKind.Unallocated);
            }
        }

        public override void ReadData(long offset, Span<byte> buffer, BlockStatus status)
        {
            byte[] inflated = ArrayPool<byte>.Shared.Rent((int)_grainBytes);
            try
            {
                while (buffer.Length > 0)
                {
                    long index = offset / _grainBytes;
                    int inGrain = (int)(offset % _grainBytes);
                    int n = (int)Math.Min(buffer.Length, _grainBytes - inGrain);
                    Grain? grain;
                    lock (_gate)
                    {
                        WalkPast(offset);
                        int found = Find(index);
                        grain = found >= 0 ? _grains[found] : (Grain?)null;
                    }

                    Span<byte> part = buffer.Slice(0, n);
                    if (grain == null)
                    {
                        part.Clear();
                    }
                    else
                    {
                        int produced = Inflate(grain.Value, inflated.AsSpan(0, (int)_grainBytes));
                        if (produced < inGrain + n)
                        {
                            throw new ImageCorruptException(File.Path, $"compressed grain {index}", grain.Value.Marker, $"the grain inflates to {produced} bytes; the read needs {inGrain + n}");
                        }

                        inflated.AsSpan(inGrain, n).CopyTo(part);
                    }

                    offset += n;
                    buffer = buffer.Slice(n);
                }
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(inflated);
            }
        }

        public override void Write(long offset, ReadOnlySpan<byte> data, ReadBelow below)
            => throw new ImageNotSupportedException(File.Path, null, offset, ReadOnlyReason);

        /// <summary>Walks the markers left, through the grain tables, directory and footer, to the end-of-stream marker.</summary>
        public override void ReadToEnd()
        {
            lock (_gate)
            {
                while (!_ended)
                {
                    WalkOne();
                }
            }
        }

        /// <summary>Walks until the layout at <paramref name="offset"/> is known: a grain ending past it has been seen, or the stream ended. Under <see cref="_gate"/>.</summary>
        private void WalkPast(long offset)
        {
            if (offset < _knownFrom)
            {
                throw new ImageNotSupportedException(File.Path, "grain marker", null,
                    $"the read at virtual offset {offset} lies behind the grains still known of the stream (from virtual offset {_knownFrom}): the source can only be read front to back, and this read comes too far out of order");
            }

            while (!_ended && (_lastGrain + 1) * _grainBytes <= offset)
            {
                WalkOne();
            }
        }

        /// <summary>Reads the marker at the walk's position and moves past what it introduces. Under <see cref="_gate"/>.</summary>
        private void WalkOne()
        {
            long at = _nextMarker;
            if (at + SparseHeader.SectorSize > File.Length)
            {
                throw new ImageCorruptException(File.Path, "end-of-stream marker", at, $"the {File.Length}-byte file ends without an end-of-stream marker");
            }

            byte[] marker = new byte[16];
            File.ReadExactly(at, marker, "stream marker");
            ulong value = StreamMarker.ReadValue(marker);
            uint size = StreamMarker.ReadSize(marker);
            if (size != 0)
            {
                AddGrain(at, value, size);
                _nextMarker = RoundUpToSector(at + StreamMarker.GrainHeaderSize + size);
                return;
            }

            uint type = StreamMarker.ReadType(marker);
            switch (type)
            {
                case StreamMarker.EndOfStream:
                    _ended = true;
                    return;
                case StreamMarker.GrainTable:
                case StreamMarker.GrainDirectory:
                case StreamMarker.Footer:
                    if (value > (ulong)(File.Length / SparseHeader.SectorSize))
                    {
                        throw new ImageCorruptException(File.Path, "metadata marker", at, $"the marker announces {value} sectors, more than the {File.Length}-byte file holds");
                    }

                    _nextMarker = at + ((long)value + 1) * SparseHeader.SectorSize;
                    return;
                default:
                    throw new ImageCorruptException(File.Path, "metadata marker", at, $"unknown marker type {type}");
            }
        }

        private void AddGrain(long at, ulong lba, uint size)
        {
            long maxCompressed = _grainBytes * 2 + 1024;
            if (size > maxCompressed)
            {
                throw new ImageCorruptException(File.Path, "grain marker", at, $"compressed size {size} is outside 1..{maxCompressed}");
            }

            if (lba % _header.GrainSize != 0 || lba >= _header.Capacity)
            {
                throw new ImageCorruptException(File.Path, "grain marker", at, $"LBA {lba} is not the start of a grain inside the {_header.Capacity}-sector disk");
            }

            long index = (long)(lba / _header.GrainSize);
            if (index <= _lastGrain)
            {
                throw new ImageNotSupportedException(File.Path, "grain marker", at,
                    $"the grain marker at offset {at} holds LBA {lba}, at or below LBA {_lastGrain * (long)_header.GrainSize} of a grain already passed: the grains are not in ascending order, so the image cannot be read front to back, as a source that ignores range requests must be read");
            }

            if (_grains.Count >= KeptGrains)
            {
                // The oldest half is forgotten: reads there are too far behind for the source's window anyway.
                _knownFrom = (_grains[KeptGrains / 2 - 1].Index + 1) * _grainBytes;
                _grains.RemoveRange(0, KeptGrains / 2);
            }

            _grains.Add(new Grain(index, at, size));
            _lastGrain = index;
        }

        /// <summary>The position of grain <paramref name="index"/> among those known, or the bitwise complement of where it would be.</summary>
        private int Find(long index)
        {
            int low = 0;
            int high = _grains.Count - 1;
            while (low <= high)
            {
                int middle = (low + high) >> 1;
                long found = _grains[middle].Index;
                if (found == index)
                {
                    return middle;
                }

                if (found < index)
                {
                    low = middle + 1;
                }
                else
                {
                    high = middle - 1;
                }
            }

            return ~low;
        }

        private int Inflate(Grain grain, Span<byte> output)
        {
            byte[] compressed = ArrayPool<byte>.Shared.Rent((int)grain.Size);
            try
            {
                File.ReadExactly(grain.Marker + StreamMarker.GrainHeaderSize, compressed.AsSpan(0, (int)grain.Size), $"compressed grain {grain.Index}");
                return Deflate.DecompressZlib(compressed.AsSpan(0, (int)grain.Size), output);
            }
            catch (InvalidDataException e)
            {
                throw new ImageCorruptException(File.Path, $"compressed grain {grain.Index}", grain.Marker, "the grain does not inflate: " + e.Message, e);
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(compressed);
            }
        }

        private static long RoundUpToSector(long position) => (position + SparseHeader.SectorSize - 1) / SparseHeader.SectorSize * SparseHeader.SectorSize;

        /// <summary>A grain the walk has passed: its index, where its marker is, the size of its compressed data.</summary>
        private readonly struct Grain
        {
            public Grain(long index, long marker, uint size)
            {
                Index = index;
                Marker = marker;
                Size = size;
            }

            public long Index { get; }

            public long Marker { get; }

            public uint Size { get; }
        }
    }
}
