using System;
using System.Collections.Generic;
using System.Linq;

namespace VDiskPS.Formats.Vhdx
{
    // The log on open ([MS-VHDX] 2.3.3): a read-only open replays it into memory and leaves the file
    // untouched; a writable open replays it onto the file and then empties it.
    public sealed partial class VhdxLayer
    {
        private readonly SortedDictionary<long, byte[]> _overlayPages = new SortedDictionary<long, byte[]>();
        private readonly List<KeyValuePair<long, long>> _overlayZeros = new List<KeyValuePair<long, long>>();
        private long _overlayLength;
        private bool _pendingLogInMemory;
        private bool _logReplayedOnDisk;
        private bool _logWithoutSequence;

        /// <summary>The file length as the image sees it (a replay in memory may extend it).</summary>
        private long ViewLength => Math.Max(_file.Length, _overlayLength);

        /// <summary>Reads metadata through the in-memory replay; a short read names <paramref name="field"/>.</summary>
        private void ReadView(long offset, Span<byte> buffer, string field)
        {
            if (!_pendingLogInMemory)
            {
                _file.ReadExactly(offset, buffer, field);
                return;
            }

            if (offset < 0 || offset > ViewLength - buffer.Length)
            {
                throw new ImageCorruptException(Path, field, offset, $"the structure ({buffer.Length} bytes) extends past the end of the {ViewLength}-byte file");
            }

            ReadThroughOverlay(offset, buffer);
        }

        /// <summary>Reads payload bytes; whatever lies past the end of the file reads as zeros.</summary>
        private void ReadPayload(long offset, Span<byte> buffer)
        {
            if (_pendingLogInMemory)
            {
                ReadThroughOverlay(offset, buffer);
                return;
            }

            _file.ReadZeroPadded(offset, buffer);
        }

        private void ReadThroughOverlay(long offset, Span<byte> buffer)
        {
            _file.ReadZeroPadded(offset, buffer);
            long end = offset + buffer.Length;
            foreach (var zero in _overlayZeros)
            {
                long from = Math.Max(offset, zero.Key);
                long to = Math.Min(end, zero.Key + zero.Value);
                if (from < to)
                {
                    buffer.Slice((int)(from - offset), (int)(to - from)).Clear();
                }
            }

            long firstPage = offset / VhdxConstants.LogSectorLength * VhdxConstants.LogSectorLength;
            for (long page = firstPage; page < end; page += VhdxConstants.LogSectorLength)
            {
                if (!_overlayPages.TryGetValue(page, out byte[] data))
                {
                    continue;
                }

                long from = Math.Max(offset, page);
                long to = Math.Min(end, page + VhdxConstants.LogSectorLength);
                data.AsSpan((int)(from - page), (int)(to - from)).CopyTo(buffer.Slice((int)(from - offset)));
            }
        }

        private void ReplayLogOnOpen()
        {
            if (_header.LogGuid == Guid.Empty)
            {
                return;
            }

            var log = new byte[_header.LogLength];
            _file.ReadExactly(_header.LogOffset, log, "log");
            VhdxLogSequence sequence = VhdxLog.FindActiveSequence(log, _header.LogGuid, Path, _header.LogOffset);
            if (sequence == null)
            {
                // A log GUID without a valid sequence. [MS-VHDX] 2.3.3 calls the file corrupt; like qemu, open it
                // as if the log were empty (nothing reached the log) and let Check report it.
                _logWithoutSequence = true;
                return;
            }

            long fileLength = _file.Length;
            long entryOffset = _header.LogOffset + sequence.HeadLogOffset;
            if (sequence.FlushedFileOffset > fileLength)
            {
                throw new ImageCorruptException(Path, "log entry FlushedFileOffset", entryOffset + 48, $"the log was written when the file held {sequence.FlushedFileOffset} bytes; it now holds {fileLength}: the file was truncated");
            }

            long limit = Math.Max(fileLength, sequence.LastFileOffset);
            if (sequence.LastFileOffset > fileLength + (4 * VhdxConstants.MaxVirtualSize))
            {
                throw new ImageCorruptException(Path, "log entry LastFileOffset", entryOffset + 56, $"{sequence.LastFileOffset} is absurd for a {fileLength}-byte file");
            }

            foreach (VhdxLogWrite write in sequence.Writes)
            {
                long length = write.Data?.Length ?? write.ZeroLength;
                if (write.FileOffset < VhdxConstants.Header2Offset + VhdxConstants.HeaderLength && write.FileOffset + length > VhdxConstants.Header1Offset)
                {
                    throw new ImageCorruptException(Path, "log descriptor file offset", entryOffset, $"a log write ({write.FileOffset}+{length}) would overwrite the headers, which are never logged");
                }

                if (write.FileOffset + length > limit)
                {
                    throw new ImageCorruptException(Path, "log descriptor file offset", entryOffset, $"a log write ({write.FileOffset}+{length}) lies past the file's last offset {limit}");
                }

                if (write.FileOffset < _header.LogOffset + _header.LogLength && _header.LogOffset < write.FileOffset + length)
                {
                    throw new ImageCorruptException(Path, "log descriptor file offset", entryOffset, $"a log write ({write.FileOffset}+{length}) would overwrite the log itself");
                }
            }

            if (IsWritable)
            {
                ApplyOnDisk(sequence);
                _logReplayedOnDisk = true;
                return;
            }

            foreach (VhdxLogWrite write in sequence.Writes)
            {
                if (write.Data != null)
                {
                    _overlayPages[write.FileOffset] = write.Data;
                    continue;
                }

                foreach (long page in _overlayPages.Keys.Where(p => p >= write.FileOffset && p < write.FileOffset + write.ZeroLength).ToList())
                {
                    _overlayPages.Remove(page);
                }

                _overlayZeros.Add(new KeyValuePair<long, long>(write.FileOffset, write.ZeroLength));
            }

            _overlayLength = sequence.LastFileOffset;
            _pendingLogInMemory = true;
        }

        private void ApplyOnDisk(VhdxLogSequence sequence)
        {
            var zeros = new byte[VhdxConstants.MiB];
            foreach (VhdxLogWrite write in sequence.Writes)
            {
                if (write.Data != null)
                {
                    _file.WriteAt(write.FileOffset, write.Data);
                    continue;
                }

                long fileLength = _file.Length;
                for (long done = 0; done < write.ZeroLength;)
                {
                    long at = write.FileOffset + done;
                    int n = (int)Math.Min(zeros.Length, write.ZeroLength - done);
                    if (at >= fileLength)
                    {
                        // Past the end the file reads as zeros already; extending it is enough.
                        break;
                    }

                    n = (int)Math.Min(n, fileLength - at);
                    _file.WriteAt(at, zeros.AsSpan(0, n));
                    done += n;
                }
            }

            if (_file.Length < sequence.LastFileOffset)
            {
                _file.SetLength(sequence.LastFileOffset);
            }

            _file.Flush();
            _header.LogGuid = Guid.Empty;
            WriteHeaders();
        }

        /// <summary>
        /// Makes <see cref="_header"/> current on disk: written to the older slot with the next sequence
        /// number, twice, so both slots end up valid and the newest ([MS-VHDX] 2.2.2.1).
        /// </summary>
        private void WriteHeaders()
        {
            var block = new byte[VhdxConstants.HeaderLength];
            for (int i = 0; i < 2; i++)
            {
                int slot = 1 - _currentHeaderSlot;
                _header.SequenceNumber++;
                _header.WriteTo(block);
                _file.WriteAt(slot == 0 ? VhdxConstants.Header1Offset : VhdxConstants.Header2Offset, block);
                _file.Flush();
                _currentHeaderSlot = slot;
            }
        }
    }
}
