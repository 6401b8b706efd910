using System;
using System.Globalization;

namespace VDiskPS.Formats
{
    /// <summary>
    /// A size as users write it: bytes ("1073741824"), qemu-style suffixes ("20G", "512M", "1.5T",
    /// "64k"), PowerShell-style ("20GB", "20GiB"), optionally relative ("+10G", "-1G").
    /// Suffixes are binary (k = 1024), as in qemu-img.
    /// </summary>
    public readonly struct DiskSize : IEquatable<DiskSize>
    {
        private const string Suffixes = "BKMGTPE";

        public DiskSize(long bytes, int sign = 0)
        {
            if (bytes < 0)
            {
                throw new ArgumentOutOfRangeException(nameof(bytes));
            }

            Bytes = bytes;
            Sign = Math.Sign(sign);
        }

        /// <summary>The magnitude in bytes.</summary>
        public long Bytes { get; }

        /// <summary>0 for an absolute size, +1 for "+N", -1 for "-N".</summary>
        public int Sign { get; }

        public bool IsRelative => Sign != 0;

        /// <summary>The absolute size this denotes relative to <paramref name="current"/>.</summary>
        public long Resolve(long current)
        {
            if (Sign == 0)
            {
                return Bytes;
            }

            if (Sign > 0)
            {
                if (Bytes > long.MaxValue - current)
                {
                    throw new ImageOptionException(null, "size", $"{current} + {Bytes} bytes overflows a 64-bit size");
                }

                return current + Bytes;
            }

            if (Bytes > current)
            {
                throw new ImageOptionException(null, "size", $"cannot shrink by {Format(Bytes)}: the image is only {Format(current)}");
            }

            return current - Bytes;
        }

        public static DiskSize Parse(string text, string field = "size")
        {
            if (TryParse(text, out var size, out string error))
            {
                return size;
            }

            throw new ImageOptionException(null, field, error);
        }

        public static bool TryParse(string text, out DiskSize size, out string error)
        {
            size = default;
            error = null;
            if (string.IsNullOrWhiteSpace(text))
            {
                error = "a size is required (for example 20G, 512M or a byte count)";
                return false;
            }

            string s = text.Trim();
            int sign = 0;
            if (s[0] == '+' || s[0] == '-')
            {
                sign = s[0] == '+' ? 1 : -1;
                s = s.Substring(1).TrimStart();
            }

            int end = 0;
            while (end < s.Length && (char.IsDigit(s[end]) || s[end] == '.'))
            {
                end++;
            }

            if (end == 0)
            {
                error = $"'{text}' is not a size (expected a number with an optional k, M, G, T, P or E suffix)";
                return false;
            }

            string number = s.Substring(0, end);
            string suffix = s.Substring(end).Trim();
            int shift = 0;
            if (suffix.Length > 0)
            {
                int index = Suffixes.IndexOf(char.ToUpperInvariant(suffix[0]));
                string rest = suffix.Substring(1);
                bool restOk = rest.Length == 0 || (index > 0 && (rest.Equals("B", StringComparison.OrdinalIgnoreCase) || rest.Equals("iB", StringComparison.OrdinalIgnoreCase)));
                if (index < 0 || !restOk)
                {
                    error = $"'{text}' has an unknown size suffix '{suffix}' (use k, M, G, T, P or E)";
                    return false;
                }

                shift = index * 10;
            }

            if (!decimal.TryParse(number, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out decimal value))
            {
                error = $"'{text}' is not a number";
                return false;
            }

            decimal bytes;
            try
            {
                bytes = value * (1L << shift);
            }
            catch (OverflowException)
            {
                error = $"'{text}' is too large for a 64-bit size";
                return false;
            }

            if (bytes > long.MaxValue)
            {
                error = $"'{text}' is too large for a 64-bit size";
                return false;
            }

            if (bytes != decimal.Truncate(bytes))
            {
                error = $"'{text}' is not a whole number of bytes";
                return false;
            }

            size = new DiskSize((long)bytes, sign);
            return true;
        }

        /// <summary>Human form with binary units and at most two decimals, as qemu-img info prints ("20 GiB", "465.66 GiB"): never more than 11 characters, so a table column holds it whole.</summary>
        public static string Format(long bytes)
        {
            string[] units = { "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
            double v = bytes;
            int u = 0;
            while (Math.Abs(v) >= 1024 && u < units.Length - 1)
            {
                v /= 1024;
                u++;
            }

            return u == 0 ? $"{bytes} B" : v.ToString("0.##", CultureInfo.InvariantCulture) + " " + units[u];
        }

        public override string ToString() => (Sign > 0 ? "+" : Sign < 0 ? "-" : string.Empty) + Bytes.ToString(CultureInfo.InvariantCulture);

        public bool Equals(DiskSize other) => Bytes == other.Bytes && Sign == other.Sign;

        public override bool Equals(object obj) => obj is DiskSize other && Equals(other);

        public override int GetHashCode() => Bytes.GetHashCode() ^ Sign;
    }
}
