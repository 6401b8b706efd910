using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Threading;

namespace VDiskPS.Formats
{
    /// <summary>
    /// Warnings the engine raises while opening images (a file read as raw although it is smaller than a
    /// sector, ...), for the caller to show. A caller that wants them opens a <see cref="Capture"/> scope
    /// around its engine call; the scope follows the call onto worker threads. Without a scope they are dropped.
    /// </summary>
    public static class ImageWarnings
    {
        private static readonly AsyncLocal<ConcurrentQueue<string>> s_current = new AsyncLocal<ConcurrentQueue<string>>();

        /// <summary>Collects the warnings raised until the returned scope is disposed.</summary>
        public static IDisposable Capture(out IReadOnlyCollection<string> warnings)
        {
            var queue = new ConcurrentQueue<string>();
            warnings = queue;
            ConcurrentQueue<string> previous = s_current.Value;
            s_current.Value = queue;
            return new Scope(previous);
        }

        /// <summary>Raises a warning about <paramref name="path"/>.</summary>
        internal static void Report(string path, string message)
        {
            s_current.Value?.Enqueue(string.IsNullOrEmpty(path) ? message : $"{path}: {message}");
        }

        private sealed class Scope : IDisposable
        {
            private readonly ConcurrentQueue<string> _previous;

            public Scope(ConcurrentQueue<string> previous) => _previous = previous;

            public void Dispose() => s_current.Value = _previous;
        }
    }
}
