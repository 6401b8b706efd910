using System.Management.Automation;
using VDiskPS.Formats;

namespace VDiskPS.Commands
{
    /// <summary>Set-VDisk: changes an image's parent (qemu-img rebase), its format options (qemu-img amend, Set-VHD), its physical sector size (Set-VHD -PhysicalSectorSizeBytes) or its disk identifier (Set-VHD -ResetDiskIdentifier).</summary>
    [Cmdlet(VerbsCommon.Set, "VDisk", DefaultParameterSetName = PathParent, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
    [OutputType(typeof(VDiskInfo))]
    public sealed class SetVDiskCommand : VDiskCmdlet
    {
        private const string PathParent = "PathParent";
        private const string LiteralPathParent = "LiteralPathParent";
        private const string PathOption = "PathOption";
        private const string LiteralPathOption = "LiteralPathOption";
        private const string PathIdentifier = "PathIdentifier";
        private const string LiteralPathIdentifier = "LiteralPathIdentifier";
        private const string PathSectorSize = "PathPhysicalSectorSize";
        private const string LiteralPathSectorSize = "LiteralPathPhysicalSectorSize";

        /// <summary>Path of the image(s) to change. Wildcards are expanded; accepts pipeline input (strings, Get-ChildItem output, VDiskInfo objects).</summary>
        [Parameter(Mandatory = true, Position = 0, ParameterSetName = PathParent, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
        [Parameter(Mandatory = true, Position = 0, ParameterSetName = PathOption, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
        [Parameter(Mandatory = true, Position = 0, ParameterSetName = PathIdentifier, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
        [Parameter(Mandatory = true, Position = 0, ParameterSetName = PathSectorSize, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
        [Alias("FullName")]
        [ValidateNotNullOrEmpty]
        public string[] Path { get; set; }

        /// <summary>Path of the image(s) to change, used exactly as written (no wildcard expansion).</summary>
        [Parameter(Mandatory = true, ParameterSetName = LiteralPathParent, ValueFromPipelineByPropertyName = true)]
        [Parameter(Mandatory = true, ParameterSetName = LiteralPathOption, ValueFromPipelineByPropertyName = true)]
        [Parameter(Mandatory = true, ParameterSetName = LiteralPathIdentifier, ValueFromPipelineByPropertyName = true)]
        [Parameter(Mandatory = true, ParameterSetName = LiteralPathSectorSize, ValueFromPipelineByPropertyName = true)]
        [Alias("PSPath", "LP")]
        [ValidateNotNullOrEmpty]
        public string[] LiteralPath { get; set; }

        /// <summary>The new parent (the second positional argument, as Set-VHD takes it). A relative path resolves against the current PowerShell location and is recorded relative to the image's folder, so the two can be moved together; separators are recorded in the form the format expects. An empty string flattens: the parent's data is copied in and the link removed.</summary>
        [Parameter(Mandatory = true, Position = 1, ParameterSetName = PathParent)]
        [Parameter(Mandatory = true, Position = 1, ParameterSetName = LiteralPathParent)]
        [Alias("BackingFile")]
        [AllowEmptyString]
        public string ParentPath { get; set; }

        /// <summary>Format of the new parent; probed when omitted, and recorded.</summary>
        [Parameter(ParameterSetName = PathParent)]
        [Parameter(ParameterSetName = LiteralPathParent)]
        [ValidateReadableFormat]
        [ArgumentCompleter(typeof(ReadableFormatCompleter))]
        public string ParentFormat { get; set; }

        /// <summary>Only rewrite the parent pointer, copying nothing (qemu-img rebase -u): for a parent that was moved or renamed with its content unchanged.</summary>
        [Parameter(ParameterSetName = PathParent)]
        [Parameter(ParameterSetName = LiteralPathParent)]
        public SwitchParameter Unsafe { get; set; }

        /// <summary>Write the clusters copied into the image compressed (formats with compressed clusters).</summary>
        [Parameter(ParameterSetName = PathParent)]
        [Parameter(ParameterSetName = LiteralPathParent)]
        public SwitchParameter Compress { get; set; }

        /// <summary>Also drop clusters of the image whose content equals the new parent's, so the overlay holds only real differences.</summary>
        [Parameter(ParameterSetName = PathParent)]
        [Parameter(ParameterSetName = LiteralPathParent)]
        public SwitchParameter Deduplicate { get; set; }

        /// <summary>Rebase a child whose parent's identity changed since it was made (the VMDK parentCID, VHD parent unique id, VHDX parent_linkage no longer match) and record the parent's current identity: with -ParentPath naming the same parent, the child is re-pinned to it. Use it only when the parent's content is known to be what the child was made from. A VDI child finds its parent by UUID, so one whose parent got a new UUID is re-pinned with -Unsafe instead.</summary>
        [Parameter(ParameterSetName = PathParent)]
        [Parameter(ParameterSetName = LiteralPathParent)]
        public SwitchParameter IgnoreIdMismatch { get; set; }

        /// <summary>The leaf of the chain the image belongs to (Set-VHD -LeafPath): the image whose parent is reset must be this leaf or one of the parents it names, else nothing is changed. Hyper-V needs it while the chain is attached to a running VM; here it checks that the disk being re-linked is the one the leaf reads through.</summary>
        [Parameter(ParameterSetName = PathParent)]
        [Parameter(ParameterSetName = LiteralPathParent)]
        [ValidateNotNullOrEmpty]
        public string LeafPath { get; set; }

        /// <summary>The physical sector size the disk reports to the guest, 512 or 4096 (VHDX; Set-VHD -PhysicalSectorSizeBytes). The data and the logical sector size do not change.</summary>
        [Parameter(Mandatory = true, ParameterSetName = PathSectorSize)]
        [Parameter(Mandatory = true, ParameterSetName = LiteralPathSectorSize)]
        [ValidateSet("512", "4096")]
        public uint PhysicalSectorSizeBytes { get; set; }

        /// <summary>Format options to change, as a hashtable or "k=v,k=v" (qemu-img amend), e.g. @{ compat = '1.1'; lazy_refcounts = 'on' }.</summary>
        [Parameter(Mandatory = true, ParameterSetName = PathOption)]
        [Parameter(Mandatory = true, ParameterSetName = LiteralPathOption)]
        [ArgumentCompleter(typeof(OptionKeyCompleter))]
        public object Option { get; set; }

        /// <summary>Give the image a new random disk identifier (the VHD unique id, the VHDX Page 83 data, the VDI image UUID or the VMDK ddb.uuid), so a copy can be attached next to the original; the data is unchanged. Differencing VHD and VDI images made from this image name it by the old identifier and no longer match it. raw and qcow2 images have no disk identifier.</summary>
        [Parameter(Mandatory = true, ParameterSetName = PathIdentifier)]
        [Parameter(Mandatory = true, ParameterSetName = LiteralPathIdentifier)]
        public SwitchParameter ResetDiskIdentifier { get; set; }

        /// <summary>The image's format; probed when omitted.</summary>
        [Parameter]
        [ValidateWritableFormat]
        [ArgumentCompleter(typeof(WritableFormatCompleter))]
        public string Format { get; set; }

        /// <summary>Flatten without the extra confirmation that an empty -ParentPath otherwise asks for (-Confirm:$false settles it too).</summary>
        [Parameter]
        public SwitchParameter Force { get; set; }

        /// <summary>Output the changed image's VDiskInfo.</summary>
        [Parameter]
        public SwitchParameter PassThru { get; set; }

        /// <summary>The password of an encrypted image (LUKS, qcow2 with LUKS or legacy AES encryption), as a SecureString: Read-Host -AsSecureString. Never written to a log, verbose output or an error.</summary>
        [Parameter]
        public System.Security.SecureString Password { get; set; }

        protected override System.Security.SecureString ImagePassword => Password;

        protected override void ProcessRecord()
        {
            bool literal = ParameterSetName == LiteralPathParent || ParameterSetName == LiteralPathOption || ParameterSetName == LiteralPathIdentifier || ParameterSetName == LiteralPathSectorSize;
            bool sectorSize = ParameterSetName == PathSectorSize || ParameterSetName == LiteralPathSectorSize;
            bool parent = ParameterSetName == PathParent || ParameterSetName == LiteralPathParent;
            bool identifier = ParameterSetName == PathIdentifier || ParameterSetName == LiteralPathIdentifier;
            foreach (string file in ResolveExistingFiles(literal ? LiteralPath : Path, literal))
            {
                string what = identifier ? "Reset the disk identifier"
                    : sectorSize ? $"Set the physical sector size to {PhysicalSectorSizeBytes} bytes"
                    : !parent ? $"Change options {OptionSet.From(Unwrap(Option))}"
                    : string.IsNullOrEmpty(ParentPath) ? "Flatten (copy the parent's data in and remove the parent link)"
                    : $"Change parent to '{ParentPath}'{(Unsafe ? " (pointer only)" : string.Empty)}";
                if (!ShouldProcess(file, what))
                {
                    continue;
                }

                if (parent && string.IsNullOrEmpty(ParentPath) && !Unsafe && !ConfirmLargeChange($"Flattening '{file}' copies all of its parent's data into it and removes the link. Continue?", "Flatten virtual disk", Force))
                {
                    continue;
                }

                try
                {
                    VDiskInfo info;
                    if (identifier)
                    {
                        info = DiskIdentifierOperation.Reset(file, ParseFormat(Format));
                    }
                    else if (sectorSize)
                    {
                        info = SectorSizeOperation.SetPhysical(file, ParseFormat(Format), (int)PhysicalSectorSizeBytes);
                    }
                    else if (parent)
                    {
                        var options = new RebaseOptions
                        {
                            Format = ParseFormat(Format),
                            NewParentPath = ParentPathToRecord(file, ParentPath),
                            NewParentFormat = ParseFormat(ParentFormat),
                            Unsafe = Unsafe.IsPresent,
                            Compress = Compress.IsPresent,
                            Deduplicate = Deduplicate.IsPresent,
                            IgnoreParentMismatch = IgnoreIdMismatch.IsPresent,
                            LeafPath = string.IsNullOrEmpty(LeafPath) ? null : GetUnresolvedProviderPathFromPSPath(LeafPath),
                        };
                        WriteVerboseChain(file, options.Format);
                        RebaseResult result = RunEngine(Activity("Set-VDisk", file), (p, c) => RebaseOperation.Run(file, options, p, c));
                        info = result.Image;
                    }
                    else
                    {
                        info = AmendOperation.Run(file, ParseFormat(Format), OptionSet.From(Unwrap(Option)));
                    }

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
