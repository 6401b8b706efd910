using System.Management.Automation;
using VDiskPS.Formats;

namespace VDiskPS.Commands
{
    /// <summary>Copy-VDiskData: copies a byte range of an image into a new or existing image (qemu-img dd).</summary>
    [Cmdlet(VerbsCommon.Copy, "VDiskData", DefaultParameterSetName = ParameterSets.Path, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
    [OutputType(typeof(VDiskInfo), typeof(VDiskSalvageResult))]
    public sealed class CopyVDiskDataCommand : VDiskSourceCmdlet
    {
        /// <summary>The output image (dd of=). Created with the copied length unless -NoCreate.</summary>
        [Parameter(Mandatory = true, Position = 1)]
        [ValidateNotNullOrEmpty]
        public string Destination { get; set; }

        /// <summary>Bytes per block (dd bs=); default 512 as in qemu-img dd.</summary>
        [Parameter]
        [SizeTransformation]
        public ulong BlockSize { get; set; } = 512;

        /// <summary>Blocks to copy after the skipped ones (dd count=, as dd(1) counts them); default: to the end of the input.</summary>
        [Parameter]
        public ulong Count { get; set; }

        /// <summary>Input blocks to skip first (dd skip=).</summary>
        [Parameter]
        public ulong Skip { get; set; }

        /// <summary>The input image's format; probed when omitted.</summary>
        [Parameter]
        [ValidateReadableFormat]
        [ArgumentCompleter(typeof(ReadableFormatCompleter))]
        public string Format { get; set; }

        /// <summary>The output image's format; default: from its extension.</summary>
        [Parameter]
        [ValidateWritableFormat]
        [ArgumentCompleter(typeof(WritableFormatCompleter))]
        public string DestinationFormat { get; set; }

        /// <summary>Write into an existing output from its start.</summary>
        [Parameter]
        public SwitchParameter NoCreate { get; set; }

        /// <summary>Output create options, as a hashtable or "k=v,k=v".</summary>
        [Parameter]
        [ArgumentCompleter(typeof(OptionKeyCompleter))]
        public object Option { get; set; }

        /// <summary>Overwrite an existing output; read an input another process is writing.</summary>
        [Parameter]
        public SwitchParameter Force { get; set; }

        protected override bool ForceSharesWithWriters => true;

        /// <summary>Output the destination's VDiskInfo.</summary>
        [Parameter]
        public SwitchParameter PassThru { get; set; }

        /// <summary>Go on past input ranges that cannot be read (as dd_rescue): write zeros there, warn for each, and output a VDiskSalvageResult listing them.</summary>
        [Parameter]
        public SwitchParameter Salvage { get; set; }

        /// <summary>Open an image whose parent's identity changed since it was made (the VMDK parentCID, VHD parent unique id or VHDX parent_linkage no longer match), as Hyper-V's -IgnoreIdMismatch does. Set-VDisk -ParentPath with -IgnoreIdMismatch records the parent's current identity for good.</summary>
        [Parameter]
        public SwitchParameter IgnoreIdMismatch { get; set; }

        /// <summary>The output's format is -DestinationFormat here (-Format is the input's).</summary>
        protected override string OwnParameter(string parameter)
            => parameter == "Format" ? nameof(DestinationFormat) : base.OwnParameter(parameter);

        protected override void ProcessRecord()
        {
            foreach (string file in ResolvedImagePaths())
            {
                string destination = ResolveNewPath(Destination);
                if (!ShouldProcess(destination, $"Copy data from '{file}'"))
                {
                    continue;
                }

                try
                {
                    DiskFormat? destinationFormat = ParseFormat(DestinationFormat);
                    if (!NoCreate)
                    {
                        destinationFormat = PathPlanner.FormatForNewFile(destination, destinationFormat);
                    }

                    var options = new DdOptions
                    {
                        SourceFormat = ParseFormat(Format),
                        DestinationFormat = destinationFormat,
                        BlockSize = checked((long)BlockSize),
                        Count = IsBound(nameof(Count)) ? (long?)checked((long)Count) : null,
                        Skip = checked((long)Skip),
                        NoCreate = NoCreate.IsPresent,
                        ShareWithWriters = Force.IsPresent,
                        IgnoreParentMismatch = IgnoreIdMismatch.IsPresent,
                        Target = new CreateRequest { Overwrite = Force.IsPresent, Options = OptionSet.From(Unwrap(Option)) },
                        Salvage = Salvage ? new SalvageLog() : null,
                    };
                    if (!NoCreate && System.IO.File.Exists(destination) && !Force)
                    {
                        throw ImageIOException.OutputExists(destination);
                    }

                    WriteVerboseChain(file, options.SourceFormat, Force.IsPresent);
                    VDiskInfo info = RunEngine(Activity("Copy-VDiskData", file, destination), (p, c) => DdOperation.Run(file, destination, options, p, c));
                    WriteVerboseOutput(destination);
                    if (options.Salvage != null)
                    {
                        WriteSalvageResult(file, destination, options.Salvage);
                    }
                    if (PassThru)
                    {
                        WriteObject(info);
                    }
                }
                catch (ImageException e)
                {
                    WriteImageError(e, destination);
                }
                catch (System.OverflowException e)
                {
                    WriteError(ErrorMessages.Record(ErrorCode.InvalidOption, e, destination));
                }
            }
        }
    }
}
