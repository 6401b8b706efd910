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
                foreach (long index in new List<long>(_badBatEntries))
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
