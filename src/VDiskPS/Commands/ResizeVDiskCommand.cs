using System.Management.Automation;
using VDiskPS.Formats;

namespace VDiskPS.Commands
{
    /// <summary>Resize-VDisk: changes the virtual size of images (qemu-img resize, Resize-VHD).</summary>
    [Cmdlet(VerbsCommon.Resize, "VDisk", DefaultParameterSetName = ParameterSets.Path, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
    [OutputType(typeof(VDiskInfo))]
    public sealed class ResizeVDiskCommand : VDiskPathCmdlet
    {
        /// <summary>The new size: absolute (30GB, "30G") or relative ("+10G", "-1G"). Give it or -ToMinimumSize.</summary>
        [Parameter(Position = 1)]
        [Alias("SizeBytes")]
        [ValidateNotNullOrEmpty]
        public string Size { get; set; }

        /// <summary>Shrink to the disk's MinimumSize (as Resize-VHD -ToMinimumSize): the end of the last partition of the guest's MBR or GPT, plus the backup GPT, which is moved to the new end. A disk with no partition table is refused. Implies -Shrink, without its extra confirmation (nothing inside a partition is discarded).</summary>
        [Parameter]
        public SwitchParameter ToMinimumSize { get; set; }

        /// <summary>Allow a smaller size; data past the new end is lost.</summary>
        [Parameter]
        public SwitchParameter Shrink { get; set; }

        /// <summary>Preallocation of the added space: Off, Metadata, Falloc (reserve blocks where the host can) or Full (write zeros: real blocks on every host).</summary>
        [Parameter]
        public Preallocation Preallocation { get; set; }

        /// <summary>The image's format; probed when omitted.</summary>
        [Parameter]
        [ValidateWritableFormat]
        [ArgumentCompleter(typeof(WritableFormatCompleter))]
        public string Format { get; set; }

        /// <summary>Shrink without the extra confirmation that -Shrink otherwise asks for (-Confirm:$false settles it too), and allow a size below the disk's MinimumSize, which cuts its last partitions.</summary>
        [Parameter]
        public SwitchParameter Force { get; set; }

        /// <summary>Output the resized image's VDiskInfo.</summary>
        [Parameter]
        public SwitchParameter PassThru { get; set; }

        protected override void ProcessRecord()
        {
            bool toMinimum = ToMinimumSize.IsPresent;
            if (toMinimum == !string.IsNullOrEmpty(Size))
            {
                ThrowTerminatingError(new ErrorRecord(new PSArgumentException("Give the new size (-SizeBytes) or -ToMinimumSize, not both."), "VDisk.InvalidOption", ErrorCategory.InvalidArgument, Size));
                return;
            }

            DiskSize size = default;
            try
            {
                if (!toMinimum)
                {
                    size = DiskSize.Parse(Size, "Size");
                }
            }
            catch (ImageOptionException e)
            {
                ThrowTerminatingError(ErrorMessages.Record(ErrorCode.InvalidOption, e, Size));
                return;
            }

            bool shrink = Shrink || toMinimum;
            foreach (string file in ResolvedImagePaths())
            {
                try
                {
                    VDiskInfo before = WithImageWarnings(() => ImageInspector.Get(file, ParseFormat(Format)));
                    long current = before.Size;

                    // -ToMinimumSize discards only what lies past the last partition: no second confirmation.
                    long target = toMinimum ? before.MinimumSize ?? current : size.Resolve(current);
                    string action = toMinimum
                        ? (before.MinimumSize.HasValue ? $"Resize from {DiskSize.Format(current)} to its minimum size, {DiskSize.Format(target)} ({target} bytes), the end of its last partition" : "Resize to its minimum size (the end of its last partition)")
                        : $"Resize from {DiskSize.Format(current)} to {DiskSize.Format(target)} ({target} bytes){(Shrink ? " (shrinking allowed)" : string.Empty)}";
                    if (!ShouldProcess(file, action))
                    {
                        continue;
                    }

                    if (Shrink && !toMinimum && target < current && !ConfirmLargeChange($"Shrinking '{file}' from {DiskSize.Format(current)} to {DiskSize.Format(target)} discards its data past the new end. Continue?", "Shrink virtual disk", Force))
                    {
                        continue;
                    }

                    var options = new ResizeOptions
                    {
                        Size = size,
                        AllowShrink = shrink,
                        ToMinimumSize = toMinimum,
                        AllowBelowMinimum = Force.IsPresent,
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
                catch (ImageOptionException e) when (e.Field == ResizeOperation.MinimumSizeField)
                {
                    var record = new ErrorRecord(e, "VDisk.InvalidOption", ErrorCategory.InvalidArgument, file)
                    {
                        ErrorDetails = new ErrorDetails($"{e.Message}. Use -Force to shrink it anyway."),
                    };
                    WriteError(record);
                }
                catch (ImageException e)
                {
                    WriteImageError(e, file);
                }
            }
        }
    }
}
