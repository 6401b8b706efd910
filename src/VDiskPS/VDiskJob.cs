using System;
using System.Management.Automation;
using System.Threading;
using System.Threading.Tasks;

namespace VDiskPS
{
    /// <summary>
    /// A background job (-AsJob) running engine work on a worker thread: Receive-Job returns what it
    /// writes to Output, Stop-Job cancels the engine, and Wait-Job ends when the work does.
    /// </summary>
    public sealed class VDiskJob : Job
    {
        private readonly CancellationTokenSource _cancel = new CancellationTokenSource();
        private string _status = "Not started";

        public VDiskJob(string command, string name)
            : base(command, name)
        {
            PSJobTypeName = "VDiskJob";
        }

        public override bool HasMoreData => Output.Count > 0 || Error.Count > 0 || Warning.Count > 0 || Verbose.Count > 0;

        public override string Location => "localhost";

        public override string StatusMessage => _status;

        public override void StopJob()
        {
            _cancel.Cancel();
        }

        /// <summary>Runs <paramref name="work"/> on a worker thread; a failure of one item is an error record, an unexpected one fails the job.</summary>
        internal void Start(Action<VDiskJob, CancellationToken> work)
        {
            SetJobState(JobState.Running);
            _status = "Running";
            Task.Run(() =>
            {
                JobState end;
                try
                {
                    work(this, _cancel.Token);
                    end = _cancel.IsCancellationRequested ? JobState.Stopped : Error.Count > 0 ? JobState.Failed : JobState.Completed;
                }
                catch (OperationCanceledException)
                {
                    end = JobState.Stopped;
                }
                catch (Exception e)
                {
                    Error.Add(new ErrorRecord(e, "VDisk.JobFailed", ErrorCategory.NotSpecified, null));
                    end = JobState.Failed;
                }

                _status = end.ToString();
                SetJobState(end);
            });
        }

        /// <summary>Adds the error record of an engine failure on one item, as the cmdlet words it.</summary>
        internal void AddImageError(ErrorRecord record) => Error.Add(record);
    }
}
