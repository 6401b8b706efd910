using System.IO;
using System.Threading;
using VDiskPS.Formats.Tests.Operations.TestFormat;
using Xunit;

namespace VDiskPS.Formats.Tests.Operations
{
    /// <summary>How the convert pipeline schedules its work (engine-judged: no outside tool sees the overlap of reads).</summary>
    public class ConvertPipelineTests
    {
        [Theory]
        [InlineData(1)]
        [InlineData(3)]
        public void AtMostThrottleLimitChunksAreReadAtOnce(int limit)
        {
            using var dir = new TempDir();
            string source = OverlayTestDriver.CreateBase(dir.File("base.tdbl"), Chains.Size, (0, TestData.Pattern((int)Chains.Size, 1)));
            int current = 0;
            int peak = 0;
            OverlayTestLayer.ReadObserver.Value = () =>
            {
                int now = Interlocked.Increment(ref current);
                InterlockedMax(ref peak, now);
                // Each read lasts long enough for the next ones to start if the pipeline lets them.
                Thread.Sleep(15);
                Interlocked.Decrement(ref current);
            };
            try
            {
                ConvertOperation.Run(source, dir.File("out.raw"), new ConvertOptions { TargetFormat = Fmt.Raw, ThrottleLimit = limit, ChunkSize = Chains.Cluster, Registry = OverlayTestDriver.Registry });
            }
            finally
            {
                OverlayTestLayer.ReadObserver.Value = null;
            }

            Assert.Equal(TestData.Pattern((int)Chains.Size, 1), File.ReadAllBytes(dir.File("out.raw")));
            Assert.InRange(peak, limit == 1 ? 1 : 2, limit);
        }

        private static void InterlockedMax(ref int target, int value)
        {
            int seen;
            while (value > (seen = Volatile.Read(ref target)) && Interlocked.CompareExchange(ref target, value, seen) != seen)
            {
            }
        }
    }
}
