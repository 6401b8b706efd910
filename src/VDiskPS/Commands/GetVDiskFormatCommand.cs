using System.Linq;
using System.Management.Automation;
using VDiskPS.Formats;

namespace VDiskPS.Commands
{
    /// <summary>Get-VDiskFormat: the image formats this build reads and writes, with their extensions, subformats and create options.</summary>
    [Cmdlet(VerbsCommon.Get, "VDiskFormat")]
    [OutputType(typeof(VDiskFormatInfo))]
    public sealed class GetVDiskFormatCommand : VDiskCmdlet
    {
        /// <summary>Only the formats with these names (wildcards allowed; qemu's names match too); all when omitted.</summary>
        [Parameter(Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
        [SupportsWildcards]
        [ArgumentCompleter(typeof(ReadableFormatCompleter))]
        public string[] Name { get; set; }

        /// <summary>Only the formats this build creates and writes (the targets of Convert-VDisk and New-VDisk).</summary>
        [Parameter]
        public SwitchParameter Writable { get; set; }

        protected override void ProcessRecord()
        {
            var drivers = FormatRegistry.Default.Drivers.Where(d => !Writable || d is ICreatableDriver).ToList();
            if (Name == null)
            {
                drivers.ForEach(d => WriteObject(new VDiskFormatInfo(d)));
                return;
            }

            foreach (string name in Name)
            {
                var pattern = new WildcardPattern(name, WildcardOptions.IgnoreCase);
                var matches = drivers.Where(d => pattern.IsMatch(d.Format.Name) || pattern.IsMatch(d.QemuName)).ToList();
                if (matches.Count == 0 && !WildcardPattern.ContainsWildcardCharacters(name))
                {
                    WriteError(ErrorMessages.Record(ErrorCode.FormatNotFound, new ItemNotFoundException($"There is no {(Writable ? "writable " : string.Empty)}format named '{name}'. Formats: {string.Join(", ", drivers.Select(d => d.Format.Name))}."), name));
                    continue;
                }

                matches.ForEach(d => WriteObject(new VDiskFormatInfo(d)));
            }
        }
    }
}
