using System;
using System.Collections.Generic;

namespace VDiskPS
{
    /// <summary>One run of Get-VDiskMap (qemu-img map --output=json).</summary>
    public sealed class VDiskExtent
    {
        public long Start { get; set; }

        public long Length { get; set; }

        public int Depth { get; set; }

        public bool Present { get; set; }

        public bool Zero { get; set; }

        public bool Data { get; set; }

        public bool Compressed { get; set; }

        /// <summary>Host offset of the data, or null where it is not stored plainly.</summary>
        public long? Offset { get; set; }

        public string File { get; set; }

        public string Path { get; set; }
    }

    /// <summary>The result of Test-VDisk -Detailed / Repair-VDisk: qemu's ImageCheck fields.</summary>
    public sealed class VDiskCheckResult
    {
        public string Path { get; set; }

        public string Format { get; set; }

        public bool IsValid => Corruptions == 0 && CheckErrors == 0;

        public long Corruptions { get; set; }

        public long Leaks { get; set; }

        public long CheckErrors { get; set; }

        public long CorruptionsFixed { get; set; }

        public long LeaksFixed { get; set; }

        public long TotalClusters { get; set; }

        public long AllocatedClusters { get; set; }

        public long FragmentedClusters { get; set; }

        public long CompressedClusters { get; set; }

        public long ImageEndOffset { get; set; }

        /// <summary>The backing chain failed because a parent's identity no longer matches the one the image records.</summary>
        public bool ParentIdMismatch { get; set; }

        /// <summary>How many parents below the image had their own metadata checked (Test-VHD checks the whole chain).</summary>
        public int ParentsChecked { get; set; }

        public IList<string> Messages { get; } = new List<string>();
    }

    /// <summary>One internal snapshot (qemu-img snapshot -l).</summary>
    public sealed class VDiskSnapshotInfo
    {
        public string Path { get; set; }

        public string Id { get; set; }

        public string Name { get; set; }

        public long VmStateSize { get; set; }

        public DateTime Date { get; set; }

        public TimeSpan VmClock { get; set; }

        public long Size { get; set; }

        /// <summary>The nanoseconds of <see cref="Date"/> past its second, as recorded (a DateTime keeps only 100 ns).</summary>
        public long DateNanoseconds { get; set; }

        /// <summary>The guest clock at the snapshot in nanoseconds, as recorded.</summary>
        public long VmClockNanoseconds { get; set; }

        /// <summary>The guest's instruction count at the snapshot (record/replay), or null when not recorded.</summary>
        public long? Icount { get; set; }
    }

    /// <summary>One persistent dirty bitmap.</summary>
    public sealed class VDiskBitmapInfo
    {
        public string Path { get; set; }

        public string Name { get; set; }

        public long Granularity { get; set; }

        public bool Enabled { get; set; }

        public bool InUse { get; set; }

        public bool Auto { get; set; }

        /// <summary>Bytes marked dirty.</summary>
        public long DirtyBytes { get; set; }
    }

    /// <summary>The result of Compare-VDisk.</summary>
    public sealed class VDiskComparison
    {
        public string ReferencePath { get; set; }

        public string DifferencePath { get; set; }

        public bool Identical { get; set; }

        /// <summary>The first offset whose content differs (qemu-img compare's "Content mismatch at offset"), or null.</summary>
        public long? FirstMismatchOffset { get; set; }

        public string Reason { get; set; }
    }

    /// <summary>The result of Measure-VDisk (qemu-img measure).</summary>
    public sealed class VDiskMeasurement
    {
        /// <summary>The image measured, so a table of several says which is which; null when an empty image of a size was measured.</summary>
        public string Path { get; set; }

        public string Format { get; set; }

        /// <summary>Bytes required for the image with its current data.</summary>
        public long Required { get; set; }

        /// <summary>Bytes required if every cluster were allocated.</summary>
        public long FullyAllocated { get; set; }

        /// <summary>Bytes required for persistent bitmaps, where the format has them.</summary>
        public long? Bitmaps { get; set; }
    }

    /// <summary>The result of Sync-VDisk.</summary>
    public sealed class VDiskSyncResult
    {
        public string Path { get; set; }

        public string Destination { get; set; }

        public long Compared { get; set; }

        public long Written { get; set; }

        public long Skipped { get; set; }
    }
}
