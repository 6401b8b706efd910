using System.Management.Automation;
using VDiskPS.Formats;

namespace VDiskPS.Commands
{
    /// <summary>Sync-VDisk: makes an existing image's content equal to a source's, writing only blocks that differ.</summary>
    [Cmdlet(VerbsData.Sync, "VDisk", DefaultParameterSetName = ParameterSets.Path, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
    [OutputType(typeof(VDiskSyncResult))]
    public sealed class SyncVDiskCommand : VDiskSourceCmdlet
    {
        /// <summary>The existing image to bring up to date (often an overlay, which stays minimal).</summary>
        [Parameter(Mandatory = true, Position = 1)]
        [ValidateNotNullOrEmpty]
        public string Destination { get; set; }

        /// <summary>Bytes compared (and, when they differ, written) at a time; default: the destination's cluster size.</summary>
        [Parameter]
        [SizeTransformation]
        public ulong BlockSize { get; set; }

        /// <summary>The source image's format; probed when omitted.</summary>
        [Parameter]
        [ValidateReadableFormat]
        [ArgumentCompleter(typeof(ReadableFormatCompleter))]
        public string Format { get; set; }

        /// <summary>The destination image's format; probed when omitted.</summary>
        [Parameter]
        [ValidateWritableFormat]
        [ArgumentCompleter(typeof(WritableFormatCompleter))]
        public string DestinationFormat { get; set; }

        /// <summary>Grow a destination smaller than the source instead of failing.</summary>
        [Parameter]
        public SwitchParameter ResizeDestination { get; set; }

        /// <summary>Read a source another process is writing (qemu-img -U).</summary>
        [Parameter]
        public SwitchParameter Force { get; set; }

        protected override bool ForceSharesWithWriters => true;

        protected override void ProcessRecord()
        {
            foreach (string file in ResolvedImagePaths())
            {
                string destination = GetUnresolvedProviderPathFromPSPath(Destination);
                if (!ShouldProcess(destination, $"Write the blocks that differ from '{file}'"))
                {
                    continue;
                }

                try
                {
                    var options = new SyncOptions
                    {
                        SourceFormat = ParseFormat(Format),
                        DestinationFormat = ParseFormat(DestinationFormat),
                        BlockSize = checked((int)BlockSize),
                        ResizeDestination = ResizeDestination.IsPresent,
                        ShareWithWriters = Force.IsPresent,
                    };
                    WriteVerboseChain(file, options.SourceFormat, Force.IsPresent);
                    VDiskSyncResult result = RunEngine(Activity("Sync-VDisk", file, destination), (p, c) => SyncOperation.Run(file, destination, options, p, c));
                    WriteVerbose($"'{destination}': {DiskSize.Format(result.Written)} written, {DiskSize.Format(result.Skipped)} already equal");
                    WriteObject(result);
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
