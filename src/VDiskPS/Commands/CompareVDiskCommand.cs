using System.Linq;
using System.Management.Automation;
using VDiskPS.Formats;

namespace VDiskPS.Commands
{
    /// <summary>Compare-VDisk: compares the content two images present to a guest (qemu-img compare).</summary>
    [Cmdlet(VerbsData.Compare, "VDisk")]
    [OutputType(typeof(VDiskComparison), typeof(bool))]
    public sealed class CompareVDiskCommand : VDiskCmdlet
    {
        /// <summary>The first image (chain). Binds from pipeline objects' Path or FullName.</summary>
        [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
        [Alias("Path", "FullName")]
        [ValidateNotNullOrEmpty]
        public string ReferencePath { get; set; }

        /// <summary>The second image (chain).</summary>
        [Parameter(Mandatory = true, Position = 1)]
        [ValidateNotNullOrEmpty]
        public string DifferencePath { get; set; }

        /// <summary>Format of -ReferencePath; probed when omitted.</summary>
        [Parameter]
        [ValidateReadableFormat]
        [ArgumentCompleter(typeof(ReadableFormatCompleter))]
        public string ReferenceFormat { get; set; }

        /// <summary>Format of -DifferencePath; probed when omitted.</summary>
        [Parameter]
        [ValidateReadableFormat]
        [ArgumentCompleter(typeof(ReadableFormatCompleter))]
        public string DifferenceFormat { get; set; }

        /// <summary>Also fail on a size difference or a difference in allocation (qemu-img compare -s).</summary>
        [Parameter]
        public SwitchParameter Strict { get; set; }

        /// <summary>Return only True (identical) or False.</summary>
        [Parameter]
        public SwitchParameter Quiet { get; set; }

        /// <summary>Read images another process is writing (qemu-img -U).</summary>
        [Parameter]
        public SwitchParameter Force { get; set; }

        /// <summary>The password of an encrypted image (LUKS, qcow2 with LUKS or legacy AES encryption), as a SecureString: Read-Host -AsSecureString. Never written to a log, verbose output or an error.</summary>
        [Parameter]
        public System.Security.SecureString Password { get; set; }

        protected override System.Security.SecureString ImagePassword => Password;

        protected override bool ForceSharesWithWriters => true;

        /// <summary>The user name and password for a server that asks for them (HTTP basic or digest authentication), for every URL the cmdlet opens, backing files included.</summary>
        [Parameter]
        [Credential]
        public PSCredential Credential { get; set; }

        /// <summary>Accept the server's TLS certificate without checking it (self-signed, expired, another host's), as Invoke-WebRequest -SkipCertificateCheck.</summary>
        [Parameter]
        public SwitchParameter SkipCertificateCheck { get; set; }

        protected override TransportOptions RemoteOptions => RemoteParameters.Options(Credential, SkipCertificateCheck);

        /// <summary>Open an image whose parent's identity changed since it was made (the VMDK parentCID, VHD parent unique id or VHDX parent_linkage no longer match), as Hyper-V's -IgnoreIdMismatch does. Set-VDisk -ParentPath with -IgnoreIdMismatch records the parent's current identity for good.</summary>
        [Parameter]
        public SwitchParameter IgnoreIdMismatch { get; set; }

        protected override void ProcessRecord()
        {
            string reference = ResolveExistingFiles(new[] { ReferencePath }, literal: true).FirstOrDefault();
            string difference = ResolveExistingFiles(new[] { DifferencePath }, literal: true).FirstOrDefault();
            if (reference == null || difference == null)
            {
                return;
            }

            try
            {
                var options = new CompareOptions
                {
                    ReferenceFormat = ParseFormat(ReferenceFormat),
                    DifferenceFormat = ParseFormat(DifferenceFormat),
                    Strict = Strict.IsPresent,
                    ShareWithWriters = Force.IsPresent,
                    IgnoreParentMismatch = IgnoreIdMismatch.IsPresent,
                };
                WriteVerboseChain(reference, options.ReferenceFormat, Force.IsPresent);
                WriteVerboseChain(difference, options.DifferenceFormat, Force.IsPresent);
                VDiskComparison result = RunEngine(Activity("Compare-VDisk", reference, difference), (p, c) => CompareOperation.Run(reference, difference, options, p, c));
                if (Quiet)
                {
                    WriteObject(result.Identical);
                }
                else
                {
                    WriteObject(result);
                }
            }
            catch (ImageException e)
            {
                WriteImageError(e, reference);
            }
        }
    }
}
