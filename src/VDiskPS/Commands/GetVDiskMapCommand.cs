using System.Management.Automation;
using VDiskPS.Formats;

namespace VDiskPS.Commands
{
    /// <summary>Get-VDiskMap: the allocation map of an image chain (qemu-img map).</summary>
    [Cmdlet(VerbsCommon.Get, "VDiskMap", DefaultParameterSetName = ParameterSets.Path)]
    [OutputType(typeof(VDiskExtent))]
    public sealed class GetVDiskMapCommand : VDiskSourceCmdlet
    {
        /// <summary>Guest offset to start mapping at.</summary>
        [Parameter]
        [SizeTransformation]
        public ulong StartOffset { get; set; }

        /// <summary>Bytes to map from -StartOffset; default: to the end of the disk.</summary>
        [Parameter]
        [SizeTransformation]
        public ulong Length { get; set; }

        /// <summary>The top image's format; probed when omitted.</summary>
        [Parameter]
        [ValidateReadableFormat]
        [ArgumentCompleter(typeof(ReadableFormatCompleter))]
        public string Format { get; set; }

        /// <summary>Map an image another process is writing (qemu-img -U).</summary>
        [Parameter]
        public SwitchParameter Force { get; set; }

        protected override bool ForceSharesWithWriters => true;

        /// <summary>Open an image whose parent's identity changed since it was made (the VMDK parentCID, VHD parent unique id or VHDX parent_linkage no longer match), as Hyper-V's -IgnoreIdMismatch does. Set-VDisk -ParentPath with -IgnoreIdMismatch records the parent's current identity for good.</summary>
        [Parameter]
        public SwitchParameter IgnoreIdMismatch { get; set; }

        protected override void ProcessRecord()
        {
            foreach (string file in ResolvedImagePaths())
            {
                try
                {
                    var options = new MapOptions
                    {
                        Format = ParseFormat(Format),
                        StartOffset = checked((long)StartOffset),
                        Length = IsBound(nameof(Length)) ? (long?)checked((long)Length) : null,
                        ShareWithWriters = Force.IsPresent,
                        IgnoreParentMismatch = IgnoreIdMismatch.IsPresent,
                    };
                    foreach (var extent in WithImageWarnings(() => MapOperation.Run(file, options, Cancellation)))
                    {
                        WriteObject(extent);
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
