using System.Management.Automation;
using VDiskPS.Formats;

namespace VDiskPS
{
    /// <summary>
    /// A cmdlet that reads images which may be remote (https://...): -Path/-LiteralPath plus
    /// -Credential for servers that ask for one and -SkipCertificateCheck, as Invoke-WebRequest has them.
    /// </summary>
    public abstract class VDiskSourceCmdlet : VDiskPathCmdlet
    {
        /// <summary>The user name and password for a server that asks for them (HTTP basic or digest authentication), for every URL the cmdlet opens, backing files included.</summary>
        [Parameter]
        [Credential]
        public PSCredential Credential { get; set; }

        /// <summary>Accept the server's TLS certificate without checking it (self-signed, expired, another host's), as Invoke-WebRequest -SkipCertificateCheck.</summary>
        [Parameter]
        public SwitchParameter SkipCertificateCheck { get; set; }

        protected override TransportOptions RemoteOptions => RemoteParameters.Options(Credential, SkipCertificateCheck);
    }

    /// <summary>-Credential and -SkipCertificateCheck as the engine's <see cref="TransportOptions"/>.</summary>
    internal static class RemoteParameters
    {
        public static TransportOptions Options(PSCredential credential, SwitchParameter skipCertificateCheck) => new TransportOptions
        {
            Credential = credential == null || credential == PSCredential.Empty ? null : credential.GetNetworkCredential(),
            SkipCertificateCheck = skipCertificateCheck.IsPresent,
        };
    }
}
