using System.Management.Automation;
using VDiskPS.Formats;

namespace VDiskPS.Commands
{
    /// <summary>Measure-VDisk: the space an image of a target format needs (qemu-img measure).</summary>
    [Cmdlet(VerbsDiagnostic.Measure, "VDisk", DefaultParameterSetName = ParameterSets.Path)]
    [OutputType(typeof(VDiskMeasurement))]
    public sealed class MeasureVDiskCommand : VDiskSourceCmdlet
    {
        /// <summary>Measure an empty image of this virtual size instead of an existing image's content.</summary>
        [Parameter(Mandatory = true, ParameterSetName = ParameterSets.Size)]
        [Alias("Size")]
        [SizeTransformation]
        public ulong SizeBytes { get; set; }

        /// <summary>The target format to measure for.</summary>
        [Parameter(Mandatory = true)]
        [ValidateWritableFormat]
        [ArgumentCompleter(typeof(WritableFormatCompleter))]
        public string Format { get; set; }

        /// <summary>The source image's format; probed when omitted.</summary>
        [Parameter(ParameterSetName = ParameterSets.Path)]
        [Parameter(ParameterSetName = ParameterSets.LiteralPath)]
        [ValidateReadableFormat]
        [ArgumentCompleter(typeof(ReadableFormatCompleter))]
        public string SourceFormat { get; set; }

        /// <summary>Measure the source as it was in this internal snapshot.</summary>
        [Parameter(ParameterSetName = ParameterSets.Path)]
        [Parameter(ParameterSetName = ParameterSets.LiteralPath)]
        [ValidateNotNullOrEmpty]
        [ArgumentCompleter(typeof(SnapshotNameCompleter))]
        public string Snapshot { get; set; }

        /// <summary>Target create options (cluster_size, subformat, preallocation, ...) as a hashtable or "k=v,k=v".</summary>
        [Parameter]
        [ArgumentCompleter(typeof(OptionKeyCompleter))]
        public object Option { get; set; }

        /// <summary>Measure a source another process is writing (qemu-img -U).</summary>
        [Parameter]
        public SwitchParameter Force { get; set; }

        protected override bool ForceSharesWithWriters => true;

        /// <summary>Open an image whose parent's identity changed since it was made (the VMDK parentCID, VHD parent unique id or VHDX parent_linkage no longer match), as Hyper-V's -IgnoreIdMismatch does. Set-VDisk -ParentPath with -IgnoreIdMismatch records the parent's current identity for good.</summary>
        [Parameter]
        public SwitchParameter IgnoreIdMismatch { get; set; }

        protected override void ProcessRecord()
        {
            var options = new MeasureOptions
            {
                TargetFormat = ParseFormat(Format),
                SourceFormat = ParseFormat(SourceFormat),
                Snapshot = Snapshot,
                ShareWithWriters = Force.IsPresent,
                IgnoreParentMismatch = IgnoreIdMismatch.IsPresent,
            };
            try
            {
                options.Target = new CreateRequest { Options = OptionSet.From(Unwrap(Option)) };
                if (ParameterSetName == ParameterSets.Size)
                {
                    options.Target.Size = checked((long)SizeBytes);
                    WriteObject(MeasureOperation.Run(null, options, Cancellation));
                    return;
                }
            }
            catch (ImageException e)
            {
                WriteImageError(e, Format);
                return;
            }

            foreach (string file in ResolvedImagePaths())
            {
                try
                {
                    options.Target.Options = OptionSet.From(Unwrap(Option));
                    WriteObject(WithImageWarnings(() => MeasureOperation.Run(file, options, Cancellation)));
                }
                catch (ImageException e)
                {
                    WriteImageError(e, file);
                }
            }
        }
    }
}
