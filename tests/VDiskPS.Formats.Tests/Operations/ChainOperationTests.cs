using System.Linq;
using VDiskPS.Formats.Tests.Operations.TestFormat;
using Xunit;

namespace VDiskPS.Formats.Tests.Operations
{
    /// <summary>Compare and map over backing chains (built with the test double).</summary>
    /// <remarks>
    /// Engine unit tests on the in-memory test format (the engine reads its own output back: no tool
    /// reads that format). ChainInteropTests checks map and compare of qemu-made qcow2 chains against
    /// qemu-img map and qemu-img compare.
    /// </remarks>
    public class ChainOperationTests
    {
        private const int C = Chains.Cluster;

        [Fact]
        public void MapReportsTheLayerThatAnswersEachRun()
        {
            using var dir = new TempDir();
            var (_, _, top) = Chains.ThreeLayers(dir);
            var map = MapOperation.Run(top, new MapOptions { Registry = OverlayTestDriver.Registry })
                .Select(e => $"{e.Start / C}+{e.Length / C} d{e.Depth} {(e.Present ? "present" : "absent")} {(e.Data ? "data" : "zero")}");
            Assert.Equal(new[]
            {
                "0+2 d2 present data", "2+1 d1 present data", "3+1 d0 present data", "4+4 d2 present data",
                "8+12 d2 absent zero", "20+1 d2 present data", "21+1 d1 present data", "22+2 d2 present data",
                "24+16 d2 absent zero", "40+1 d1 present data", "41+1 d0 present data", "42+1 d1 present data",
                "43+7 d2 absent zero", "50+2 d0 present data", "52+8 d2 absent zero", "60+4 d2 present data",
            }, map);
        }

        [Fact]
        public void ChainComparesIdenticalToItsFlatCopy()
        {
            using var dir = new TempDir();
            var (_, _, top) = Chains.ThreeLayers(dir);
            string flat = Chains.SaveRaw(dir, "flat.raw", Chains.ReadAll(top));
            var result = CompareOperation.Run(top, flat, new CompareOptions { Registry = OverlayTestDriver.Registry });
            Assert.True(result.Identical, result.Reason);
        }

        [Fact]
        public void DataAgainstAnUnallocatedRunIsFoundAtItsSector()
        {
            using var dir = new TempDir();
            var (_, _, top) = Chains.ThreeLayers(dir);
            byte[] content = Chains.ReadAll(top);
            content[10 * C + 5] = 1;
            string flat = Chains.SaveRaw(dir, "flat.raw", content);
            var result = CompareOperation.Run(top, flat, new CompareOptions { Registry = OverlayTestDriver.Registry });
            Assert.False(result.Identical);
            Assert.Equal(10 * C, result.FirstMismatchOffset);
        }

        [Fact]
        public void StrictModeSeesUnallocatedAgainstData()
        {
            using var dir = new TempDir();
            var (_, _, top) = Chains.ThreeLayers(dir);
            string copy = dir.File("copy.tdbl");
            System.IO.File.Copy(top, copy);
            Assert.True(CompareOperation.Run(top, copy, new CompareOptions { Strict = true, Registry = OverlayTestDriver.Registry }).Identical);
            OverlayTestDriver.WriteInto(copy, (9 * C, new byte[C]));
            var result = CompareOperation.Run(top, copy, new CompareOptions { Strict = true, Registry = OverlayTestDriver.Registry });
            Assert.False(result.Identical);
            Assert.Equal(9 * C, result.FirstMismatchOffset);
            Assert.True(CompareOperation.Run(top, copy, new CompareOptions { Registry = OverlayTestDriver.Registry }).Identical);
        }
    }
}
