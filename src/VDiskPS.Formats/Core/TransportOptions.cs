using System;
using System.Net;
using System.Threading;

namespace VDiskPS.Formats
{
    /// <summary>
    /// How remote locations are reached: the credential a server asks for and whether its TLS
    /// certificate is checked. A caller opens a <see cref="Use"/> scope around its engine call and every
    /// location opened inside it (the image, its backing files, on worker threads too) gets these
    /// options, so no format has to carry them. Without a scope: no credential, certificates checked.
    /// The password stays in the <see cref="NetworkCredential"/>: no message, log or exception shows it.
    /// </summary>
    public sealed class TransportOptions
    {
        private static readonly AsyncLocal<TransportOptions> s_current = new AsyncLocal<TransportOptions>();
        private static readonly TransportOptions s_default = new TransportOptions();

        /// <summary>The user name and password for servers that ask for them (HTTP basic/digest), or null.</summary>
        public NetworkCredential Credential { get; set; }

        /// <summary>Accept any TLS certificate (self-signed, expired, another host's), as Invoke-WebRequest -SkipCertificateCheck.</summary>
        public bool SkipCertificateCheck { get; set; }

        /// <summary>The options of the innermost <see cref="Use"/> scope, else the defaults.</summary>
        public static TransportOptions Current => s_current.Value ?? s_default;

        /// <summary>Applies <paramref name="options"/> to the locations opened until the returned scope is disposed.</summary>
        public static IDisposable Use(TransportOptions options)
        {
            TransportOptions previous = s_current.Value;
            s_current.Value = options;
            return new Scope(previous);
        }

        private sealed class Scope : IDisposable
        {
            private readonly TransportOptions _previous;

            public Scope(TransportOptions previous) => _previous = previous;

            public void Dispose() => s_current.Value = _previous;
        }
    }
}
