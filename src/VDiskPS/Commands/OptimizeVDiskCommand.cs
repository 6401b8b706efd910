using System.Management.Automation;
using VDiskPS.Formats;

namespace VDiskPS.Commands
{
    /// <summary>Optimize-VDisk: reclaims zero-filled and unused space in dynamic images (Optimize-VHD, VBoxManage --compact).</summary>
    [Cmdlet(VerbsCommon.Optimize, "VDisk", DefaultParameterSetName = ParameterSets.Path, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
    [OutputType(typeof(VDiskInfo))]
    public sealed class OptimizeVDiskCommand : VDiskPathCmdlet
    {
        /// <summary>Optimize-VHD's modes, as a tool working on the image file can honour them: Quick reclaims what the format already records as free (unallocated, discarded or zero units) and shortens the file; Pretrimmed does the same (the guest's trims are already recorded as free units); Prezeroed also treats allocated units that hold only zeros (written by sdelete -z or zerofree) as free; Full does what Prezeroed does (Hyper-V's Full also reads the free-space map of the guest's NTFS, which needs the disk mounted); Retrim moves nothing and keeps the file's length, punching holes in the host file where the image uses no space (qcow2 and VHDX). Default: Full for VHD, Quick for the other formats, as Optimize-VHD.</summary>
        [Parameter]
        [PSDefaultValue(Value = "Full for VHD, Quick for other formats")]
        public OptimizeMode Mode { get; set; }

        /// <summary>The image's format; probed when omitted.</summary>
        [Parameter]
        [ValidateWritableFormat]
        [ArgumentCompleter(typeof(WritableFormatCompleter))]
        public string Format { get; set; }

        /// <summary>Output the optimized image's VDiskInfo.</summary>
        [Parameter]
        public SwitchParameter PassThru { get; set; }

        protected override void ProcessRecord()
        {
            foreach (string file in ResolvedImagePaths())
            {
                OptimizeMode? mode = IsBound(nameof(Mode)) ? (OptimizeMode?)Mode : null;
                if (!ShouldProcess(file, $"Optimize ({(mode.HasValue ? mode.Value.ToString() : "the format's default mode")})"))
                {
                    continue;
                }

                try
                {
                    var options = new OptimizeOptions { Mode = mode, Format = ParseFormat(Format) };
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
