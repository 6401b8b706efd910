using System;
using System.Collections.Generic;
using VDiskPS;

namespace VDiskPS.Formats.Qcow2
{
    /// <summary>
    /// Persistent dirty bitmaps (qcow2.rst "Bitmaps"), like qemu-img bitmap. A changed bitmap is
    /// stored whole to new clusters, then the directory and header switch to it, then the old
    /// clusters are freed. Writes mark enabled ("auto") bitmaps, which are flagged in-use on disk
    /// while this layer may change them, as QEMU does.
    /// </summary>
    internal sealed partial class Qcow2Layer : IBitmapLayer
    {
        /// <summary>Bitmaps larger than this in memory are refused rather than loaded.</summary>
        private const long MaxBitmapBytes = 64L << 20;

        private List<Qcow2Bitmap> _bitmaps;
        private readonly Dictionary<string, byte[]> _bitmapBits = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        private bool _trackingBitmaps;

        /// <summary>Bitmaps this layer flagged in-use while tracking writes (others found in-use stay inconsistent and untouched).</summary>
        private readonly HashSet<string> _bitmapsFlaggedHere = new HashSet<string>(StringComparer.Ordinal);

        private List<Qcow2Bitmap> Bitmaps => _bitmaps ?? (_bitmaps = Qcow2Bitmap.ReadDirectory(_file, _header));

        public IReadOnlyList<VDiskBitmapInfo> GetBitmaps()
        {
            lock (_gate)
            {
                var list = new List<VDiskBitmapInfo>();
                foreach (var bitmap in Bitmaps)
                {
                    byte[] bits = BitsOf(bitmap);
                    long set = 0;
                    foreach (byte b in bits)
                    {
                        set += PopCount(b);
                    }

                    list.Add(new VDiskBitmapInfo
                    {
                        Path = Path,
                        Name = bitmap.Name,
                        Granularity = 1L << bitmap.GranularityBits,
                        Enabled = bitmap.Auto,
                        Auto = bitmap.Auto,
                        InUse = bitmap.InUse && !_bitmapsFlaggedHere.Contains(bitmap.Name),
                        DirtyBytes = Math.Min(_size, set << bitmap.GranularityBits),
                    });
                }

                return list;
            }
        }

        public void AddBitmap(string name, long granularity, bool disabled)
        {
            EnsureWritable();
            lock (_gate)
            {
                EnsureBitmapsPossible();
                if (string.IsNullOrEmpty(name) || System.Text.Encoding.UTF8.GetByteCount(name) > 1023)
                {
                    throw new ImageOptionException(Path, "bitmap", "a bitmap name must be 1 to 1023 bytes");
                }

                if (Bitmaps.Exists(b => b.Name == name))
                {
                    throw new ImageOptionException(Path, "bitmap", $"a bitmap named '{name}' already exists");
                }

                if (granularity == 0)
                {
                    granularity = Math.Max(4096, _header.ClusterSize);
                }

                if (granularity < 512 || granularity > (1L << 31) || (granularity & (granularity - 1)) != 0)
                {
                    throw new ImageOptionException(Path, "granularity", $"{granularity} must be a power of two from 512 bytes to 2 GiB");
                }

                int bits = 0;
                while ((1L << bits) < granularity)
                {
                    bits++;
                }

                var bitmap = new Qcow2Bitmap { Name = name, GranularityBits = bits, Flags = disabled ? 0 : Qcow2Bitmap.FlagAuto };
                var bitmaps = new List<Qcow2Bitmap>(Bitmaps) { bitmap };
                _bitmapBits[name] = new byte[BitmapBytes(bitmap)];
                if (_trackingBitmaps && bitmap.Auto)
                {
                    bitmap.Flags |= Qcow2Bitmap.FlagInUse;
                    _bitmapsFlaggedHere.Add(name);
                }

                StoreBitmaps(bitmaps);
            }
        }

        public void RemoveBitmap(string name)
        {
            EnsureWritable();
            lock (_gate)
            {
                Qcow2Bitmap bitmap = FindBitmap(name);
                var bitmaps = new List<Qcow2Bitmap>(Bitmaps);
                bitmaps.Remove(bitmap);
                _bitmapBits.Remove(name);
                _bitmapsFlaggedHere.Remove(name);
                StoreBitmaps(bitmaps, removed: bitmap);
            }
        }

        public void ClearBitmap(string name)
        {
            EnsureWritable();
            lock (_gate)
            {
                Qcow2Bitmap bitmap = FindBitmap(name);
                _bitmapBits[name] = new byte[BitmapBytes(bitmap)];
                StoreBitmaps(new List<Qcow2Bitmap>(Bitmaps));
            }
        }

        public void SetBitmapEnabled(string name, bool enabled)
        {
            EnsureWritable();
            lock (_gate)
            {
                Qcow2Bitmap bitmap = FindBitmap(name);
                BitsOf(bitmap);
                if (enabled)
                {
                    bitmap.Flags |= Qcow2Bitmap.FlagAuto;
                    if (_trackingBitmaps && !bitmap.InUse)
                    {
                        bitmap.Flags |= Qcow2Bitmap.FlagInUse;
                        _bitmapsFlaggedHere.Add(name);
                    }
                }
                else
                {
                    bitmap.Flags &= ~Qcow2Bitmap.FlagAuto;
                    if (_bitmapsFlaggedHere.Remove(name))
                    {
                        bitmap.Flags &= ~Qcow2Bitmap.FlagInUse;
                    }
                }

                StoreBitmaps(new List<Qcow2Bitmap>(Bitmaps));
            }
        }

        public void MergeBitmap(string target, ImageLayer source, string sourceName)
        {
            EnsureWritable();
            var sourceBitmaps = source as Qcow2Layer ?? throw ImageNotSupportedException.Capability(source.Format, "persistent bitmaps to merge from", source.Path);
            long sourceGranularity;
            byte[] sourceBits;
            lock (sourceBitmaps._gate)
            {
                Qcow2Bitmap from = sourceBitmaps.FindBitmap(sourceName);
                sourceGranularity = 1L << from.GranularityBits;
                sourceBits = (byte[])sourceBitmaps.BitsOf(from).Clone();
            }

            lock (_gate)
            {
                Qcow2Bitmap into = FindBitmap(target);
                byte[] bits = BitsOf(into);
                long granules = (long)sourceBits.Length * 8;
                for (long i = 0; i < granules; i++)
                {
                    if ((sourceBits[i >> 3] & (1 << (int)(i & 7))) != 0)
                    {
                        long start = i * sourceGranularity;
                        if (start >= _size)
                        {
                            break;
                        }

                        SetBits(into, bits, start, Math.Min(sourceGranularity, _size - start));
                    }
                }

                StoreBitmaps(new List<Qcow2Bitmap>(Bitmaps));
            }
        }

        public bool GetBitmapRun(string name, long offset, long maxLength, out long length)
        {
            lock (_gate)
            {
                Qcow2Bitmap bitmap = FindBitmap(name);
                byte[] bits = BitsOf(bitmap);
                int shift = bitmap.GranularityBits;
                long end = Math.Min(_size, offset + maxLength);
                long granule = offset >> shift;
                bool dirty = IsSet(bits, granule);
                long next = granule + 1;
                byte uniform = dirty ? (byte)0xFF : (byte)0;
                while ((next << shift) < end && IsSet(bits, next) == dirty)
                {
                    // Whole bytes of one state are skipped at once.
                    next += (next & 7) == 0 && (next >> 3) < bits.Length && bits[next >> 3] == uniform ? 8 : 1;
                }

                length = Math.Min(end, next << shift) - offset;
                return dirty;
            }
        }

        private static bool IsSet(byte[] bits, long granule)
            => (granule >> 3) < bits.Length && (bits[granule >> 3] & (1 << (int)(granule & 7))) != 0;

        /// <summary>Marks [offset, offset + length) in every enabled bitmap; the first time, flags them in-use on disk.</summary>
        private void MarkBitmaps(long offset, long length)
        {
            if (!_header.HasBitmapsExtension || _header.BitmapCount == 0)
            {
                return;
            }

            List<Qcow2Bitmap> bitmaps = Bitmaps;
            if (!_trackingBitmaps && bitmaps.Exists(b => b.Auto && !b.InUse))
            {
                foreach (var bitmap in bitmaps)
                {
                    if (bitmap.Auto && !bitmap.InUse)
                    {
                        BitsOf(bitmap);
                        bitmap.Flags |= Qcow2Bitmap.FlagInUse;
                        _bitmapsFlaggedHere.Add(bitmap.Name);
                    }
                }

                _trackingBitmaps = true;
                StoreBitmaps(new List<Qcow2Bitmap>(bitmaps));
            }

            foreach (var bitmap in Bitmaps)
            {
                if (_bitmapsFlaggedHere.Contains(bitmap.Name))
                {
                    SetBits(bitmap, BitsOf(bitmap), offset, length);
                }
            }
        }

        /// <summary>Fits every loaded bitmap to the current virtual size (new granules clean) and stores them.</summary>
        private void ResizeBitmaps()
        {
            foreach (var bitmap in Bitmaps)
            {
                byte[] old = BitsOf(bitmap);
                var bits = new byte[BitmapBytes(bitmap)];
                Array.Copy(old, bits, Math.Min(old.Length, bits.Length));
                long granules = (_size + (1L << bitmap.GranularityBits) - 1) >> bitmap.GranularityBits;
                if (granules % 8 != 0 && bits.Length > 0)
                {
                    bits[bits.Length - 1] &= (byte)((1 << (int)(granules % 8)) - 1);
                }

                _bitmapBits[bitmap.Name] = bits;
            }

            StoreBitmaps(new List<Qcow2Bitmap>(Bitmaps));
        }

        /// <summary>Stores the tracked bitmaps and clears their in-use flags (on flush and close).</summary>
        private void StoreTrackedBitmaps()
        {
            if (!_trackingBitmaps)
            {
                return;
            }

            foreach (var bitmap in Bitmaps)
            {
                if (_bitmapsFlaggedHere.Contains(bitmap.Name))
                {
                    bitmap.Flags &= ~Qcow2Bitmap.FlagInUse;
                }
            }

            _bitmapsFlaggedHere.Clear();
            _trackingBitmaps = false;
            StoreBitmaps(new List<Qcow2Bitmap>(Bitmaps));
        }

        private void EnsureBitmapsPossible()
        {
            if (_header.Version < 3)
            {
                throw ImageNotSupportedException.Capability(Qcow2Driver.Id, "persistent bitmaps in compat=0.10 images", Path);
            }

            if (_isSnapshotView)
            {
                throw ImageNotSupportedException.Capability(Qcow2Driver.Id, "bitmaps in a snapshot view", Path);
            }
        }

        private Qcow2Bitmap FindBitmap(string name)
        {
            return Bitmaps.Find(b => b.Name == name) ?? throw new ImageOptionException(Path, "bitmap", $"there is no bitmap named '{name}'");
        }

        private long BitmapBytes(Qcow2Bitmap bitmap)
        {
            long granules = (_size + (1L << bitmap.GranularityBits) - 1) >> bitmap.GranularityBits;
            long bytes = (granules + 7) / 8;
            if (bytes > MaxBitmapBytes)
            {
                throw new ImageNotSupportedException(Path, $"bitmap '{bitmap.Name}'", null, $"the bitmap needs {bytes} bytes in memory, more than the {MaxBitmapBytes}-byte limit");
            }

            return bytes;
        }

        /// <summary>The bitmap's bits in memory (bit i of the array is granule i, least significant bit first).</summary>
        private byte[] BitsOf(Qcow2Bitmap bitmap)
        {
            if (_bitmapBits.TryGetValue(bitmap.Name, out byte[] bits))
            {
                return bits;
            }

            bits = new byte[BitmapBytes(bitmap)];
            long[] table = ReadBitmapTable(bitmap);
            int cs = _header.ClusterSize;
            long expected = (bits.Length + cs - 1) / cs;
            if (table.Length < expected)
            {
                throw new ImageCorruptException(Path, $"bitmap '{bitmap.Name}' table size", null, $"{table.Length} entries are too few for {bits.Length} bytes of bitmap");
            }

            long fileLength = _file.Length;
            for (int i = 0; i < expected; i++)
            {
                long entry = table[i];
                long offset = (long)((ulong)entry & OffsetMask);
                int n = (int)Math.Min(cs, bits.Length - (long)i * cs);
                if (offset == 0)
                {
                    if ((entry & 1) != 0)
                    {
                        bits.AsSpan(i * cs, n).Fill(0xFF);
                    }

                    continue;
                }

                if ((offset & ClusterMask) != 0 || offset > fileLength - cs)
                {
                    throw new ImageCorruptException(Path, $"bitmap '{bitmap.Name}' table entry {i}", bitmap.TableOffset + i * 8L, $"the data cluster offset 0x{offset:x} is unaligned or past the end of the file");
                }

                _file.ReadExactly(offset, bits.AsSpan(i * cs, n), $"bitmap '{bitmap.Name}' data");
            }

            _bitmapBits[bitmap.Name] = bits;
            return bits;
        }

        private static void SetBits(Qcow2Bitmap bitmap, byte[] bits, long offset, long length)
        {
            if (length <= 0)
            {
                return;
            }

            long first = offset >> bitmap.GranularityBits;
            long last = Math.Min((offset + length - 1) >> bitmap.GranularityBits, (long)bits.Length * 8 - 1);
            for (long i = first; i <= last; i++)
            {
                bits[i >> 3] |= (byte)(1 << (int)(i & 7));
            }
        }

        private static bool IsAllZero(ReadOnlySpan<byte> bytes)
        {
            foreach (byte b in bytes)
            {
                if (b != 0)
                {
                    return false;
                }
            }

            return true;
        }

        private static int PopCount(byte b)
        {
            int n = 0;
            while (b != 0)
            {
                n += b & 1;
                b >>= 1;
            }

            return n;
        }

        /// <summary>Writes every bitmap of <paramref name="bitmaps"/> whose bits are loaded to new clusters, then the directory and header; then frees what they replaced.</summary>
        private void StoreBitmaps(List<Qcow2Bitmap> bitmaps, Qcow2Bitmap removed = null)
        {
            int cs = _header.ClusterSize;
            var freed = new List<KeyValuePair<long, long>>();
            if (removed != null)
            {
                CollectBitmapClusters(removed, freed);
            }

            foreach (var bitmap in bitmaps)
            {
                if (!_bitmapBits.TryGetValue(bitmap.Name, out byte[] bits))
                {
                    continue;
                }

                if (bitmap.TableOffset != 0)
                {
                    CollectBitmapClusters(bitmap, freed);
                }

                int tableSize = (int)((bits.Length + cs - 1) / cs);
                var table = new ulong[tableSize];
                for (int i = 0; i < tableSize; i++)
                {
                    int n = (int)Math.Min(cs, bits.Length - (long)i * cs);
                    var chunk = bits.AsSpan(i * cs, n);
                    if (IsAllZero(chunk))
                    {
                        continue;
                    }

                    long offset = Refcounts.Allocate(1);
                    var cluster = new byte[cs];
                    chunk.CopyTo(cluster);
                    _file.WriteAt(offset, cluster);
                    table[i] = (ulong)offset;
                }

                bitmap.TableSize = tableSize;
                bitmap.TableOffset = 0;
                if (tableSize > 0)
                {
                    long tableOffset = Refcounts.Allocate(((long)tableSize * 8 + ClusterMask) >> ClusterBits);
                    _file.WriteAt(tableOffset, SerializeWords(table, 0, tableSize));
                    bitmap.TableOffset = tableOffset;
                }
            }

            if (_header.HasBitmapsExtension && _header.BitmapDirectorySize > 0)
            {
                freed.Add(new KeyValuePair<long, long>(_header.BitmapDirectoryOffset, _header.BitmapDirectorySize));
            }

            Refcounts.Flush();
            if (bitmaps.Count == 0)
            {
                _header.HasBitmapsExtension = false;
                _header.BitmapCount = 0;
                _header.BitmapDirectoryOffset = 0;
                _header.BitmapDirectorySize = 0;
                _header.AutoclearFeatures &= ~Qcow2Header.AutoclearBitmaps;
            }
            else
            {
                byte[] directory = Qcow2Bitmap.SerializeDirectory(bitmaps);
                long directoryOffset = Refcounts.Allocate((directory.Length + ClusterMask) >> ClusterBits);
                Refcounts.Flush();
                _file.WriteAt(directoryOffset, directory);
                _header.HasBitmapsExtension = true;
                _header.BitmapCount = bitmaps.Count;
                _header.BitmapDirectoryOffset = directoryOffset;
                _header.BitmapDirectorySize = directory.Length;
                _header.AutoclearFeatures |= Qcow2Header.AutoclearBitmaps;
            }

            WriteHeader();
            _bitmaps = bitmaps;
            foreach (var range in freed)
            {
                for (long c = range.Key >> ClusterBits; c <= (range.Key + range.Value - 1) >> ClusterBits; c++)
                {
                    Refcounts.Adjust(c, -1);
                }
            }

            Refcounts.Flush();
            _file.Flush();
        }

        /// <summary>The table and data clusters a stored bitmap occupies.</summary>
        private void CollectBitmapClusters(Qcow2Bitmap bitmap, List<KeyValuePair<long, long>> clusters)
        {
            if (bitmap.TableOffset == 0 || bitmap.TableSize == 0)
            {
                return;
            }

            foreach (long entry in ReadBitmapTable(bitmap))
            {
                long offset = (long)((ulong)entry & OffsetMask);
                if (offset != 0)
                {
                    clusters.Add(new KeyValuePair<long, long>(offset, _header.ClusterSize));
                }
            }

            clusters.Add(new KeyValuePair<long, long>(bitmap.TableOffset, (long)bitmap.TableSize * 8));
        }

        private void DescribeBitmaps(VDiskInfo info)
        {
            List<Qcow2Bitmap> bitmaps = Bitmaps;
            info.Bitmaps = bitmaps.Count;
            if (bitmaps.Count == 0)
            {
                return;
            }

            var list = new List<IDictionary<string, object>>();
            foreach (var bitmap in bitmaps)
            {
                var flags = new List<string>();
                if (bitmap.InUse && !_bitmapsFlaggedHere.Contains(bitmap.Name))
                {
                    flags.Add("in-use");
                }

                if (bitmap.Auto)
                {
                    flags.Add("auto");
                }

                list.Add(new QemuRecord
                {
                    ["name"] = bitmap.Name,
                    ["granularity"] = 1L << bitmap.GranularityBits,
                    ["flags"] = flags.ToArray(),
                });
            }

            info.FormatSpecific["bitmaps"] = list.ToArray();
        }

        /// <summary>The entries of a bitmap's table (offsets of its data clusters), validated for size.</summary>
        private long[] ReadBitmapTable(Qcow2Bitmap bitmap)
        {
            if (bitmap.TableSize == 0)
            {
                return Array.Empty<long>();
            }

            if ((bitmap.TableOffset & ClusterMask) != 0 || bitmap.TableOffset == 0)
            {
                throw new ImageCorruptException(Path, $"bitmap '{bitmap.Name}' table offset", null, $"0x{bitmap.TableOffset:x} is not cluster aligned");
            }

            return ReadL1(_file, bitmap.TableOffset, bitmap.TableSize, $"bitmap '{bitmap.Name}' table");
        }
    }
}
