using System;
using System.Linq;

namespace VDiskPS.Formats.Http
{
    /// <summary>
    /// http:// and https:// locations (qemu's curl driver): read-only, by range requests, beneath any
    /// format; from a server that ignores ranges, as the one whole-file answer read front to back
    /// (<see cref="HttpStreamFile"/>), beneath the formats that can be read so. Backing files and extents an image records resolve relative to its URL, so a chain
    /// published as a folder on a web server reads as it does on disk.
    /// </summary>
    internal sealed class HttpTransport : IHostTransport
    {
        public string Name => "HTTP";

        public bool Claims(string location)
            => location.StartsWith("http://", StringComparison.OrdinalIgnoreCase) || location.StartsWith("https://", StringComparison.OrdinalIgnoreCase);

        /// <summary>The source reads ahead over its own connections: the copy's workers are enough.</summary>
        public int ReadsInFlight => 0;

        public HostFile Open(string location, HostAccess access)
        {
            if (access == HostAccess.ReadWrite)
            {
                throw ReadOnly(location);
            }

            return HttpSource.Open(ParseLocation(location), location, TransportOptions.Current);
        }

        /// <summary>The refusal of a write to an HTTP location.</summary>
        internal static ImageNotSupportedException ReadOnly(string location) => new ImageNotSupportedException(location, "location", null, "an HTTP location is read-only: it cannot be written");

        /// <summary>
        /// A recorded path relative to the URL of the image that records it ("base.qcow2" beside it,
        /// "../base/b.qcow2", "/images/b.qcow2" on the same server), each segment escaped; backslashes
        /// (Windows-made images) separate segments.
        /// </summary>
        public string Resolve(string imageLocation, string recorded)
        {
            string relative = string.Join("/", recorded.Replace('\\', '/').Split('/').Select(Uri.EscapeDataString));
            return new Uri(ParseLocation(imageLocation), relative).AbsoluteUri;
        }

        private static Uri ParseLocation(string location)
        {
            if (!Uri.TryCreate(location, UriKind.Absolute, out Uri uri) || string.IsNullOrEmpty(uri.Host))
            {
                throw new ImageOptionException(location, "location", "not a valid http(s) URL");
            }

            // A password in the URL would show wherever the location is named (messages, Path properties).
            if (uri.UserInfo.Length > 0)
            {
                throw new ImageOptionException(uri.GetComponents(UriComponents.SchemeAndServer | UriComponents.PathAndQuery, UriFormat.UriEscaped), "location", "credentials in the URL are not accepted; give them as a credential");
            }

            return uri;
        }
    }
}
