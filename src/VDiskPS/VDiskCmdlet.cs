using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Management.Automation;
using System.Threading;
using System.Threading.Tasks;
using VDiskPS.Formats;

namespace VDiskPS
{
    /// <summary>
    /// What every VDiskPS cmdlet shares: provider path resolution, engine errors as error records
    /// with VDisk.* ids, engine progress as Write-Progress, and Ctrl+C as cancellation.
    /// </summary>
    public abstract class VDiskCmdlet : PSCmdlet
    {
        private readonly CancellationTokenSource _cancel = new CancellationTokenSource();
        private static int s_activityId = 0x5644;

        /// <summary>Cancelled when the user presses Ctrl+C.</summary>
        protected CancellationToken Cancellation => _cancel.Token;

        protected override void StopProcessing()
        {
            _cancel.Cancel();
        }

        /// <summary>
        /// Resolves existing files: -Path expands wildcards, -LiteralPath does not. Paths are provider
        /// paths relative to the PowerShell location. A URL (nbd://, https://, ...) passes through as
        /// given: the engine's transports open it. Unresolvable paths become error records.
        /// </summary>
        protected IEnumerable<string> ResolveExistingFiles(string[] paths, bool literal)
        {
            foreach (string path in paths ?? Array.Empty<string>())
            {
                List<string> resolved = new List<string>();
                try
                {
                    if (Transports.IsRemote(path))
                    {
                        resolved.Add(path);
                    }
                    else if (literal)
                    {
                        string full = SessionState.Path.GetUnresolvedProviderPathFromPSPath(path);
                        if (!File.Exists(full))
                        {
                            throw new ItemNotFoundException($"Cannot find path '{full}' because it does not exist.");
                        }

                        resolved.Add(full);
                    }
                    else
                    {
                        ProviderInfo provider;
                        var found = SessionState.Path.GetResolvedProviderPathFromPSPath(path, out provider);
                        if (provider.Name != "FileSystem")
                        {
                            WriteError(new ErrorRecord(new ArgumentException($"'{path}' is not a file system path."), "VDisk.NotAFile", ErrorCategory.InvalidArgument, path));
                            continue;
                        }

                        foreach (string f in found)
                        {
                            if (Directory.Exists(f))
                            {
                                WriteError(new ErrorRecord(new ArgumentException($"'{f}' is a folder, not an image file."), "VDisk.NotAFile", ErrorCategory.InvalidArgument, f));
                                continue;
                            }

                            resolved.Add(f);
                        }
                    }
                }
                catch (ItemNotFoundException e)
                {
                    WriteError(new ErrorRecord(e, "VDisk.PathNotFound", ErrorCategory.ObjectNotFound, path));
                    continue;
                }
                catch (Exception e) when (e is ArgumentException || e is NotSupportedException || e is ProviderNotFoundException || e is System.Management.Automation.DriveNotFoundException)
                {
                    WriteError(new ErrorRecord(e, "VDisk.InvalidPath", ErrorCategory.InvalidArgument, path));
                    continue;
                }

                foreach (string r in resolved)
                {
                    yield return r;
                }
            }
        }

        /// <summary>A path for a file to be created, relative to the PowerShell location, no wildcards.</summary>
        protected string ResolveNewPath(string path) => Transports.IsRemote(path) ? path : SessionState.Path.GetUnresolvedProviderPathFromPSPath(path);

        /// <summary>A salvaging copy's report: a warning per unreadable range, then the result object.</summary>
        protected void WriteSalvageResult(string source, string destination, SalvageLog log)
        {
            IReadOnlyList<VDiskBadRange> ranges = log.Ranges;
            foreach (VDiskBadRange range in ranges)
            {
                WriteWarning($"{source}: {range.Length} bytes at offset {range.Offset} could not be read and were written as zeros ({range.Reason})");
            }

            WriteObject(new VDiskSalvageResult { Path = destination, SourcePath = source, BadRanges = ranges, BadBytes = log.BadBytes });
        }

        /// <summary>Whether this cmdlet's -Force reads an image another process writes (qemu-img -U).</summary>
        protected virtual bool ForceSharesWithWriters => false;

        /// <summary>Writes a non-terminating error for an engine failure on one item.</summary>
        protected void WriteImageError(Exception exception, object target)
        {
            var (id, category) = ErrorClassifier.Classify(exception);
            if (!Enum.TryParse(category, out ErrorCategory errorCategory))
            {
                errorCategory = ErrorCategory.NotSpecified;
            }

            var record = new ErrorRecord(exception, id, errorCategory, target);
            if (exception is ImageLockedException locked && locked.WriterBlocksReading && ForceSharesWithWriters)
            {
                record.ErrorDetails = new ErrorDetails(exception.Message + ". Use -Force to read it anyway (the content may be inconsistent).");
            }

            if (exception is ImageParentMismatchException mismatch)
            {
                string repin = $"Set-VDisk -Path '{mismatch.FilePath}' -ParentPath '{mismatch.ParentPath}' -IgnoreIdMismatch records the parent's current identity";
                record.ErrorDetails = new ErrorDetails(MyInvocation.MyCommand.Parameters.ContainsKey(IgnoreIdMismatchParameter)
                    ? $"{exception.Message}. Use -IgnoreIdMismatch to open it anyway; {repin}."
                    : $"{exception.Message}. {repin}.");
            }

            WriteError(record);
        }

        /// <summary>The Hyper-V name of the switch that opens a child whose parent's identity changed.</summary>
        protected const string IgnoreIdMismatchParameter = "IgnoreIdMismatch";

        /// <summary>
        /// The parent path a child records for a -ParentPath: resolved against the PowerShell location (as
        /// New-VHD does); given relative, it is recorded relative to the child's folder so the pair moves together.
        /// </summary>
        protected string ParentPathToRecord(string childPath, string parentPath)
        {
            if (string.IsNullOrEmpty(parentPath))
            {
                return parentPath;
            }

            bool relative = !SessionState.Path.IsPSAbsolute(parentPath, out _) && !parentPath.StartsWith("~", StringComparison.Ordinal);
            return PathPlanner.RecordedParentPath(childPath, ResolveNewPath(parentPath), relative);
        }

        /// <summary>
        /// The second confirmation of a change that rewrites much of an image (flatten, shrink). The user
        /// settles it with -Force, or by deciding confirmation with -Confirm / -Confirm:$false, so that
        /// scheduled (non-interactive) runs need no prompt.
        /// </summary>
        protected bool ConfirmLargeChange(string query, string caption, bool force)
            => force || IsBound("Confirm") || ShouldContinue(query, caption);

        /// <summary>Runs engine work that opens images on this thread, writing the warnings it raised (a tiny file read as raw, ...).</summary>
        protected T WithImageWarnings<T>(Func<T> work)
        {
            IReadOnlyCollection<string> warnings = Array.Empty<string>();
            try
            {
                using (ImageWarnings.Capture(out warnings))
                {
                    return work();
                }
            }
            finally
            {
                foreach (string warning in warnings.Distinct())
                {
                    WriteWarning(warning);
                }
            }
        }

        /// <summary>
        /// Runs engine work on a worker thread while this thread relays its progress to Write-Progress;
        /// Ctrl+C cancels the work. Exceptions of the work are rethrown here.
        /// </summary>
        protected T RunEngine<T>(string activity, Func<IProgress<OperationProgress>, CancellationToken, T> work)
            => WithImageWarnings(() => RunEngineWithProgress(activity, work));

        private T RunEngineWithProgress<T>(string activity, Func<IProgress<OperationProgress>, CancellationToken, T> work)
        {
            int activityId = Interlocked.Increment(ref s_activityId);
            var updates = new BlockingCollection<OperationProgress>(new ConcurrentQueue<OperationProgress>());
            var progress = new QueueProgress(updates);
            Task<T> task = Task.Run(() =>
            {
                try
                {
                    return work(progress, _cancel.Token);
                }
                finally
                {
                    updates.CompleteAdding();
                }
            });

            var record = new ProgressRecord(activityId, activity, "Starting");
            DateTime lastShown = DateTime.MinValue;
            try
            {
                foreach (OperationProgress update in updates.GetConsumingEnumerable())
                {
                    if ((DateTime.UtcNow - lastShown).TotalMilliseconds < 200 && update.BytesDone < update.BytesTotal)
                    {
                        continue;
                    }

                    lastShown = DateTime.UtcNow;
                    record.StatusDescription = update.Phase ?? "Working";
                    record.PercentComplete = update.Percent;
                    record.CurrentOperation = $"{DiskSize.Format(update.BytesDone)} of {DiskSize.Format(update.BytesTotal)}";
                    WriteProgress(record);
                }

                record.RecordType = ProgressRecordType.Completed;
                WriteProgress(record);
            }
            catch
            {
                // WriteProgress throws PipelineStoppedException once the pipeline is stopping: the
                // engine must have stopped and cleaned up (a half-written output deleted, a commit
                // ended at a consistent point) before the stop completes and the host may exit.
                _cancel.Cancel();
                WaitQuietly(task);
                throw;
            }

            try
            {
                return task.GetAwaiter().GetResult();
            }
            catch (OperationCanceledException) when (_cancel.IsCancellationRequested)
            {
                throw new PipelineStoppedException();
            }
        }

        /// <summary>Waits for cancelled engine work to end; its own error (the cancellation) adds nothing to the stop being reported.</summary>
        private static void WaitQuietly(Task task)
        {
            try
            {
                task.Wait();
            }
            catch (AggregateException)
            {
            }
        }

        protected void RunEngine(string activity, Action<IProgress<OperationProgress>, CancellationToken> work)
            => RunEngine<object>(activity, (p, c) =>
            {
                work(p, c);
                return null;
            });

        /// <summary>Whether the user gave the parameter (a value type's default is then a real choice).</summary>
        protected bool IsBound(string parameterName) => MyInvocation.BoundParameters.ContainsKey(parameterName);

        /// <summary>The value under PowerShell's PSObject wrapper (a hashtable or string given to -Option).</summary>
        protected static object Unwrap(object value) => value is PSObject wrapped ? wrapped.BaseObject : value;

        /// <summary>Parses a -Format/-SourceFormat value (validated by ValidateSet); null stays null.</summary>
        protected static DiskFormat? ParseFormat(string format) => string.IsNullOrEmpty(format) ? (DiskFormat?)null : DiskFormatNames.Parse(format);

        private sealed class QueueProgress : IProgress<OperationProgress>
        {
            private readonly BlockingCollection<OperationProgress> _queue;

            public QueueProgress(BlockingCollection<OperationProgress> queue) => _queue = queue;

            public void Report(OperationProgress value)
            {
                if (!_queue.IsAddingCompleted)
                {
                    _queue.TryAdd(value);
                }
            }
        }
    }
}
