using System.Management.Automation;
using VDiskPS.Formats;

namespace VDiskPS.Commands
{
    /// <summary>Test-VDisk: checks images for consistency (qemu-img check, Test-VHD).</summary>
    [Cmdlet(VerbsDiagnostic.Test, "VDisk", DefaultParameterSetName = ParameterSets.Path)]
    [OutputType(typeof(bool), typeof(VDiskCheckResult))]
    public sealed class TestVDiskCommand : VDiskPathCmdlet
    {
        /// <summary>The image's format; probed from the content when omitted.</summary>
        [Parameter]
        [ValidateSet(FormatNames.Raw, FormatNames.Qcow2, FormatNames.Vmdk, FormatNames.Vhd, FormatNames.Vhdx, FormatNames.Vdi, IgnoreCase = true)]
        public string Format { get; set; }

        /// <summary>Return a VDiskCheckResult (corruptions, leaks, cluster counts, messages) instead of True/False.</summary>
        [Parameter]
        public SwitchParameter Detailed { get; set; }

        /// <summary>Check the image even while another process writes it (qemu-img -U).</summary>
        [Parameter]
        public SwitchParameter Force { get; set; }

        protected override bool ForceSharesWithWriters => true;

        protected override void ProcessRecord()
        {
            foreach (string file in ResolvedImagePaths())
            {
                VDiskCheckResult result;
                try
                {
                    result = CheckOperation.Run(file, ParseFormat(Format), RepairMode.None, Force.IsPresent);
                }
                catch (ImageCorruptException e)
                {
                    // An image too damaged to open is simply not valid.
                    result = new VDiskCheckResult { Path = file, Format = Format, Corruptions = 1 };
                    result.Messages.Add(e.Message);
                }
                catch (ImageFormatMismatchException e)
                {
                    result = new VDiskCheckResult { Path = file, Format = Format, Corruptions = 1 };
                    result.Messages.Add(e.Message);
                }
                catch (ImageException e)
                {
                    WriteImageError(e, file);
                    continue;
                }

                if (Detailed)
                {
                    WriteObject(result);
                }
                else
                {
                    foreach (string message in result.Messages)
                    {
                        WriteVerbose(message);
                    }

                    WriteObject(result.IsValid);
                }
            }
        }
    }
}
