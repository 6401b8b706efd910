using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.IO;
using VDiskPS;

namespace VDiskPS.Formats.Qcow2
{
    /// <summary>
    /// A qcow2 image (QEMU docs/interop/qcow2.rst): header, L1/L2 mapping, refcounts, snapshots,
    /// bitmaps, optional external data file. One lock guards every metadata structure; data I/O runs
    /// outside it so reads scale across threads.
    /// </summary>
    internal sealed partial class Qcow2Layer : ImageLayer
    {
        // L1 and L2 entry bits (qcow2.rst "Cluster mapping").
        internal const ulong OffsetMask = 0x00FFFFFFFFFFFE00UL;
        internal const ulong CopiedFlag = 1UL << 63;
        internal const ulong CompressedFlag = 1UL << 62;
        internal const ulong ZeroFlag = 1UL;
        internal const int Subclusters = 32;

        private readonly object _gate;
        private readonly HostFile _file;
        private readonly HostFile _dataFile;
        private readonly Qcow2Header _header;
        private readonly Qcow2L2Cache _l2Cache;
        private readonly bool _isSnapshotView;
        private long[] _l1;
        private long _size;
        private List<Qcow2Snapshot> _snapshots;
        private Qcow2Refcounts _refcounts;
        private BackingReference _backing;
        private readonly long _readOnlyFileLength;
        private bool _dataFileCreatedHere;

        private Qcow2Layer(HostFile file, HostFile dataFile, Qcow2Header header, long[] l1, List<Qcow2Snapshot> snapshots)
            : base(file.Path, file.CanWrite)
        {
            _gate = new object();
            _file = file;
            _dataFile = dataFile;
            _header = header;
            _l1 = l1;
            _size = header.Size;
            _snapshots = snapshots;
            _l2Cache = new Qcow2L2Cache(header.ClusterSize);
            _backing = MakeBacking(header, file.Path);
            _readOnlyFileLength = file.Length;
        }

        /// <summary>A read-only view of the disk as it was in a snapshot, sharing the owner's file and caches.</summary>
        private Qcow2Layer(Qcow2Layer owner, Qcow2Snapshot snapshot, long[] l1)
            : base(owner.Path, false)
        {
            _gate = owner._gate;
            _file = owner._file;
            _dataFile = owner._dataFile;
            _header = owner._header;
            _l2Cache = owner._l2Cache;
            _readOnlyFileLength = owner._readOnlyFileLength;
            _l1 = l1;
            _size = snapshot.DiskSize;
            _snapshots = owner._snapshots;
            _backing = owner._backing;
            _cipher = owner._cipher;
            _cipherByGuestOffset = owner._cipherByGuestOffset;
            _isSnapshotView = true;
        }

        public override DiskFormat Format => Qcow2Driver.Id;

        public override long Size => _size;

        public override int ClusterSize => _header.ClusterSize;

        public override BackingReference Backing => _backing;

        /// <summary>
        /// The image file, plus its external data file when this layer created it (so a failed convert
        /// removes it); a data file that existed before belongs to the user and is never listed for deletion.
        /// </summary>
        public override IReadOnlyList<string> HostFiles => _dataFileCreatedHere ? new[] { Path, _dataFile.Path } : new[] { Path };

        private int ClusterBits => _header.ClusterBits;

        private long ClusterMask => _header.ClusterSize - 1;

        private bool ExtendedL2 => _header.ExtendedL2;

        private int SubclusterSize => _header.ClusterSize / Subclusters;

        private Qcow2Refcounts Refcounts
        {
            get
            {
                if (_refcounts == null)
                {
                    _refcounts = Qcow2Refcounts.Load(_file, _header, OnRefcountTableMoved);
                }

                return _refcounts;
            }
        }

        public static Qcow2Layer Open(HostFile file, OpenOptions options)
        {
            HostFile dataFile = null;
            try
            {
                Qcow2Header header = Qcow2Header.Read(file);
                long[] l1 = ReadL1(file, header.L1TableOffset, header.L1Size, "L1 table");
                List<Qcow2Snapshot> snapshots = Qcow2Snapshot.ReadTable(file, header);
                if (header.HasDataFile)
                {
                    string dataPath = Transports.Resolve(file.Path, header.DataFile, BackingReference.ResolveAgainst);
                    if (!options.AllowExternalPaths && !IsBeside(dataPath, file.Path))
                    {
                        throw new ImageChainException(file.Path, "data file", $"the external data file '{header.DataFile}' lies outside the image's folder and external paths are not allowed");
                    }

                    if (!Transports.Exists(dataPath))
                    {
                        throw new ImageChainException(file.Path, "data file", $"the external data file '{dataPath}' does not exist");
                    }

                    dataFile = HostFile.Open(dataPath, options.Access);
                }

                var layer = new Qcow2Layer(file, dataFile, header, l1, snapshots);
                layer.Unlock();
                if (file.CanWrite && (header.AutoclearFeatures & ~Qcow2Header.AutoclearKnown) != 0)
                {
                    // A writer must clear the autoclear bits it does not know (qcow2.rst "autoclear_features").
                    header.AutoclearFeatures &= Qcow2Header.AutoclearKnown;
                    layer.WriteHeader();
                }

                if (file.CanWrite && header.Dirty)
                {
                    // QEMU rebuilds the refcounts of a dirty image before its first write (lazy refcounts).
                    layer.RepairDirty();
                }

                return layer;
            }
            catch
            {
                dataFile?.Dispose();
                file.Dispose();
                throw;
            }
        }

        public override BlockStatus GetBlockStatus(long offset, long maxLength)
        {
            long end = Math.Min(_size, offset + Math.Max(1, maxLength));
            lock (_gate)
            {
                return GetBlockStatusLocked(offset, end);
            }
        }

        public override void Describe(VDiskInfo info)
        {
            lock (_gate)
            {
                info.Subformat = _header.CompatName;
                info.Dirty = _header.Dirty;
                info.Corrupt = _header.Corrupt;
                info.Encrypted = Encrypted;
                info.Snapshots = _snapshots.Count;
                info.FormatSpecific["compat"] = _header.CompatName;
                info.FormatSpecific["compression-type"] = _header.CompressionType == 1 ? "zstd" : "zlib";
                info.FormatSpecific["refcount-bits"] = _header.RefcountBits;
                if (_header.Version >= 3)
                {
                    info.FormatSpecific["lazy-refcounts"] = _header.LazyRefcounts;
                    info.FormatSpecific["corrupt"] = _header.Corrupt;
                    info.FormatSpecific["extended-l2"] = _header.ExtendedL2;
                }

                if (_header.HasDataFile)
                {
                    info.FormatSpecific["data-file"] = _header.DataFile;
                    info.FormatSpecific["data-file-raw"] = _header.DataFileRaw;
                }

                // Info describes the header; damage deeper in the image is for check to report.
                try
                {
                    DescribeBitmaps(info);
                    info.Compressed = HasCompressedClusters();
                }
                catch (ImageCorruptException)
                {
                }
            }
        }

        public override void Flush()
        {
            if (!IsWritable)
            {
                return;
            }

            lock (_gate)
            {
                StoreTrackedBitmaps();
                _refcounts?.Flush();
                _file.Flush();
                _dataFile?.Flush();
            }
        }

        protected override void Dispose(bool disposing)
        {
            if (_isSnapshotView)
            {
                return;
            }

            try
            {
                if (IsWritable)
                {
                    lock (_gate)
                    {
                        StoreTrackedBitmaps();
                        _refcounts?.Flush();
                        _file.Flush();
                        _dataFile?.Flush();
                    }
                }
            }
            finally
            {
                _cipher?.Dispose();
                _dataFile?.Dispose();
                _file.Dispose();
            }
        }

        internal static long[] ReadL1(HostFile file, long offset, int entries, string field)
        {
            var l1 = new long[entries];
            if (entries == 0)
            {
                return l1;
            }

            var raw = new byte[(long)entries * 8];
            file.ReadExactly(offset, raw, field);
            for (int i = 0; i < entries; i++)
            {
                l1[i] = (long)BinaryPrimitives.ReadUInt64BigEndian(raw.AsSpan(i * 8));
            }

            return l1;
        }

        private static BackingReference MakeBacking(Qcow2Header header, string path)
        {
            if (header.BackingFile == null)
            {
                return null;
            }

            DiskFormat? format = null;
            if (!string.IsNullOrEmpty(header.BackingFormat))
            {
                string name = header.BackingFormat;
                if (name == "file" || name == "host_device" || name == "host_cdrom")
                {
                    // QEMU's protocol drivers: the backing file is read as it is.
                    format = FormatRegistry.Default.PlainDataFormat;
                }
                else if (FormatRegistry.Default.TryParse(name, out DiskFormat parsed))
                {
                    format = parsed;
                }
                else
                {
                    throw new ImageNotSupportedException(path, "backing format", null, $"the backing file's recorded format '{header.BackingFormat}' is not supported");
                }
            }

            return new BackingReference(header.BackingFile, format);
        }

        /// <summary>Whether the resolved <paramref name="path"/> lies in the folder of <paramref name="imagePath"/> (a local folder or a URL's).</summary>
        private static bool IsBeside(string path, string imagePath)
        {
            string folder = Transports.Resolve(imagePath, ".", BackingReference.ResolveAgainst);
            if (!Transports.IsRemote(folder))
            {
                folder = folder.TrimEnd(System.IO.Path.DirectorySeparatorChar) + System.IO.Path.DirectorySeparatorChar;
            }

            return path.StartsWith(folder, StringComparison.Ordinal);
        }

        /// <summary>Writes the header cluster (header, extensions, backing file name).</summary>
        private void WriteHeader()
        {
            _file.WriteAt(0, _header.Serialize(Path));
        }

        private void OnRefcountTableMoved(long offset, int clusters)
        {
            _header.RefcountTableOffset = offset;
            _header.RefcountTableClusters = clusters;
            WriteHeader();
        }

        private bool HasCompressedClusters()
        {
            // Info only looks at a bounded prefix of the mapping, so that it stays fast on huge images.
            int budget = 64;
            for (int i = 0; i < _l1.Length && budget > 0; i++)
            {
                long l2Offset = (long)((ulong)_l1[i] & OffsetMask);
                if (l2Offset == 0)
                {
                    continue;
                }

                budget--;
                ulong[] table = LoadL2(l2Offset, i);
                int step = ExtendedL2 ? 2 : 1;
                for (int j = 0; j < table.Length; j += step)
                {
                    if ((table[j] & CompressedFlag) != 0)
                    {
                        return true;
                    }
                }
            }

            return false;
        }
    }
}
