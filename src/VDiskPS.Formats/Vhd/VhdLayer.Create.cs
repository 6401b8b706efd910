using System;
using System.Buffers;

namespace VDiskPS.Formats.Vhd
{
    /// <summary>New images: the layouts Hyper-V writes (VHD spec, "Dynamic Disk Header Format" and "Hard Disk Footer Format").</summary>
    public sealed partial class VhdLayer
    {
        /// <summary>Where a new dynamic disk's header and BAT go: right after the footer copy.</summary>
        private const long NewHeaderOffset = VhdFooter.Length;
        private const long NewTableOffset = NewHeaderOffset + VhdDynamicHeader.Length;

        internal static VhdLayer CreateFixed(HostFile file, VhdFooter footer, long size, Preallocation preallocation)
        {
            footer.DiskType = VhdDiskType.Fixed;
            footer.DataOffset = VhdFooter.NoDataOffset;
            file.Preallocate(0, size, preallocation);

            file.WriteAt(size, footer.ToBytes());
            return new VhdLayer(file, footer, null, null) { _nextFree = size };
        }

        internal static VhdLayer CreateDynamic(HostFile file, VhdFooter footer, long size, int blockSize, ParentPaths parentPaths, VhdLayer parent)
        {
            footer.DiskType = parentPaths != null ? VhdDiskType.Differencing : VhdDiskType.Dynamic;
            footer.DataOffset = (ulong)NewHeaderOffset;
            uint entries = (uint)Math.Max(1, (size + blockSize - 1) / blockSize);
            var header = new VhdDynamicHeader
            {
                TableOffset = (ulong)NewTableOffset,
                MaxTableEntries = entries,
                BlockSize = (uint)blockSize,
            };
            long tableBytes = RoundUp(entries * 4L, SectorSize);
            var table = new byte[tableBytes];
            table.AsSpan().Fill(0xFF);
            file.WriteAt(NewTableOffset, table);
            long next = NewTableOffset + tableBytes;
            if (parentPaths != null)
            {
                next = WriteParentLocators(file, header, parentPaths, parent, next);
            }

            byte[] footerBytes = footer.ToBytes();
            file.WriteAt(0, footerBytes);
            file.WriteAt(NewHeaderOffset, header.ToBytes());
            file.WriteAt(next, footerBytes);
            var bat = new uint[entries];
            bat.AsSpan().Fill(UnusedEntry);
            var layer = new VhdLayer(file, footer, header, bat) { _nextFree = next };
            if (parentPaths != null)
            {
                layer._backing = BackingFrom(parentPaths);
            }

            return layer;
        }
    }
}
