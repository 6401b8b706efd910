using System;

namespace VDiskPS.Formats.Vmdk
{
    // Discard: whole grains of sparse extents become unallocated again (reading from the parent, or
    // as zeros). Partial grains and flat extents keep their data, as a discard is only a hint.
    internal partial class VmdkLayer : IDiscardableLayer
    {
        public void Discard(long offset, long length)
        {
            EnsureWritable();
            CheckRange(offset, length);
            if (length == 0)
            {
                return;
            }

            MarkContentChanged(offset, length);
            long end = offset + length;
            while (offset < end)
            {
                int index = FindExtent(offset);
                long start = _extentStarts[index];
                VmdkExtent extent = _extents[index];
                long piece = Math.Min(end - offset, extent.Length - (offset - start));
                (extent as SparseExtent)?.Discard(offset - start, piece);
                offset += piece;
            }
        }
    }
}
