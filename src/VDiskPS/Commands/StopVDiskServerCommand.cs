using System.Management.Automation;
using VDiskPS.Formats;

namespace VDiskPS.Commands
{
    /// <summary>Stop-VDiskServer: stops NBD servers of this session (clients are disconnected, the image flushed and closed).</summary>
    [Cmdlet(VerbsLifecycle.Stop, "VDiskServer", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
    [OutputType(typeof(VDiskServer))]
    public sealed class StopVDiskServerCommand : VDiskCmdlet
    {
        /// <summary>The servers to stop; Get-VDiskServer output binds by its Id.</summary>
        [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
        public int[] Id { get; set; }

        /// <summary>Return the stopped servers.</summary>
        [Parameter]
        public SwitchParameter PassThru { get; set; }

        protected override void ProcessRecord()
        {
            foreach (int id in Id)
            {
                var server = VDiskServers.FindServer(id);
                if (server == null)
                {
                    WriteError(ErrorMessages.Record(ErrorCode.ServerNotFound, new ItemNotFoundException($"There is no NBD server with id {id} in this session."), id));
                    continue;
                }

                if (!ShouldProcess($"{server.Uri} ({server.Path})", "Stop NBD server"))
                {
                    continue;
                }

                try
                {
                    VDiskServers.Stop(server);
                }
                catch (ImageException e)
                {
                    WriteImageError(e, server.Path);
                    continue;
                }

                if (PassThru)
                {
                    WriteObject(new VDiskServer(server));
                }
            }
        }
    }
}
