using System;
using System.Collections.Generic;
using System.IO;

namespace VDiskPS.Formats
{
    /// <summary>
    /// A way to reach bytes that are not a local file (NBD, HTTP, an archive member): it claims the
    /// locations it understands and opens them as a <see cref="HostFile"/> beneath any format.
    /// </summary>
    public interface IHostTransport
    {
        /// <summary>The transport's name in messages ("NBD", "HTTP").</summary>
        string Name { get; }

        /// <summary>True when <paramref name="location"/> is this transport's (a URL scheme it serves).</summary>
        bool Claims(string location);

        HostFile Open(string location, HostAccess access);

        /// <summary>
        /// How many reads a copy keeps in flight from this transport to hide the round trip (waiting, not
        /// processor work); 0 when the transport needs no more than the copy's workers (it reads ahead itself).
        /// </summary>
        int ReadsInFlight { get; }

        /// <summary>Resolves a path an image records (a backing file, an extent) against the location of that image.</summary>
        string Resolve(string imageLocation, string recorded);
    }

    /// <summary>
    /// The transports beneath formats, and the location rules every caller uses instead of
    /// <see cref="Path"/>: a location is a local path unless a transport claims it.
    /// </summary>
    public static class Transports
    {
        // The transports the engine has: the only list of them.
        private static readonly IHostTransport[] s_transports = { new Http.HttpTransport(), new Nbd.NbdTransport() };

        /// <summary>
        /// The transport that claims <paramref name="location"/>, or null for a local path. A URL no
        /// transport serves is refused by its scheme, never looked up as a file name.
        /// </summary>
        public static IHostTransport Find(string location)
        {
            if (!IsRemote(location))
            {
                return null;
            }

            foreach (IHostTransport transport in s_transports)
            {
                if (transport.Claims(location))
                {
                    return transport;
                }
            }

            string scheme = location.Substring(0, location.IndexOf(':'));
            throw new ImageNotSupportedException(location, "location", null, $"'{scheme}://' locations are not supported");
        }

        /// <summary>The most reads in flight any of <paramref name="locations"/> asks for (<see cref="IHostTransport.ReadsInFlight"/>); 0 for local files.</summary>
        public static int ReadsInFlight(IEnumerable<string> locations)
        {
            int most = 0;
            foreach (string location in locations)
            {
                most = Math.Max(most, Find(location)?.ReadsInFlight ?? 0);
            }

            return most;
        }

        /// <summary>True when <paramref name="location"/> is a URL (a scheme of two or more characters and "://"), not a local path.</summary>
        public static bool IsRemote(string location) => !string.IsNullOrEmpty(location) && LooksLikeUrl(location);

        /// <summary>The full form of a location: a URL as given, a local path made absolute.</summary>
        public static string GetFullLocation(string location) => IsRemote(location) ? location : Path.GetFullPath(location);

        /// <summary>Whether a location can be opened: a local file that exists, or any remote location (the open says why not).</summary>
        public static bool Exists(string location) => IsRemote(location) || File.Exists(location);

        /// <summary>Resolves a recorded path against the location of the image that records it.</summary>
        public static string Resolve(string imageLocation, string recorded, Func<string, string, string> localResolve)
        {
            if (IsRemote(recorded))
            {
                return recorded;
            }

            IHostTransport transport = Find(imageLocation);
            return transport != null
                ? transport.Resolve(imageLocation, recorded)
                : localResolve(Path.GetDirectoryName(Path.GetFullPath(imageLocation)) ?? string.Empty, recorded);
        }

        /// <summary>The last path segment of a location, as a file name ("disk.qcow2" of a URL or a path).</summary>
        public static string FileNameOf(string location)
        {
            if (IsRemote(location) && Uri.TryCreate(location, UriKind.Absolute, out Uri uri))
            {
                string segment = uri.AbsolutePath;
                int slash = segment.LastIndexOf('/');
                return Uri.UnescapeDataString(slash >= 0 ? segment.Substring(slash + 1) : segment);
            }

            return Path.GetFileName(location);
        }

        /// <summary>A scheme of two or more letters followed by "://" (so "C:\x" is a path).</summary>
        private static bool LooksLikeUrl(string location)
        {
            int colon = location.IndexOf("://", StringComparison.Ordinal);
            if (colon < 2)
            {
                return false;
            }

            for (int i = 0; i < colon; i++)
            {
                char c = location[i];
                bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (i > 0 && ((c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.'));
                if (!ok)
                {
                    return false;
                }
            }

            return true;
        }
    }
}
