using System;
using System.Buffers.Binary;
using System.Collections.Generic;

namespace VDiskPS.Formats.Vhdx
{
    // Writing: block allocation at the end of the file, sector bitmaps in differencing images, and the
    // metadata commit that sends every changed 4 KiB page of metadata through the log ([MS-VHDX] 2.3).
    public sealed partial class VhdxLayer
    {
        private const int BitmapPagesPerBlock = VhdxConstants.SectorBitmapBlockLength / VhdxConstants.LogSectorLength;

        private readonly SortedSet<long> _dirtyBatPages = new SortedSet<long>();
        private readonly SortedSet<long> _dirtyBitmapPages = new SortedSet<long>();
        private readonly HashSet<long> _dirtyBitmapChunks = new HashSet<long>();
        private readonly SortedDictionary<long, byte[]> _pendingPages = new SortedDictionary<long, byte[]>();
        private bool _fileModified;
        private bool _dataModified;
        private Guid? _nextDataWriteGuid;

        public override void Flush() => CommitMetadata();

        protected override void WriteCore(long offset, ReadOnlySpan<byte> data)
        {
            ThrowIfAnyBad(offset, data.Length);
            BeginModification(userVisible: true);
            long pendingHost = -1;
            int pendingStart = 0;
            int pendingLength = 0;
            int done = 0;
            while (done < data.Length)
            {
                long guest = offset + done;
                long inBlock = guest % _blockSize;
                int n = (int)Math.Min(data.Length - done, _blockSize - inBlock);
                long host = PrepareBlockForWrite(guest, data.Slice(done, n));
                if (host >= 0)
                {
                    // Runs that follow each other in the guest and land next to each other on the host go out in one write.
                    if (pendingLength > 0 && host == pendingHost + pendingLength && done == pendingStart + pendingLength)
                    {
                        pendingLength += n;
                    }
                    else
                    {
                        if (pendingLength > 0)
                        {
                            _file.WriteAt(pendingHost, data.Slice(pendingStart, pendingLength));
                        }

                        pendingHost = host;
                        pendingStart = done;
                        pendingLength = n;
                    }
                }

                done += n;
            }

            if (pendingLength > 0)
            {
                _file.WriteAt(pendingHost, data.Slice(pendingStart, pendingLength));
            }
        }

        protected override void WriteZeroesCore(long offset, long length)
        {
            ThrowIfAnyBad(offset, length);
            BeginModification(userVisible: true);
            long end = offset + length;
            while (offset < end)
            {
                long inBlock = offset % _blockSize;
                long n = Math.Min(end - offset, _blockSize - inBlock);
                long block = offset / _blockSize;
                long index = BatIndexOfBlock(block);
                int state = BatState.StateOf(_bat[index]);
                bool readsZero = state == BatState.Zero || state == BatState.Unmapped || state == BatState.UnmappedDraft
                    || ((state == BatState.NotPresent || state == BatState.Undefined) && Parent == null && !_metadata.HasParent);
                if (readsZero)
                {
                    offset += n;
                    continue;
                }

                if (n == _blockSize && !_metadata.LeaveBlocksAllocated)
                {
                    // A whole block of zeros needs no storage ([MS-VHDX] 2.5.1.1 PAYLOAD_BLOCK_ZERO).
                    SetBatEntry(index, BatState.Make(BatState.Zero, 0));
                    offset += n;
                    continue;
                }

                base.WriteZeroesCore(offset, n);
                offset += n;
            }
        }

        /// <summary>Refuses a write touching a bad BAT entry before anything (the headers included) changes.</summary>
        private void ThrowIfAnyBad(long offset, long length)
        {
            for (long block = offset / _blockSize; block * _blockSize < offset + length; block++)
            {
                ThrowIfBad(BatIndexOfBlock(block));
            }
        }

        /// <summary>
        /// Makes the block under <paramref name="guest"/> ready to take <paramref name="data"/> (all inside one
        /// block) and returns the host offset to write it at, or -1 when the data was stored already.
        /// </summary>
        private long PrepareBlockForWrite(long guest, ReadOnlySpan<byte> data)
        {
            long block = guest / _blockSize;
            long inBlock = guest % _blockSize;
            long index = BatIndexOfBlock(block);
            ulong entry = _bat[index];
            int state = BatState.StateOf(entry);
            ThrowIfBad(index);
            if (state == BatState.FullyPresent)
            {
                return BatState.OffsetOf(entry) + inBlock;
            }

            bool fallsThrough = state == BatState.NotPresent || state == BatState.Undefined;
            bool overParent = _metadata.HasParent && fallsThrough;
            if (state == BatState.PartiallyPresent || (overParent && data.Length < _blockSize))
            {
                WriteSectors(block, index, guest, data);
                return -1;
            }

            // A new block reads as zeros where not written: fresh space at the end of the file.
            long host = AllocateSpace(_blockSize);
            SetBatEntry(index, BatState.Make(BatState.FullyPresent, host));
            return host + inBlock;
        }

        /// <summary>
        /// Writes into a partially present block (allocating it when not present) and marks the written
        /// sectors present; sectors written only in part take their other bytes from the current content.
        /// </summary>
        private void WriteSectors(long block, long index, long guest, ReadOnlySpan<byte> data)
        {
            long sectorSize = _metadata.LogicalSectorSize;
            long alignedStart = guest / sectorSize * sectorSize;
            long alignedEnd = AlignUp(guest + data.Length, sectorSize);
            byte[] buffer = null;
            if (alignedStart != guest || alignedEnd != guest + data.Length)
            {
                buffer = new byte[alignedEnd - alignedStart];
                Read(alignedStart, buffer.AsSpan(0, (int)sectorSize));
                Read(alignedEnd - sectorSize, buffer.AsSpan(buffer.Length - (int)sectorSize));
                data.CopyTo(buffer.AsSpan((int)(guest - alignedStart)));
            }

            long chunk = block / _chunkRatio;
            lock (_gate)
            {
                byte[] bitmap = LoadBitmap(chunk);
                if (BatState.StateOf(_bat[index]) != BatState.PartiallyPresent)
                {
                    // Bits left from an earlier life of the block (discarded, zeroed) must not show the fresh space.
                    EnsureBitmapAllocated(chunk);
                    long blockFirstBit = (block % _chunkRatio) * _sectorsPerBlock;
                    Array.Clear(bitmap, (int)(blockFirstBit >> 3), (int)(_sectorsPerBlock >> 3));
                    MarkBitmapDirty(chunk, blockFirstBit, _sectorsPerBlock);
                    SetBatEntry(index, BatState.Make(BatState.PartiallyPresent, AllocateSpace(_blockSize)));
                }

                long host = BatState.OffsetOf(_bat[index]) + (alignedStart % _blockSize);
                if (buffer != null)
                {
                    _file.WriteAt(host, buffer);
                }
                else
                {
                    _file.WriteAt(host, data);
                }

                long firstBit = (alignedStart / sectorSize) % VhdxConstants.SectorsPerBitmapBlock;
                long bitCount = (alignedEnd - alignedStart) / sectorSize;
                SetBits(bitmap, firstBit, bitCount);
                MarkBitmapDirty(chunk, firstBit, bitCount);
                PromoteIfFull(block, index, bitmap);
            }

            // Dirty bitmaps stay in memory until committed: commit before they outgrow the cache.
            if (_dirtyBitmapChunks.Count > MaxCachedBitmaps)
            {
                CommitMetadata();
            }
        }

        private static void SetBits(byte[] bitmap, long first, long count)
        {
            long bit = first;
            long end = first + count;
            while (bit < end && (bit & 7) != 0)
            {
                bitmap[bit >> 3] |= (byte)(1 << (int)(bit & 7));
                bit++;
            }

            while (bit + 8 <= end)
            {
                bitmap[bit >> 3] = 0xFF;
                bit += 8;
            }

            while (bit < end)
            {
                bitmap[bit >> 3] |= (byte)(1 << (int)(bit & 7));
                bit++;
            }
        }

        /// <summary>A partially present block whose every sector is present becomes fully present.</summary>
        private void PromoteIfFull(long block, long index, byte[] bitmap)
        {
            long firstBit = (block % _chunkRatio) * _sectorsPerBlock;
            int firstByte = (int)(firstBit >> 3);
            int bytes = (int)(_sectorsPerBlock >> 3);
            for (int i = 0; i < bytes; i++)
            {
                if (bitmap[firstByte + i] != 0xFF)
                {
                    return;
                }
            }

            SetBatEntry(index, BatState.Make(BatState.FullyPresent, BatState.OffsetOf(_bat[index])));
        }

        private void EnsureBitmapAllocated(long chunk)
        {
            long index = BatIndexOfBitmap(chunk);
            if (BatState.StateOf(_bat[index]) == BatState.SectorBitmapPresent)
            {
                return;
            }

            SetBatEntry(index, BatState.Make(BatState.SectorBitmapPresent, AllocateSpace(VhdxConstants.SectorBitmapBlockLength)));
        }

        private void MarkBitmapDirty(long chunk, long firstBit, long bitCount)
        {
            long firstPage = (firstBit >> 3) / VhdxConstants.LogSectorLength;
            long lastPage = ((firstBit + bitCount - 1) >> 3) / VhdxConstants.LogSectorLength;
            for (long page = firstPage; page <= lastPage; page++)
            {
                _dirtyBitmapPages.Add((chunk * BitmapPagesPerBlock) + page);
            }

            _dirtyBitmapChunks.Add(chunk);
        }

        /// <summary>Reserves <paramref name="length"/> bytes (a 1 MiB multiple) at the end of the file.</summary>
        private long AllocateSpace(long length)
        {
            long host = _fileEnd;
            _fileEnd += length;
            return host;
        }

        private void SetBatEntry(long index, ulong value)
        {
            lock (_gate)
            {
                _bat[index] = value;
                _badBatEntries.Remove(index);
            }

            _dirtyBatPages.Add(index * 8 / VhdxConstants.LogSectorLength);
        }

        /// <summary>
        /// The DataWriteGuid this image carries once its data changes in this session: chosen now (and kept
        /// for the first guest-visible change) so a child can record it before the change reaches the disk.
        /// </summary>
        internal Guid PrepareDataWriteGuid()
        {
            if (_dataModified)
            {
                return _header.DataWriteGuid;
            }

            _nextDataWriteGuid = _nextDataWriteGuid ?? Guid.NewGuid();
            return _nextDataWriteGuid.Value;
        }

        /// <summary>Before the first change of a session: new FileWriteGuid (and DataWriteGuid for guest-visible changes), [MS-VHDX] 2.2.2.</summary>
        private void BeginModification(bool userVisible)
        {
            if (_fileModified && (_dataModified || !userVisible))
            {
                return;
            }

            if (!_fileModified)
            {
                _header.FileWriteGuid = Guid.NewGuid();
            }

            if (userVisible)
            {
                _header.DataWriteGuid = _nextDataWriteGuid ?? Guid.NewGuid();
                _dataModified = true;
            }

            _fileModified = true;
            WriteHeaders();
        }

        /// <summary>
        /// Sends every changed metadata page through the log: data flushed; entry written and flushed; header
        /// names the log GUID; pages written in place and flushed; log GUID cleared. A crash at any point leaves
        /// either the old metadata or a log that replays to the new ([MS-VHDX] 2.3.2).
        /// </summary>
        private void CommitMetadata()
        {
            if (!IsWritable)
            {
                return;
            }

            if (_fileModified)
            {
                RefreshStaleParentPaths();
            }

            var pages = CollectDirtyPages();
            if (pages.Count == 0)
            {
                _file.Flush();
                return;
            }

            if (_file.Length < _fileEnd)
            {
                _file.SetLength(_fileEnd);
            }

            _file.Flush();

            // The first entry is stable before the header names its log GUID, so the header never points at an empty log.
            Guid logGuid = Guid.NewGuid();
            int perEntry = VhdxLog.MaxPagesPerEntry(_header.LogLength);
            long logPosition = 0;
            ulong sequence = 1;

            // Both offsets are 1 MiB multiples ([MS-VHDX] 2.3.1.1); the flushed one never exceeds the real size.
            long flushedFileOffset = _file.Length / VhdxConstants.MiB * VhdxConstants.MiB;
            long lastFileOffset = AlignUp(_file.Length, VhdxConstants.MiB);
            for (int first = 0; first < pages.Count; first += perEntry)
            {
                var batch = pages.GetRange(first, Math.Min(perEntry, pages.Count - first));
                if (logPosition + VhdxLog.EntryLength(batch.Count) > _header.LogLength)
                {
                    logPosition = 0;
                }

                // Each entry is applied before the next is written, so each is a complete sequence: its tail is itself.
                byte[] entry = VhdxLog.BuildEntry(batch, sequence++, logGuid, (uint)logPosition, flushedFileOffset, lastFileOffset);
                _file.WriteAt(_header.LogOffset + logPosition, entry);
                _file.Flush();
                if (_header.LogGuid != logGuid)
                {
                    _header.LogGuid = logGuid;
                    WriteHeaders();
                }

                foreach (VhdxLogWrite page in batch)
                {
                    _file.WriteAt(page.FileOffset, page.Data);
                }

                _file.Flush();
                logPosition += entry.Length;
            }

            _header.LogGuid = Guid.Empty;
            WriteHeaders();
            _dirtyBatPages.Clear();
            _dirtyBitmapPages.Clear();
            _dirtyBitmapChunks.Clear();
            _pendingPages.Clear();
        }

        private List<VhdxLogWrite> CollectDirtyPages()
        {
            var pages = new SortedDictionary<long, byte[]>();
            foreach (var page in _pendingPages)
            {
                pages[page.Key] = page.Value;
            }

            const int entriesPerPage = VhdxConstants.LogSectorLength / 8;
            foreach (long page in _dirtyBatPages)
            {
                var data = new byte[VhdxConstants.LogSectorLength];
                long first = page * entriesPerPage;
                lock (_gate)
                {
                    for (int i = 0; i < entriesPerPage && first + i < _bat.Length; i++)
                    {
                        BinaryPrimitives.WriteUInt64LittleEndian(data.AsSpan(i * 8), _bat[first + i]);
                    }
                }

                pages[_batRegion.FileOffset + (page * VhdxConstants.LogSectorLength)] = data;
            }

            foreach (long key in _dirtyBitmapPages)
            {
                long chunk = key / BitmapPagesPerBlock;
                long byteOffset = (key % BitmapPagesPerBlock) * VhdxConstants.LogSectorLength;
                long index = BatIndexOfBitmap(chunk);
                ulong entry = index < _bat.Length ? _bat[index] : 0;
                if (BatState.StateOf(entry) == BatState.SectorBitmapPresent && _bitmaps.TryGetValue(chunk, out byte[] bitmap))
                {
                    pages[BatState.OffsetOf(entry) + byteOffset] = bitmap.AsSpan((int)byteOffset, VhdxConstants.LogSectorLength).ToArray();
                }
            }

            var writes = new List<VhdxLogWrite>(pages.Count);
            foreach (var page in pages)
            {
                writes.Add(new VhdxLogWrite { FileOffset = page.Key, Data = page.Value });
            }

            return writes;
        }
    }
}
