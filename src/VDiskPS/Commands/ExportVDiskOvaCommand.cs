using System.Collections.Generic;
using System.Management.Automation;
using VDiskPS.Formats;
using VDiskPS.Formats.Ova;

namespace VDiskPS.Commands
{
    /// <summary>Export-VDiskOva: disk images become an OVF appliance (.ova, or .ovf with its files), as ovftool or VirtualBox export one.</summary>
    [Cmdlet(VerbsData.Export, "VDiskOva", DefaultParameterSetName = ParameterSets.Path, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
    [OutputType(typeof(OvfVirtualMachine))]
    public sealed class ExportVDiskOvaCommand : VDiskPathCmdlet
    {
        private readonly List<string> _images = new List<string>();

        /// <summary>The .ova or .ovf file to write, or a folder to write NAME.ova (NAME.ovf with -Format ovf) in.</summary>
        [Parameter(Mandatory = true, Position = 1)]
        [Alias("DestinationPath")]
        [ValidateNotNullOrEmpty]
        public string Destination { get; set; }

        /// <summary>The virtual machine's name; default: the first image's file name without its extension. Also names the package's files.</summary>
        [Parameter]
        [ValidateNotNullOrEmpty]
        public string Name { get; set; }

        /// <summary>Virtual CPUs of the VM (default 1).</summary>
        [Parameter]
        [ValidateRange(1, 768)]
        public int CpuCount { get; set; } = 1;

        /// <summary>Memory of the VM in MiB (default 1024).</summary>
        [Parameter]
        [ValidateRange(4, 25165824)]
        public long MemoryMB { get; set; } = 1024;

        /// <summary>The firmware the VM boots with: Bios (default) or Efi.</summary>
        [Parameter]
        public OvfFirmware Firmware { get; set; }

        /// <summary>The guest operating system, by name (Other64, Linux64, Ubuntu64, Debian64, RHEL64, Windows10_64, WindowsServer2019, ...) or VMware guest id; default Other64.</summary>
        [Parameter]
        [ArgumentCompleter(typeof(OSTypeCompleter))]
        [ValidateNotNullOrEmpty]
        public string OSType { get; set; }

        /// <summary>The controller the disks hang on: Scsi (LSI Logic, default), Sata (AHCI) or Ide.</summary>
        [Parameter]
        public OvfControllerType Controller { get; set; }

        /// <summary>The layout: ova (one tar archive) or ovf (descriptor, disks and manifest side by side). Default: from the destination's extension, else ova.</summary>
        [Parameter]
        public OvaPackageFormat Format { get; set; }

        /// <summary>How many reads and compressions run in parallel. Default: the number of processor cores, and for a network source (NBD) up to 8 reads in flight besides; given, it bounds a network source's reads too.</summary>
        [Parameter]
        [ValidateRange(1, 64)]
        public int ThrottleLimit { get; set; }

        /// <summary>Overwrite an existing package; read images another process writes.</summary>
        [Parameter]
        public SwitchParameter Force { get; set; }

        protected override bool ForceSharesWithWriters => true;

        protected override void ProcessRecord()
        {
            // Every image of the pipeline becomes one disk of the one package.
            _images.AddRange(ResolvedImagePaths());
        }

        protected override void EndProcessing()
        {
            if (_images.Count == 0)
            {
                return;
            }

            var request = new OvaExportRequest
            {
                Images = _images,
                Destination = GetUnresolvedProviderPathFromPSPath(Destination),
                Name = Name,
                CpuCount = CpuCount,
                MemoryMB = MemoryMB,
                Firmware = Firmware,
                OSType = OSType,
                Controller = Controller,
                Format = IsBound(nameof(Format)) ? Format : (OvaPackageFormat?)null,
                Overwrite = Force.IsPresent,
                ShareWithWriters = Force.IsPresent,
                ThrottleLimit = IsBound(nameof(ThrottleLimit)) ? ThrottleLimit : System.Environment.ProcessorCount,
                ReadsInFlight = IsBound(nameof(ThrottleLimit)) ? (int?)ThrottleLimit : null,
            };
            string destination = request.Destination;
            try
            {
                destination = OvaExport.ResolveDestination(request).Path;
                if (!ShouldProcess(destination, $"Export {_images.Count} disk(s) ({string.Join(", ", _images)}) as an OVF package"))
                {
                    return;
                }

                WriteObject(RunEngine($"Export-VDiskOva -> {destination}", (progress, cancel) => OvaExport.Run(request, progress, cancel)));
            }
            catch (ImageException e)
            {
                WriteImageError(e, destination);
            }
        }

        /// <summary>Completes -OSType from the guest names the package can carry.</summary>
        private sealed class OSTypeCompleter : IArgumentCompleter
        {
            public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete, System.Management.Automation.Language.CommandAst commandAst, System.Collections.IDictionary fakeBoundParameters)
            {
                foreach (OvfGuest guest in OvfGuests.All)
                {
                    if (guest.Name.StartsWith(wordToComplete ?? string.Empty, System.StringComparison.OrdinalIgnoreCase))
                    {
                        yield return new CompletionResult(guest.Name, guest.Name, CompletionResultType.ParameterValue, guest.Description);
                    }
                }
            }
        }
    }
}
