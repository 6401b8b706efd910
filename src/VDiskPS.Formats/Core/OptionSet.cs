using System;
using System.Collections;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using System.Text;

namespace VDiskPS.Formats
{
    /// <summary>
    /// qemu-style format options ("cluster_size=64k,lazy_refcounts=on"). Keys are case-insensitive.
    /// A format reads the keys it knows through the typed getters, then calls
    /// <see cref="RejectUnknown(string, IEnumerable{string})"/> so that a misspelt key is refused by name, never ignored.
    /// </summary>
    public sealed class OptionSet
    {
        private readonly Dictionary<string, string> _values = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        private readonly HashSet<string> _consumed = new HashSet<string>(StringComparer.OrdinalIgnoreCase);

        public OptionSet()
        {
        }

        public OptionSet(IDictionary values)
        {
            if (values == null)
            {
                return;
            }

            foreach (DictionaryEntry entry in values)
            {
                Set(Convert.ToString(entry.Key, CultureInfo.InvariantCulture), ValueToString(entry.Value));
            }
        }

        public IEnumerable<string> Keys => _values.Keys;

        public int Count => _values.Count;

        /// <summary>Parses "k=v,k=v"; a doubled comma is a literal comma (qemu's escaping); "k" alone means "k=on".</summary>
        public static OptionSet Parse(string text)
        {
            var set = new OptionSet();
            if (string.IsNullOrWhiteSpace(text))
            {
                return set;
            }

            var parts = new List<string>();
            var current = new StringBuilder();
            for (int i = 0; i < text.Length; i++)
            {
                char c = text[i];
                if (c == ',')
                {
                    if (i + 1 < text.Length && text[i + 1] == ',')
                    {
                        current.Append(',');
                        i++;
                        continue;
                    }

                    parts.Add(current.ToString());
                    current.Clear();
                    continue;
                }

                current.Append(c);
            }

            parts.Add(current.ToString());
            foreach (string part in parts)
            {
                if (part.Trim().Length == 0)
                {
                    continue;
                }

                int eq = part.IndexOf('=');
                string key = (eq < 0 ? part : part.Substring(0, eq)).Trim();
                string value = eq < 0 ? "on" : part.Substring(eq + 1);
                if (key.Length == 0)
                {
                    throw new ImageOptionException(null, "option", $"option '{part}' has no name");
                }

                set.Set(key, value);
            }

            return set;
        }

        /// <summary>Merges options given as a hashtable, a "k=v,..." string, or another set.</summary>
        public static OptionSet From(object value)
        {
            switch (value)
            {
                case null:
                    return new OptionSet();
                case OptionSet set:
                    return set.Clone();
                case string s:
                    return Parse(s);
                case IDictionary d:
                    return new OptionSet(d);
                default:
                    return Parse(Convert.ToString(value, CultureInfo.InvariantCulture));
            }
        }

        public OptionSet Clone()
        {
            var copy = new OptionSet();
            foreach (var kv in _values)
            {
                copy._values[kv.Key] = kv.Value;
            }

            return copy;
        }

        public void Set(string key, string value)
        {
            string normalized = NormalizeKey(key);
            if (_values.TryGetValue(normalized, out string existing) && existing != value)
            {
                throw new ImageOptionException(null, normalized, $"option '{normalized}' is given twice ('{existing}' and '{value}')");
            }

            _values[normalized] = value;
        }

        /// <summary>Sets a value only when the key is absent (used to fold dedicated cmdlet parameters in).</summary>
        public void SetDefault(string key, string value)
        {
            if (value != null && !_values.ContainsKey(NormalizeKey(key)))
            {
                _values[NormalizeKey(key)] = value;
            }
        }

        public bool Contains(string key) => _values.ContainsKey(NormalizeKey(key));

        public string GetString(string key)
        {
            key = NormalizeKey(key);
            if (_values.TryGetValue(key, out string value))
            {
                _consumed.Add(key);
                return value;
            }

            return null;
        }

        public long? GetSize(string key, long min = 0, long max = long.MaxValue)
        {
            string text = GetString(key);
            if (text == null)
            {
                return null;
            }

            if (!DiskSize.TryParse(text, out var size, out string error) || size.IsRelative)
            {
                throw new ImageOptionException(null, NormalizeKey(key), error ?? $"'{text}' must be an absolute size");
            }

            if (size.Bytes < min || size.Bytes > max)
            {
                throw new ImageOptionException(null, NormalizeKey(key), $"{size.Bytes} is out of range ({min} to {max})");
            }

            return size.Bytes;
        }

        public int? GetInt(string key, int min = int.MinValue, int max = int.MaxValue)
        {
            string text = GetString(key);
            if (text == null)
            {
                return null;
            }

            if (!int.TryParse(text.Trim(), NumberStyles.Integer, CultureInfo.InvariantCulture, out int value))
            {
                throw new ImageOptionException(null, NormalizeKey(key), $"'{text}' is not a whole number");
            }

            if (value < min || value > max)
            {
                throw new ImageOptionException(null, NormalizeKey(key), $"{value} is out of range ({min} to {max})");
            }

            return value;
        }

        public bool? GetBool(string key)
        {
            string text = GetString(key);
            if (text == null)
            {
                return null;
            }

            switch (text.Trim().ToLowerInvariant())
            {
                case "on":
                case "true":
                case "yes":
                case "1":
                    return true;
                case "off":
                case "false":
                case "no":
                case "0":
                    return false;
                default:
                    throw new ImageOptionException(null, NormalizeKey(key), $"'{text}' is not on/off");
            }
        }

        /// <summary>Reads one of a fixed set of words; the error lists them.</summary>
        public string GetChoice(string key, params string[] choices)
        {
            string text = GetString(key);
            if (text == null)
            {
                return null;
            }

            string match = choices.FirstOrDefault(c => string.Equals(c, text.Trim(), StringComparison.OrdinalIgnoreCase));
            if (match == null)
            {
                throw new ImageOptionException(null, NormalizeKey(key), $"'{text}' is not one of: {string.Join(", ", choices)}");
            }

            return match;
        }

        public Preallocation? GetPreallocation(string key = "preallocation", params Preallocation[] allowed)
        {
            var names = (allowed.Length == 0 ? (Preallocation[])Enum.GetValues(typeof(Preallocation)) : allowed)
                .Select(p => p.ToString().ToLowerInvariant()).ToArray();
            string choice = GetChoice(key, names);
            return choice == null ? (Preallocation?)null : (Preallocation)Enum.Parse(typeof(Preallocation), choice, true);
        }

        /// <summary>Throws naming every key no reader consumed, and the keys the format knows.</summary>
        public void RejectUnknown(string formatName, IEnumerable<CreateOption> known) => RejectUnknown(formatName, known.Select(o => o.Name));

        public void RejectUnknown(string formatName, IEnumerable<string> known)
        {
            var unknown = _values.Keys.Where(k => !_consumed.Contains(k)).OrderBy(k => k, StringComparer.Ordinal).ToList();
            if (unknown.Count > 0)
            {
                string list = string.Join(", ", unknown.Select(k => $"'{k}'"));
                throw new ImageOptionException(null, unknown[0],
                    $"{formatName} does not know the option{(unknown.Count > 1 ? "s" : string.Empty)} {list}; it knows: {string.Join(", ", known)}");
            }
        }

        public override string ToString() => string.Join(",", _values.Select(kv => kv.Key + "=" + kv.Value.Replace(",", ",,")));

        private static string NormalizeKey(string key) => (key ?? string.Empty).Trim().Replace('-', '_').ToLowerInvariant();

        private static string ValueToString(object value)
        {
            switch (value)
            {
                case null:
                    return "on";
                case bool b:
                    return b ? "on" : "off";
                case IFormattable f:
                    return f.ToString(null, CultureInfo.InvariantCulture);
                default:
                    // PowerShell wraps values in PSObject; ToString unwraps to the base value's text.
                    return value.ToString();
            }
        }
    }
}
