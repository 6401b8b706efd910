using System.Linq;
using System.Management.Automation;

namespace VDiskPS.Commands
{
    /// <summary>Get-VDiskServer: the NBD servers running in this session.</summary>
    [Cmdlet(VerbsCommon.Get, "VDiskServer")]
    [OutputType(typeof(VDiskServer))]
    public sealed class GetVDiskServerCommand : VDiskCmdlet
    {
        /// <summary>Only the servers with these ids; all when omitted.</summary>
        [Parameter(Position = 0, ValueFromPipelineByPropertyName = true)]
        public int[] Id { get; set; }

        protected override void ProcessRecord()
        {
            if (Id == null)
            {
                foreach (var server in VDiskServers.Servers)
                {
                    WriteObject(new VDiskServer(server));
                }

                return;
            }

            foreach (int id in Id)
            {
                var server = VDiskServers.FindServer(id);
                if (server == null)
                {
                    WriteError(ErrorMessages.Record(ErrorCode.ServerNotFound, new ItemNotFoundException($"There is no NBD server with id {id} in this session."), id));
                    continue;
                }

                WriteObject(new VDiskServer(server));
            }
        }
    }
}
