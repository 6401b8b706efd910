using System;
using System.Collections.Generic;
using System.Text;
using System.Text.RegularExpressions;

namespace VDiskPS.Formats.Ova
{
    /// <summary>
    /// The manifest (.mf) of an OVF package: one "ALG(FILE)= HEX" line per file (ovftool's form; the
    /// "ALG (FILE) = HEX" form of openssl/VirtualBox is read too). SHA1, SHA256 and SHA512 are checked.
    /// </summary>
    internal static class OvfManifest
    {
        /// <summary>Manifests larger than this are refused (one line per file).</summary>
        public const int MaxSize = 1 << 20;

        private static readonly Regex s_line = new Regex(@"^\s*(SHA1|SHA256|SHA512)\s*\((.+)\)\s*=\s*([0-9A-Fa-f]+)\s*$", RegexOptions.CultureInvariant);

        /// <summary>The digests by file name, with the algorithm of each.</summary>
        public static Dictionary<string, (string Algorithm, string Digest)> Parse(byte[] bytes, string path)
        {
            if (bytes.Length > MaxSize)
            {
                throw new ImageCorruptException(path, "manifest", 0, $"the manifest is {bytes.Length} bytes long; at most {MaxSize} are accepted");
            }

            var digests = new Dictionary<string, (string, string)>(StringComparer.Ordinal);
            string[] lines = Encoding.UTF8.GetString(bytes).Split('\n');
            for (int i = 0; i < lines.Length; i++)
            {
                string line = lines[i].TrimEnd('\r');
                if (line.Trim().Length == 0)
                {
                    continue;
                }

                Match match = s_line.Match(line);
                if (!match.Success)
                {
                    throw new ImageCorruptException(path, "manifest", null, $"line {i + 1} is not \"SHA256(FILE)= DIGEST\": '{line}'");
                }

                string algorithm = match.Groups[1].Value;
                string digest = match.Groups[3].Value.ToLowerInvariant();
                int expected = algorithm == "SHA1" ? 40 : algorithm == "SHA256" ? 64 : 128;
                if (digest.Length != expected)
                {
                    throw new ImageCorruptException(path, "manifest", null, $"line {i + 1}: a {algorithm} digest has {expected} hex digits, not {digest.Length}");
                }

                digests[match.Groups[2].Value] = (algorithm, digest);
            }

            return digests;
        }

        /// <summary>The manifest text for files and their SHA256 digests, in the order given.</summary>
        public static string Write(IEnumerable<KeyValuePair<string, string>> sha256ByFile)
        {
            var text = new StringBuilder();
            foreach (var entry in sha256ByFile)
            {
                text.Append("SHA256(").Append(entry.Key).Append(")= ").Append(entry.Value).Append('\n');
            }

            return text.ToString();
        }
    }
}
