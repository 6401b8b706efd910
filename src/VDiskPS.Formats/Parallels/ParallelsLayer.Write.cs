using System;
using System.Buffers;
using System.Collections.Generic;
using System.Linq;

namespace VDiskPS.Formats.Parallels
{
    /// <summary>
    /// Creating, writing and checking. New clusters go at the end of the data area, data first and
    /// then their BAT entries (a crash leaves at worst a leak), with the in-use marker set from the first
    /// write until the layer is closed, as qemu does.
    /// </summary>
    public sealed partial class ParallelsLayer : ICheckableLayer
    {
        /// <summary>New clusters staged for one host write at most.</summary>
        private const int MaxClustersPerAllocation = 16;

        internal static ParallelsLayer Create(HostFile file, long size, long clusterBytes)
        {
            uint tracks = (uint)(clusterBytes / ParallelsHeader.SectorSize);
            long entries = (size + clusterBytes - 1) / clusterBytes;
            long dataStart = HeaderClusters(entries, clusterBytes) * clusterBytes;
            ParallelsHeader header = ParallelsHeader.CreateNew(size, tracks, (uint)entries, (uint)(dataStart / ParallelsHeader.SectorSize));
            file.WriteAt(0, header.ToBytes());
            file.WriteZeros(ParallelsHeader.Length, dataStart - ParallelsHeader.Length);
            file.SetLength(dataStart);
            file.Flush();
            var layer = new ParallelsLayer(file, header, new uint[entries], size, dataStart);
            layer.ClassifyEntries();
            return layer;
        }

        /// <summary>Clusters the header and BAT take in a new image (qemu rounds them up to whole clusters).</summary>
        internal static long HeaderClusters(long entries, long clusterBytes) => (ParallelsHeader.Length + (entries * 4) + clusterBytes - 1) / clusterBytes;

        public VDiskCheckResult Check(RepairMode repair)
        {
            bool fixErrors = repair == RepairMode.All && IsWritable;
            bool fixLeaks = repair != RepairMode.None && IsWritable;
            long length = _file.Length;
            var result = new VDiskCheckResult { Path = Path, Format = Format.ToName(), TotalClusters = _bat.Length };
            if (_unclean)
            {
                result.Corruptions++;
                result.Messages.Add("the image was not closed cleanly (the in-use marker is set)");
                if (fixErrors)
                {
                    SetInUse(false);
                    _unclean = false;
                    result.CorruptionsFixed++;
                }
            }

            bool batChanged = false;
            foreach (long index in _outside.OrderBy(i => i).ToList())
            {
                result.Corruptions++;
                result.Messages.Add($"BAT entry {index}: cluster {_bat[index]} (byte {HostOf(_bat[index])}) lies outside the data area ({_dataStart} to {length} bytes)");
                if (fixErrors)
                {
                    // As qemu repairs it: the cluster held nothing readable, so it becomes unallocated.
                    _bat[index] = 0;
                    _outside.Remove(index);
                    WriteBatEntries(index, 1);
                    batChanged = true;
                    result.CorruptionsFixed++;
                }
            }

            if (_shared.Count > 0)
            {
                result.Corruptions += _shared.Count;
                result.Messages.Add($"{_shared.Count} BAT entries point at overlapping clusters: {string.Join(", ", _shared.OrderBy(i => i).Take(8))}{(_shared.Count > 8 ? ", ..." : string.Empty)}");
                if (fixErrors)
                {
                    result.CorruptionsFixed += SeparateSharedClusters();
                    batChanged = true;
                }
            }

            if (batChanged)
            {
                _file.Flush();
            }

            long previous = -1;
            foreach (long index in Enumerable.Range(0, _bat.Length).Select(i => (long)i))
            {
                if (_bat[index] == 0 || _outside.Contains(index))
                {
                    previous = -1;
                    continue;
                }

                long host = HostOf(_bat[index]);
                result.AllocatedClusters++;
                if (previous >= 0 && previous + _clusterBytes != host)
                {
                    result.FragmentedClusters++;
                }

                previous = host;
            }

            long imageEnd = ImageEnd();
            result.ImageEndOffset = imageEnd;
            if (length > imageEnd)
            {
                long leaks = (length - imageEnd + _clusterBytes - 1) / _clusterBytes;
                result.Leaks = leaks;
                result.Messages.Add($"{length - imageEnd} bytes past the last cluster in use belong to no cluster");
                if (fixLeaks)
                {
                    _file.SetLength(imageEnd);
                    _file.Flush();
                    result.LeaksFixed = leaks;
                }
            }

            return result;
        }

        protected override void WriteCore(long offset, ReadOnlySpan<byte> data)
        {
            EnsureWritableImage(offset);
            while (data.Length > 0)
            {
                long index = offset / _clusterBytes;
                if (index >= _bat.Length)
                {
                    throw new ImageCorruptException(Path, "bat entries", ParallelsHeader.BatEntriesOffset, $"the BAT covers {(long)_bat.Length * _clusterBytes} bytes of the {_size}-byte disk; byte {offset} has no cluster to be written to");
                }

                if (_bat[index] == 0)
                {
                    long end = offset + data.Length;
                    int count = 1;
                    while (count < MaxClustersPerAllocation && index + count < _bat.Length && (index + count) * _clusterBytes < end && _bat[index + count] == 0)
                    {
                        count++;
                    }

                    int consumed = (int)(Math.Min(end, (index + count) * _clusterBytes) - offset);
                    AllocateClusters(index, count, offset, data.Slice(0, consumed));
                    offset += consumed;
                    data = data.Slice(consumed);
                    continue;
                }

                ThrowIfOutside(index);
                ThrowIfShared(index);
                long inCluster = offset - (index * _clusterBytes);
                int n = (int)Math.Min(data.Length, _clusterBytes - inCluster);
                _file.WriteAt(HostOf(_bat[index]) + inCluster, data.Slice(0, n));
                offset += n;
                data = data.Slice(n);
            }
        }

        protected override void WriteZeroesCore(long offset, long length)
        {
            // Unallocated clusters read as zeros already (the format has no backing file).
            long end = offset + length;
            while (offset < end)
            {
                long index = offset / _clusterBytes;
                long next = Math.Min(end, (index + 1) * _clusterBytes);
                if (index >= _bat.Length || _bat[index] != 0)
                {
                    base.WriteZeroesCore(offset, next - offset);
                }

                offset = next;
            }
        }

        /// <summary>The end of the last structure in use: data area start, clusters, extension.</summary>
        private long ImageEnd()
        {
            long end = Math.Max(_dataStart, ExtensionEnd);
            for (long i = 0; i < _bat.Length; i++)
            {
                if (_bat[i] != 0 && !_outside.Contains(i))
                {
                    end = Math.Max(end, HostOf(_bat[i]) + _clusterBytes);
                }
            }

            return end;
        }

        /// <summary>Refuses writes the image cannot take safely; sets the in-use marker before the first one.</summary>
        private void EnsureWritableImage(long offset)
        {
            if (_unclean)
            {
                throw new ImageCorruptException(Path, "inuse", ParallelsHeader.InUseOffset, "the image was not closed cleanly (the in-use marker is set); it must be checked and repaired before it is written") { Kind = ImageErrorKind.DamageNeedsCheck };
            }

            if (_header.ExtOff != 0)
            {
                throw new ImageNotSupportedException(Path, "ext_off", ParallelsHeader.ExtOffOffset, "the image has a format extension (dirty bitmaps), which writing would make stale; writing such images is not supported");
            }

            if (!_markedInUse)
            {
                SetInUse(true);
            }
        }

        private void ThrowIfShared(long index)
        {
            if (_shared.Contains(index))
            {
                throw new ImageCorruptException(Path, $"BAT entry {index}", BatEntryOffset(index), $"cluster {_bat[index]} overlaps another entry's cluster; writing it would change both") { Kind = ImageErrorKind.DamageNeedsCheck };
            }
        }

        /// <summary>Whole new clusters at the end of the data area: the written bytes over zeros.</summary>
        private void AllocateClusters(long firstIndex, int count, long offset, ReadOnlySpan<byte> data)
        {
            long host = _dataEnd;
            EntryFor(host + ((count - 1) * _clusterBytes), firstIndex);
            int total = (int)(_clusterBytes * count);
            byte[] staging = ArrayPool<byte>.Shared.Rent(total);
            try
            {
                Array.Clear(staging, 0, total);
                data.CopyTo(staging.AsSpan((int)(offset - (firstIndex * _clusterBytes))));
                _file.WriteAt(host, staging.AsSpan(0, total));
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(staging);
            }

            lock (_lock)
            {
                for (int i = 0; i < count; i++)
                {
                    _bat[firstIndex + i] = EntryFor(host + (i * _clusterBytes), firstIndex + i);
                }

                _dataEnd = host + (count * _clusterBytes);
            }

            WriteBatEntries(firstIndex, count);
        }

        /// <summary>The BAT entry naming a cluster at host byte <paramref name="host"/>; refused past the largest a BAT entry can name.</summary>
        private uint EntryFor(long host, long index)
        {
            long entry = host / (Multiplier * ParallelsHeader.SectorSize);
            if (entry > uint.MaxValue)
            {
                throw new ImageNotSupportedException(Path, $"BAT entry {index}", BatEntryOffset(index), $"the file has reached the largest offset a BAT entry can name ({(long)uint.MaxValue * Multiplier * ParallelsHeader.SectorSize} bytes)");
            }

            return (uint)entry;
        }

        /// <summary>Gives every entry but the first of each overlapping group a copy of its cluster at the end of the data area.</summary>
        private long SeparateSharedClusters()
        {
            long fixedCount = 0;
            var seen = new List<long>();
            var buffer = new byte[_clusterBytes];
            foreach (long index in _shared.OrderBy(i => HostOf(_bat[i])).ThenBy(i => i).ToList())
            {
                long host = HostOf(_bat[index]);
                if (seen.Count == 0 || seen.All(h => h + _clusterBytes <= host || host + _clusterBytes <= h))
                {
                    seen.Add(host);
                    fixedCount++;
                    continue;
                }

                long target = _dataEnd;
                uint entry = EntryFor(target, index);
                _file.ReadZeroPadded(host, buffer);
                _file.WriteAt(target, buffer);
                _file.Flush();
                _bat[index] = entry;
                _dataEnd = target + _clusterBytes;
                WriteBatEntries(index, 1);
                seen.Add(target);
                fixedCount++;
            }

            _shared.Clear();
            return fixedCount;
        }
    }
}
