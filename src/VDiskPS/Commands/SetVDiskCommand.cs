using System.Management.Automation;
using VDiskPS.Formats;

namespace VDiskPS.Commands
{
    /// <summary>Set-VDisk: changes an image's parent (qemu-img rebase), its format options (qemu-img amend, Set-VHD) or its disk identifier (Set-VHD -ResetDiskIdentifier).</summary>
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

        /// <summary>Path of the image(s) to change. Wildcards are expanded; accepts pipeline input (strings, Get-ChildItem output, VDiskInfo objects).</summary>
        [Parameter(Mandatory = true, Position = 0, ParameterSetName = PathParent, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
        [Parameter(Mandatory = true, Position = 0, ParameterSetName = PathOption, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
        [Parameter(Mandatory = true, Position = 0, ParameterSetName = PathIdentifier, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
        [Alias("FullName")]
        [ValidateNotNullOrEmpty]
        public string[] Path { get; set; }

        /// <summary>Path of the image(s) to change, used exactly as written (no wildcard expansion).</summary>
        [Parameter(Mandatory = true, ParameterSetName = LiteralPathParent, ValueFromPipelineByPropertyName = true)]
        [Parameter(Mandatory = true, ParameterSetName = LiteralPathOption, ValueFromPipelineByPropertyName = true)]
        [Parameter(Mandatory = true, ParameterSetName = LiteralPathIdentifier, ValueFromPipelineByPropertyName = true)]
        [Alias("PSPath", "LP")]
        [ValidateNotNullOrEmpty]
        public string[] LiteralPath { get; set; }

        /// <summary>The new parent. A relative path resolves against the current PowerShell location and is recorded relative to the image's folder, so the two can be moved together; separators are recorded in the form the format expects. An empty string flattens: the parent's data is copied in and the link removed.</summary>
        [Parameter(Mandatory = true, ParameterSetName = PathParent)]
        [Parameter(Mandatory = true, ParameterSetName = LiteralPathParent)]
        [Alias("BackingFile")]
        [AllowEmptyString]
        public string ParentPath { get; set; }

        /// <summary>Format of the new parent; probed when omitted, and recorded.</summary>
        [Parameter(ParameterSetName = PathParent)]
        [Parameter(ParameterSetName = LiteralPathParent)]
        [ValidateSet(FormatNames.Raw, FormatNames.Qcow2, FormatNames.Vmdk, FormatNames.Vhd, FormatNames.Vhdx, FormatNames.Vdi, IgnoreCase = true)]
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
        [ValidateSet(FormatNames.Raw, FormatNames.Qcow2, FormatNames.Vmdk, FormatNames.Vhd, FormatNames.Vhdx, FormatNames.Vdi, IgnoreCase = true)]
        public string Format { get; set; }

        /// <summary>Flatten without the extra confirmation that an empty -ParentPath otherwise asks for (-Confirm:$false settles it too).</summary>
        [Parameter]
        public SwitchParameter Force { get; set; }

        /// <summary>Output the changed image's VDiskInfo.</summary>
        [Parameter]
        public SwitchParameter PassThru { get; set; }

        protected override void ProcessRecord()
        {
            bool literal = ParameterSetName == LiteralPathParent || ParameterSetName == LiteralPathOption || ParameterSetName == LiteralPathIdentifier;
            bool parent = ParameterSetName == PathParent || ParameterSetName == LiteralPathParent;
            bool identifier = ParameterSetName == PathIdentifier || ParameterSetName == LiteralPathIdentifier;
            foreach (string file in ResolveExistingFiles(literal ? LiteralPath : Path, literal))
            {
                string what = identifier ? "Reset the disk identifier"
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
