using System;
using System.Buffers;
using System.Buffers.Binary;
using System.IO;
using VDiskPS.Formats.Compression;

namespace VDiskPS.Formats.Qcow2
{
    /// <summary>Reading: the L1/L2 walk, block status and compressed clusters.</summary>
    internal sealed partial class Qcow2Layer
    {
        /// <summary>The kind of one cluster (or subcluster) and where its data is.</summary>
        private struct UnitStatus
        {
            public ExtentKind Kind;
            public long Host;
            public bool Compressed;

            /// <summary>Where this status ends: the unit's end, or the end of an unmapped L2 range.</summary>
            public long End;
        }

        /// <summary>The last run found, so a caller walking a long run in chunks does not rescan it each time; cleared when the mapping changes.</summary>
        private BlockStatus? _lastRun;

        private BlockStatus GetBlockStatusLocked(long offset, long end)
        {
            if (_lastRun.HasValue && offset >= _lastRun.Value.GuestOffset && offset < _lastRun.Value.End)
            {
                BlockStatus last = _lastRun.Value;
                long host = last.HostOffset >= 0 ? last.HostOffset + (offset - last.GuestOffset) : -1;
                return new BlockStatus(offset, Math.Min(last.End, end) - offset, last.Kind, host, last.Compressed, last.HostFile);
            }

            UnitStatus first = StatusAt(offset);
            long runHost = first.Kind == ExtentKind.Data && !first.Compressed ? first.Host : -1;
            long pos = first.End;
            while (pos < end)
            {
                UnitStatus next = StatusAt(pos);
                if (next.Kind != first.Kind || next.Compressed != first.Compressed)
                {
                    break;
                }

                if (runHost >= 0 && next.Host != runHost + (pos - offset))
                {
                    break;
                }

                pos = next.End;
            }

            long length = Math.Min(pos, end) - offset;
            string hostFile = first.Kind == ExtentKind.Data && _dataFile != null ? _dataFile.Path : null;
            var status = new BlockStatus(offset, length, first.Kind, runHost, first.Compressed, hostFile);
            _lastRun = status;
            return status;
        }

        /// <summary>The status of the cluster or subcluster holding <paramref name="offset"/>; Host is the byte at offset.</summary>
        private UnitStatus StatusAt(long offset)
        {
            long l2Span = (long)_header.L2Entries << ClusterBits;
            long l1Index = offset / l2Span;
            if (l1Index >= _l1.Length || ((ulong)_l1[l1Index] & OffsetMask) == 0)
            {
                return new UnitStatus { Kind = ExtentKind.Unallocated, Host = -1, End = (l1Index + 1) * l2Span };
            }

            ulong[] table = LoadL2((long)((ulong)_l1[l1Index] & OffsetMask), (int)l1Index);
            int index = (int)((offset >> ClusterBits) % _header.L2Entries);
            long clusterStart = offset & ~ClusterMask;
            if (!ExtendedL2)
            {
                ulong entry = table[index];
                var status = ClassifyCluster(entry);
                status.End = clusterStart + _header.ClusterSize;
                if (status.Host >= 0)
                {
                    status.Host += offset - clusterStart;
                }

                return status;
            }
            else
            {
                ulong entry = table[index * 2];
                ulong bitmap = table[index * 2 + 1];
                int sub = (int)((offset - clusterStart) / SubclusterSize);
                var status = ClassifySubcluster(entry, bitmap, sub, (int)l1Index, index);
                long subStart = clusterStart + (long)sub * SubclusterSize;
                status.End = status.Compressed ? clusterStart + _header.ClusterSize : subStart + SubclusterSize;
                if (status.Host >= 0)
                {
                    status.Host += offset - clusterStart;
                }

                return status;
            }
        }

        private UnitStatus ClassifyCluster(ulong entry)
        {
            if ((entry & CompressedFlag) != 0)
            {
                return new UnitStatus { Kind = ExtentKind.Data, Host = -1, Compressed = true };
            }

            if ((entry & ZeroFlag) != 0)
            {
                return new UnitStatus { Kind = ExtentKind.Zero, Host = -1 };
            }

            if (IsAllocated(entry))
            {
                return new UnitStatus { Kind = ExtentKind.Data, Host = (long)(entry & OffsetMask) };
            }

            return new UnitStatus { Kind = ExtentKind.Unallocated, Host = -1 };
        }

        private UnitStatus ClassifySubcluster(ulong entry, ulong bitmap, int sub, int l1Index, int l2Index)
        {
            if ((entry & CompressedFlag) != 0)
            {
                return new UnitStatus { Kind = ExtentKind.Data, Host = -1, Compressed = true };
            }

            bool allocatedBit = ((bitmap >> sub) & 1) != 0;
            bool zeroBit = ((bitmap >> (Subclusters + sub)) & 1) != 0;
            if (allocatedBit && (zeroBit || !IsAllocated(entry)))
            {
                throw new ImageCorruptException(Path, $"L2 entry {l2Index} of L1 entry {l1Index}", null,
                    $"subcluster {sub} is marked allocated {(zeroBit ? "and zero at once" : "in a cluster without a host offset")}");
            }

            if (allocatedBit)
            {
                return new UnitStatus { Kind = ExtentKind.Data, Host = (long)(entry & OffsetMask) };
            }

            return new UnitStatus { Kind = zeroBit ? ExtentKind.Zero : ExtentKind.Unallocated, Host = -1 };
        }

        /// <summary>A standard entry with a host cluster (offset 0 counts with an external data file and COPIED set).</summary>
        private bool IsAllocated(ulong entry)
        {
            if ((entry & CompressedFlag) != 0)
            {
                return false;
            }

            return (entry & OffsetMask) != 0 || (_dataFile != null && (entry & CopiedFlag) != 0);
        }

        /// <summary>Loads (or finds cached) the L2 table at <paramref name="l2Offset"/>, validating its entries once.</summary>
        private ulong[] LoadL2(long l2Offset, int l1Index)
        {
            if (_l2Cache.TryGet(l2Offset, out ulong[] table))
            {
                return table;
            }

            long fileLength = FileLengthFor(l2Offset + _header.ClusterSize);
            string field = $"L1 entry {l1Index}";
            if ((l2Offset & ClusterMask) != 0 || l2Offset > fileLength - _header.ClusterSize)
            {
                throw new ImageCorruptException(Path, field, _header.L1TableOffset + (long)l1Index * 8,
                    $"the L2 table offset 0x{l2Offset:x} is not cluster aligned or lies past the end of the file");
            }

            if (l2Offset == 0 || Overlaps(l2Offset, _header.L1TableOffset, (long)_header.L1Size * 8) || Overlaps(l2Offset, _header.RefcountTableOffset, (long)_header.RefcountTableClusters << ClusterBits))
            {
                throw new ImageCorruptException(Path, field, _header.L1TableOffset + (long)l1Index * 8,
                    $"the L2 table offset 0x{l2Offset:x} overlaps the header, the L1 table or the refcount table");
            }

            byte[] raw = ArrayPool<byte>.Shared.Rent(_header.ClusterSize);
            try
            {
                _file.ReadExactly(l2Offset, raw.AsSpan(0, _header.ClusterSize), "L2 table");
                table = new ulong[_header.ClusterSize / 8];
                for (int i = 0; i < table.Length; i++)
                {
                    table[i] = BinaryPrimitives.ReadUInt64BigEndian(raw.AsSpan(i * 8));
                }
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(raw);
            }

            ValidateL2(table, l2Offset, fileLength);
            _l2Cache.Put(l2Offset, table);
            return table;
        }

        private bool Overlaps(long cluster, long start, long length)
        {
            return length > 0 && cluster < start + length && start < cluster + _header.ClusterSize;
        }

        private void ValidateL2(ulong[] table, long l2Offset, long fileLength)
        {
            int step = ExtendedL2 ? 2 : 1;
            long dataLength = _dataFile != null ? long.MaxValue : fileLength;
            for (int i = 0; i < table.Length; i += step)
            {
                ulong entry = table[i];
                if ((entry & CompressedFlag) != 0)
                {
                    if (_dataFile != null)
                    {
                        throw new ImageCorruptException(Path, "L2 entry", l2Offset + (long)i * 8, "a compressed cluster in an image with an external data file");
                    }

                    long host = (long)(entry & CompressedOffsetMask);
                    if (host >= fileLength && host >= (fileLength = FileLengthFor(host + 1)))
                    {
                        throw new ImageCorruptException(Path, "compressed cluster descriptor", l2Offset + (long)i * 8, $"the compressed data offset 0x{host:x} lies past the end of the file");
                    }

                    continue;
                }

                long offset = (long)(entry & OffsetMask);
                if (offset == 0)
                {
                    continue;
                }

                if ((offset & ClusterMask) != 0)
                {
                    throw new ImageCorruptException(Path, "L2 entry", l2Offset + (long)i * 8, $"the data cluster offset 0x{offset:x} is not cluster aligned");
                }

                if (offset >= dataLength && (entry & ZeroFlag) == 0 && offset >= (dataLength = FileLengthFor(offset + 1)))
                {
                    throw new ImageCorruptException(Path, "L2 entry", l2Offset + (long)i * 8, $"the data cluster offset 0x{offset:x} lies past the end of the file");
                }
            }
        }

        /// <summary>
        /// The image file's length, for a structure ending at <paramref name="end"/>. The length seen at
        /// open serves a read-only file; it is asked again when something lies past it (another writer).
        /// </summary>
        private long FileLengthFor(long end) => _file.CanWrite || end > _readOnlyFileLength ? _file.Length : _readOnlyFileLength;

        private ulong CompressedOffsetMask => (1UL << (62 - (ClusterBits - 8))) - 1;

        protected override void ReadData(long offset, Span<byte> buffer, BlockStatus status)
        {
            if (!status.Compressed)
            {
                long host = status.HostOffset + (offset - status.GuestOffset);
                if (_cipher != null)
                {
                    ReadDecrypted(_dataFile ?? _file, offset, host, buffer);
                }
                else
                {
                    (_dataFile ?? _file).ReadZeroPadded(host, buffer);
                }

                return;
            }

            if (_cipher != null)
            {
                throw new ImageNotSupportedException(Path, "L2 entry", null, $"the encrypted image holds a compressed cluster at guest offset {offset}; QEMU writes neither together, and such a cluster has no defined encryption");
            }

            byte[] cluster = ArrayPool<byte>.Shared.Rent(_header.ClusterSize);
            try
            {
                while (buffer.Length > 0)
                {
                    long clusterStart = offset & ~ClusterMask;
                    int within = (int)(offset - clusterStart);
                    int n = Math.Min(buffer.Length, _header.ClusterSize - within);
                    ulong entry;
                    lock (_gate)
                    {
                        entry = EntryAt(offset).Entry;
                    }

                    DecompressCluster(entry, cluster.AsSpan(0, _header.ClusterSize));
                    cluster.AsSpan(within, n).CopyTo(buffer);
                    buffer = buffer.Slice(n);
                    offset += n;
                }
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(cluster);
            }
        }

        /// <summary>The L2 entry (and subcluster bitmap) of the cluster holding <paramref name="offset"/>; zero when unmapped.</summary>
        private (ulong Entry, ulong Bitmap) EntryAt(long offset)
        {
            long l2Span = (long)_header.L2Entries << ClusterBits;
            long l1Index = offset / l2Span;
            if (l1Index >= _l1.Length || ((ulong)_l1[l1Index] & OffsetMask) == 0)
            {
                return (0, 0);
            }

            ulong[] table = LoadL2((long)((ulong)_l1[l1Index] & OffsetMask), (int)l1Index);
            int index = (int)((offset >> ClusterBits) % _header.L2Entries);
            return ExtendedL2 ? (table[index * 2], table[index * 2 + 1]) : (table[index], 0);
        }

        /// <summary>Host offset and byte length of a compressed cluster's data (qcow2.rst "Compressed Clusters Descriptor").</summary>
        private (long Host, int Length) CompressedExtent(ulong entry)
        {
            int shift = 62 - (ClusterBits - 8);
            long host = (long)(entry & CompressedOffsetMask);
            long sectors = (long)((entry >> shift) & ((1UL << (ClusterBits - 8)) - 1)) + 1;
            int length = (int)(sectors * 512 - (host & 511));
            return (host, length);
        }

        private void DecompressCluster(ulong entry, Span<byte> output)
        {
            var (host, length) = CompressedExtent(entry);
            byte[] input = ArrayPool<byte>.Shared.Rent(length);
            try
            {
                long fileLength = FileLengthFor(host + 1);
                if (host >= fileLength)
                {
                    throw new ImageCorruptException(Path, "compressed cluster descriptor", host, "the compressed data lies past the end of the file");
                }

                // The descriptor's length is rounded up to sectors; past the end of the file reads as zeros.
                _file.ReadZeroPadded(host, input.AsSpan(0, length));
                int produced;
                try
                {
                    produced = _header.CompressionType == 1
                        ? Zstd.Decompress(input.AsSpan(0, length), output)
                        : Deflate.DecompressRaw(input.AsSpan(0, length), output);
                }
                catch (InvalidDataException e)
                {
                    throw new ImageCorruptException(Path, "compressed cluster", host, e.Message, e);
                }

                if (produced != output.Length)
                {
                    throw new ImageCorruptException(Path, "compressed cluster", host, $"the compressed data expands to {produced} bytes, not one {output.Length}-byte cluster");
                }
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(input);
            }
        }
    }
}
