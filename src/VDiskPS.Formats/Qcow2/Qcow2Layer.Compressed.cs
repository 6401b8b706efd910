using System;
using System.IO.Compression;
using VDiskPS.Formats.Compression;

namespace VDiskPS.Formats.Qcow2
{
    /// <summary>Compressed cluster writes (qcow2.rst "Compressed Clusters Descriptor"), packed back to back like QEMU's qcow2_alloc_bytes.</summary>
    internal sealed partial class Qcow2Layer : ICompressedWriteLayer
    {
        /// <summary>Where the next compressed cluster may start, inside the last cluster holding compressed data; 0 for none.</summary>
        private long _compressedCursor;

        /// <summary>The refcount FreedCount when the cursor was set: once clusters were freed the cursor's cluster may have been reused.</summary>
        private long _compressedCursorFreedCount;

        public int CompressionUnit => _header.ClusterSize;

        /// <summary>Pure and thread-safe: pads to one cluster, compresses with the image's type, or returns null when that does not shrink it.</summary>
        public byte[] Compress(ReadOnlySpan<byte> unit)
        {
            RefuseWithEncryption("compression");
            int cs = _header.ClusterSize;
            byte[] padded = null;
            ReadOnlySpan<byte> input = unit;
            if (unit.Length < cs)
            {
                padded = new byte[cs];
                unit.CopyTo(padded);
                input = padded;
            }

            byte[] compressed = _header.CompressionType == 1 ? Zstd.Compress(input) : Deflate.CompressRaw(input, CompressionLevel.Optimal);

            // QEMU stores a cluster plainly when its compressed form does not fit in cluster_size - 1 bytes.
            return compressed.Length <= cs - 1 ? compressed : null;
        }

        public void WriteCompressed(long offset, byte[] compressed)
        {
            EnsureWritable();
            if ((offset & ClusterMask) != 0 || offset < 0 || offset >= _size)
            {
                throw new ArgumentOutOfRangeException(nameof(offset), $"{Path}: compressed writes take whole clusters; {offset} is not a cluster start inside the disk");
            }

            if (compressed == null || compressed.Length == 0 || compressed.Length > _header.ClusterSize - 1)
            {
                throw new ArgumentException("the compressed cluster must be 1 to cluster_size - 1 bytes (use Compress)", nameof(compressed));
            }

            RefuseWithEncryption("compression");
            lock (_gate)
            {
                EnsureWritableImage();
                MarkBitmaps(offset, _header.ClusterSize);
                if (_dataFile != null)
                {
                    throw ImageNotSupportedException.Capability(Qcow2Driver.Id, "compressed writes with an external data file", Path);
                }

                int l1Index = (int)((offset >> ClusterBits) / _header.L2Entries);
                int index = (int)((offset >> ClusterBits) % _header.L2Entries);
                L2Update update = BeginL2Update(l1Index, allocate: true);
                long host = AllocateCompressedBytes(compressed.Length);
                _file.WriteAt(host, compressed);
                int step = ExtendedL2 ? 2 : 1;
                ulong old = update.Table[index * step];
                if (IsAllocatedOrCompressed(old))
                {
                    update.Freed.Add(old);
                }

                long sectorsMinusOne = ((host + compressed.Length - 1) >> 9) - (host >> 9);
                int shift = 62 - (ClusterBits - 8);
                update.Table[index * step] = CompressedFlag | ((ulong)sectorsMinusOne << shift) | (ulong)host;
                update.Touch(index * step);
                if (ExtendedL2)
                {
                    update.Table[index * 2 + 1] = 0;
                    update.Touch(index * 2 + 1);
                }

                CommitL2Update(update);
            }
        }

        /// <summary>Byte-granular space for compressed data; each host cluster it touches gains one reference.</summary>
        private long AllocateCompressedBytes(int length)
        {
            int cs = _header.ClusterSize;
            Qcow2Refcounts refcounts = Refcounts;
            if (_compressedCursorFreedCount != refcounts.FreedCount)
            {
                _compressedCursor = 0;
            }

            // Like QEMU, a cluster whose refcount is already at the maximum takes no more compressed data.
            if (_compressedCursor != 0 && (_compressedCursor & ClusterMask) != 0 && refcounts.Get(_compressedCursor >> ClusterBits) < refcounts.MaxRefcount)
            {
                long cursorCluster = _compressedCursor >> ClusterBits;
                long clusterEnd = (cursorCluster + 1) << ClusterBits;
                if (_compressedCursor + length <= clusterEnd)
                {
                    long host = _compressedCursor;
                    refcounts.Adjust(cursorCluster, 1);
                    _compressedCursor += length;
                    _compressedCursorFreedCount = refcounts.FreedCount;
                    return host;
                }

                if (refcounts.EndCluster == cursorCluster + 1)
                {
                    long extra = (_compressedCursor + length - clusterEnd + cs - 1) >> ClusterBits;
                    long next = refcounts.Allocate(extra, atEnd: true);
                    if (next == clusterEnd)
                    {
                        long host = _compressedCursor;
                        refcounts.Adjust(cursorCluster, 1);
                        _compressedCursor += length;
                        _compressedCursorFreedCount = refcounts.FreedCount;
                        return host;
                    }

                    // The clusters came elsewhere: start the data there; they already hold their one reference.
                    if ((long)extra * cs >= length)
                    {
                        _compressedCursor = next + length;
                        _compressedCursorFreedCount = refcounts.FreedCount;
                        return next;
                    }

                    for (long c = 0; c < extra; c++)
                    {
                        refcounts.Set((next >> ClusterBits) + c, 0);
                    }
                }
            }

            long clusters = (length + cs - 1) / cs;
            long start = refcounts.Allocate(clusters);
            _compressedCursor = start + length;
            _compressedCursorFreedCount = refcounts.FreedCount;
            return start;
        }
    }
}
