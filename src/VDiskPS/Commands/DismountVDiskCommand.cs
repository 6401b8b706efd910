using System.Linq;
using System.Management.Automation;
using VDiskPS.Formats;

namespace VDiskPS.Commands
{
    /// <summary>Dismount-VDisk: detaches images attached by Mount-VDisk, flushing them, and stops their servers.</summary>
    [Cmdlet(VerbsData.Dismount, "VDisk", DefaultParameterSetName = ParameterSets.Path, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
    [OutputType(typeof(VDiskMount))]
    public sealed class DismountVDiskCommand : VDiskPathCmdlet
    {
        /// <summary>Return what was detached.</summary>
        [Parameter]
        public SwitchParameter PassThru { get; set; }

        private static readonly System.StringComparison PathComparison =
            System.Runtime.InteropServices.RuntimeInformation.IsOSPlatform(System.Runtime.InteropServices.OSPlatform.Windows)
                ? System.StringComparison.OrdinalIgnoreCase
                : System.StringComparison.Ordinal;

        protected override void ProcessRecord()
        {
            foreach (string file in ResolvedImagePaths())
            {
                var mounts = VDiskServers.Mounts.Where(m => string.Equals(m.Path, file, PathComparison)).ToList();
                if (mounts.Count == 0)
                {
                    WriteError(ErrorMessages.Record(ErrorCode.NotMounted, new ItemNotFoundException($"'{file}' is not attached by Mount-VDisk in this session."), file));
                    continue;
                }

                foreach (var mount in mounts)
                {
                    if (!ShouldProcess($"{file} ({mount.DevicePath})", "Detach"))
                    {
                        continue;
                    }

                    var result = new VDiskMount(mount);
                    try
                    {
                        VDiskServers.Detach(mount);
                    }
                    catch (ImageException e)
                    {
                        WriteImageError(e, file);
                        continue;
                    }

                    if (PassThru)
                    {
                        WriteObject(result);
                    }
                }
            }
        }
    }
}
