using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Text;
using VDiskPS;

namespace VDiskPS.Formats.Vmdk
{
    /// <summary>
    /// A VMDK disk: a descriptor (embedded in a sparse extent or in its own file) and its extents,
    /// concatenated in descriptor order. Delta disks name their parent in parentFileNameHint and pin
    /// its content id in parentCID.
    /// </summary>
    internal partial class VmdkLayer : ImageLayer
    {
        private readonly List<VmdkExtent> _extents;
        private long[] _extentStarts;
        private readonly List<HostFile> _files;
        private readonly HostFile _descriptorFile;
        private readonly long _descriptorOffset;
        private readonly long _descriptorCapacity;
        private readonly bool _ignoreParentMismatch;
        private long _size;
        private bool _cidUpdated;
        private ImageLayer _verifiedParent;
        private uint? _nextCid;

        protected VmdkLayer(string path, bool writable, VmdkDescriptor descriptor, List<VmdkExtent> extents, List<HostFile> files, HostFile descriptorFile, long descriptorOffset, long descriptorCapacity, bool ignoreParentMismatch)
            : base(path, writable)
        {
            Descriptor = descriptor;
            _extents = extents;
            _files = files;
            _descriptorFile = descriptorFile;
            _descriptorOffset = descriptorOffset;
            _descriptorCapacity = descriptorCapacity;
            _ignoreParentMismatch = ignoreParentMismatch;
            _extentStarts = new long[extents.Count];
            long start = 0;
            for (int i = 0; i < extents.Count; i++)
            {
                _extentStarts[i] = start;
                start += extents[i].Length;
            }

            _size = start;
        }

        public override DiskFormat Format => VmdkDriver.Id;

        public override long Size => _size;

        public override int ClusterSize => _extents.Select(e => e.GrainBytes).FirstOrDefault(g => g.HasValue) ?? 65536;

        public override DiskType DiskType
        {
            get
            {
                if (Backing != null)
                {
                    return DiskType.Differencing;
                }

                return _extents.Count > 0 && _extents.All(e => e is FlatExtent || e is ZeroExtent) && Descriptor.GetDatabase("ddb.thinProvisioned") != "1"
                    ? DiskType.Fixed
                    : DiskType.Dynamic;
            }
        }

        public override BackingReference Backing
            => string.IsNullOrEmpty(Descriptor.ParentFileNameHint) ? null : new BackingReference(Descriptor.ParentFileNameHint, VmdkDriver.Id);

        public override IReadOnlyList<string> HostFiles
        {
            get
            {
                var list = new List<string> { Path };
                foreach (var file in _files)
                {
                    if (!list.Contains(file.Path, ImageChain.PathComparer))
                    {
                        list.Add(file.Path);
                    }
                }

                return list;
            }
        }

        internal VmdkDescriptor Descriptor { get; }

        /// <summary>The content id: changes on the first write of each session, as VMware does.</summary>
        internal uint Cid => Descriptor.Cid;

        internal IReadOnlyList<VmdkExtent> Extents => _extents;

        public override bool IsStreamed => _extents.Any(e => e.IsStreamed);

        public override void ReadToEnd()
        {
            foreach (VmdkExtent extent in _extents)
            {
                extent.ReadToEnd();
            }
        }

        public override void Read(long offset, Span<byte> buffer)
        {
            VerifyParent();
            base.Read(offset, buffer);
        }

        public override BlockStatus GetBlockStatus(long offset, long maxLength)
        {
            VerifyParent();
            maxLength = Math.Min(maxLength, _size - offset);
            int index = FindExtent(offset);
            BlockStatus status = ExtentStatus(index, offset, maxLength);
            long end = offset + maxLength;

            // Runs without data continue across extent boundaries (2 GiB extents would cut them short).
            while (status.Kind != ExtentKind.Data && status.End < end && index + 1 < _extents.Count && status.End == _extentStarts[index + 1])
            {
                index++;
                BlockStatus next = ExtentStatus(index, status.End, end - status.End);
                if (next.Kind != status.Kind)
                {
                    break;
                }

                status = status.WithLength(status.Length + next.Length);
            }

            return status;
        }

        public override void Flush()
        {
            foreach (var extent in _extents)
            {
                extent.Flush();
            }

            if (IsWritable)
            {
                foreach (var file in _files)
                {
                    file.Flush();
                }
            }
        }

        public override void Describe(VDiskInfo info)
        {
            info.Subformat = Descriptor.CreateType;
            info.Compressed = _extents.Any(e => e.Compressed);
            info.DiskIdentifier = ParseUuid(Descriptor.GetDatabase(DiskUuidKey));
            info.FormatSpecific["cid"] = (long)Descriptor.Cid;
            info.FormatSpecific["parent-cid"] = (long)Descriptor.ParentCid;
            info.FormatSpecific["create-type"] = Descriptor.CreateType;
            var extents = new List<IDictionary<string, object>>();
            foreach (var extent in _extents)
            {
                var entry = new QemuRecord
                {
                    ["filename"] = extent.File?.Path ?? string.Empty,
                    ["format"] = extent.DescribedType ?? extent.Line.Type,
                    ["virtual-size"] = extent.Length,
                };
                if (extent.GrainBytes.HasValue)
                {
                    entry["cluster-size"] = (long)extent.GrainBytes.Value;
                }

                if (extent.Compressed)
                {
                    entry["compressed"] = true;
                }

                extents.Add(entry);
            }

            info.FormatSpecific["extents"] = extents;
        }

        protected override void ReadData(long offset, Span<byte> buffer, BlockStatus status)
        {
            int index = FindExtent(offset);
            long start = _extentStarts[index];
            var local = new BlockStatus(status.GuestOffset - start, status.Length, status.Kind, status.HostOffset, status.Compressed, status.HostFile);
            _extents[index].ReadData(offset - start, buffer, local);
        }

        protected override void WriteCore(long offset, ReadOnlySpan<byte> data)
        {
            MarkContentChanged(offset, data.Length);
            while (data.Length > 0)
            {
                int index = FindExtent(offset);
                long start = _extentStarts[index];
                VmdkExtent extent = _extents[index];
                int n = (int)Math.Min(data.Length, extent.Length - (offset - start));
                extent.Write(offset - start, data.Slice(0, n), (relative, target) => ReadFromParent(start + relative, target));
                offset += n;
                data = data.Slice(n);
            }
        }

        protected override void WriteZeroesCore(long offset, long length)
        {
            MarkContentChanged(offset, length);
            byte[] zeros = null;
            while (length > 0)
            {
                int index = FindExtent(offset);
                long start = _extentStarts[index];
                VmdkExtent extent = _extents[index];
                long piece = Math.Min(length, extent.Length - (offset - start));
                long handled = extent.TryWriteZeroGrains(offset - start, piece, Parent != null);
                if (handled == 0)
                {
                    // Write real zeros up to the next grain boundary, then try metadata again.
                    long unit = extent.GrainBytes ?? (1 << 20);
                    long relative = offset - start;
                    handled = Math.Min(piece, unit - relative % unit);
                    zeros = zeros ?? new byte[unit];
                    extent.Write(relative, zeros.AsSpan(0, (int)handled), (r, target) => ReadFromParent(start + r, target));
                }

                offset += handled;
                length -= handled;
            }
        }

        protected override void Dispose(bool disposing)
        {
            try
            {
                if (IsWritable)
                {
                    Flush();
                }
            }
            finally
            {
                foreach (var file in _files)
                {
                    file.Dispose();
                }
            }
        }

        /// <summary>Rewrites the descriptor in place (its sectors in a sparse extent, or its own file).</summary>
        internal void WriteDescriptor()
        {
            byte[] text = Encoding.UTF8.GetBytes(Descriptor.ToText());
            if (_descriptorFile == null)
            {
                throw new ImageNotSupportedException(Path, "descriptor", null, "the image has no descriptor to update");
            }

            if (_descriptorCapacity > 0)
            {
                if (text.Length > _descriptorCapacity)
                {
                    throw new ImageNotSupportedException(Path, "descriptor", _descriptorOffset, $"the updated descriptor ({text.Length} bytes) does not fit in its {_descriptorCapacity}-byte area");
                }

                byte[] area = new byte[_descriptorCapacity];
                text.CopyTo(area, 0);
                _descriptorFile.WriteAt(_descriptorOffset, area);
                return;
            }

            _descriptorFile.WriteAt(0, text);
            _descriptorFile.SetLength(text.Length);
        }

        internal void ResetParentVerification() => _verifiedParent = null;

        /// <summary>Marks a session whose content already has a fresh CID (a newly created image).</summary>
        internal void SetCidFresh() => _cidUpdated = true;

        internal static uint NewCid()
        {
            var bytes = Guid.NewGuid().ToByteArray();
            uint cid = BitConverter.ToUInt32(bytes, 0);
            return cid >= 0xFFFFFFFE ? 0x12345678u : cid;
        }

        /// <summary>Extent index holding <paramref name="offset"/>.</summary>
        private int FindExtent(long offset)
        {
            int index = Array.BinarySearch(_extentStarts, offset);
            if (index < 0)
            {
                index = ~index - 1;
            }

            // Skip zero-length extents.
            while (index + 1 < _extentStarts.Length && _extentStarts[index + 1] <= offset)
            {
                index++;
            }

            return Math.Max(0, index);
        }

        private BlockStatus ExtentStatus(int index, long offset, long maxLength)
        {
            long start = _extentStarts[index];
            VmdkExtent extent = _extents[index];
            long local = offset - start;
            BlockStatus status = extent.GetStatus(local, Math.Min(maxLength, extent.Length - local));
            return new BlockStatus(offset, status.Length, status.Kind, status.HostOffset, status.Compressed, status.HostFile);
        }

        /// <summary>Refuses a change to read-only extents in the run, then gives the disk a new CID once per session.</summary>
        private void MarkContentChanged(long offset, long length)
        {
            for (int index = FindExtent(offset); index < _extents.Count && _extentStarts[index] < offset + length; index++)
            {
                string reason = _extents[index].ReadOnlyReason;
                if (reason != null)
                {
                    throw new ImageNotSupportedException(_extents[index].File?.Path ?? Path, null, null, reason);
                }
            }


            RenewCid();
        }

        /// <summary>
        /// VMware and qemu give the disk a new content id on its first modification, so children pinned to
        /// the old content notice the change; the one <see cref="PrepareCid"/> chose, if any.
        /// </summary>
        private void RenewCid()
        {
            // A bare sparse extent opened on its own has no descriptor to carry a CID.
            if (_cidUpdated || _descriptorFile == null)
            {
                return;
            }

            Descriptor.Cid = _nextCid ?? NewCid();
            WriteDescriptor();
            _cidUpdated = true;
        }

        /// <summary>Writes the CID <see cref="PrepareCid"/> chose now, before any content changes, and flushes it.</summary>
        internal void ApplyPreparedCid()
        {
            RenewCid();
            Flush();
        }

        /// <summary>The CID this disk carries once its content changes in this session, chosen now so a child can record it first.</summary>
        internal uint PrepareCid()
        {
            if (_cidUpdated || _descriptorFile == null)
            {
                return Descriptor.Cid;
            }

            _nextCid = _nextCid ?? NewCid();
            return _nextCid.Value;
        }

        private void VerifyParent()
        {
            ImageLayer parent = Parent;
            if (parent == null || ReferenceEquals(parent, _verifiedParent))
            {
                return;
            }

            if (parent is VmdkLayer vmdkParent && !_ignoreParentMismatch && Descriptor.ParentCid != VmdkDescriptor.NoParentCid && vmdkParent.Cid != Descriptor.ParentCid && vmdkParent.Cid != PreviousParentCid)
            {
                throw new ImageParentMismatchException(Path, "parentCID", parent.Path,
                    $"the parent '{parent.Path}' has CID {vmdkParent.Cid:x8}, but this delta disk was made against CID {Descriptor.ParentCid:x8}: the parent changed since");
            }

            _verifiedParent = parent;
        }

        private static Guid? ParseUuid(string text)
        {
            if (string.IsNullOrEmpty(text))
            {
                return null;
            }

            string hex = text.Replace(" ", string.Empty).Replace("-", string.Empty);
            if (hex.Length != 32)
            {
                return null;
            }

            var bytes = new byte[16];
            for (int i = 0; i < 16; i++)
            {
                if (!byte.TryParse(hex.Substring(i * 2, 2), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out bytes[i]))
                {
                    return null;
                }
            }

            // The bytes are in RFC 4122 order (see VmdkCreateOptions.FormatUuid); Guid's constructor takes the first three fields little-endian.
            Array.Reverse(bytes, 0, 4);
            Array.Reverse(bytes, 4, 2);
            Array.Reverse(bytes, 6, 2);
            return new Guid(bytes);
        }
    }
}
