using System;

namespace VDiskPS.Formats.Nbd
{
    /// <summary>
    /// An NBD URI (NetworkBlockDevice/nbd doc/uri.md): <c>nbd://host[:port]/export</c> over TCP and
    /// <c>nbd+unix:///export?socket=PATH</c> over a Unix socket. The export name is the path after the
    /// first slash, percent-decoded; an empty one is the server's default export. TLS schemes
    /// (nbds, nbds+unix) and vsock are refused by name.
    /// </summary>
    internal sealed class NbdClientLocation
    {
        private NbdClientLocation(string location, string host, int port, string socketPath, string exportName)
        {
            Location = location;
            Host = host;
            Port = port;
            SocketPath = socketPath;
            ExportName = exportName;
        }

        public string Location { get; }

        /// <summary>The TCP host (null over a Unix socket).</summary>
        public string Host { get; }

        public int Port { get; }

        /// <summary>The Unix socket path (null over TCP).</summary>
        public string SocketPath { get; }

        public string ExportName { get; }

        public static bool IsNbd(string location)
            => location != null && (location.StartsWith("nbd://", StringComparison.OrdinalIgnoreCase)
                || location.StartsWith("nbd+", StringComparison.OrdinalIgnoreCase)
                || location.StartsWith("nbds://", StringComparison.OrdinalIgnoreCase)
                || location.StartsWith("nbds+", StringComparison.OrdinalIgnoreCase));

        public static NbdClientLocation Parse(string location)
        {
            int schemeEnd = location.IndexOf("://", StringComparison.Ordinal);
            string scheme = location.Substring(0, schemeEnd).ToLowerInvariant();
            if (scheme == "nbds" || scheme == "nbds+unix")
            {
                throw new ImageNotSupportedException(location, "location", null, "NBD over TLS (nbds://) is not supported by this client; reach the server over a trusted network or a Unix socket with nbd:// or nbd+unix://");
            }

            if (scheme != "nbd" && scheme != "nbd+unix")
            {
                throw new ImageNotSupportedException(location, "location", null, $"'{scheme}://' is not an NBD transport this client has (nbd://, nbd+unix://)");
            }

            string rest = location.Substring(schemeEnd + 3);
            string query = null;
            int question = rest.IndexOf('?');
            if (question >= 0)
            {
                query = rest.Substring(question + 1);
                rest = rest.Substring(0, question);
            }

            int fragment = (query ?? string.Empty).IndexOf('#');
            if (fragment >= 0)
            {
                query = query.Substring(0, fragment);
            }

            int slash = rest.IndexOf('/');
            string authority = slash >= 0 ? rest.Substring(0, slash) : rest;
            string exportName = slash >= 0 ? Uri.UnescapeDataString(rest.Substring(slash + 1)) : string.Empty;
            if (exportName.Length > NbdProtocol.MaxString)
            {
                throw new ImageOptionException(location, "export name", $"the export name is {exportName.Length} characters long; NBD allows {NbdProtocol.MaxString}");
            }

            string socketPath = QueryValue(query, "socket");
            if (scheme == "nbd+unix")
            {
                if (authority.Length != 0)
                {
                    throw new ImageOptionException(location, "location", "an nbd+unix:// location has no host: write nbd+unix:///EXPORT?socket=PATH");
                }

                if (string.IsNullOrEmpty(socketPath))
                {
                    throw new ImageOptionException(location, "socket", "an nbd+unix:// location needs the socket path: nbd+unix:///EXPORT?socket=PATH");
                }

                return new NbdClientLocation(location, null, 0, socketPath, exportName);
            }

            if (socketPath != null)
            {
                throw new ImageOptionException(location, "socket", "socket= belongs to nbd+unix:// locations; nbd:// is TCP");
            }

            (string host, int port) = SplitAuthority(location, authority);
            return new NbdClientLocation(location, host, port, null, exportName);
        }

        public override string ToString() => Location;

        private static (string Host, int Port) SplitAuthority(string location, string authority)
        {
            if (authority.IndexOf('@') >= 0)
            {
                throw new ImageOptionException(location, "location", "NBD locations carry no user name or password");
            }

            string host = authority;
            string portText = null;
            if (authority.StartsWith("[", StringComparison.Ordinal))
            {
                int close = authority.IndexOf(']');
                if (close < 0)
                {
                    throw new ImageOptionException(location, "host", "the IPv6 address has no closing ']'");
                }

                host = authority.Substring(1, close - 1);
                if (close + 1 < authority.Length)
                {
                    if (authority[close + 1] != ':')
                    {
                        throw new ImageOptionException(location, "host", "unexpected text after the IPv6 address");
                    }

                    portText = authority.Substring(close + 2);
                }
            }
            else
            {
                int colon = authority.LastIndexOf(':');
                if (colon >= 0)
                {
                    host = authority.Substring(0, colon);
                    portText = authority.Substring(colon + 1);
                }
            }

            int port = NbdProtocol.DefaultPort;
            if (!string.IsNullOrEmpty(portText) && (!int.TryParse(portText, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out port) || port < 1 || port > 65535))
            {
                throw new ImageOptionException(location, "port", $"'{portText}' is not a TCP port (1 to 65535)");
            }

            host = Uri.UnescapeDataString(host);
            return (host.Length == 0 ? "localhost" : host, port);
        }

        private static string QueryValue(string query, string name)
        {
            if (string.IsNullOrEmpty(query))
            {
                return null;
            }

            foreach (string pair in query.Split('&', ';'))
            {
                int equals = pair.IndexOf('=');
                string key = equals >= 0 ? pair.Substring(0, equals) : pair;
                if (string.Equals(Uri.UnescapeDataString(key), name, StringComparison.Ordinal))
                {
                    return equals >= 0 ? Uri.UnescapeDataString(pair.Substring(equals + 1)) : string.Empty;
                }
            }

            return null;
        }

        /// <summary>Where to connect, in messages: "host:port" or the socket path.</summary>
        public string Endpoint => SocketPath ?? (Host.IndexOf(':') >= 0 ? $"[{Host}]:{Port}" : $"{Host}:{Port}");
    }
}
