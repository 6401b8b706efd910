using System.Management.Automation;
using VDiskPS.Formats;

namespace VDiskPS.Commands
{
    /// <summary>Get-VDiskChain: an image and its backing files, top first (qemu-img info --backing-chain).</summary>
    [Cmdlet(VerbsCommon.Get, "VDiskChain", DefaultParameterSetName = ParameterSets.Path)]
    [OutputType(typeof(VDiskInfo))]
    public sealed class GetVDiskChainCommand : VDiskSourceCmdlet
    {
        /// <summary>The top image's format; probed from the content when omitted. Backing files use the format their child records.</summary>
        [Parameter]
        [ValidateReadableFormat]
        [ArgumentCompleter(typeof(ReadableFormatCompleter))]
        public string Format { get; set; }

        /// <summary>Read the images even while another process writes them (qemu-img -U). The content may be inconsistent.</summary>
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
                    foreach (var layer in WithImageWarnings(() => ImageInspector.GetChain(file, ParseFormat(Format), Force.IsPresent, IgnoreIdMismatch.IsPresent)))
                    {
                        WriteObject(layer);
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
