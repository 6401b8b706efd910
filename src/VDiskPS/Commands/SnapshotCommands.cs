using System.Linq;
using System.Management.Automation;
using VDiskPS.Formats;

namespace VDiskPS.Commands
{
    /// <summary>Get-VDiskSnapshot: lists the internal snapshots of images (qemu-img snapshot -l).</summary>
    [Cmdlet(VerbsCommon.Get, "VDiskSnapshot", DefaultParameterSetName = ParameterSets.Path)]
    [OutputType(typeof(VDiskSnapshotInfo))]
    public sealed class GetVDiskSnapshotCommand : VDiskSourceCmdlet
    {
        /// <summary>Only snapshots whose name matches (wildcards allowed).</summary>
        [Parameter(Position = 1)]
        [SupportsWildcards]
        [ValidateNotNullOrEmpty]
        [ArgumentCompleter(typeof(SnapshotNameCompleter))]
        public string Name { get; set; }

        /// <summary>Only the snapshot with this id.</summary>
        [Parameter]
        [ValidateNotNullOrEmpty]
        public string Id { get; set; }

        /// <summary>List the snapshots even while another process writes the image.</summary>
        [Parameter]
        public SwitchParameter Force { get; set; }

        protected override bool ForceSharesWithWriters => true;

        protected override void ProcessRecord()
        {
            var pattern = string.IsNullOrEmpty(Name) ? null : new WildcardPattern(Name, WildcardOptions.IgnoreCase);
            foreach (string file in ResolvedImagePaths())
            {
                try
                {
                    foreach (var snapshot in WithImageWarnings(() => SnapshotOperations.List(file, null, Force.IsPresent)))
                    {
                        if ((pattern == null || pattern.IsMatch(snapshot.Name)) && (Id == null || Id == snapshot.Id))
                        {
                            WriteObject(snapshot);
                        }
                    }
                }
                catch (ImageException e)
                {
                    WriteImageError(e, file);
                }
            }
        }
    }

    /// <summary>New-VDiskSnapshot: records the image's current content as an internal snapshot (qemu-img snapshot -c).</summary>
    [Cmdlet(VerbsCommon.New, "VDiskSnapshot", DefaultParameterSetName = ParameterSets.Path, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
    [OutputType(typeof(VDiskSnapshotInfo))]
    public sealed class NewVDiskSnapshotCommand : VDiskPathCmdlet
    {
        /// <summary>The snapshot's name (unique within the image).</summary>
        [Parameter(Mandatory = true, Position = 1)]
        [ValidateNotNullOrEmpty]
        public string Name { get; set; }

        protected override void ProcessRecord()
        {
            foreach (string file in ResolvedImagePaths())
            {
                if (!ShouldProcess(file, $"Create snapshot '{Name}'"))
                {
                    continue;
                }

                try
                {
                    WriteObject(SnapshotOperations.Create(file, Name));
                }
                catch (ImageException e)
                {
                    WriteImageError(e, file);
                }
            }
        }
    }

    /// <summary>Restore-VDiskSnapshot: reverts an image to one of its internal snapshots (qemu-img snapshot -a).</summary>
    [Cmdlet(VerbsData.Restore, "VDiskSnapshot", DefaultParameterSetName = ParameterSets.Path, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.High)]
    [OutputType(typeof(VDiskSnapshotInfo))]
    public sealed class RestoreVDiskSnapshotCommand : VDiskPathCmdlet
    {
        /// <summary>The snapshot's name. Binds from Get-VDiskSnapshot output.</summary>
        [Parameter(Position = 1, ValueFromPipelineByPropertyName = true)]
        [ValidateNotNullOrEmpty]
        [ArgumentCompleter(typeof(SnapshotNameCompleter))]
        public string Name { get; set; }

        /// <summary>The snapshot's id, instead of its name. Binds from Get-VDiskSnapshot output.</summary>
        [Parameter(ValueFromPipelineByPropertyName = true)]
        [ValidateNotNullOrEmpty]
        public string Id { get; set; }

        /// <summary>Output the restored snapshot's info.</summary>
        [Parameter]
        public SwitchParameter PassThru { get; set; }

        protected override void ProcessRecord()
        {
            string target = SnapshotTarget.Of(this, Id, Name);
            foreach (string file in ResolvedImagePaths())
            {
                if (!ShouldProcess(file, $"Revert the disk to snapshot '{target}' (changes since then are lost)"))
                {
                    continue;
                }

                try
                {
                    SnapshotOperations.Apply(file, target);
                    if (PassThru)
                    {
                        foreach (var s in SnapshotOperations.List(file))
                        {
                            if (s.Id == target || s.Name == target)
                            {
                                WriteObject(s);
                            }
                        }
                    }
                }
                catch (ImageException e)
                {
                    WriteImageError(e, file);
                }
            }
        }
    }

    /// <summary>Remove-VDiskSnapshot: deletes an internal snapshot (qemu-img snapshot -d).</summary>
    [Cmdlet(VerbsCommon.Remove, "VDiskSnapshot", DefaultParameterSetName = ParameterSets.Path, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.High)]
    [OutputType(typeof(VDiskSnapshotInfo))]
    public sealed class RemoveVDiskSnapshotCommand : VDiskPathCmdlet
    {
        /// <summary>The snapshot's name. Binds from Get-VDiskSnapshot output.</summary>
        [Parameter(Position = 1, ValueFromPipelineByPropertyName = true)]
        [ValidateNotNullOrEmpty]
        [ArgumentCompleter(typeof(SnapshotNameCompleter))]
        public string Name { get; set; }

        /// <summary>The snapshot's id, instead of its name. Binds from Get-VDiskSnapshot output.</summary>
        [Parameter(ValueFromPipelineByPropertyName = true)]
        [ValidateNotNullOrEmpty]
        public string Id { get; set; }

        /// <summary>Output the deleted snapshot's info, as it was before the deletion.</summary>
        [Parameter]
        public SwitchParameter PassThru { get; set; }

        protected override void ProcessRecord()
        {
            string target = SnapshotTarget.Of(this, Id, Name);
            foreach (string file in ResolvedImagePaths())
            {
                if (!ShouldProcess(file, $"Delete snapshot '{target}'"))
                {
                    continue;
                }

                try
                {
                    var removed = PassThru ? SnapshotOperations.List(file).Where(sn => sn.Id == target || sn.Name == target).ToList() : null;
                    SnapshotOperations.Delete(file, target);
                    if (PassThru)
                    {
                        WriteObject(removed, enumerateCollection: true);
                    }
                }
                catch (ImageException e)
                {
                    WriteImageError(e, file);
                }
            }
        }
    }

    internal static class SnapshotTarget
    {
        /// <summary>The id when given (it is unique), else the name; one of them is required.</summary>
        public static string Of(PSCmdlet cmdlet, string id, string name)
        {
            string target = !string.IsNullOrEmpty(id) ? id : name;
            if (string.IsNullOrEmpty(target))
            {
                cmdlet.ThrowTerminatingError(ErrorMessages.Record(ErrorCode.InvalidOption, new PSArgumentException("Give the snapshot's -Name or -Id."), null));
            }

            return target;
        }
    }
}
