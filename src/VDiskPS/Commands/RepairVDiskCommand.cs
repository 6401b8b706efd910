using System.Management.Automation;
using VDiskPS.Formats;

namespace VDiskPS.Commands
{
    /// <summary>Repair-VDisk: repairs leaks or all errors an image check finds (qemu-img check -r).</summary>
    [Cmdlet(VerbsDiagnostic.Repair, "VDisk", DefaultParameterSetName = ParameterSets.Path, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.High)]
    [OutputType(typeof(VDiskCheckResult))]
    public sealed class RepairVDiskCommand : VDiskPathCmdlet
    {
        /// <summary>Leaks (only reclaim leaked clusters, always safe) or All (also fix corruptions; may lose data the corruption already damaged). Default: All.</summary>
        [Parameter]
        [ValidateSet(nameof(RepairMode.Leaks), nameof(RepairMode.All), IgnoreCase = true)]
        [PSDefaultValue(Value = nameof(RepairMode.All))]
        public string Mode { get; set; } = nameof(RepairMode.All);

        /// <summary>The image's format; probed from the content when omitted.</summary>
        [Parameter]
        [ValidateWritableFormat]
        [ArgumentCompleter(typeof(WritableFormatCompleter))]
        public string Format { get; set; }

        protected override void ProcessRecord()
        {
            var mode = (RepairMode)System.Enum.Parse(typeof(RepairMode), Mode, ignoreCase: true);
            foreach (string file in ResolvedImagePaths())
            {
                if (!ShouldProcess(file, $"Repair ({Mode})"))
                {
                    continue;
                }

                try
                {
                    WriteObject(WithImageWarnings(() => CheckOperation.Run(file, ParseFormat(Format), mode)));
                }
                catch (ImageException e)
                {
                    WriteImageError(e, file);
                }
            }
        }
    }
}
