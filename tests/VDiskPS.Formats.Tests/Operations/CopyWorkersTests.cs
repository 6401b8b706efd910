using System;
using System.Collections.Concurrent;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using Xunit;

namespace VDiskPS.Formats.Tests.Operations
{
    /// <summary>
    /// The copy's own threads: work runs off the thread pool (so items blocked on a remote source
    /// never hold the threads its answers arrive on), results and exceptions reach the task as
    /// thrown, and disposing runs what is queued before the threads end. Engine-only: no external
    /// tool observes threads.
    /// </summary>
    public class CopyWorkersTests
    {
        [Fact]
        public void WorkRunsOnTheCopysOwnThreadsNotThePool()
        {
            var threads = new ConcurrentBag<int>();
            using (var workers = new CopyWorkers(2))
            {
                Task<bool>[] tasks = Enumerable.Range(0, 8).Select(_ => workers.Run(() =>
                {
                    threads.Add(Environment.CurrentManagedThreadId);
                    return Thread.CurrentThread.IsThreadPoolThread;
                })).ToArray();
                Assert.All(tasks, t => Assert.False(t.GetAwaiter().GetResult()));
            }

            Assert.InRange(threads.Distinct().Count(), 1, 2);
        }

        [Fact]
        public async Task ItemsBlockedOnWorkThatNeedsThePoolStillFinish()
        {
            // A liveness check: every worker waits for a thread-pool task, as an HTTP read waits
            // for its answer, and all finish. (That they hold no pool thread while they wait is
            // the test above.)
            using (var workers = new CopyWorkers(Environment.ProcessorCount * 4))
            {
                Task<int>[] tasks = Enumerable.Range(0, Environment.ProcessorCount * 4)
                    .Select(i => workers.Run(() => Task.Run(() => i).GetAwaiter().GetResult()))
                    .ToArray();
                int[] results = await Task.WhenAll(tasks).WaitAsync(TimeSpan.FromSeconds(30));
                Assert.Equal(Enumerable.Range(0, tasks.Length), results);
            }
        }

        [Fact]
        public void ExceptionsAndCancellationReachTheTaskAsThrown()
        {
            using (var workers = new CopyWorkers(1))
            {
                Task<int> failed = workers.Run<int>(() => throw new ImageIOException("disk.raw", "read failed at offset 4096"));
                var e = Assert.Throws<ImageIOException>(() => failed.GetAwaiter().GetResult());
                Assert.Contains("offset 4096", e.Message);

                using (var cancel = new CancellationTokenSource())
                {
                    cancel.Cancel();
                    Task<int> canceled = workers.Run(() =>
                    {
                        cancel.Token.ThrowIfCancellationRequested();
                        return 1;
                    });
                    Assert.ThrowsAny<OperationCanceledException>(() => canceled.GetAwaiter().GetResult());
                }
            }
        }

        [Fact]
        public void DisposeRunsWhatIsQueuedThenEndsTheThreads()
        {
            int ran = 0;
            Task<int>[] tasks;
            using (var workers = new CopyWorkers(1))
            {
                tasks = Enumerable.Range(0, 5).Select(_ => workers.Run(() =>
                {
                    Thread.Sleep(10);
                    return Interlocked.Increment(ref ran);
                })).ToArray();
            }

            Assert.Equal(5, ran);
            Assert.All(tasks, t => Assert.True(t.IsCompleted));
        }
    }
}
