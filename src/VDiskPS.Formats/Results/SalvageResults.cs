using System.Collections.Generic;

namespace VDiskPS
{
    /// <summary>A range of the source that could not be read and was written as zeros (a salvaging copy).</summary>
    public sealed class VDiskBadRange
    {
        /// <summary>Guest offset of the range in the source.</summary>
        public long Offset { get; set; }

        public long Length { get; set; }

        /// <summary>Why the first sector of the range could not be read.</summary>
        public string Reason { get; set; }
    }

    /// <summary>What a salvaging copy (Convert-VDisk -Salvage, Copy-VDiskData -Salvage) could not read.</summary>
    public sealed class VDiskSalvageResult
    {
        /// <summary>The output image.</summary>
        public string Path { get; set; }

        public string SourcePath { get; set; }

        /// <summary>The unreadable ranges of the source, in order; each reads as zeros in the output.</summary>
        public IReadOnlyList<VDiskBadRange> BadRanges { get; set; }

        public long BadBytes { get; set; }
    }
}
