using System.Management.Automation;
using VDiskPS.Formats;
using VDiskPS.Formats.Ova;

namespace VDiskPS.Commands
{
    /// <summary>Get-VDiskOva: the virtual machine an OVA or OVF package describes (name, CPUs, memory, firmware, disks), to size the VM it becomes.</summary>
    [Cmdlet(VerbsCommon.Get, "VDiskOva", DefaultParameterSetName = ParameterSets.Path)]
    [OutputType(typeof(OvfVirtualMachine))]
    public sealed class GetVDiskOvaCommand : VDiskSourceCmdlet
    {
        /// <summary>Read a package another process writes.</summary>
        [Parameter]
        public SwitchParameter Force { get; set; }

        protected override bool ForceSharesWithWriters => true;

        protected override void ProcessRecord()
        {
            foreach (string file in ResolvedImagePaths())
            {
                try
                {
                    WriteObject(WithImageWarnings(() =>
                    {
                        using (OvfPackage package = OvfPackage.Open(file, Force.IsPresent))
                        {
                            return package.Machine;
                        }
                    }));
                }
                catch (ImageException e)
                {
                    WriteImageError(e, file);
                }
            }
        }
    }
}
