using System.Management.Automation;
using VDiskPS.Formats;
using VDiskPS.Formats.Attach;
using VDiskPS.Formats.Nbd;

namespace VDiskPS.Commands
{
    /// <summary>Mount-VDisk: attaches an image to this host (qemu-nbd -c; Mount-VHD).</summary>
    [Cmdlet(VerbsData.Mount, "VDisk", DefaultParameterSetName = ParameterSets.Path, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
    [OutputType(typeof(VDiskMount))]
    public sealed class MountVDiskCommand : VDiskPathCmdlet
    {
        /// <summary>The image's format; probed when omitted.</summary>
        [Parameter]
        [ValidateReadableFormat]
        [ArgumentCompleter(typeof(ReadableFormatCompleter))]
        public string Format { get; set; }

        /// <summary>Attach read-only: the guest disk cannot be changed through the device.</summary>
        [Parameter]
        public SwitchParameter ReadOnly { get; set; }

        /// <summary>An existing folder where the FUSE file appears (with nbdfuse); a private folder by default.</summary>
        [Parameter]
        [ValidateNotNullOrEmpty]
        public string MountPoint { get; set; }

        protected override void ProcessRecord()
        {
            foreach (string file in ResolvedImagePaths())
            {
                if (!ShouldProcess(file, ReadOnly ? "Attach read-only" : "Attach"))
                {
                    continue;
                }

                try
                {
                    var export = new NbdExportOptions
                    {
                        Path = file,
                        Format = ParseFormat(Format),
                        ExportName = System.IO.Path.GetFileName(file),
                        Writable = !ReadOnly,
                    };
                    string mountPoint = MountPoint == null ? null : ResolveNewPath(MountPoint);
                    IDiskAttachment mount = WithImageWarnings(() => DiskAttachments.Attach(export, mountPoint));
                    VDiskServers.Add(mount);
                    WriteObject(new VDiskMount(mount));
                }
                catch (ImageException e)
                {
                    WriteImageError(e, file);
                }
            }
        }
    }
}
