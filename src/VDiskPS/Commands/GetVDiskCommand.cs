using System.Management.Automation;
using VDiskPS.Formats;

namespace VDiskPS.Commands
{
    /// <summary>Get-VDisk: what an image is (qemu-img info, Get-VHD).</summary>
    [Cmdlet(VerbsCommon.Get, "VDisk", DefaultParameterSetName = ParameterSets.Path)]
    [OutputType(typeof(VDiskInfo))]
    public sealed class GetVDiskCommand : VDiskCmdlet
    {
        /// <summary>Path of the image file(s). Wildcards are expanded; relative paths resolve against the current PowerShell location. Accepts pipeline input (strings, Get-ChildItem output, VDiskInfo objects).</summary>
        [Parameter(Mandatory = true, Position = 0, ParameterSetName = ParameterSets.Path, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
        [Alias("FullName")]
        [ValidateNotNullOrEmpty]
        public string[] Path { get; set; }

        /// <summary>Path of the image file(s), used exactly as written (no wildcard expansion).</summary>
        [Parameter(Mandatory = true, ParameterSetName = ParameterSets.LiteralPath, ValueFromPipelineByPropertyName = true)]
        [Alias("PSPath", "LP")]
        [ValidateNotNullOrEmpty]
        public string[] LiteralPath { get; set; }

        /// <summary>The image's format; probed from the content when omitted.</summary>
        [Parameter]
        [ValidateSet(FormatNames.Raw, FormatNames.Qcow2, FormatNames.Vmdk, FormatNames.Vhd, FormatNames.Vhdx, FormatNames.Vdi, IgnoreCase = true)]
        public string Format { get; set; }

        /// <summary>Read the image even while another process writes it (qemu-img -U).</summary>
        [Parameter]
        public SwitchParameter Force { get; set; }

        protected override void ProcessRecord()
        {
            bool literal = ParameterSetName == ParameterSets.LiteralPath;
            foreach (string file in ResolveExistingFiles(literal ? LiteralPath : Path, literal))
            {
                try
                {
                    WriteObject(ImageInspector.Get(file, ParseFormat(Format), Force.IsPresent));
                }
                catch (ImageException e)
                {
                    WriteImageError(e, file);
                }
            }
        }
    }
}
