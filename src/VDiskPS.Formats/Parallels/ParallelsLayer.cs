using System;
using System.Buffers.Binary;
using System.Collections.Generic;

namespace VDiskPS.Formats.Parallels
{
    /// <summary>
    /// A Parallels expandable image: the 64-byte header, the BAT (one little-endian entry per cluster:
    /// 0 for a cluster never written, else where its data is, in sectors for the first header or in
    /// clusters for the extended one), then the data area. Unallocated clusters read as zeros (the
    /// format records no backing file).
    /// </summary>
    public sealed partial class ParallelsLayer : ImageLayer
    {
        /// <summary>qemu's limit on sectors per cluster (parallels_open: tracks > INT32_MAX/513 is "too big cluster").</summary>
        internal const uint MaxTracks = int.MaxValue / 513;

        /// <summary>qemu's limit on BAT entries (bat_entries > INT_MAX / 4 is "catalog too large").</summary>
        internal const uint MaxBatEntries = int.MaxValue / 4;

        private readonly HostFile _file;
        private readonly object _lock = new object();
        private readonly ParallelsHeader _header;
        private readonly uint[] _bat;
        private readonly long _size;
        private readonly long _clusterBytes;
        private readonly long _dataStart;

        /// <summary>Entries whose cluster lies outside the data area or the file (qemu check: "cluster is outside image").</summary>
        private readonly HashSet<long> _outside = new HashSet<long>();

        /// <summary>Entries whose cluster overlaps another entry's: reading is fine, writing one would change the other.</summary>
        private readonly HashSet<long> _shared = new HashSet<long>();

        /// <summary>Where the next cluster goes: past every cluster in use, the data area start and the extension.</summary>
        private long _dataEnd;

        /// <summary>The header carried the in-use marker when opened: the last writer did not close the image.</summary>
        private bool _unclean;

        /// <summary>This layer set the in-use marker (at its first write) and clears it on dispose.</summary>
        private bool _markedInUse;

        private ParallelsLayer(HostFile file, ParallelsHeader header, uint[] bat, long size, long dataStart)
            : base(file.Path, file.CanWrite)
        {
            _file = file;
            _header = header;
            _bat = bat;
            _size = size;
            _clusterBytes = (long)header.Tracks * ParallelsHeader.SectorSize;
            _dataStart = dataStart;
        }

        public override DiskFormat Format => ParallelsDriver.Id;

        public override long Size => _size;

        public override int ClusterSize => (int)_clusterBytes;

        /// <summary>Sectors a BAT entry counts: the cluster for the extended header, one for the first.</summary>
        private long Multiplier => _header.IsExtended ? _header.Tracks : 1;

        internal static ParallelsLayer Open(HostFile file)
        {
            string path = file.Path;
            long length = file.Length;
            if (length < ParallelsHeader.Length)
            {
                throw new ImageFormatMismatchException(path, "header", 0, $"not a Parallels image: the file is {length} bytes, shorter than the {ParallelsHeader.Length}-byte header");
            }

            var raw = new byte[ParallelsHeader.Length];
            file.ReadExactly(0, raw, "header");
            if (!ParallelsHeader.HasAnyMagic(raw))
            {
                throw new ImageFormatMismatchException(path, "magic", 0, "not a Parallels image: neither 'WithoutFreeSpace' nor 'WithouFreSpacExt'");
            }

            ParallelsHeader header = ParallelsHeader.FromBytes(raw);
            if (header.Version != ParallelsHeader.Version2)
            {
                throw new ImageNotSupportedException(path, "version", ParallelsHeader.VersionOffset, $"header version {header.Version} is not supported (only 2)");
            }

            if (header.Tracks == 0 || header.Tracks > MaxTracks)
            {
                throw new ImageCorruptException(path, "tracks", ParallelsHeader.TracksOffset, $"{header.Tracks} sectors per cluster is not between 1 and {MaxTracks}");
            }

            uint entries = header.BatEntries;
            long batEnd = ParallelsHeader.Length + (entries * 4L);
            if (entries > MaxBatEntries || batEnd > length)
            {
                throw new ImageCorruptException(path, "bat entries", ParallelsHeader.BatEntriesOffset, $"a BAT of {entries} entries ({entries * 4L} bytes at {ParallelsHeader.Length}) does not fit in the file ({length} bytes)");
            }

            ulong sectors = header.NbSectors;
            if (sectors > (ulong)(long.MaxValue / ParallelsHeader.SectorSize))
            {
                throw new ImageCorruptException(path, "nb_sectors", ParallelsHeader.NbSectorsOffset, $"{sectors} sectors is beyond any disk size");
            }

            long dataStart = header.DataOff == 0 ? RoundUp(batEnd, ParallelsHeader.SectorSize) : (long)header.DataOff * ParallelsHeader.SectorSize;
            if (dataStart < batEnd)
            {
                throw new ImageCorruptException(path, "data_off", ParallelsHeader.DataOffOffset, $"the data area at sector {header.DataOff} overlaps the BAT, which ends at byte {batEnd}");
            }

            var batRaw = new byte[entries * 4L];
            file.ReadExactly(ParallelsHeader.Length, batRaw, "BAT");
            var bat = new uint[entries];
            for (int i = 0; i < bat.Length; i++)
            {
                bat[i] = BinaryPrimitives.ReadUInt32LittleEndian(batRaw.AsSpan(i * 4));
            }

            var layer = new ParallelsLayer(file, header, bat, (long)sectors * ParallelsHeader.SectorSize, dataStart)
            {
                _unclean = header.InUse == ParallelsHeader.InUseMagic,
            };
            layer.ClassifyEntries();
            return layer;
        }

        internal static long RoundUp(long value, long unit) => (value + unit - 1) / unit * unit;

        /// <summary>The host byte offset of an entry's cluster (entries are at most 2^32 and a cluster 2^22 sectors, so no overflow).</summary>
        private long HostOf(uint entry) => entry * Multiplier * ParallelsHeader.SectorSize;

        /// <summary>Finds the entries outside the data area or the file, and the clusters two entries share.</summary>
        private void ClassifyEntries()
        {
            long length = _file.Length;
            long end = _dataStart;
            var inUse = new List<(long Host, long Index)>();
            for (long i = 0; i < _bat.Length; i++)
            {
                if (_bat[i] == 0)
                {
                    continue;
                }

                long host = HostOf(_bat[i]);
                if (host < _dataStart || host >= length)
                {
                    _outside.Add(i);
                    continue;
                }

                inUse.Add((host, i));
                end = Math.Max(end, host + _clusterBytes);
            }

            inUse.Sort((a, b) => a.Host.CompareTo(b.Host));
            for (int k = 1; k < inUse.Count; k++)
            {
                if (inUse[k - 1].Host + _clusterBytes > inUse[k].Host)
                {
                    _shared.Add(inUse[k - 1].Index);
                    _shared.Add(inUse[k].Index);
                }
            }

            _dataEnd = NextClusterStart(Math.Max(end, ExtensionEnd));
        }

        /// <summary>The end of the format extension cluster, or 0 without one.</summary>
        private long ExtensionEnd
        {
            get
            {
                ulong ext = _header.ExtOff;
                return ext == 0 || ext > (ulong)(long.MaxValue / ParallelsHeader.SectorSize / 2) ? 0 : ((long)ext * ParallelsHeader.SectorSize) + _clusterBytes;
            }
        }

        /// <summary>Where a new cluster can start at or after <paramref name="offset"/>: a multiple of what one BAT entry counts.</summary>
        private long NextClusterStart(long offset) => RoundUp(offset, Multiplier * ParallelsHeader.SectorSize);

        public override BlockStatus GetBlockStatus(long offset, long maxLength)
        {
            maxLength = Math.Min(maxLength, _size - offset);
            long end = offset + maxLength;
            long index = offset / _clusterBytes;
            if (index >= _bat.Length)
            {
                // Sectors past what the BAT covers read as zeros (qemu seek_to_sector).
                return new BlockStatus(offset, maxLength, ExtentKind.Zero);
            }

            uint entry = _bat[index];
            if (entry == 0)
            {
                long next = index + 1;
                while (next < _bat.Length && next * _clusterBytes < end && _bat[next] == 0)
                {
                    next++;
                }

                return new BlockStatus(offset, Math.Min(end, next * _clusterBytes) - offset, ExtentKind.Unallocated);
            }

            ThrowIfOutside(index);
            long host = HostOf(entry) + (offset - (index * _clusterBytes));
            long runEnd = Math.Min(end, (index + 1) * _clusterBytes);

            // Clusters whose data follows on in the file make one run.
            long b = index + 1;
            while (runEnd < end && b < _bat.Length && _bat[b] != 0 && !_outside.Contains(b) && HostOf(_bat[b]) == HostOf(entry) + ((b - index) * _clusterBytes))
            {
                runEnd = Math.Min(end, (b + 1) * _clusterBytes);
                b++;
            }

            return new BlockStatus(offset, runEnd - offset, ExtentKind.Data, host);
        }

        public override void Describe(VDiskInfo info)
        {
            info.Subformat = _header.IsExtended ? "extended" : "original";
        }

        public override void Flush() => _file.Flush();

        protected override void ReadData(long offset, Span<byte> buffer, BlockStatus status)
        {
            _file.ReadZeroPadded(status.HostOffset + (offset - status.GuestOffset), buffer);
        }

        protected override void Dispose(bool disposing)
        {
            try
            {
                if (IsWritable)
                {
                    if (_markedInUse)
                    {
                        _file.Flush();
                        SetInUse(false);
                    }

                    _file.Flush();
                }
            }
            finally
            {
                _file.Dispose();
            }
        }

        private void ThrowIfOutside(long index)
        {
            if (_outside.Contains(index))
            {
                throw new ImageCorruptException(Path, $"BAT entry {index}", BatEntryOffset(index),
                    $"cluster {_bat[index]} lies outside the data area ({_dataStart} to {_file.Length} bytes)") { Kind = ImageErrorKind.DamageNeedsCheck };
            }
        }

        private static long BatEntryOffset(long index) => ParallelsHeader.Length + (index * 4);

        private void SetInUse(bool inUse)
        {
            _header.InUse = inUse ? ParallelsHeader.InUseMagic : 0;
            _file.WriteAt(0, _header.ToBytes());
            _file.Flush();
            _markedInUse = inUse;
        }

        private void WriteBatEntries(long first, long count)
        {
            var raw = new byte[count * 4];
            for (int i = 0; i < count; i++)
            {
                BinaryPrimitives.WriteUInt32LittleEndian(raw.AsSpan(i * 4), _bat[first + i]);
            }

            _file.WriteAt(BatEntryOffset(first), raw);
        }
    }
}
