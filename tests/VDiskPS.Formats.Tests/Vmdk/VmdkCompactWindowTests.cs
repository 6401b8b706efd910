using System;
using System.IO;
using VDiskPS.Formats.Vmdk;
using Xunit;

namespace VDiskPS.Formats.Tests.Vmdk
{
    /// <summary>
    /// Every optimize test again with a compaction window of 3 placements, so that every move crosses
    /// window boundaries (qemu-img check and compare judge each), and the memory a compaction holds.
    /// Same collection as the base class: the window is process-wide.
    /// </summary>
    [Collection(nameof(VmdkOptimizeTests))]
    public sealed class VmdkCompactWindowTests : VmdkOptimizeTests, IDisposable
    {
        private static readonly int s_defaultWindow = SparseExtent.CompactWindow;

        public VmdkCompactWindowTests() => SparseExtent.CompactWindow = 3;

        public void Dispose() => SparseExtent.CompactWindow = s_defaultWindow;
    }
}
