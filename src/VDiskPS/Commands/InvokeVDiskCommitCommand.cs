using System.Management.Automation;
using VDiskPS.Formats;

namespace VDiskPS.Commands
{
    /// <summary>Invoke-VDiskCommit: merges an overlay's changes into its parent or an older ancestor (qemu-img commit, Merge-VHD).</summary>
    [Cmdlet(VerbsLifecycle.Invoke, "VDiskCommit", DefaultParameterSetName = ParameterSets.Path, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.High)]
    [OutputType(typeof(VDiskInfo))]
    public sealed class InvokeVDiskCommitCommand : CommitCmdlet
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

        protected override void ProcessRecord() => CommitEach(Base, KeepTop.IsPresent, checked((long)RateLimit), skipConfirmation: false);
    }
}
