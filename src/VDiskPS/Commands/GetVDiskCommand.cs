using System.Management.Automation;
using VDiskPS.Formats;
using VDiskPS.Formats.Ova;

namespace VDiskPS.Commands
{
    /// <summary>Get-VDisk: what an image is (qemu-img info, Get-VHD).</summary>
    [Cmdlet(VerbsCommon.Get, "VDisk", DefaultParameterSetName = ParameterSets.Path)]
    [OutputType(typeof(VDiskInfo), typeof(string))]
    public sealed class GetVDiskCommand : VDiskSourceCmdlet
    {
        /// <summary>The image's format; probed from the content when omitted.</summary>
        [Parameter]
        [ValidateReadableFormat]
        [ArgumentCompleter(typeof(ReadableFormatCompleter))]
        public string Format { get; set; }

        /// <summary>Read the image even while another process writes it (qemu-img -U).</summary>
        [Parameter]
        public SwitchParameter Force { get; set; }

        protected override bool ForceSharesWithWriters => true;

        /// <summary>Open an image whose parent's identity changed since it was made (the VMDK parentCID, VHD parent unique id or VHDX parent_linkage no longer match), as Hyper-V's -IgnoreIdMismatch does. Set-VDisk -ParentPath with -IgnoreIdMismatch records the parent's current identity for good.</summary>
        [Parameter]
        public SwitchParameter IgnoreIdMismatch { get; set; }

        /// <summary>Output the text qemu-img info --output=json writes for the image instead of a VDiskInfo: the same field names (filename, format, virtual-size, actual-size, cluster-size, dirty-flag, backing-filename, snapshots, format-specific, ...) with the same values, for scripts written against qemu-img.</summary>
        [Parameter]
        public SwitchParameter AsQemuJson { get; set; }

        protected override void ProcessRecord()
        {
            foreach (string file in ResolvedImagePaths())
            {
                try
                {
                    if (OvfPackage.IsPackage(file))
                    {
                        // An appliance: one object per disk in it.
                        WriteObject(WithImageWarnings(() =>
                        {
                            using (OvfPackage package = OvfPackage.Open(file, Force.IsPresent))
                            {
                                return package.DescribeDisks(ParseFormat(Format));
                            }
                        }), true);
                        continue;
                    }

                    WriteObject(AsQemuJson
                        ? (object)WithImageWarnings(() => QemuImageInfo.Json(file, ParseFormat(Format), Force.IsPresent, IgnoreIdMismatch.IsPresent))
                        : WithImageWarnings(() => ImageInspector.Get(file, ParseFormat(Format), Force.IsPresent, IgnoreIdMismatch.IsPresent)));
                }
                catch (ImageException e)
                {
                    WriteImageError(e, file);
                }
            }
        }
    }
}
