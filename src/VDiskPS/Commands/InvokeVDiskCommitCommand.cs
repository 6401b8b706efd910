using System.Management.Automation;
using VDiskPS.Formats;

namespace VDiskPS.Commands
{
    /// <summary>Invoke-VDiskCommit: merges an overlay's changes into its parent or an older ancestor (qemu-img commit, Merge-VHD).</summary>
    [Cmdlet(VerbsLifecycle.Invoke, "VDiskCommit", DefaultParameterSetName = ParameterSets.Path, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.High)]
    [OutputType(typeof(VDiskInfo))]
    public sealed class InvokeVDiskCommitCommand : VDiskPathCmdlet
    {
        /// <summary>The ancestor to commit into (qemu-img commit -b); every layer between is committed too. Default: the direct parent.</summary>
        [Parameter]
        [Alias("BasePath", "DestinationPath")]
        [ValidateNotNullOrEmpty]
        public string Base { get; set; }

        /// <summary>Keep the top image's content instead of emptying it (qemu-img commit -d).</summary>
        [Parameter]
        public SwitchParameter KeepTop { get; set; }

        /// <summary>Bytes per second to copy at most, so a commit on a busy host leaves I/O for running VMs (qemu-img commit -r). Accepts 50MB or "50M"; default: no limit.</summary>
        [Parameter]
        [SizeTransformation]
        public ulong RateLimit { get; set; }

        /// <summary>The top image's format; probed when omitted.</summary>
        [Parameter]
        [ValidateSet(FormatNames.Raw, FormatNames.Qcow2, FormatNames.Vmdk, FormatNames.Vhd, FormatNames.Vhdx, FormatNames.Vdi, IgnoreCase = true)]
        public string Format { get; set; }

        /// <summary>Output the base image's VDiskInfo after the commit.</summary>
        [Parameter]
        public SwitchParameter PassThru { get; set; }

        protected override void ProcessRecord()
        {
            foreach (string file in ResolvedImagePaths())
            {
                string basePath = string.IsNullOrEmpty(Base) ? null : GetUnresolvedProviderPathFromPSPath(Base);
                try
                {
                    string into = basePath ?? WithImageWarnings(() => ImageInspector.Get(file, ParseFormat(Format))).ParentFullPath;
                    if (!ShouldProcess(file, into == null ? "Commit its changes into its parent" : $"Commit its changes into '{into}'"))
                    {
                        continue;
                    }

                    var options = new CommitOptions { Format = ParseFormat(Format), BasePath = basePath, KeepTop = KeepTop.IsPresent, RateLimit = checked((long)RateLimit) };
                    WriteVerboseChain(file, options.Format);
                    CommitResult result = RunEngine(Activity("Invoke-VDiskCommit", file), (p, c) => CommitOperation.Run(file, options, p, c));
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
