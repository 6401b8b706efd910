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
                            WriteError(ErrorMessages.Record(ErrorCode.NotAFile, new ArgumentException($"'{path}' is not a file system path."), path));
                            continue;
                        }

                        foreach (string f in found)
                        {
                            if (Directory.Exists(f))
                            {
                                WriteError(ErrorMessages.Record(ErrorCode.NotAFile, new ArgumentException($"'{f}' is a folder, not an image file."), f));
                                continue;
                            }

                            resolved.Add(f);
                        }
                    }
                }
                catch (ItemNotFoundException e)
                {
                    WriteError(ErrorMessages.Record(ErrorCode.PathNotFound, e, path));
                    continue;
                }
                catch (Exception e) when (e is ArgumentException || e is NotSupportedException || e is ProviderNotFoundException || e is System.Management.Automation.DriveNotFoundException)
                {
                    WriteError(ErrorMessages.Record(ErrorCode.InvalidPath, e, path));
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

        /// <summary>
        /// Writes a non-terminating error for an engine failure on one item. Its target is the file the
        /// error is about (the engine names it; <paramref name="target"/> when it does not), and its advice
        /// names this cmdlet's own switch, or nothing when this cmdlet has none for it.
        /// </summary>
        protected void WriteImageError(Exception exception, object target) => WriteError(ImageErrorRecord(exception, target));

        /// <summary>The error record <see cref="WriteImageError"/> writes (also what an -AsJob job reports).</summary>
        internal ErrorRecord ImageErrorRecord(Exception exception, object target)
        {
            var image = exception as ImageException;
            object about = !string.IsNullOrEmpty(image?.FilePath) ? image.FilePath : target;
            ErrorRecord record = ErrorMessages.Record(ErrorMessages.Classify(exception), exception, about);
            string advice = image == null ? null : ErrorMessages.Advice(image.Kind, OwnParameter);
            if (exception is ImageLockedException locked && locked.WriterBlocksReading && ForceSharesWithWriters)
            {
                advice = "Use -Force to read it anyway (the content may be inconsistent).";
            }

            if (exception is ImageParentMismatchException mismatch)
            {
                string repin = $"Set-VDisk -Path '{mismatch.FilePath}' -ParentPath '{mismatch.ParentPath}' -IgnoreIdMismatch records the parent's current identity";
                advice = OwnParameter(IgnoreIdMismatchParameter) != null
                    ? $"Use -IgnoreIdMismatch to open it anyway; {repin}."
                    : $"{repin}.";
            }

            if (advice != null)
            {
                record.ErrorDetails = new ErrorDetails($"{exception.Message}. {advice}");
            }

            return record;
        }

        /// <summary>
        /// This cmdlet's parameter for one the error table names (a cmdlet may name it otherwise, as
        /// Copy-VDiskData's -DestinationFormat), or null when it has none.
        /// </summary>
        protected virtual string OwnParameter(string parameter)
            => MyInvocation.MyCommand.Parameters.ContainsKey(parameter) ? parameter : null;

        /// <summary>Whether -Verbose output is shown, so that what only it needs is not computed otherwise.</summary>
        protected bool VerboseShown
            => MyInvocation.BoundParameters.TryGetValue("Verbose", out object verbose)
                ? ((SwitchParameter)verbose).IsPresent
                : GetVariableValue("VerbosePreference") is ActionPreference preference && preference != ActionPreference.SilentlyContinue && preference != ActionPreference.Ignore;

        /// <summary>With -Verbose: each layer of the chain an operation opens, its format and whether it was probed.</summary>
        protected void WriteVerboseChain(string file, DiskFormat? format, bool shareWithWriters = false)
        {
            if (!VerboseShown)
            {
                return;
            }

            try
            {
                IReadOnlyList<VDiskInfo> layers = ImageInspector.GetChain(file, format, shareWithWriters, ignoreParentMismatch: true);
                foreach (VDiskInfo layer in layers)
                {
                    string how = layer.Depth > 0 ? "backing file" : format.HasValue ? "format given" : "format probed";
                    WriteVerbose($"Layer {layer.Depth}: '{layer.Path}' is {layer.Format} ({how}), {layer.Type}, {DiskSize.Format(layer.Size)}");
                }
            }
            catch (ImageException e)
            {
                // The operation itself reports what is wrong with the chain.
                WriteVerbose($"'{file}': the chain could not be described ({e.Reason})");
            }
        }

        /// <summary>With -Verbose: what an operation wrote, as the output's options now read.</summary>
        protected void WriteVerboseOutput(string file)
        {
            if (!VerboseShown)
            {
                return;
            }

            VDiskInfo info;
            try
            {
                info = ImageInspector.Get(file);
            }
            catch (ImageException e)
            {
                // The operation succeeded; only its description failed (an output another process took).
                WriteVerbose($"'{file}': the output could not be described ({e.Reason})");
                return;
            }

            string options = string.Join(", ", info.FormatSpecific.Where(kv => !(kv.Value is System.Collections.IEnumerable) || kv.Value is string).Select(kv => $"{kv.Key}={kv.Value}"));
            WriteVerbose($"Wrote '{file}': {info.Format}{(string.IsNullOrEmpty(info.Subformat) ? string.Empty : " " + info.Subformat)}, {info.Type}, {DiskSize.Format(info.Size)}, cluster {DiskSize.Format(info.ClusterSize)}, {DiskSize.Format(info.FileSize)} on the host{(options.Length == 0 ? string.Empty : "; " + options)}");
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
            => force || IsBound("Confirm") || ShouldContinue(query, caption, ref _yesToAll, ref _noToAll);

        private bool _yesToAll;
        private bool _noToAll;

        /// <summary>The password of encrypted images this cmdlet opens or creates (its -Password), or null.</summary>
        protected virtual System.Security.SecureString ImagePassword => null;

        /// <summary>The engine's copy of a password, UTF-8 (as cryptsetup and qemu read a passphrase); the characters are cleared at once.</summary>
        internal static ImageSecrets Secrets(System.Security.SecureString password)
        {
            if (password == null)
            {
                return null;
            }

            IntPtr chars = System.Runtime.InteropServices.Marshal.SecureStringToGlobalAllocUnicode(password);
            char[] copy = new char[password.Length];
            byte[] bytes = null;
            try
            {
                System.Runtime.InteropServices.Marshal.Copy(chars, copy, 0, copy.Length);
                bytes = System.Text.Encoding.UTF8.GetBytes(copy);
                return new ImageSecrets(bytes);
            }
            finally
            {
                System.Runtime.InteropServices.Marshal.ZeroFreeGlobalAllocUnicode(chars);
                Array.Clear(copy, 0, copy.Length);
                if (bytes != null)
                {
                    Array.Clear(bytes, 0, bytes.Length);
                }
            }
        }

        /// <summary>How this cmdlet reaches remote locations (its -Credential and -SkipCertificateCheck); the defaults where it has neither.</summary>
        protected virtual TransportOptions RemoteOptions => new TransportOptions();

        /// <summary>
        /// Runs engine work that opens images on this thread (and the workers it starts), with this
        /// cmdlet's <see cref="RemoteOptions"/>, writing the warnings it raised (a tiny file read as raw, ...).
        /// </summary>
        protected T WithImageWarnings<T>(Func<T> work)
        {
            IReadOnlyCollection<string> warnings = Array.Empty<string>();
            try
            {
                using (ImageSecrets.Use(Secrets(ImagePassword)))
                using (TransportOptions.Use(RemoteOptions))
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
        /// Ctrl+C cancels the work. Exceptions of the work are rethrown here. <paramref name="activity"/>
        /// names the operation and the file names, not full paths; -Verbose reports the bytes and time.
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

            var clock = System.Diagnostics.Stopwatch.StartNew();
            DateTime lastShown = DateTime.MinValue;
            OperationProgress last = default;
            try
            {
                foreach (OperationProgress update in updates.GetConsumingEnumerable())
                {
                    last = update;
                    if ((DateTime.UtcNow - lastShown).TotalMilliseconds < 200 && update.BytesDone < update.BytesTotal)
                    {
                        continue;
                    }

                    lastShown = DateTime.UtcNow;
                    WriteProgress(ProgressOf(activityId, activity, update, clock.Elapsed));
                }

                WriteProgress(new ProgressRecord(activityId, activity, "Done") { RecordType = ProgressRecordType.Completed });
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
                T result = task.GetAwaiter().GetResult();
                WriteVerbose($"{activity}: {DiskSize.Format(last.BytesDone)} of {DiskSize.Format(last.BytesTotal)} processed in {clock.Elapsed.TotalSeconds.ToString("0.0", System.Globalization.CultureInfo.InvariantCulture)} s");
                return result;
            }
            catch (OperationCanceledException) when (_cancel.IsCancellationRequested)
            {
                throw new PipelineStoppedException();
            }
        }

        /// <summary>
        /// A new record for each update (a host may keep the records it was given): the phase and
        /// "360 MiB of 1 GiB" as the status, and the time left at the rate so far.
        /// </summary>
        private static ProgressRecord ProgressOf(int activityId, string activity, OperationProgress update, TimeSpan elapsed)
        {
            string status = $"{update.Phase ?? "Working"}: {DiskSize.Format(update.BytesDone)} of {DiskSize.Format(update.BytesTotal)}";
            int remaining = -1;
            if (update.BytesDone >= update.BytesTotal)
            {
                remaining = 0;
            }
            else if (update.BytesDone > 0)
            {
                remaining = (int)Math.Min(int.MaxValue, Math.Ceiling(elapsed.TotalSeconds * (update.BytesTotal - update.BytesDone) / update.BytesDone));
            }

            return new ProgressRecord(activityId, activity, status) { PercentComplete = update.Percent, SecondsRemaining = remaining };
        }

        /// <summary>The activity text of an operation on files: their names, not their full paths.</summary>
        protected static string Activity(string operation, params string[] files)
            => files.Length == 0 ? operation : $"{operation} {string.Join(" -> ", files.Select(f => System.IO.Path.GetFileName(f)))}";

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

        /// <summary>Parses a -Format/-SourceFormat value (validated against the registry); null stays null.</summary>
        protected static DiskFormat? ParseFormat(string format) => string.IsNullOrEmpty(format) ? (DiskFormat?)null : FormatRegistry.Default.Parse(format);

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
