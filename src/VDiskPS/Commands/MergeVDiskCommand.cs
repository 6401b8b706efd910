using System.Management.Automation;
using VDiskPS.Formats;

namespace VDiskPS.Commands
{
    /// <summary>Merge-VDisk: Merge-VHD's name for a commit: merges a differencing image (and every layer between) into its parent or an older ancestor.</summary>
    [Cmdlet(VerbsData.Merge, "VDisk", DefaultParameterSetName = ParameterSets.Path, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.High)]
    [OutputType(typeof(VDiskInfo))]
    public sealed class MergeVDiskCommand : CommitCmdlet
    {
        /// <summary>The ancestor that receives the merge (Merge-VHD -DestinationPath); every layer between is merged too. Default: the direct parent. The merged images stay on disk, emptied: they no longer hold the data, as after Merge-VHD.</summary>
        [Parameter(Position = 1)]
        [ValidateNotNullOrEmpty]
        public string DestinationPath { get; set; }

        /// <summary>Merge without asking for confirmation (as Merge-VHD -Force); -WhatIf still only reports.</summary>
        [Parameter]
        public SwitchParameter Force { get; set; }

        protected override void ProcessRecord() => CommitEach(DestinationPath, keepTop: false, rateLimit: 0, skipConfirmation: Force.IsPresent);
    }
}
