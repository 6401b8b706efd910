using System;

namespace VDiskPS.Formats.Vmdk
{
    // Discard: whole grains of sparse extents become unallocated again (reading from the parent, or
    // as zeros). Partial grains and flat extents keep their data, as a discard is only a hint; a run
    // without sparse extents changes nothing, so it keeps the content id too.
    internal partial class VmdkLayer : IDiscardableLayer
    {
        public void Discard(long offset, long length)
        {
            EnsureWritable();
            CheckRange(offset, length);
            long end = offset + length;
            if (length == 0 || !HasSparseExtent(offset, end))
            {
                return;
            }

            MarkContentChanged(offset, length);
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

        private bool HasSparseExtent(long offset, long end)
        {
            for (int index = FindExtent(offset); index < _extents.Count && _extentStarts[index] < end; index++)
            {
                if (_extents[index] is SparseExtent)
                {
                    return true;
                }
            }

            return false;
        }
    }
}
