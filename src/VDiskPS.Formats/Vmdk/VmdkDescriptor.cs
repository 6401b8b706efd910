using System;
using System.Collections.Generic;
using System.Globalization;
using System.Text;

namespace VDiskPS.Formats.Vmdk
{
    /// <summary>One line of the descriptor's extent section: access, size in sectors, type, file, offset.</summary>
    internal sealed class ExtentLine
    {
        public string Access { get; set; } = "RW";

        public long Sectors { get; set; }

        /// <summary>SPARSE, FLAT, ZERO, VMFS, VMFSSPARSE, SESPARSE, VMFSRDM, VMFSRAW.</summary>
        public string Type { get; set; }

        public string FileName { get; set; }

        /// <summary>Start of the extent's data in its file, in sectors (flat extents).</summary>
        public long Offset { get; set; }

        public override string ToString()
        {
            if (Type == "ZERO")
            {
                return $"{Access} {Sectors} ZERO";
            }

            string text = $"{Access} {Sectors} {Type} \"{FileName}\"";
            return Type == "FLAT" || Offset != 0 ? text + " " + Offset.ToString(CultureInfo.InvariantCulture) : text;
        }
    }

    /// <summary>
    /// The text descriptor (VMware Virtual Disk Format 5.0, "The Descriptor File"): header keys
    /// (version, CID, parentCID, createType, parentFileNameHint), the extent lines and the disk database.
    /// </summary>
    internal sealed class VmdkDescriptor
    {
        /// <summary>parentCID of a disk without a parent.</summary>
        public const uint NoParentCid = 0xFFFFFFFF;

        /// <summary>Descriptors past this size are refused: real ones are a few hundred bytes.</summary>
        public const int MaxSize = 1 << 20;

        private const int MaxExtents = 1 << 16;

        private static readonly string[] s_extentTypes = { "SPARSE", "FLAT", "ZERO", "VMFS", "VMFSSPARSE", "VMFSRDM", "VMFSRAW", "SESPARSE" };

        public int Version { get; set; } = 1;

        public string Encoding { get; set; }

        public uint Cid { get; set; }

        public uint ParentCid { get; set; } = NoParentCid;

        public string CreateType { get; set; }

        public string ParentFileNameHint { get; set; }

        /// <summary>isNativeSnapshot, written by VMware tools into stream-optimized descriptors.</summary>
        public string IsNativeSnapshot { get; set; }

        public List<ExtentLine> Extents { get; } = new List<ExtentLine>();

        /// <summary>Disk database entries (ddb.*), in file order.</summary>
        public List<KeyValuePair<string, string>> Database { get; } = new List<KeyValuePair<string, string>>();

        public string GetDatabase(string key)
        {
            foreach (var entry in Database)
            {
                if (string.Equals(entry.Key, key, StringComparison.OrdinalIgnoreCase))
                {
                    return entry.Value;
                }
            }

            return null;
        }

        public void SetDatabase(string key, string value)
        {
            for (int i = 0; i < Database.Count; i++)
            {
                if (string.Equals(Database[i].Key, key, StringComparison.OrdinalIgnoreCase))
                {
                    Database[i] = new KeyValuePair<string, string>(key, value);
                    return;
                }
            }

            Database.Add(new KeyValuePair<string, string>(key, value));
        }

        public void RemoveDatabase(string key)
        {
            Database.RemoveAll(entry => string.Equals(entry.Key, key, StringComparison.OrdinalIgnoreCase));
        }

        /// <summary>True when the bytes look like descriptor text (for probing a separate descriptor file).</summary>
        public static bool LooksLikeDescriptor(ReadOnlySpan<byte> head)
        {
            // qemu pads a rewritten descriptor file with NULs; the text ends at the first one.
            int n = Math.Min(head.Length, 4096);
            for (int i = 0; i < n; i++)
            {
                byte b = head[i];
                if (b == 0)
                {
                    n = i;
                    break;
                }

                if (b < 0x09 || (b > 0x0D && b < 0x20))
                {
                    return false;
                }
            }

            string text = System.Text.Encoding.ASCII.GetString(head.Slice(0, n).ToArray());
            return text.IndexOf("# Disk DescriptorFile", StringComparison.OrdinalIgnoreCase) >= 0
                || (text.IndexOf("createType", StringComparison.OrdinalIgnoreCase) >= 0 && text.IndexOf("version", StringComparison.OrdinalIgnoreCase) >= 0);
        }

        /// <summary>Parses descriptor text; <paramref name="path"/> names the file in errors.</summary>
        public static VmdkDescriptor Parse(string text, string path, long fileOffset)
        {
            var descriptor = new VmdkDescriptor();
            bool sawCid = false;
            int lineNumber = 0;
            foreach (string rawLine in text.Split('\n'))
            {
                lineNumber++;
                string line = rawLine.Trim().TrimEnd('\0').Trim();
                if (line.Length == 0 || line[0] == '#')
                {
                    continue;
                }

                ExtentLine extent = TryParseExtent(line, path, fileOffset, lineNumber);
                if (extent != null)
                {
                    if (descriptor.Extents.Count >= MaxExtents)
                    {
                        throw new ImageCorruptException(path, "descriptor extents", fileOffset, $"more than {MaxExtents} extents");
                    }

                    descriptor.Extents.Add(extent);
                    continue;
                }

                int eq = line.IndexOf('=');
                if (eq <= 0)
                {
                    throw new ImageCorruptException(path, $"descriptor line {lineNumber}", fileOffset, $"'{Shorten(line)}' is neither 'key = value' nor an extent line");
                }

                string key = line.Substring(0, eq).Trim();
                string value = Unquote(line.Substring(eq + 1).Trim());
                if (key.StartsWith("ddb.", StringComparison.OrdinalIgnoreCase))
                {
                    descriptor.Database.Add(new KeyValuePair<string, string>(key, value));
                    continue;
                }

                switch (key.ToLowerInvariant())
                {
                    case "version":
                        if (!int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out int version) || version < 1 || version > 3)
                        {
                            throw new ImageNotSupportedException(path, "descriptor version", fileOffset, $"descriptor version '{Shorten(value)}' is not 1, 2 or 3");
                        }

                        descriptor.Version = version;
                        break;
                    case "encoding":
                        descriptor.Encoding = value;
                        break;
                    case "cid":
                        descriptor.Cid = ParseCid(value, path, "CID", fileOffset);
                        sawCid = true;
                        break;
                    case "parentcid":
                        descriptor.ParentCid = ParseCid(value, path, "parentCID", fileOffset);
                        break;
                    case "createtype":
                        descriptor.CreateType = value;
                        break;
                    case "isnativesnapshot":
                        descriptor.IsNativeSnapshot = value;
                        break;
                    case "parentfilenamehint":
                        descriptor.ParentFileNameHint = value;
                        break;
                    default:
                        // Other header keys carry nothing this reader needs.
                        break;
                }
            }

            if (!sawCid && descriptor.Extents.Count == 0 && descriptor.CreateType == null)
            {
                throw new ImageCorruptException(path, "descriptor", fileOffset, "the descriptor has no CID, createType or extents");
            }

            return descriptor;
        }

        public string ToText()
        {
            var sb = new StringBuilder();
            sb.Append("# Disk DescriptorFile\n");
            sb.Append("version=").Append(Version.ToString(CultureInfo.InvariantCulture)).Append('\n');
            if (Encoding != null)
            {
                sb.Append("encoding=\"").Append(Encoding).Append("\"\n");
            }

            sb.Append("CID=").Append(Cid.ToString("x8", CultureInfo.InvariantCulture)).Append('\n');
            sb.Append("parentCID=").Append(ParentCid.ToString("x8", CultureInfo.InvariantCulture)).Append('\n');
            if (IsNativeSnapshot != null)
            {
                sb.Append("isNativeSnapshot=\"").Append(IsNativeSnapshot).Append("\"\n");
            }

            sb.Append("createType=\"").Append(CreateType).Append("\"\n");
            if (ParentFileNameHint != null)
            {
                sb.Append("parentFileNameHint=\"").Append(ParentFileNameHint).Append("\"\n");
            }

            sb.Append("\n# Extent description\n");
            foreach (var extent in Extents)
            {
                sb.Append(extent).Append('\n');
            }

            sb.Append("\n# The Disk Data Base\n#DDB\n\n");
            foreach (var entry in Database)
            {
                sb.Append(entry.Key).Append(" = \"").Append(entry.Value).Append("\"\n");
            }

            return sb.ToString();
        }

        private static ExtentLine TryParseExtent(string line, string path, long fileOffset, int lineNumber)
        {
            string[] words = line.Split(new[] { ' ', '\t' }, 4, StringSplitOptions.RemoveEmptyEntries);
            if (words.Length < 3 || (words[0] != "RW" && words[0] != "RDONLY" && words[0] != "NOACCESS"))
            {
                return null;
            }

            string field = $"descriptor extent line {lineNumber}";
            if (!long.TryParse(words[1], NumberStyles.None, CultureInfo.InvariantCulture, out long sectors) || sectors < 0 || sectors > (1L << 40))
            {
                throw new ImageCorruptException(path, field, fileOffset, $"extent size '{Shorten(words[1])}' is not a sector count between 0 and 2^40");
            }

            string type = words[2].ToUpperInvariant();
            if (Array.IndexOf(s_extentTypes, type) < 0)
            {
                throw new ImageCorruptException(path, field, fileOffset, $"unknown extent type '{Shorten(words[2])}'");
            }

            var extent = new ExtentLine { Access = words[0], Sectors = sectors, Type = type };
            if (type == "ZERO")
            {
                return extent;
            }

            string rest = words.Length > 3 ? words[3].Trim() : string.Empty;
            if (rest.Length < 2 || rest[0] != '"')
            {
                throw new ImageCorruptException(path, field, fileOffset, "the extent has no quoted file name");
            }

            int close = rest.IndexOf('"', 1);
            if (close < 0)
            {
                throw new ImageCorruptException(path, field, fileOffset, "the extent file name has no closing quote");
            }

            extent.FileName = rest.Substring(1, close - 1);
            if (extent.FileName.Length == 0 || extent.FileName.IndexOf('\0') >= 0)
            {
                throw new ImageCorruptException(path, field, fileOffset, "the extent file name is empty or holds a NUL");
            }

            string offsetText = rest.Substring(close + 1).Trim();
            if (offsetText.Length > 0)
            {
                if (!long.TryParse(offsetText, NumberStyles.None, CultureInfo.InvariantCulture, out long offset) || offset > (1L << 40))
                {
                    throw new ImageCorruptException(path, field, fileOffset, $"extent offset '{Shorten(offsetText)}' is not a sector number");
                }

                extent.Offset = offset;
            }

            return extent;
        }

        private static uint ParseCid(string value, string path, string field, long fileOffset)
        {
            if (!uint.TryParse(value, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out uint cid))
            {
                throw new ImageCorruptException(path, field, fileOffset, $"'{Shorten(value)}' is not an 8-digit hexadecimal content id");
            }

            return cid;
        }

        private static string Unquote(string value)
        {
            if (value.Length >= 2 && value[0] == '"' && value[value.Length - 1] == '"')
            {
                return value.Substring(1, value.Length - 2);
            }

            return value;
        }

        private static string Shorten(string text) => text.Length > 60 ? text.Substring(0, 60) + "..." : text;
    }
}
