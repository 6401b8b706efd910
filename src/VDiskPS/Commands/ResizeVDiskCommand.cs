using System.Management.Automation;
using VDiskPS.Formats;

namespace VDiskPS.Commands
{
    /// <summary>Resize-VDisk: changes the virtual size of images (qemu-img resize, Resize-VHD).</summary>
    [Cmdlet(VerbsCommon.Resize, "VDisk", DefaultParameterSetName = ParameterSets.Path, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
    [OutputType(typeof(VDiskInfo))]
    public sealed class ResizeVDiskCommand : VDiskPathCmdlet
    {
        /// <summary>The new size: absolute (30GB, "30G") or relative ("+10G", "-1G").</summary>
        [Parameter(Mandatory = true, Position = 1)]
        [Alias("SizeBytes")]
        [ValidateNotNullOrEmpty]
        public string Size { get; set; }

        /// <summary>Allow a smaller size; data past the new end is lost.</summary>
        [Parameter]
        public SwitchParameter Shrink { get; set; }

        /// <summary>Preallocation of the added space: Off, Metadata, Falloc (reserve blocks where the host can) or Full (write zeros: real blocks on every host).</summary>
        [Parameter]
        public Preallocation Preallocation { get; set; }

        /// <summary>The image's format; probed when omitted.</summary>
        [Parameter]
        [ValidateSet(FormatNames.Raw, FormatNames.Qcow2, FormatNames.Vmdk, FormatNames.Vhd, FormatNames.Vhdx, FormatNames.Vdi, IgnoreCase = true)]
        public string Format { get; set; }

        /// <summary>Shrink without the extra confirmation that -Shrink otherwise asks for (-Confirm:$false settles it too).</summary>
        [Parameter]
        public SwitchParameter Force { get; set; }

        /// <summary>Output the resized image's VDiskInfo.</summary>
        [Parameter]
        public SwitchParameter PassThru { get; set; }

        protected override void ProcessRecord()
        {
            DiskSize size;
            try
            {
                size = DiskSize.Parse(Size, "Size");
            }
            catch (ImageOptionException e)
            {
                ThrowTerminatingError(ErrorMessages.Record(ErrorCode.InvalidOption, e, Size));
                return;
            }

            foreach (string file in ResolvedImagePaths())
            {
                try
                {
                    long current = WithImageWarnings(() => ImageInspector.Get(file, ParseFormat(Format))).Size;
                    long target = size.Resolve(current);
                    if (!ShouldProcess(file, $"Resize from {DiskSize.Format(current)} to {DiskSize.Format(target)} ({target} bytes){(Shrink ? " (shrinking allowed)" : string.Empty)}"))
                    {
                        continue;
                    }

                    if (Shrink && target < current && !ConfirmLargeChange($"Shrinking '{file}' from {DiskSize.Format(current)} to {DiskSize.Format(target)} discards its data past the new end. Continue?", "Shrink virtual disk", Force))
                    {
                        continue;
                    }

                    var options = new ResizeOptions
                    {
                        Size = size,
                        AllowShrink = Shrink.IsPresent,
                        Preallocation = IsBound(nameof(Preallocation)) ? (Preallocation?)Preallocation : null,
                        Format = ParseFormat(Format),
                    };
                    WriteVerboseChain(file, options.Format);
                    VDiskInfo info = RunEngine(Activity("Resize-VDisk", file), (p, c) => ResizeOperation.Run(file, options, p, c));
                    if (PassThru)
                    {
                        WriteObject(info);
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
