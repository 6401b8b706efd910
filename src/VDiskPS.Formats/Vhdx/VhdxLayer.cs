using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using VDiskPS;

namespace VDiskPS.Formats.Vhdx
{
    /// <summary>
    /// A VHDX image ([MS-VHDX]): fixed, dynamic or differencing. The BAT lives in memory; metadata
    /// changes (BAT, sector bitmaps, metadata region, region tables) reach their places through the log.
    /// </summary>
    public sealed partial class VhdxLayer : ImageLayer
    {
        private readonly HostFile _file;
        private readonly object _gate = new object();
        private readonly List<string> _headerProblems = new List<string>();
        private readonly List<string> _structureProblems = new List<string>();
        private VhdxHeader _header;
        private int _currentHeaderSlot;
        private List<VhdxRegion> _regions;
        private VhdxRegion _batRegion;
        private VhdxRegion _metadataRegion;
        private VhdxMetadata _metadata;
        private ulong[] _bat;
        private long _blockSize;
        private long _sectorsPerBlock;
        private long _chunkRatio;
        private long _dataBlockCount;
        private BackingReference _backing;

        private VhdxLayer(HostFile file, bool writable)
            : base(file.Path, writable)
        {
            _file = file;
        }

        public override DiskFormat Format => VhdxDriver.Id;

        public override long Size => _metadata.VirtualSize;

        public override int ClusterSize => (int)_blockSize;

        public override DiskType DiskType => _metadata.HasParent ? DiskType.Differencing : _metadata.LeaveBlocksAllocated ? DiskType.Fixed : DiskType.Dynamic;

        public override BackingReference Backing => _backing;

        public override int LogicalSectorSize => _metadata.LogicalSectorSize;

        public override int PhysicalSectorSize => _metadata.PhysicalSectorSize;

        /// <summary>The virtual disk ID (page 83 data), which a child shares with its parent.</summary>
        internal Guid DiskIdentifier => _metadata.Page83Data;

        /// <summary>Other metadata items marked IsVirtualDisk: a new child copies them ([MS-VHDX] 2.6.1.2).</summary>
        internal IEnumerable<(Guid Id, uint Flags, byte[] Data)> VirtualDiskItems
        {
            get
            {
                foreach (var item in _metadata.OtherItems)
                {
                    if ((item.Flags & VhdxMetadata.FlagIsVirtualDisk) != 0)
                    {
                        yield return item;
                    }
                }
            }
        }

        /// <summary>The current header's DataWriteGuid: what a child's parent linkage records.</summary>
        internal Guid DataWriteGuid => _header.DataWriteGuid;

        internal static VhdxLayer Open(HostFile file, OpenOptions options)
        {
            var layer = new VhdxLayer(file, options.Writable);
            try
            {
                layer.Load(options);
                return layer;
            }
            catch
            {
                file.Dispose();
                throw;
            }
        }

        /// <summary>Wraps a file just written by <see cref="VhdxDriver"/> and reads it back as any image.</summary>
        internal static VhdxLayer OpenCreated(HostFile file)
        {
            var layer = new VhdxLayer(file, true);
            layer.Load(new OpenOptions { Writable = true, IgnoreParentMismatch = true });
            return layer;
        }

        public override void Describe(VDiskInfo info)
        {
            info.Subformat = DiskType.ToString().ToLowerInvariant();
            info.DiskIdentifier = _metadata.Page83Data;
            info.Dirty = _pendingLogInMemory;
            info.Corrupt = _batProblems.Count > 0 || _structureProblems.Count > 0 || _logWithoutSequence;
            info.LogicalSectorSize = LogicalSectorSize;
            info.PhysicalSectorSize = PhysicalSectorSize;

            // Hyper-V shows the absolute parent path; the relative one stays the recorded reference.
            string absolute = _metadata.GetLocator(AbsolutePathKey);
            if (absolute != null)
            {
                info.ParentPath = WithoutExtendedPrefix(absolute);
            }
        }

        private void Load(OpenOptions options)
        {
            Span<byte> signature = stackalloc byte[8];
            if (_file.ReadAt(VhdxConstants.FileIdentifierOffset, signature) != 8
                || BinaryPrimitives.ReadUInt64LittleEndian(signature) != VhdxConstants.FileSignature)
            {
                throw new ImageFormatMismatchException(Path, "file identifier", VhdxConstants.FileIdentifierOffset, "the file does not start with 'vhdxfile'; it is not a VHDX image");
            }

            LoadHeaders();
            ReplayLogOnOpen();
            LoadRegions();
            LoadMetadata();
            LoadBat();
            if (_metadata.HasParent)
            {
                _backing = ReadParentLocator(options);
                if (!options.IgnoreParentMismatch)
                {
                    CheckParentLinkage(options);
                }
            }
        }

        private void LoadHeaders()
        {
            var block = new byte[VhdxConstants.HeaderLength];
            VhdxHeader best = null;
            var problems = new List<string>();
            long[] slots = { VhdxConstants.Header1Offset, VhdxConstants.Header2Offset };
            for (int slot = 0; slot < 2; slot++)
            {
                if (_file.ReadAt(slots[slot], block) != block.Length)
                {
                    problems.Add($"header {slot + 1} at {slots[slot]}: the file ends inside it");
                    continue;
                }

                VhdxHeader header = VhdxHeader.TryParse(block, out string problem);
                if (header == null)
                {
                    problems.Add($"header {slot + 1} at {slots[slot]}: {problem}");
                    _headerProblems.Add($"header {slot + 1} at offset {slots[slot]} is not valid ({problem}); the other header is used");
                    continue;
                }

                if (best == null || header.SequenceNumber > best.SequenceNumber)
                {
                    best = header;
                    _currentHeaderSlot = slot;
                }
            }

            if (best == null)
            {
                throw new ImageCorruptException(Path, "header", VhdxConstants.Header1Offset, "neither header is valid (" + string.Join("; ", problems) + ")");
            }

            long at = slots[_currentHeaderSlot];
            if (best.Version != 1)
            {
                throw new ImageNotSupportedException(Path, "header version", at + 66, $"version {best.Version} is not supported (only 1)");
            }

            if (best.LogLength == 0 || best.LogLength % VhdxConstants.MiB != 0 || best.LogOffset % VhdxConstants.MiB != 0
                || best.LogOffset < VhdxConstants.HeaderSectionLength || best.LogOffset > _file.Length - best.LogLength)
            {
                throw new ImageCorruptException(Path, "log location", at + 68, $"the log ({best.LogOffset}+{best.LogLength}) is not 1 MiB aligned past the header section inside the {_file.Length}-byte file");
            }

            if (best.LogLength > VhdxConstants.MaxLogLength)
            {
                throw new ImageNotSupportedException(Path, "log length", at + 68, $"a {best.LogLength}-byte log exceeds the {VhdxConstants.MaxLogLength}-byte limit");
            }

            if (best.LogGuid != Guid.Empty && best.LogVersion != 0)
            {
                throw new ImageNotSupportedException(Path, "log version", at + 64, $"log version {best.LogVersion} is not supported (only 0)");
            }

            _header = best;
        }

        private void LoadRegions()
        {
            var table = new byte[VhdxConstants.RegionTableLength];
            string firstProblem = null;
            long[] copies = { VhdxConstants.RegionTable1Offset, VhdxConstants.RegionTable2Offset };
            foreach (long at in copies)
            {
                ReadView(at, table, "region table");
                List<VhdxRegion> regions = VhdxRegionTable.TryParse(table, out string problem);
                if (regions != null)
                {
                    problem = VhdxRegionTable.Validate(regions);
                    if (problem != null)
                    {
                        throw new ImageCorruptException(Path, "region table", at, problem);
                    }

                    _regions = regions;
                    break;
                }

                firstProblem = firstProblem ?? problem;
            }

            if (_regions != null)
            {
                // Both copies must be the same ([MS-VHDX] 2.2.3); a damaged copy is for Check to report.
                var other = new byte[VhdxConstants.RegionTableLength];
                ReadView(firstProblem == null ? VhdxConstants.RegionTable2Offset : VhdxConstants.RegionTable1Offset, other, "region table");
                if (!other.AsSpan().SequenceEqual(table))
                {
                    _structureProblems.Add(firstProblem == null
                        ? "region table 2 differs from region table 1"
                        : "region table 1 is not valid (" + firstProblem + "); region table 2 is used");
                }
            }

            if (_regions == null)
            {
                throw new ImageCorruptException(Path, "region table", VhdxConstants.RegionTable1Offset, "neither copy is valid: " + firstProblem);
            }

            long fileLength = ViewLength;
            foreach (VhdxRegion region in _regions)
            {
                if (region.Id == VhdxConstants.BatRegion)
                {
                    _batRegion = region;
                }
                else if (region.Id == VhdxConstants.MetadataRegion)
                {
                    _metadataRegion = region;
                }
                else if (region.Required)
                {
                    throw new ImageNotSupportedException(Path, $"region {region.Id}", VhdxConstants.RegionTable1Offset, "the image requires a region this module does not know");
                }

                if (region.End > fileLength)
                {
                    throw new ImageCorruptException(Path, $"region {region.Id}", VhdxConstants.RegionTable1Offset, $"the region ({region.FileOffset}+{region.Length}) extends past the end of the {fileLength}-byte file");
                }

                if (region.FileOffset < _header.LogOffset + _header.LogLength && _header.LogOffset < region.End)
                {
                    throw new ImageCorruptException(Path, $"region {region.Id}", VhdxConstants.RegionTable1Offset, $"the region ({region.FileOffset}+{region.Length}) overlaps the log ({_header.LogOffset}+{_header.LogLength})");
                }
            }

            if (_batRegion == null || _metadataRegion == null)
            {
                throw new ImageCorruptException(Path, _batRegion == null ? "BAT region" : "metadata region", VhdxConstants.RegionTable1Offset, "the region table lacks this required region");
            }
        }

        private void LoadMetadata()
        {
            const long maxRegionRead = 16 * VhdxConstants.MiB;
            if (_metadataRegion.Length > maxRegionRead)
            {
                throw new ImageNotSupportedException(Path, "metadata region", _metadataRegion.FileOffset, $"a {_metadataRegion.Length}-byte metadata region exceeds the {maxRegionRead}-byte limit");
            }

            var region = new byte[_metadataRegion.Length];
            ReadView(_metadataRegion.FileOffset, region, "metadata region");
            _metadata = VhdxMetadata.Parse(region, _metadataRegion.FileOffset, Path);
            ComputeGeometry();
        }

        private void ComputeGeometry()
        {
            _blockSize = _metadata.BlockSize;
            _sectorsPerBlock = _blockSize / _metadata.LogicalSectorSize;
            _chunkRatio = VhdxConstants.SectorsPerBitmapBlock * _metadata.LogicalSectorSize / _blockSize;
            _dataBlockCount = DivideRoundingUp(_metadata.VirtualSize, _blockSize);
        }

        /// <summary>BAT entries an image of this geometry needs ([MS-VHDX] 2.5: payload entries interleaved with sector bitmap entries).</summary>
        private long BatEntryCount(long dataBlocks)
        {
            if (_metadata.HasParent)
            {
                return DivideRoundingUp(dataBlocks, _chunkRatio) * (_chunkRatio + 1);
            }

            return dataBlocks + ((dataBlocks - 1) / _chunkRatio);
        }

        private void LoadBat()
        {
            long entries = BatEntryCount(_dataBlockCount);
            if (entries * 8 > _batRegion.Length)
            {
                throw new ImageCorruptException(Path, "BAT region", _batRegion.FileOffset, $"{entries} entries are needed for {_metadata.VirtualSize} bytes in {_blockSize}-byte blocks; the region holds {_batRegion.Length / 8}");
            }

            // Bounded by the region, which lies inside the file.
            _bat = new ulong[entries];
            var chunk = new byte[Math.Min(entries * 8, 4 * VhdxConstants.MiB)];
            for (long done = 0; done < entries;)
            {
                int n = (int)Math.Min(chunk.Length / 8, entries - done);
                ReadView(_batRegion.FileOffset + (done * 8), chunk.AsSpan(0, n * 8), "BAT");
                for (int i = 0; i < n; i++)
                {
                    _bat[done + i] = BinaryPrimitives.ReadUInt64LittleEndian(chunk.AsSpan(i * 8));
                }

                done += n;
            }

            _fileEnd = AlignUp(Math.Max(ViewLength, MetadataEnd()), VhdxConstants.MiB);
            ValidateBatEntries();
        }

        /// <summary>The end of the last structure that is not payload: header section, log and regions.</summary>
        private long MetadataEnd()
        {
            long end = Math.Max(VhdxConstants.HeaderSectionLength, _header.LogOffset + _header.LogLength);
            foreach (VhdxRegion region in _regions)
            {
                end = Math.Max(end, region.End);
            }

            return end;
        }

        private static long DivideRoundingUp(long value, long unit) => (value + unit - 1) / unit;

        private static long AlignUp(long value, long unit) => DivideRoundingUp(value, unit) * unit;

        private long BatIndexOfBlock(long block) => block + (block / _chunkRatio);

        private long BatIndexOfBitmap(long chunk) => (chunk * (_chunkRatio + 1)) + _chunkRatio;

        private long BatEntryFileOffset(long index) => _batRegion.FileOffset + (index * 8);

        protected override void Dispose(bool disposing)
        {
            try
            {
                if (IsWritable)
                {
                    CommitMetadata();
                }
            }
            finally
            {
                _file.Dispose();
            }
        }
    }
}
