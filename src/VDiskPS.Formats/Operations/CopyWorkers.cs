using System;
using System.Collections.Concurrent;
using System.Threading;
using System.Threading.Tasks;

namespace VDiskPS.Formats
{
    /// <summary>
    /// A fixed set of threads of the copy's own, running its work items. The items block on I/O
    /// (files, and remote sources whose answers arrive on thread-pool threads); on the thread pool
    /// they would hold the threads those answers need, so a copy from HTTP on two cores waited for
    /// the pool to grow. Started once per copy, joined when disposed.
    /// </summary>
    internal sealed class CopyWorkers : IDisposable
    {
        private readonly BlockingCollection<Action> _queue = new BlockingCollection<Action>();
        private readonly Thread[] _threads;

        public CopyWorkers(int count)
        {
            _threads = new Thread[Math.Max(1, count)];
            for (int i = 0; i < _threads.Length; i++)
            {
                _threads[i] = new Thread(Loop) { IsBackground = true, Name = "VDiskPS copy " + i };
                _threads[i].Start();
            }
        }

        /// <summary>Queues <paramref name="work"/>; its result or exception (cancellation included, as thrown) completes the task.</summary>
        public Task<T> Run<T>(Func<T> work)
        {
            var completion = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
            _queue.Add(() =>
            {
                try
                {
                    completion.SetResult(work());
                }
                catch (Exception e)
                {
                    completion.SetException(e);
                }
            });
            return completion.Task;
        }

        /// <summary>Runs what is queued, then ends the threads.</summary>
        public void Dispose()
        {
            _queue.CompleteAdding();
            foreach (Thread thread in _threads)
            {
                thread.Join();
            }

            _queue.Dispose();
        }

        private void Loop()
        {
            foreach (Action work in _queue.GetConsumingEnumerable())
            {
                work();
            }
        }
    }
}
