using System;
using System.Collections.Generic;
using VDiskPS;

namespace VDiskPS.Formats
{
    /// <summary>
    /// Reading on past unreadable ranges (qemu-img convert --salvage, dd_rescue): a read that fails with
    /// an I/O error is retried in smaller pieces, down to 512-byte sectors; a sector that still fails
    /// reads as zeros and is recorded. Thread-safe: parallel readers share one log.
    /// </summary>
    public sealed class SalvageLog
    {
        /// <summary>The unit a bad range is found to (a sector).</summary>
        public const int Sector = 512;

        private const int Piece = 64 * 1024;

        private readonly object _gate = new object();
        private readonly List<VDiskBadRange> _ranges = new List<VDiskBadRange>();

        /// <summary>The ranges that could not be read, in order, neighbours merged.</summary>
        public IReadOnlyList<VDiskBadRange> Ranges
        {
            get
            {
                lock (_gate)
                {
                    var sorted = new List<VDiskBadRange>(_ranges);
                    sorted.Sort((a, b) => a.Offset.CompareTo(b.Offset));
                    var merged = new List<VDiskBadRange>();
                    foreach (VDiskBadRange range in sorted)
                    {
                        VDiskBadRange last = merged.Count > 0 ? merged[merged.Count - 1] : null;
                        if (last != null && last.Offset + last.Length >= range.Offset)
                        {
                            last.Length = Math.Max(last.Offset + last.Length, range.Offset + range.Length) - last.Offset;
                            if (last.Reason == null)
                            {
                                last.Reason = range.Reason;
                            }
                        }
                        else
                        {
                            merged.Add(new VDiskBadRange { Offset = range.Offset, Length = range.Length, Reason = range.Reason });
                        }
                    }

                    return merged;
                }
            }
        }

        /// <summary>Total bytes that read as zeros because they could not be read.</summary>
        public long BadBytes
        {
            get
            {
                long total = 0;
                foreach (VDiskBadRange range in Ranges)
                {
                    total += range.Length;
                }

                return total;
            }
        }

        /// <summary>Reads like <see cref="ImageChain.Read"/>; what cannot be read is zeros, recorded here.</summary>
        public void Read(ImageChain source, long offset, Span<byte> buffer)
        {
            try
            {
                source.Read(offset, buffer);
            }
            catch (ImageReadException)
            {
                ReadInPieces(source, offset, buffer, Piece);
            }
        }

        private void ReadInPieces(ImageChain source, long offset, Span<byte> buffer, int piece)
        {
            for (int done = 0; done < buffer.Length;)
            {
                // Pieces end on multiples of their size, so sectors found bad line up with the disk's.
                long at = offset + done;
                int n = (int)Math.Min(buffer.Length - done, piece - (at % piece));
                Span<byte> part = buffer.Slice(done, n);
                try
                {
                    source.Read(at, part);
                }
                catch (ImageReadException e)
                {
                    if (piece > Sector)
                    {
                        ReadInPieces(source, at, part, Sector);
                    }
                    else
                    {
                        part.Clear();
                        lock (_gate)
                        {
                            _ranges.Add(new VDiskBadRange { Offset = at, Length = n, Reason = e.Reason });
                        }
                    }
                }

                done += n;
            }
        }
    }
}
