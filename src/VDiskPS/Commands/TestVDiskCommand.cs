using System.Management.Automation;
using VDiskPS.Formats;

namespace VDiskPS.Commands
{
    /// <summary>Test-VDisk: checks images for consistency (qemu-img check, Test-VHD).</summary>
    [Cmdlet(VerbsDiagnostic.Test, "VDisk", DefaultParameterSetName = ParameterSets.Path)]
    [OutputType(typeof(bool), typeof(VDiskCheckResult))]
    public sealed class TestVDiskCommand : VDiskSourceCmdlet
    {
        /// <summary>The image's format; probed from the content when omitted.</summary>
        [Parameter]
        [ValidateReadableFormat]
        [ArgumentCompleter(typeof(ReadableFormatCompleter))]
        public string Format { get; set; }

        /// <summary>Return a VDiskCheckResult (corruptions, leaks, cluster counts, messages) instead of True/False.</summary>
        [Parameter]
        public SwitchParameter Detailed { get; set; }

        /// <summary>Check the image even while another process writes it (qemu-img -U).</summary>
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
                VDiskCheckResult result;
                try
                {
                    result = WithImageWarnings(() => CheckOperation.Run(file, ParseFormat(Format), RepairMode.None, Force.IsPresent, IgnoreIdMismatch.IsPresent));
                    if (result.ParentIdMismatch)
                    {
                        result.Messages.Add($"use -IgnoreIdMismatch to check it against the changed parent anyway, or Set-VDisk -Path '{file}' -ParentPath <parent> -IgnoreIdMismatch to record the parent's current identity");
                    }
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
