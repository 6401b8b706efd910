using System.Management.Automation;
using VDiskPS.Formats;

namespace VDiskPS.Commands
{
    /// <summary>Optimize-VDisk: reclaims zero-filled and unused space in dynamic images (Optimize-VHD, VBoxManage --compact).</summary>
    [Cmdlet(VerbsCommon.Optimize, "VDisk", DefaultParameterSetName = ParameterSets.Path, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
    [OutputType(typeof(VDiskInfo))]
    public sealed class OptimizeVDiskCommand : VDiskPathCmdlet
    {
        /// <summary>Quick: reclaim what the format already knows is free. Full: also find allocated clusters holding only zeros and release them first.</summary>
        [Parameter]
        [PSDefaultValue(Value = nameof(OptimizeMode.Quick))]
        public OptimizeMode Mode { get; set; } = OptimizeMode.Quick;

        /// <summary>The image's format; probed when omitted.</summary>
        [Parameter]
        [ValidateSet(FormatNames.Raw, FormatNames.Qcow2, FormatNames.Vmdk, FormatNames.Vhd, FormatNames.Vhdx, FormatNames.Vdi, IgnoreCase = true)]
        public string Format { get; set; }

        /// <summary>Output the optimized image's VDiskInfo.</summary>
        [Parameter]
        public SwitchParameter PassThru { get; set; }

        protected override void ProcessRecord()
        {
            foreach (string file in ResolvedImagePaths())
            {
                if (!ShouldProcess(file, $"Optimize ({Mode})"))
                {
                    continue;
                }

                try
                {
                    var options = new OptimizeOptions { Mode = Mode, Format = ParseFormat(Format) };
                    WriteVerboseChain(file, options.Format);
                    OptimizeResult result = RunEngine(Activity("Optimize-VDisk", file), (p, c) => OptimizeOperation.Run(file, options, p, c));
                    WriteVerbose($"{file}: {DiskSize.Format(result.BytesReclaimed)} reclaimed");
                    if (PassThru)
                    {
                        WriteObject(result.Image);
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
