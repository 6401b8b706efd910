using System;
using System.Buffers;
using System.IO;
using VDiskPS.Formats.Compression;

namespace VDiskPS.Formats.Vmdk
{
    // Stream-optimized extents (VMware Virtual Disk Format 5.0, "Stream-Optimized Compressed Sparse
    // Extents"): every grain is a grain marker (lba, size) followed by zlib data, sector aligned; each
    // grain table follows its grains behind a GT marker; the grain directory, the footer (a header copy
    // holding the real gdOffset) and an end-of-stream marker close the file. Writing is append-only,
    // so grains must arrive in increasing order.
    internal sealed partial class SparseExtent
    {
        private bool _streamWriting;
        private long _pendingGrain = -1;
        private byte[] _pendingData;
        private long _lastEmittedGrain = -1;
        private long _currentTable = -1;
        private uint[] _currentTableEntries;

        /// <summary>Creates a stream-optimized extent in an empty file: header, embedded descriptor area, then grains.</summary>
        public static SparseExtent CreateStream(ExtentLine line, HostFile file, long capacitySectors, int descriptorSectors)
        {
            const long grainSectors = 128;
            var header = new SparseHeader
            {
                Version = 3,
                Flags = SparseHeader.FlagValidNewLineTest | SparseHeader.FlagCompressed | SparseHeader.FlagMarkers,
                Capacity = (ulong)capacitySectors,
                GrainSize = grainSectors,
                DescriptorOffset = 1,
                DescriptorSize = (ulong)descriptorSectors,
                GrainTableEntries = 512,
                RedundantDirectoryOffset = 0,
                DirectoryOffset = SparseHeader.GrainDirectoryAtEnd,
                Overhead = (ulong)((1 + descriptorSectors + grainSectors - 1) / grainSectors * grainSectors),
                CompressAlgorithm = SparseHeader.CompressionDeflate,
            };
            long grains = (capacitySectors + grainSectors - 1) / grainSectors;
            var directory = new uint[(grains + 511) / 512];
            file.WriteAt(0, header.ToBytes());
            file.SetLength((long)header.Overhead * SparseHeader.SectorSize);
            var extent = new SparseExtent(line, file, header, directory, null)
            {
                _streamWriting = true,
                _pendingData = new byte[grainSectors * SparseHeader.SectorSize],
            };
            return extent;
        }

        /// <summary>True while this extent is being written as a stream (created in this session).</summary>
        public bool IsStreamWriter => _streamWriting;

        /// <summary>zlib of one grain, padded with zeros to a whole grain as readers expect. Pure; any thread.</summary>
        public byte[] CompressGrain(ReadOnlySpan<byte> unit)
        {
            if (unit.Length == GrainSizeBytes)
            {
                return Deflate.CompressZlib(unit);
            }

            byte[] padded = new byte[GrainSizeBytes];
            unit.Slice(0, Math.Min(unit.Length, padded.Length)).CopyTo(padded);
            return Deflate.CompressZlib(padded);
        }

        /// <summary>Appends a grain compressed by <see cref="CompressGrain"/>.</summary>
        public void WriteCompressedGrain(long offset, byte[] compressed)
        {
            if (!_streamWriting)
            {
                throw new ImageNotSupportedException(File.Path, null, null, "compressed grains can only be written while creating a streamOptimized image");
            }

            lock (_gate)
            {
                long grain = offset / GrainSizeBytes;
                CheckStreamOrder(grain, offset);
                if (_pendingGrain == grain)
                {
                    throw new ImageNotSupportedException(File.Path, null, offset, $"grain {grain} was already partly written; a compressed grain must replace a whole, unwritten grain");
                }

                FlushPendingGrain();
                AppendGrain(grain, compressed);
            }
        }

        /// <summary>Closes the stream: last grain and grain table, grain directory, footer, end-of-stream marker.</summary>
        public void FinishStream()
        {
            lock (_gate)
            {
                if (!_streamWriting)
                {
                    return;
                }

                FlushPendingGrain();
                EmitCurrentTable();
                long directorySectors = (_directory.Length * 4L + SparseHeader.SectorSize - 1) / SparseHeader.SectorSize;
                long markerSector = AllocateSectors(1 + directorySectors);
                byte[] block = new byte[(1 + directorySectors) * SparseHeader.SectorSize];
                StreamMarker.Metadata((ulong)directorySectors, StreamMarker.GrainDirectory).CopyTo(block, 0);
                for (int i = 0; i < _directory.Length; i++)
                {
                    System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(block.AsSpan(SparseHeader.SectorSize + i * 4), _directory[i]);
                }

                File.WriteAt(markerSector * SparseHeader.SectorSize, block);
                SparseHeader footer = _header.Clone();
                footer.DirectoryOffset = (ulong)(markerSector + 1);
                long footerSector = AllocateSectors(3);
                byte[] tail = new byte[3 * SparseHeader.SectorSize];
                StreamMarker.Metadata(1, StreamMarker.Footer).CopyTo(tail, 0);
                footer.ToBytes().CopyTo(tail, SparseHeader.SectorSize);
                StreamMarker.Metadata(0, StreamMarker.EndOfStream).CopyTo(tail, 2 * SparseHeader.SectorSize);
                File.WriteAt(footerSector * SparseHeader.SectorSize, tail);
                File.SetLength(_nextFreeSector * SparseHeader.SectorSize);
                _header = footer;
                _streamWriting = false;
                _pendingData = null;
            }
        }

        private bool IsStreamTable(long table) => _streamWriting && table == _currentTable;

        private uint StreamTableEntry(int index) => _currentTableEntries[index];

        private bool IsPendingStreamGrain(long grain) => _streamWriting && grain == _pendingGrain;

        private void StreamWrite(long offset, ReadOnlySpan<byte> data)
        {
            lock (_gate)
            {
                while (data.Length > 0)
                {
                    long grain = offset / GrainSizeBytes;
                    int inGrain = (int)(offset % GrainSizeBytes);
                    int n = Math.Min(data.Length, GrainSizeBytes - inGrain);
                    if (grain != _pendingGrain)
                    {
                        CheckStreamOrder(grain, offset);
                        FlushPendingGrain();
                        _pendingGrain = grain;
                        Array.Clear(_pendingData, 0, _pendingData.Length);
                    }

                    data.Slice(0, n).CopyTo(_pendingData.AsSpan(inGrain));
                    offset += n;
                    data = data.Slice(n);
                }
            }
        }

        private long StreamWriteZeroes(long offset, long length)
        {
            lock (_gate)
            {
                long grain = offset / GrainSizeBytes;
                if (grain != _pendingGrain)
                {
                    CheckStreamOrder(grain, offset);
                }

                long pendingEnd = (_pendingGrain + 1) * GrainSizeBytes;
                if (grain == _pendingGrain)
                {
                    int inGrain = (int)(offset % GrainSizeBytes);
                    int n = (int)Math.Min(length, pendingEnd - offset);
                    Array.Clear(_pendingData, inGrain, n);
                }

                // Zero grains are simply not stored: an unallocated grain of a stream reads as zeros.
                return length;
            }
        }

        private void CheckStreamOrder(long grain, long offset)
        {
            if (grain <= _lastEmittedGrain || grain < _pendingGrain)
            {
                throw new ImageNotSupportedException(File.Path, null, offset,
                    $"streamOptimized images are written append-only in increasing order: grain {grain} (guest offset {offset}) comes after grain {Math.Max(_lastEmittedGrain, _pendingGrain)} was written");
            }
        }

        private void FlushPendingGrain()
        {
            if (_pendingGrain < 0)
            {
                return;
            }

            long grain = _pendingGrain;
            _pendingGrain = -1;
            if (ZeroDetector.IsZero(_pendingData))
            {
                _lastEmittedGrain = grain;
                return;
            }

            AppendGrain(grain, Deflate.CompressZlib(_pendingData));
        }

        private void AppendGrain(long grain, byte[] compressed)
        {
            long table = grain / GrainsPerTable;
            if (table != _currentTable)
            {
                EmitCurrentTable();
                _currentTable = table;
                _currentTableEntries = new uint[GrainsPerTable];
            }

            int total = StreamMarker.GrainHeaderSize + compressed.Length;
            int padded = (total + SparseHeader.SectorSize - 1) / SparseHeader.SectorSize * SparseHeader.SectorSize;
            byte[] block = ArrayPool<byte>.Shared.Rent(padded);
            try
            {
                Array.Clear(block, 0, padded);
                StreamMarker.WriteGrainHeader(block, (ulong)(grain * (long)_header.GrainSize), (uint)compressed.Length);
                compressed.CopyTo(block, StreamMarker.GrainHeaderSize);
                long sector = AllocateSectors(padded / SparseHeader.SectorSize);
                File.WriteAt(sector * SparseHeader.SectorSize, block.AsSpan(0, padded));
                _currentTableEntries[grain % GrainsPerTable] = checked((uint)sector);
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(block);
            }

            _lastEmittedGrain = grain;
        }

        /// <summary>Writes the grain table being filled behind its marker; an empty one is left out (GD entry 0).</summary>
        private void EmitCurrentTable()
        {
            if (_currentTable < 0)
            {
                return;
            }

            long table = _currentTable;
            uint[] entries = _currentTableEntries;
            _currentTable = -1;
            _currentTableEntries = null;
            if (Array.TrueForAll(entries, e => e == 0))
            {
                return;
            }

            long tableSectors = (entries.Length * 4L + SparseHeader.SectorSize - 1) / SparseHeader.SectorSize;
            byte[] block = new byte[(1 + tableSectors) * SparseHeader.SectorSize];
            StreamMarker.Metadata((ulong)tableSectors, StreamMarker.GrainTable).CopyTo(block, 0);
            for (int i = 0; i < entries.Length; i++)
            {
                System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(block.AsSpan(SparseHeader.SectorSize + i * 4), entries[i]);
            }

            long sector = AllocateSectors(1 + tableSectors);
            File.WriteAt(sector * SparseHeader.SectorSize, block);
            _directory[table] = checked((uint)(sector + 1));
        }

        private void ReadCompressedGrain(long grain, long hostSector, int inGrain, Span<byte> target)
        {
            byte[] grainData = ArrayPool<byte>.Shared.Rent(GrainSizeBytes);
            try
            {
                lock (_gate)
                {
                    if (IsPendingStreamGrain(grain))
                    {
                        _pendingData.AsSpan(inGrain, target.Length).CopyTo(target);
                        return;
                    }
                }

                int produced = DecompressGrain(grain, hostSector, grainData.AsSpan(0, GrainSizeBytes));

                // As in qemu, a short grain is an error only where the read reaches past what it holds.
                if (produced < inGrain + target.Length)
                {
                    throw new ImageCorruptException(File.Path, $"compressed grain {grain}", hostSector * SparseHeader.SectorSize, $"the grain inflates to {produced} bytes; the read needs {inGrain + target.Length}");
                }

                grainData.AsSpan(inGrain, target.Length).CopyTo(target);
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(grainData);
            }
        }

        private int DecompressGrain(long grain, long hostSector, Span<byte> output)
        {
            long position = hostSector * SparseHeader.SectorSize;
            int maxCompressed = GrainSizeBytes * 2 + 1024;
            int length;
            long dataPosition;
            if (_header.HasMarkers)
            {
                byte[] marker = new byte[StreamMarker.GrainHeaderSize];
                File.ReadExactly(position, marker, $"grain marker of grain {grain}");
                uint size = StreamMarker.ReadSize(marker);
                if (size == 0 || size > maxCompressed)
                {
                    throw new ImageCorruptException(File.Path, $"grain marker of grain {grain}", position, $"compressed size {size} is outside 1..{maxCompressed}");
                }

                length = (int)size;
                dataPosition = position + StreamMarker.GrainHeaderSize;
            }
            else
            {
                length = (int)Math.Max(0, Math.Min(maxCompressed, File.Length - position));
                dataPosition = position;
            }

            byte[] compressed = ArrayPool<byte>.Shared.Rent(Math.Max(1, length));
            try
            {
                if (_header.HasMarkers)
                {
                    File.ReadExactly(dataPosition, compressed.AsSpan(0, length), $"compressed grain {grain}");
                }
                else
                {
                    length = File.ReadAt(dataPosition, compressed.AsSpan(0, length));
                }

                return Deflate.DecompressZlib(compressed.AsSpan(0, length), output);
            }
            catch (InvalidDataException e)
            {
                throw new ImageCorruptException(File.Path, $"compressed grain {grain}", position, "the grain does not inflate: " + e.Message, e);
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(compressed);
            }
        }
    }
}
