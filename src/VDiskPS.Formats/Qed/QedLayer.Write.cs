using System;
using System.Buffers;
using System.Buffers.Binary;

namespace VDiskPS.Formats.Qed
{
    /// <summary>
    /// Writes as qemu's qed.c does them: in place into allocated clusters; new clusters appended at the
    /// end of the file, filled from the parent (copy-on-write) or with zeros, before the L2 table (and a
    /// new L2 table before the L1 entry) that references them. The need-check flag is set before the
    /// first table change and cleared when the image is closed cleanly.
    /// </summary>
    public sealed partial class QedLayer : IResizableLayer, IParentChangeableLayer
    {
        /// <summary>New clusters staged for one host write at most.</summary>
        private const int MaxAllocationBytes = 8 << 20;

        /// <summary>What the repair at a writable open of an unclean image found and fixed, for the next check to report.</summary>
        private VDiskCheckResult _openRepair;

        private bool _needCheckSet;

        internal static QedLayer Create(HostFile file, long size, uint clusterSize, uint tableSize, BackingReference backing, bool backingIsPlainData)
        {
            var header = new QedHeader
            {
                ClusterSize = clusterSize,
                TableSize = tableSize,
                HeaderSize = 1,
                L1TableOffset = clusterSize,
                ImageSize = (ulong)size,
            };
            byte[] name = backing == null ? Array.Empty<byte>() : System.Text.Encoding.UTF8.GetBytes(backing.PortablePath);
            if (backing != null)
            {
                header.Features |= QedHeader.FeatureBackingFile | (backingIsPlainData ? QedHeader.FeatureBackingFormatNoProbe : 0);
                header.BackingNameOffset = QedHeader.Length;
                header.BackingNameSize = (uint)name.Length;
            }

            file.SetLength(0);
            file.WriteAt(0, header.ToBytes());
            file.WriteAt(QedHeader.Length, name);
            long tableBytes = (long)tableSize * clusterSize;
            file.WriteZeros(clusterSize, tableBytes);
            file.SetLength(clusterSize + tableBytes);
            file.Flush();
            return new QedLayer(file, header, new ulong[tableBytes / 8], backing == null ? null : new BackingReference(backing.PortablePath, backing.Format));
        }

        public void Resize(long newSize, bool allowShrink, Preallocation preallocation)
        {
            EnsureWritable();
            if (newSize < Size)
            {
                if (!allowShrink)
                {
                    throw ImageOptionException.ShrinkNotAllowed(Path, Size, newSize);
                }

                throw new ImageNotSupportedException(Path, "image size", QedHeader.ImageSizeOffset, "QED images can grow but not shrink (as in qemu)");
            }

            if (preallocation != Preallocation.Off)
            {
                throw new ImageOptionException(Path, "preallocation", "QED images grow as written; only preallocation off is supported (as in qemu)");
            }

            ulong max = QedHeader.MaxImageSize(_header.ClusterSize, _header.TableSize);
            if (newSize % 512 != 0 || (ulong)newSize > max)
            {
                throw new ImageOptionException(Path, "size", $"{newSize} bytes is not a multiple of 512 or beyond the {max} bytes this image's tables address");
            }

            lock (_gate)
            {
                _header.ImageSize = (ulong)newSize;
                WriteHeader();
                _file.Flush();
            }
        }

        /// <summary>qed.c bdrv_qed_change_backing_file: the header and the name after it are rewritten in one synchronous write.</summary>
        public void SetBacking(BackingReference backing, ImageLayer parent)
        {
            EnsureWritable();
            if (backing != null && (_header.CompatFeatures & ~QedHeader.CompatKnown) != 0)
            {
                // An unknown compat feature may keep data after the header, where the new name would go.
                throw new ImageNotSupportedException(Path, "compat features", QedHeader.CompatFeaturesOffset, $"the image uses compat features this build does not know (0x{_header.CompatFeatures & ~QedHeader.CompatKnown:x}), so the space after the header cannot be rewritten");
            }

            byte[] name = backing == null ? Array.Empty<byte>() : System.Text.Encoding.UTF8.GetBytes(backing.PortablePath);
            if (QedHeader.Length + name.Length > HeaderBytes)
            {
                throw new ImageOptionException(Path, "backing file", $"the backing file name ({name.Length} bytes) does not fit in the {HeaderBytes}-byte header");
            }

            DiskFormat? format = backing?.Format ?? parent?.Format;
            bool plain = format.HasValue && FormatRegistry.Default.Get(format.Value).IsPlainData;
            lock (_gate)
            {
                _header.Features &= ~(QedHeader.FeatureBackingFile | QedHeader.FeatureBackingFormatNoProbe);
                _header.BackingNameOffset = backing == null ? 0 : (uint)QedHeader.Length;
                _header.BackingNameSize = (uint)name.Length;
                if (backing != null)
                {
                    _header.Features |= QedHeader.FeatureBackingFile | (plain ? QedHeader.FeatureBackingFormatNoProbe : 0);
                }

                var raw = new byte[QedHeader.Length + name.Length];
                _header.ToBytes().CopyTo(raw, 0);
                name.CopyTo(raw, QedHeader.Length);
                _file.WriteAt(0, raw);
                _file.Flush();
                _backing = backing == null ? null : new BackingReference(backing.PortablePath, plain ? format : null);
            }
        }

        protected override void WriteCore(long offset, ReadOnlySpan<byte> data)
        {
            long cs = ClusterBytes;
            while (data.Length > 0)
            {
                long l1Index = offset >> _l1Shift;
                long index = (offset >> _clusterShift) & (_header.TableEntries - 1);
                ulong entry = Entry(l1Index, index);
                long inCluster = offset & (cs - 1);
                if (entry > 1)
                {
                    ThrowIfBadData(l1Index, index, entry);
                    int n = (int)Math.Min(data.Length, cs - inCluster);
                    _file.WriteAt((long)entry + inCluster, data.Slice(0, n));
                    offset += n;
                    data = data.Slice(n);
                    continue;
                }

                // A run of clusters without data in one L2 table, allocated together.
                long tableEnd = (l1Index + 1) << _l1Shift;
                long writeEnd = offset + data.Length;
                long clusterStart = offset - inCluster;
                int count = 1;
                int maxCount = (int)Math.Max(1, MaxAllocationBytes / cs);
                while (count < maxCount && clusterStart + (count * cs) < Math.Min(writeEnd, tableEnd) && Entry(l1Index, index + count) <= 1)
                {
                    count++;
                }

                int consumed = (int)(Math.Min(writeEnd, clusterStart + (count * cs)) - offset);
                AllocateClusters(l1Index, index, count, offset, data.Slice(0, consumed));
                offset += consumed;
                data = data.Slice(consumed);
            }
        }

        protected override void WriteZeroesCore(long offset, long length)
        {
            long cs = ClusterBytes;
            long end = offset + length;
            while (offset < end)
            {
                long clusterStart = offset & ~(cs - 1);
                long next = Math.Min(end, clusterStart + cs);
                bool whole = offset == clusterStart && (next == clusterStart + cs || next == Size);
                long l1Index = offset >> _l1Shift;
                long index = (offset >> _clusterShift) & (_header.TableEntries - 1);
                ulong entry = Entry(l1Index, index);
                if (!whole)
                {
                    if (entry != 1 && !(entry == 0 && _backing == null))
                    {
                        base.WriteZeroesCore(offset, next - offset);
                    }
                }
                else if (entry > 1)
                {
                    // As qemu: an allocated cluster is zeroed in place (the format cannot free it).
                    ThrowIfBadData(l1Index, index, entry);
                    _file.WriteZeros((long)entry, cs);
                }
                else if (entry == 0 && _backing != null)
                {
                    // A zero cluster hides the parent's data (qemu-io write -z).
                    SetEntries(l1Index, index, 1, 1);
                }

                offset = next;
            }
        }

        /// <summary>The L2 entry for a cluster, 0 where the L2 table is not allocated.</summary>
        private ulong Entry(long l1Index, long index)
        {
            lock (_gate)
            {
                return _l1[l1Index] == 0 ? 0 : L2Table(l1Index)[index];
            }
        }

        /// <summary>New clusters: the written bytes over the parent's content (unallocated) or zeros (zero clusters, no parent).</summary>
        private void AllocateClusters(long l1Index, long firstIndex, int count, long offset, ReadOnlySpan<byte> data)
        {
            long cs = ClusterBytes;
            int total = (int)(cs * count);
            long guestStart = offset & ~(cs - 1);
            byte[] staging = ArrayPool<byte>.Shared.Rent(total);
            try
            {
                Array.Clear(staging, 0, total);
                int head = (int)(offset - guestStart);
                if (head > 0 && Entry(l1Index, firstIndex) == 0)
                {
                    ReadFromParent(guestStart, staging.AsSpan(0, head));
                }

                long tailStart = offset + data.Length;
                long lastIndex = firstIndex + count - 1;
                int tail = (int)(guestStart + total - tailStart);
                if (tail > 0 && Entry(l1Index, lastIndex) == 0)
                {
                    long inImage = Math.Max(0, Math.Min(tail, Size - tailStart));
                    ReadFromParent(tailStart, staging.AsSpan(total - tail, (int)inImage));
                }

                data.CopyTo(staging.AsSpan(head));
                lock (_gate)
                {
                    MarkNeedCheck();
                    long host = _fileSize;
                    _file.WriteAt(host, staging.AsSpan(0, total));
                    _fileSize += total;
                    if (_backing != null)
                    {
                        // qemu flushes new data before the L2 update when a parent is in use: a crash must not
                        // leave a cluster referenced whose copy-on-write bytes never reached the disk.
                        _file.Flush();
                    }

                    SetEntries(l1Index, firstIndex, count, (ulong)host);
                }
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(staging);
            }
        }

        /// <summary>
        /// Points <paramref name="count"/> entries at consecutive clusters from <paramref name="value"/> (or all
        /// at the zero marker 1), allocating the L2 table first when the L1 entry has none.
        /// </summary>
        private void SetEntries(long l1Index, long firstIndex, int count, ulong value)
        {
            lock (_gate)
            {
                MarkNeedCheck();
                bool newTable = _l1[l1Index] == 0;
                ulong[] table;
                if (newTable)
                {
                    table = new ulong[_header.TableEntries];
                }
                else
                {
                    table = L2Table(l1Index);
                }

                for (int i = 0; i < count; i++)
                {
                    table[firstIndex + i] = value <= 1 ? value : value + (ulong)(i * ClusterBytes);
                }

                if (newTable)
                {
                    long tableOffset = _fileSize;
                    _file.WriteAt(tableOffset, EncodeTable(table, 0, table.Length));
                    _fileSize += TableBytes;
                    _l1[l1Index] = (ulong)tableOffset;
                    _l2Cache[tableOffset] = table;
                    var entry = new byte[8];
                    BinaryPrimitives.WriteUInt64LittleEndian(entry, (ulong)tableOffset);
                    _file.WriteAt(L1EntryOffset(l1Index), entry);
                }
                else
                {
                    _file.WriteAt((long)_l1[l1Index] + (firstIndex * 8), EncodeTable(table, firstIndex, count));
                }
            }
        }

        private static byte[] EncodeTable(ulong[] table, long first, long count)
        {
            var raw = new byte[count * 8];
            for (long i = 0; i < count; i++)
            {
                BinaryPrimitives.WriteUInt64LittleEndian(raw.AsSpan((int)(i * 8)), table[first + i]);
            }

            return raw;
        }

        /// <summary>Sets the need-check flag durably before the first table change of this session. Under _gate.</summary>
        private void MarkNeedCheck()
        {
            if (_needCheckSet)
            {
                return;
            }

            _needCheckSet = true;
            if (!_header.NeedCheck)
            {
                _header.NeedCheck = true;
                WriteHeader();
                _file.Flush();
            }
        }

        /// <summary>qed.c bdrv_qed_close: the data and tables reach the disk, then the flag is cleared.</summary>
        private void CloseCleanly()
        {
            lock (_gate)
            {
                _file.Flush();
                if (_header.NeedCheck && _needCheckSet)
                {
                    _header.NeedCheck = false;
                    WriteHeader();
                    _file.Flush();
                }
            }
        }

        /// <summary>
        /// A writable open: unknown autoclear bits are cleared (qed_spec.txt), and an image left with the
        /// need-check flag is checked and repaired as qemu does before it is written; damage the repair
        /// cannot fix (a cluster referenced twice) refuses the open.
        /// </summary>
        private void PrepareForWriting()
        {
            lock (_gate)
            {
                if ((_header.AutoclearFeatures & ~QedHeader.AutoclearKnown) != 0)
                {
                    _header.AutoclearFeatures &= QedHeader.AutoclearKnown;
                    WriteHeader();
                    _file.Flush();
                }

                if (!_header.NeedCheck)
                {
                    return;
                }

                VDiskCheckResult repair = RunCheck(fix: true);
                if (repair.Corruptions > 0 || repair.CheckErrors > 0)
                {
                    throw new ImageCorruptException(Path, "features", QedHeader.FeaturesOffset,
                        $"the image was not closed cleanly and its tables have damage a repair cannot fix ({repair.Corruptions} corruption(s): clusters referenced more than once); it can be opened read-only to copy its data") { Kind = ImageErrorKind.DamageNeedsCheck };
                }

                _openRepair = repair;
            }
        }

        private void WriteHeader() => _file.WriteAt(0, _header.ToBytes());
    }
}
