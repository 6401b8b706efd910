using System;
using System.Collections.Generic;
using VDiskPS;

namespace VDiskPS.Formats.Qcow2
{
    /// <summary>Discard, resize, amend and rebase of the backing pointer (qemu-img resize/amend/rebase -u).</summary>
    internal sealed partial class Qcow2Layer : IDiscardableLayer, IResizableLayer, IAmendableLayer, IParentChangeableLayer
    {
        public void Discard(long offset, long length)
        {
            EnsureWritable();
            CheckRange(offset, length);
            lock (_gate)
            {
                EnsureWritableImage();
                if (length > 0)
                {
                    MarkBitmaps(offset, length);
                    ZeroOrDiscard(offset, length, zero: false);
                }
            }
        }

        public void Resize(long newSize, bool allowShrink, Preallocation preallocation)
        {
            EnsureWritable();
            lock (_gate)
            {
                EnsureWritableImage();
                if (newSize < 0 || Qcow2Header.L1EntriesFor(newSize, ClusterBits, _header.L2Entries) > Qcow2Header.MaxL1Bytes / 8)
                {
                    throw new ImageOptionException(Path, "size", $"{newSize} bytes is out of range for {_header.ClusterSize}-byte clusters");
                }

                if (newSize == _size)
                {
                    return;
                }

                bool hasBitmaps = _header.HasBitmapsExtension && _header.BitmapCount > 0;
                if (hasBitmaps)
                {
                    // Bitmaps follow the new size (block/qcow2-bitmap.c); one another writer left in use cannot.
                    foreach (var bitmap in Bitmaps)
                    {
                        if (bitmap.InUse && !_bitmapsFlaggedHere.Contains(bitmap.Name))
                        {
                            throw new ImageNotSupportedException(Path, $"bitmap '{bitmap.Name}'", null, "the bitmap is in use (inconsistent); remove it before resizing");
                        }

                        BitsOf(bitmap);
                    }
                }

                if (newSize < _size)
                {
                    Shrink(newSize, allowShrink);
                    if (hasBitmaps)
                    {
                        ResizeBitmaps();
                    }

                    return;
                }

                if (_snapshots.Count > 0 && _header.Version < 3)
                {
                    throw ImageNotSupportedException.Capability(Qcow2Driver.Id, "resizing a compat=0.10 image with internal snapshots", Path);
                }

                long needed = Qcow2Header.L1EntriesFor(newSize, ClusterBits, _header.L2Entries);
                if (needed > _l1.Length)
                {
                    GrowL1((int)needed);
                }

                long oldSize = _size;
                long oldClusterEnd = (oldSize + ClusterMask) & ~ClusterMask;
                bool tailIsData = oldSize % _header.ClusterSize != 0 && StatusAt(oldSize).Kind == ExtentKind.Data;
                _size = newSize;
                _header.Size = newSize;
                WriteHeader();
                if (_dataFile != null && _dataFile.Length < newSize)
                {
                    _dataFile.SetLength(newSize);
                }

                if (tailIsData)
                {
                    // The old last cluster may hold bytes past the old end: the grown disk must read zeros there.
                    base.WriteZeroesCore(oldSize, Math.Min(newSize, oldClusterEnd) - oldSize);
                }

                if (preallocation != Preallocation.Off)
                {
                    Preallocate(preallocation, oldClusterEnd >> ClusterBits);
                }

                if (hasBitmaps)
                {
                    ResizeBitmaps();
                }

                _file.Flush();
            }
        }

        private void Shrink(long newSize, bool allowShrink)
        {
            if (!allowShrink)
            {
                throw ImageOptionException.ShrinkNotAllowed(Path, _size, newSize);
            }

            if (_snapshots.Count > 0)
            {
                throw ImageNotSupportedException.Capability(Qcow2Driver.Id, "shrinking an image with internal snapshots", Path);
            }

            long keep = (newSize + ClusterMask) & ~ClusterMask;
            if (keep < _size)
            {
                ZeroOrDiscard(keep, _size - keep, zero: false);
            }

            long needed = Qcow2Header.L1EntriesFor(newSize, ClusterBits, _header.L2Entries);
            for (int i = (int)needed; i < _l1.Length; i++)
            {
                long l2Offset = (long)((ulong)_l1[i] & OffsetMask);
                if (l2Offset == 0)
                {
                    continue;
                }

                WriteL1Entry(i, 0);
                _l2Cache.Remove(l2Offset);
                Refcounts.Adjust(l2Offset >> ClusterBits, -1);
            }

            Refcounts.Flush();
            _size = newSize;
            _header.Size = newSize;
            WriteHeader();
            _file.Flush();
        }

        /// <summary>Moves the active L1 table to new clusters with room for <paramref name="entries"/> (block/qcow2-cluster.c qcow2_grow_l1_table).</summary>
        private void GrowL1(int entries)
        {
            long clusters = ((long)entries * 8 + ClusterMask) >> ClusterBits;
            long newOffset = Refcounts.Allocate(clusters);
            Refcounts.Flush();
            var newL1 = new long[entries];
            Array.Copy(_l1, newL1, _l1.Length);
            var raw = new byte[clusters << ClusterBits];
            SerializeWords(Array.ConvertAll(newL1, e => (ulong)e), 0, entries).CopyTo(raw, 0);
            _file.WriteAt(newOffset, raw);
            long oldOffset = _header.L1TableOffset;
            long oldClusters = ((long)_l1.Length * 8 + ClusterMask) >> ClusterBits;
            _header.L1TableOffset = newOffset;
            _header.L1Size = entries;
            WriteHeader();
            _l1 = newL1;
            if (_l1.Length > 0 && oldOffset != 0)
            {
                for (long c = 0; c < oldClusters; c++)
                {
                    Refcounts.Adjust((oldOffset >> ClusterBits) + c, -1);
                }
            }

            Refcounts.Flush();
        }

        public void SetBacking(BackingReference backing, ImageLayer parent)
        {
            EnsureWritable();
            lock (_gate)
            {
                if (backing != null && _header.DataFileRaw)
                {
                    throw new ImageOptionException(Path, "backing_file", "an image with data_file_raw cannot have a backing file");
                }

                string oldFile = _header.BackingFile;
                string oldFormat = _header.BackingFormat;
                _header.BackingFile = backing?.PortablePath;
                _header.BackingFormat = backing == null ? null : backing.Format?.ToQemuName() ?? parent?.Format.ToQemuName();
                try
                {
                    WriteHeader();
                }
                catch
                {
                    _header.BackingFile = oldFile;
                    _header.BackingFormat = oldFormat;
                    throw;
                }

                _backing = MakeBacking(_header, Path);
                _file.Flush();
            }
        }

        public void Amend(OptionSet options)
        {
            EnsureWritable();
            OptionSet set = options.Clone();
            string compat = set.GetChoice("compat", "0.10", "1.1", "v2", "v3");
            bool? lazy = set.GetBool("lazy_refcounts");
            int? refcountBits = set.GetInt("refcount_bits", 1, 64);
            long? size = set.GetSize("size");
            string backingFile = set.GetString("backing_file");
            string backingFormat = set.GetString("backing_fmt");
            RefuseChange(set.GetSize("cluster_size"), _header.ClusterSize, "cluster_size", "changing the cluster size");
            RefuseChange(set.GetBool("extended_l2"), _header.ExtendedL2, "extended_l2", "changing extended_l2");
            RefuseChange(set.GetChoice("compression_type", "zlib", "zstd"), _header.CompressionType == 1 ? "zstd" : "zlib", "compression_type", "changing the compression type");
            string dataFile = set.GetString("data_file");
            bool? dataFileRaw = set.GetBool("data_file_raw");
            if ((dataFile != null || dataFileRaw != null) && !_header.HasDataFile)
            {
                throw new ImageOptionException(Path, dataFile != null ? "data_file" : "data_file_raw", "the image has no external data file (one cannot be added to an existing image)");
            }

            if (dataFileRaw == true && !_header.DataFileRaw)
            {
                throw new ImageOptionException(Path, "data_file_raw", "data_file_raw cannot be turned on for an existing image (as in qemu-img amend)");
            }
            RefuseChange(set.GetString("preallocation"), null, "preallocation", "changing the preallocation");
            RefuseChange(set.GetString("encrypt.format"), null, "encrypt.format", "encryption");
            set.RejectUnknown("qcow2", Qcow2CreateOptions.Names);

            int? version = compat == null ? (int?)null : (compat == "0.10" || compat == "v2" ? 2 : 3);
            if (refcountBits.HasValue && (refcountBits.Value & (refcountBits.Value - 1)) != 0)
            {
                throw new ImageOptionException(Path, "refcount_bits", $"{refcountBits} must be a power of two from 1 to 64");
            }

            lock (_gate)
            {
                EnsureWritableImage();
                if (version == 3 && _header.Version == 2)
                {
                    _header.Version = 3;
                    _header.HeaderLength = Qcow2Header.V3HeaderLength;
                    WriteHeader();
                }

                int targetVersion = version ?? _header.Version;
                if (refcountBits.HasValue && refcountBits.Value != _header.RefcountBits)
                {
                    if (targetVersion < 3 && refcountBits.Value != 16)
                    {
                        throw new ImageOptionException(Path, "refcount_bits", "compat=0.10 images need 16-bit refcounts");
                    }

                    ChangeRefcountWidth(refcountBits.Value);
                }

                if (lazy.HasValue)
                {
                    if (lazy.Value && targetVersion < 3)
                    {
                        throw new ImageOptionException(Path, "lazy_refcounts", "lazy refcounts need compat=1.1");
                    }

                    _header.CompatibleFeatures = lazy.Value ? _header.CompatibleFeatures | Qcow2Header.CompatibleLazyRefcounts : _header.CompatibleFeatures & ~Qcow2Header.CompatibleLazyRefcounts;
                    WriteHeader();
                }

                if (backingFile != null || backingFormat != null)
                {
                    string file = backingFile ?? _header.BackingFile;
                    DiskFormat? format = backingFormat != null ? FormatRegistry.Default.Parse(backingFormat) : _backing?.Format;
                    SetBacking(string.IsNullOrEmpty(file) ? null : new BackingReference(file, format), Parent);
                }

                if (dataFile != null && dataFile != _header.DataFile)
                {
                    // Only the recorded name changes: the file itself is moved by the user.
                    _header.DataFile = dataFile;
                    WriteHeader();
                }

                if (dataFileRaw == false && _header.DataFileRaw)
                {
                    _header.AutoclearFeatures &= ~Qcow2Header.AutoclearDataFileRaw;
                    WriteHeader();
                }

                if (size.HasValue && size.Value != _size)
                {
                    Resize(size.Value, allowShrink: true, Preallocation.Off);
                }

                if (version == 2 && _header.Version == 3)
                {
                    Downgrade();
                }

                _file.Flush();
            }
        }

        /// <summary>
        /// Replaces every zero cluster, in the active table and in every snapshot (block/qcow2-cluster.c
        /// qcow2_expand_zero_clusters): without a backing file a plain zero cluster becomes unallocated;
        /// otherwise it gets a zeroed cluster, counted once for each L1 entry naming its L2 table.
        /// </summary>
        private void ExpandZeroClusters()
        {
            bool hasParent = Parent != null || _backing != null;
            var tables = new List<long>();
            var seen = new HashSet<long>();
            var l1Tables = new List<long[]> { _l1 };
            foreach (var snapshot in _snapshots)
            {
                l1Tables.Add(ReadL1(_file, snapshot.L1TableOffset, snapshot.L1Size, "snapshot L1 table"));
            }

            foreach (long[] l1 in l1Tables)
            {
                foreach (long l1Entry in l1)
                {
                    long l2Offset = (long)((ulong)l1Entry & OffsetMask);
                    if (l2Offset != 0 && seen.Add(l2Offset))
                    {
                        tables.Add(l2Offset);
                    }
                }
            }

            byte[] zeros = new byte[_header.ClusterSize];
            foreach (long l2Offset in tables)
            {
                ulong[] table = LoadL2Unchecked(l2Offset);
                long l2References = Refcounts.Get(l2Offset >> ClusterBits);
                var freed = new List<long>();
                bool changed = false;
                for (int j = 0; j < table.Length; j++)
                {
                    ulong entry = table[j];
                    if ((entry & CompressedFlag) != 0 || (entry & ZeroFlag) == 0)
                    {
                        continue;
                    }

                    long offset = (long)(entry & OffsetMask);
                    changed = true;
                    if (offset != 0 && Refcounts.Get(offset >> ClusterBits) == l2References)
                    {
                        // Only this table names the cluster: it becomes plain zeros in place.
                        WriteClusterData(_file, offset, zeros);
                        table[j] = entry & ~ZeroFlag;
                        continue;
                    }

                    if (offset != 0)
                    {
                        freed.Add(offset);
                    }

                    if (!hasParent)
                    {
                        table[j] = 0;
                        continue;
                    }

                    long cluster = Refcounts.Allocate(1);
                    Refcounts.Set(cluster >> ClusterBits, l2References);
                    WriteClusterData(_file, cluster, zeros);
                    table[j] = (ulong)cluster | (l2References == 1 ? CopiedFlag : 0);
                }

                if (!changed)
                {
                    continue;
                }

                Refcounts.Flush();
                _file.WriteAt(l2Offset, SerializeWords(table, 0, table.Length));
                _l2Cache.Remove(l2Offset);
                foreach (long offset in freed)
                {
                    Refcounts.Adjust(offset >> ClusterBits, -l2References);
                }

                Refcounts.Flush();
            }

            _lastRun = null;
            FixCopiedFlags(Refcounts.Get);
        }

        private void RefuseChange<T>(T requested, T current, string option, string what)
        {
            if (requested != null && !EqualityComparer<T>.Default.Equals(requested, current))
            {
                throw new ImageOptionException(Path, option, $"{what} of an existing image is not supported (as in qemu-img amend)");
            }
        }

        private void ChangeRefcountWidth(int bits)
        {
            int order = 0;
            while ((1 << order) < bits)
            {
                order++;
            }

            Refcounts.Flush();
            VDiskCheckResult result = RunCheck(out CheckPass pass);
            if (result.Corruptions > 0)
            {
                throw new ImageCorruptException(Path, "refcount", null, $"the image has {result.Corruptions} corruptions; repair it before changing refcount_bits");
            }

            RebuildRefcounts(pass.CountsWithoutRefcountStructure(), order);
        }

        /// <summary>compat=1.1 to 0.10 (block/qcow2.c qcow2_downgrade): zero clusters expanded, v3-only features refused.</summary>
        private void Downgrade()
        {
            if (_header.RefcountOrder != 4)
            {
                throw new ImageOptionException(Path, "compat", "compat=0.10 needs 16-bit refcounts (amend refcount_bits=16 as well)");
            }

            if (_header.ExtendedL2 || _header.HasDataFile || _header.CompressionType != 0 || (_header.HasBitmapsExtension && _header.BitmapCount > 0))
            {
                throw new ImageOptionException(Path, "compat", "compat=0.10 cannot hold extended L2 entries, external data files, zstd compression or persistent bitmaps");
            }

            ExpandZeroClusters();
            _header.Version = 2;
            _header.HeaderLength = Qcow2Header.V2HeaderLength;
            _header.IncompatibleFeatures = 0;
            _header.CompatibleFeatures = 0;
            _header.AutoclearFeatures = 0;
            WriteHeader();
        }
    }
}
