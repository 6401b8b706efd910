using System;
using System.Collections.Generic;
using VDiskPS;

namespace VDiskPS.Formats.Vhdx
{
    // qemu-img check for VHDX: the log, BAT entries past the end or inside metadata, blocks sharing space.
    public sealed partial class VhdxLayer : ICheckableLayer
    {
        public VDiskCheckResult Check(RepairMode repair)
        {
            var result = new VDiskCheckResult { Path = Path, Format = "vhdx", TotalClusters = _dataBlockCount, ImageEndOffset = ViewLength };
            if (_pendingLogInMemory)
            {
                result.Corruptions++;
                result.Messages.Add("the log holds updates not yet written to their places; open the image for writing (repair) to replay them");
            }

            if (_logReplayedOnDisk)
            {
                result.CorruptionsFixed++;
                result.Messages.Add("the log was replayed when the image was opened");
            }

            if (_logWithoutSequence)
            {
                result.Corruptions++;
                result.Messages.Add($"the header names log {_header.LogGuid:B} but the log holds no valid sequence for it");
            }

            result.Corruptions += _structureProblems.Count;
            foreach (string problem in _structureProblems)
            {
                result.Messages.Add(problem);
            }

            foreach (string problem in _headerProblems)
            {
                result.Messages.Add(problem);
            }

            if (repair == RepairMode.All && IsWritable)
            {
                RepairStructures(result);
            }

            lock (_gate)
            {
                CountBlocks(result);
                result.Corruptions += _badBatEntries.Count;
                foreach (string problem in _batProblems)
                {
                    result.Messages.Add(problem);
                }

                FindSharedSpace(result);
            }

            if (repair == RepairMode.All && IsWritable && _badBatEntries.Count > 0)
            {
                // A block whose space is unusable loses its data; it reads as zeros (or from the parent) again.
                BeginModification(userVisible: true);
                long fixedCount = 0;
                foreach (long index in _badBatEntries.ToList())
                {
                    SetBatEntry(index, 0);
                    fixedCount++;
                }

                CommitMetadata();
                result.Corruptions -= fixedCount;
                result.CorruptionsFixed += fixedCount;
            }

            return result;
        }

        /// <summary>Rewrites both headers (clearing a log GUID without a sequence) and both region tables.</summary>
        private void RepairStructures(VDiskCheckResult result)
        {
            if (_logWithoutSequence || _headerProblems.Count > 0)
            {
                BeginModification(userVisible: false);
                _header.LogGuid = Guid.Empty;
                WriteHeaders();
                if (_logWithoutSequence)
                {
                    result.Corruptions--;
                    result.CorruptionsFixed++;
                    _logWithoutSequence = false;
                }

                _headerProblems.Clear();
            }

            if (_structureProblems.Count > 0)
            {
                BeginModification(userVisible: false);
                byte[] table = VhdxRegionTable.Build(_regions);
                for (int page = 0; page < table.Length; page += VhdxConstants.LogSectorLength)
                {
                    byte[] data = table.AsSpan(page, VhdxConstants.LogSectorLength).ToArray();
                    _pendingPages[VhdxConstants.RegionTable1Offset + page] = data;
                    _pendingPages[VhdxConstants.RegionTable2Offset + page] = data;
                }

                CommitMetadata();
                result.Corruptions -= _structureProblems.Count;
                result.CorruptionsFixed += _structureProblems.Count;
                _structureProblems.Clear();
            }
        }

        private void CountBlocks(VDiskCheckResult result)
        {
            long previousEnd = -1;
            for (long block = 0; block < _dataBlockCount; block++)
            {
                ulong entry = _bat[BatIndexOfBlock(block)];
                int state = BatState.StateOf(entry);
                if (state != BatState.FullyPresent && state != BatState.PartiallyPresent)
                {
                    previousEnd = -1;
                    continue;
                }

                result.AllocatedClusters++;
                if (previousEnd >= 0 && BatState.OffsetOf(entry) != previousEnd)
                {
                    result.FragmentedClusters++;
                }

                previousEnd = BatState.OffsetOf(entry) + _blockSize;
            }
        }

        /// <summary>Two BAT entries whose blocks overlap in the file: writing one would change the other.</summary>
        private void FindSharedSpace(VDiskCheckResult result)
        {
            var spans = new List<(long Start, long End, long Index)>();
            for (long index = 0; index < _bat.Length; index++)
            {
                if (_badBatEntries.Contains(index))
                {
                    continue;
                }

                ulong entry = _bat[index];
                int state = BatState.StateOf(entry);
                bool isBitmap = (index % (_chunkRatio + 1)) == _chunkRatio;
                if (isBitmap ? state == BatState.SectorBitmapPresent : state == BatState.FullyPresent || state == BatState.PartiallyPresent)
                {
                    long start = BatState.OffsetOf(entry);
                    spans.Add((start, start + (isBitmap ? VhdxConstants.SectorBitmapBlockLength : _blockSize), index));
                }
            }

            spans.Sort((a, b) => a.Start.CompareTo(b.Start));
            for (int i = 1; i < spans.Count; i++)
            {
                if (spans[i].Start < spans[i - 1].End)
                {
                    result.Corruptions++;
                    if (result.Messages.Count < MaxReportedProblems * 2)
                    {
                        result.Messages.Add($"BAT entry {spans[i].Index} at offset {BatEntryFileOffset(spans[i].Index)}: the block ({spans[i].Start}) overlaps the block of entry {spans[i - 1].Index} ({spans[i - 1].Start})");
                    }
                }
            }
        }
    }
}
