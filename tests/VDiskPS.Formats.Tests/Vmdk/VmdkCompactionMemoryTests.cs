using System;
using System.IO;
using VDiskPS.Formats.Vmdk;
using Xunit;

namespace VDiskPS.Formats.Tests.Vmdk
{
    /// <summary>Tests that measure the process's live memory run alone, after the parallel ones.</summary>
    [CollectionDefinition(Name, DisableParallelization = true)]
    public sealed class LiveMemoryCollection
    {
        public const string Name = "live memory";
    }

    /// <summary>The memory a VMDK compaction holds does not grow with the number of grains it moves.</summary>
    [Collection(LiveMemoryCollection.Name)]
    public sealed class VmdkCompactionMemoryTests
    {
        /// <summary>
        /// 16384 grains of 4 KiB in a 1 GiB extent (512 grain tables), every other 64 KiB discarded: the grains
        /// of the top half move down. A list of every placement and gap (32 bytes each) would hold 768 KiB
        /// while grains move; windows of 256 placements hold a few KiB. Live memory is sampled (after a full
        /// collection) as grains move, with the grain table cache filled beforehand; qemu-img check and
        /// compare judge the output.
        /// </summary>
        [Fact]
        public void CompactionMemoryDoesNotGrowWithTheGrainCount()
        {
            int window = SparseExtent.CompactWindow;
            SparseExtent.CompactWindow = 256;
            try
            {
                Compact();
            }
            finally
            {
                SparseExtent.CompactWindow = window;
            }
        }

        private static void Compact()
        {
            using var dir = new TempDir();
            string path = dir.File("many.vmdk");
            const int grains = 16384;
            const int grain = 4096;
            const long size = 1L << 30;
            using (var layer = FormatRegistry.Default.GetCreatable(Fmt.Vmdk).Create(path, new CreateRequest { Size = size, Subformat = "monolithicSparse", ClusterSize = grain }))
            {
                layer.Write(0, TestData.Pattern(grains * grain, 11));
                for (long offset = 0; offset < grains * (long)grain; offset += 128 << 10)
                {
                    ((IDiscardableLayer)layer).Discard(offset, 64 << 10);
                }
            }

            string raw = dir.File("before.raw");
            Qemu.Img("convert", "-f", "vmdk", "-O", "raw", path, raw);
            long before = new FileInfo(path).Length;
            var sampler = new LiveMemorySampler();
            using (var layer = FormatRegistry.Default.Open(path, Fmt.Vmdk, new OpenOptions { Writable = true }))
            {
                for (long offset = 0; offset < size; offset += 2 << 20)
                {
                    layer.GetBlockStatus(offset, 2 << 20);
                }

                sampler.Baseline = GC.GetTotalMemory(true);
                ((IOptimizableLayer)layer).Optimize(sampler, default);
            }

            Assert.True(sampler.Samples > 4, $"{sampler.Samples} samples");
            Assert.True(sampler.Peak < 128 << 10, $"compacting {grains} grains held {sampler.Peak} bytes more than before");
            Assert.Equal(before - grains / 2 * (long)grain, new FileInfo(path).Length);
            var check = Qemu.Check(path, "vmdk");
            Assert.True(check.ExitCode == 0, check.Output);
            var compare = Qemu.Compare(path, "vmdk", raw, "raw");
            Assert.True(compare.Identical, compare.Output);
        }

        /// <summary>Live bytes above the baseline at every 512th moved grain (a full collection each time).</summary>
        private sealed class LiveMemorySampler : IProgress<OperationProgress>
        {
            private int _reports;

            public long Baseline { get; set; }

            public long Peak { get; private set; }

            public int Samples { get; private set; }

            public void Report(OperationProgress value)
            {
                if (value.BytesDone > 0 && _reports++ % 512 == 0)
                {
                    Samples++;
                    Peak = Math.Max(Peak, GC.GetTotalMemory(true) - Baseline);
                }
            }
        }
    }
}
