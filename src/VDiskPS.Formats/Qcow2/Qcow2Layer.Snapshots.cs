using System;
using System.Collections.Generic;
using System.Globalization;
using VDiskPS;

namespace VDiskPS.Formats.Qcow2
{
    /// <summary>
    /// Internal snapshots (block/qcow2-snapshot.c): a snapshot is a copy of the L1 table whose
    /// whole tree gains one reference, so later writes copy shared clusters instead of changing them.
    /// </summary>
    internal sealed partial class Qcow2Layer : ISnapshotLayer
    {
        public IReadOnlyList<VDiskSnapshotInfo> GetSnapshots()
        {
            lock (_gate)
            {
                var list = new List<VDiskSnapshotInfo>();
                foreach (var s in _snapshots)
                {
                    list.Add(new VDiskSnapshotInfo
                    {
                        Path = Path,
                        Id = s.Id,
                        Name = s.Name,
                        VmStateSize = s.VmStateSize,
                        Date = DateTimeOffset.FromUnixTimeSeconds(s.DateSeconds).UtcDateTime.AddTicks(s.DateNanoseconds / 100),
                        VmClock = TimeSpan.FromTicks((long)Math.Min(s.VmClockNanoseconds / 100, (ulong)TimeSpan.MaxValue.Ticks)),
                        Size = s.DiskSize,
                        DateNanoseconds = s.DateNanoseconds,
                        VmClockNanoseconds = (long)Math.Min(s.VmClockNanoseconds, long.MaxValue),
                        Icount = s.Icount == -1 ? (long?)null : s.Icount,
                    });
                }

                return list;
            }
        }

        public VDiskSnapshotInfo CreateSnapshot(string name)
        {
            EnsureWritable();
            if (string.IsNullOrEmpty(name))
            {
                throw new ImageOptionException(Path, "snapshot", "a snapshot needs a name");
            }

            lock (_gate)
            {
                EnsureSnapshotsPossible();
                if (_snapshots.Exists(s => s.Name == name))
                {
                    throw new ImageOptionException(Path, "snapshot", $"a snapshot named '{name}' already exists");
                }

                long now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
                var snapshot = new Qcow2Snapshot
                {
                    Id = NextSnapshotId(),
                    Name = name,
                    DateSeconds = (uint)(now / 1000),
                    DateNanoseconds = (uint)(now % 1000 * 1000000),
                    DiskSize = _size,
                    L1Size = _l1.Length,
                };

                // The copy of the L1 table goes to disk first; then the tree gains its reference; then COPIED is cleared.
                ClusterCounts changes = GatherTreeChanges(_l1, 1);
                if (_l1.Length > 0)
                {
                    snapshot.L1TableOffset = Refcounts.Allocate(((long)_l1.Length * 8 + ClusterMask) >> ClusterBits);
                    Refcounts.Flush();
                    _file.WriteAt(snapshot.L1TableOffset, SerializeWords(Array.ConvertAll(_l1, e => (ulong)e), 0, _l1.Length));
                }

                ApplyRefcountChanges(changes, increments: true);
                Refcounts.Flush();
                FixCopiedFlags(Refcounts.Get);
                var snapshots = new List<Qcow2Snapshot>(_snapshots) { snapshot };
                WriteSnapshotTable(snapshots);
                _file.Flush();
                return GetSnapshots()[_snapshots.Count - 1];
            }
        }

        public void ApplySnapshot(string idOrName)
        {
            EnsureWritable();
            lock (_gate)
            {
                EnsureSnapshotsPossible();
                Qcow2Snapshot snapshot = FindSnapshot(idOrName);
                long[] snapshotL1 = ReadL1(_file, snapshot.L1TableOffset, snapshot.L1Size, "snapshot L1 table");
                // Clusters both trees share keep their count; the others gain (before the switch) or lose (after it) one.
                var changes = new ClusterCounts();
                CollectTreeChanges(snapshotL1, 1, changes);
                CollectTreeChanges(_l1, -1, changes);
                ValidateRefcountChanges(changes);
                if (snapshot.L1Size > _l1.Length)
                {
                    GrowL1(snapshot.L1Size);
                }

                ApplyRefcountChanges(changes, increments: true);
                Refcounts.Flush();
                var newL1 = new long[_l1.Length];
                Array.Copy(snapshotL1, newL1, snapshotL1.Length);
                _l1 = newL1;
                _lastRun = null;
                _file.WriteAt(_header.L1TableOffset, SerializeWords(Array.ConvertAll(_l1, e => (ulong)e), 0, _l1.Length));
                _l2Cache.Clear();
                ApplyRefcountChanges(changes, increments: false);
                Refcounts.Flush();
                FixCopiedFlags(Refcounts.Get);
                if (snapshot.DiskSize != _size)
                {
                    _size = snapshot.DiskSize;
                    _header.Size = snapshot.DiskSize;
                    WriteHeader();
                }

                _file.Flush();
            }
        }

        public void DeleteSnapshot(string idOrName)
        {
            EnsureWritable();
            lock (_gate)
            {
                EnsureSnapshotsPossible();
                Qcow2Snapshot snapshot = FindSnapshot(idOrName);
                long[] snapshotL1 = ReadL1(_file, snapshot.L1TableOffset, snapshot.L1Size, "snapshot L1 table");
                var snapshots = new List<Qcow2Snapshot>(_snapshots);
                snapshots.Remove(snapshot);

                // The table stops naming the snapshot before its clusters lose their references.
                ClusterCounts changes = new ClusterCounts();
                CollectTreeChanges(snapshotL1, -1, changes);
                if (snapshot.L1Size > 0)
                {
                    changes.AddRange(snapshot.L1TableOffset >> ClusterBits, ((long)snapshot.L1Size * 8 + ClusterMask) >> ClusterBits, -1);
                }

                ValidateRefcountChanges(changes);
                WriteSnapshotTable(snapshots);
                ApplyRefcountChanges(changes, increments: false);

                Refcounts.Flush();
                FixCopiedFlags(Refcounts.Get);
                _file.Flush();
            }
        }

        public ImageLayer OpenSnapshot(string idOrName)
        {
            lock (_gate)
            {
                Qcow2Snapshot snapshot = FindSnapshot(idOrName);
                long[] l1 = ReadL1(_file, snapshot.L1TableOffset, snapshot.L1Size, "snapshot L1 table");
                long needed = Qcow2Header.L1EntriesFor(snapshot.DiskSize, ClusterBits, _header.L2Entries);
                if (needed > l1.Length)
                {
                    throw new ImageCorruptException(Path, $"snapshot '{snapshot.Name}' l1_size", null, $"{l1.Length} entries are too few for its disk size {snapshot.DiskSize}");
                }

                return new Qcow2Layer(this, snapshot, l1);
            }
        }

        private void EnsureSnapshotsPossible()
        {
            if (_dataFile != null)
            {
                throw ImageNotSupportedException.Capability(Qcow2Driver.Id, "internal snapshots with an external data file", Path);
            }

            if (_isSnapshotView)
            {
                throw ImageNotSupportedException.Capability(Qcow2Driver.Id, "snapshots of a snapshot view", Path);
            }
        }

        private Qcow2Snapshot FindSnapshot(string idOrName)
        {
            // QEMU looks up by id first, then by name.
            Qcow2Snapshot found = _snapshots.Find(s => s.Id == idOrName) ?? _snapshots.Find(s => s.Name == idOrName);
            return found ?? throw new ImageOptionException(Path, "snapshot", $"there is no snapshot with id or name '{idOrName}'");
        }

        private string NextSnapshotId()
        {
            long max = 0;
            foreach (var s in _snapshots)
            {
                if (long.TryParse(s.Id, NumberStyles.Integer, CultureInfo.InvariantCulture, out long id) && id > max)
                {
                    max = id;
                }
            }

            return (max + 1).ToString(CultureInfo.InvariantCulture);
        }

        /// <summary>Writes the table to new clusters, points the header at it, then frees the old table.</summary>
        private void WriteSnapshotTable(List<Qcow2Snapshot> snapshots)
        {
            long oldOffset = _header.SnapshotsOffset;
            long oldLength = Qcow2Snapshot.TableLength(_snapshots);
            byte[] table = Qcow2Snapshot.SerializeTable(snapshots);
            long newOffset = 0;
            if (table.Length > 0)
            {
                newOffset = Refcounts.Allocate((table.Length + ClusterMask) >> ClusterBits);
                Refcounts.Flush();
                _file.WriteAt(newOffset, table);
            }

            _header.SnapshotsOffset = newOffset;
            _header.SnapshotCount = snapshots.Count;
            WriteHeader();
            _snapshots = snapshots;
            if (oldLength > 0)
            {
                for (long c = oldOffset >> ClusterBits; c <= (oldOffset + oldLength - 1) >> ClusterBits; c++)
                {
                    Refcounts.Adjust(c, -1);
                }

                Refcounts.Flush();
            }
        }

        /// <summary>The refcount changes for every L2 table and data cluster an L1 table reaches, checked against the refcount width.</summary>
        private ClusterCounts GatherTreeChanges(long[] l1, int delta)
        {
            var changes = new ClusterCounts();
            CollectTreeChanges(l1, delta, changes);
            ValidateRefcountChanges(changes);
            return changes;
        }

        private void CollectTreeChanges(long[] l1, int delta, ClusterCounts changes)
        {
            int step = ExtendedL2 ? 2 : 1;
            for (int i = 0; i < l1.Length; i++)
            {
                long l2Offset = (long)((ulong)l1[i] & OffsetMask);
                if (l2Offset == 0)
                {
                    continue;
                }

                ulong[] table = LoadL2(l2Offset, i);
                for (int j = 0; j < table.Length; j += step)
                {
                    ulong entry = table[j];
                    if ((entry & CompressedFlag) != 0)
                    {
                        var (host, length) = CompressedExtent(entry);
                        for (long c = (host & ~511L) >> ClusterBits; c <= (host + length - 1) >> ClusterBits; c++)
                        {
                            changes.Add(c, delta);
                        }
                    }
                    else if ((entry & OffsetMask) != 0 && _dataFile == null)
                    {
                        changes.Add((long)(entry & OffsetMask) >> ClusterBits, delta);
                    }
                }

                changes.Add(l2Offset >> ClusterBits, delta);
            }
        }

        private void ValidateRefcountChanges(ClusterCounts changes)
        {
            Qcow2Refcounts refcounts = Refcounts;
            for (long c = 0; c <= changes.MaxCluster; c++)
            {
                long change = changes.Get(c);
                if (change == 0)
                {
                    continue;
                }

                long value = refcounts.Get(c) + change;
                if (value < 0 || value > refcounts.MaxRefcount)
                {
                    throw new ImageNotSupportedException(Path, "refcount_bits", null,
                        value < 0
                            ? $"cluster {c} would get a negative refcount; the image needs repair (qemu-img check -r all)"
                            : $"cluster {c} would need {value} references, more than {_header.RefcountBits}-bit refcounts hold; amend refcount_bits first");
                }
            }
        }

        /// <summary>Applies the increments (or the decrements) of <paramref name="changes"/>.</summary>
        private void ApplyRefcountChanges(ClusterCounts changes, bool increments)
        {
            for (long c = 0; c <= changes.MaxCluster; c++)
            {
                long change = changes.Get(c);
                if (change != 0 && (change > 0) == increments)
                {
                    Refcounts.Adjust(c, change);
                }
            }
        }
    }
}
