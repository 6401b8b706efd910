using System.Management.Automation;
using VDiskPS.Formats;

namespace VDiskPS
{
    /// <summary>What Invoke-VDiskCommit and Merge-VDisk share: the commit engine, its warnings and -PassThru.</summary>
    public abstract class CommitCmdlet : VDiskPathCmdlet
    {
        /// <summary>The top image's format; probed when omitted.</summary>
        [Parameter]
        [ValidateWritableFormat]
        [ArgumentCompleter(typeof(WritableFormatCompleter))]
        public string Format { get; set; }

        /// <summary>Output the base image's VDiskInfo after the commit.</summary>
        [Parameter]
        public SwitchParameter PassThru { get; set; }

        /// <summary>Commits each image named by -Path/-LiteralPath into <paramref name="basePathArgument"/> (null: its parent) once the user agrees.</summary>
        protected void CommitEach(string basePathArgument, bool keepTop, long rateLimit, bool skipConfirmation)
        {
            foreach (string file in ResolvedImagePaths())
            {
                string basePath = string.IsNullOrEmpty(basePathArgument) ? null : GetUnresolvedProviderPathFromPSPath(basePathArgument);
                try
                {
                    string into = basePath ?? WithImageWarnings(() => ImageInspector.Get(file, ParseFormat(Format))).ParentFullPath;
                    string what = into == null ? "Commit its changes into its parent" : $"Commit its changes into '{into}'";
                    bool whatIf = IsBound("WhatIf");
                    if (!(skipConfirmation && !whatIf) && !ShouldProcess(file, what))
                    {
                        continue;
                    }

                    var options = new CommitOptions { Format = ParseFormat(Format), BasePath = basePath, KeepTop = keepTop, RateLimit = rateLimit };
                    WriteVerboseChain(file, options.Format);
                    CommitResult result = RunEngine(Activity(MyInvocation.MyCommand.Name, file), (p, c) => CommitOperation.Run(file, options, p, c));
                    if (!string.IsNullOrEmpty(result.Warning))
                    {
                        WriteWarning(result.Warning);
                    }

                    if (PassThru)
                    {
                        WriteObject(result.Base);
                    }
                }
                catch (ImageException e)
                {
                    WriteImageError(e, file);
                }
            }
        }
    }
}
