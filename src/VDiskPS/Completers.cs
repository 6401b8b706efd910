using System;
using System.Collections;
using System.Collections.Generic;
using System.Linq;
using System.Management.Automation;
using System.Management.Automation.Language;
using VDiskPS.Formats;

namespace VDiskPS
{
    /// <summary>What the completers share: the values typed so far, and the image or format they name.</summary>
    internal static class Completion
    {
        public static IEnumerable<CompletionResult> Matching(IEnumerable<string> values, string typed, string suffix = "")
        {
            var pattern = new WildcardPattern((typed ?? string.Empty).Trim('\'', '"') + "*", WildcardOptions.IgnoreCase);
            return values.Distinct(StringComparer.OrdinalIgnoreCase).Where(v => pattern.IsMatch(v))
                .Select(v => new CompletionResult(Quote(v) + suffix, v, CompletionResultType.ParameterValue, v));
        }

        private static string Quote(string value) => value.IndexOfAny(new[] { ' ', '\'', '"', '$', '`', ';', ',', '(', ')', '{', '}' }) < 0 ? value : "'" + value.Replace("'", "''") + "'";

        /// <summary>The existing file a parameter names (first of several), resolved against the current location.</summary>
        public static string ExistingFile(IDictionary bound, params string[] parameters)
        {
            foreach (string parameter in parameters)
            {
                if (bound == null || !bound.Contains(parameter))
                {
                    continue;
                }

                object value = bound[parameter] is PSObject ps ? ps.BaseObject : bound[parameter];
                string path = value is IEnumerable list && !(value is string) ? list.Cast<object>().Select(o => o?.ToString()).FirstOrDefault() : value?.ToString();
                string full = Resolve(path, literal: parameter == "LiteralPath");
                if (full != null && System.IO.File.Exists(full))
                {
                    return full;
                }
            }

            return null;
        }

        /// <summary>A path as the file system provider resolves it at the current location; null when it cannot.</summary>
        public static string Resolve(string path, bool literal = false)
        {
            if (string.IsNullOrEmpty(path))
            {
                return null;
            }

            // A completer runs inside the pipeline of the completion: a nested command of the current
            // runspace reaches its location (the session state proxy refuses while a pipeline runs).
            using (var shell = PowerShell.Create(RunspaceMode.CurrentRunspace))
            {
                shell.AddCommand("Microsoft.PowerShell.Management\\Resolve-Path")
                    .AddParameter(literal ? "LiteralPath" : "Path", path)
                    .AddParameter("ErrorAction", ActionPreference.Ignore);
                PathInfo found = shell.Invoke<PathInfo>().FirstOrDefault();
                return found != null && found.Provider.Name == "FileSystem" ? found.ProviderPath : null;
            }
        }

        /// <summary>The format a parameter names (-Format), else the one a path's extension names.</summary>
        public static DiskFormat? Format(IDictionary bound, string formatParameter, params string[] pathParameters)
        {
            if (bound != null && bound.Contains(formatParameter) && FormatRegistry.Default.TryParse(bound[formatParameter]?.ToString(), out DiskFormat named))
            {
                return named;
            }

            foreach (string parameter in pathParameters)
            {
                if (bound != null && bound.Contains(parameter))
                {
                    DiskFormat? fromExtension = FormatRegistry.Default.FromExtension(bound[parameter]?.ToString());
                    if (fromExtension.HasValue)
                    {
                        return fromExtension;
                    }
                }
            }

            return null;
        }

        /// <summary>Runs a read of an image for completion; an unreadable image completes nothing.</summary>
        public static IEnumerable<string> Read(Func<IEnumerable<string>> read)
        {
            try
            {
                using (ImageWarnings.Capture(out _))
                {
                    return read().ToList();
                }
            }
            catch (Exception e) when (e is ImageException || e is System.IO.IOException || e is UnauthorizedAccessException)
            {
                return Array.Empty<string>();
            }
        }
    }

    /// <summary>-Subformat: the subformats of the target's format (VMDK create types, VHD/VHDX dynamic or fixed); every format's when the target is not known yet.</summary>
    public sealed class SubformatCompleter : IArgumentCompleter
    {
        public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete, CommandAst commandAst, IDictionary fakeBoundParameters)
        {
            DiskFormat? format = Completion.Format(fakeBoundParameters, "Format", "Destination", "Path");
            IEnumerable<string> values = format.HasValue
                ? FormatRegistry.Default.Get(format.Value).Subformats
                : FormatRegistry.Default.Drivers.SelectMany(d => d.Subformats);
            return Completion.Matching(values, wordToComplete);
        }
    }

    /// <summary>A snapshot name (-Name, -Snapshot): the snapshots of the image given in -Path.</summary>
    public sealed class SnapshotNameCompleter : IArgumentCompleter
    {
        public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete, CommandAst commandAst, IDictionary fakeBoundParameters)
        {
            string file = Completion.ExistingFile(fakeBoundParameters, "Path", "LiteralPath");
            return file == null ? Enumerable.Empty<CompletionResult>()
                : Completion.Matching(Completion.Read(() => SnapshotOperations.List(file, null, shareWithWriters: true).Select(s => s.Name)), wordToComplete);
        }
    }

    /// <summary>A bitmap name: the bitmaps of the image given in -Path (-SourcePath for -SourceName).</summary>
    public sealed class BitmapNameCompleter : IArgumentCompleter
    {
        public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete, CommandAst commandAst, IDictionary fakeBoundParameters)
        {
            string file = parameterName == "SourceName"
                ? Completion.ExistingFile(fakeBoundParameters, "SourcePath", "Path", "LiteralPath")
                : Completion.ExistingFile(fakeBoundParameters, "Path", "LiteralPath");
            return file == null ? Enumerable.Empty<CompletionResult>()
                : Completion.Matching(Completion.Read(() => BitmapOperations.List(file, null, shareWithWriters: true).Select(b => b.Name)), wordToComplete);
        }
    }

    /// <summary>
    /// -Option keys, from the option table of the format concerned: -Format, else the extension of the
    /// output (-Destination, or -Path of New-VDisk), else the existing image's own format (Set-VDisk).
    /// </summary>
    public sealed class OptionKeyCompleter : IArgumentCompleter
    {
        public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete, CommandAst commandAst, IDictionary fakeBoundParameters)
        {
            string formatParameter = commandName != null && commandName.EndsWith("VDiskData", StringComparison.OrdinalIgnoreCase) ? "DestinationFormat" : "Format";
            DiskFormat? format = Completion.Format(fakeBoundParameters, formatParameter, "Destination");
            if (!format.HasValue && commandName != null && (commandName.StartsWith("New-", StringComparison.OrdinalIgnoreCase) || commandName.StartsWith("Set-", StringComparison.OrdinalIgnoreCase)))
            {
                format = Completion.Format(fakeBoundParameters, formatParameter, "Path");
                string existing = format.HasValue ? null : Completion.ExistingFile(fakeBoundParameters, "Path", "LiteralPath");
                if (existing != null)
                {
                    string probed = Completion.Read(() => new[] { ImageInspector.Get(existing, null, shareWithWriters: true).Format }).FirstOrDefault();
                    format = FormatRegistry.Default.TryParse(probed, out DiskFormat f) ? f : (DiskFormat?)null;
                }
            }

            IEnumerable<string> keys = format.HasValue
                ? FormatRegistry.Default.Get(format.Value).CreateOptionNames
                : FormatRegistry.Default.Drivers.SelectMany(d => d.CreateOptionNames);

            // Completes the key being typed in a quoted "k=v,k=v" (unquoted, PowerShell hands over only the
            // text after the last comma): what precedes it, and the opening quote, stay as written.
            string word = wordToComplete ?? string.Empty;
            string quote = word.StartsWith("'", StringComparison.Ordinal) || word.StartsWith("\"", StringComparison.Ordinal) ? word.Substring(0, 1) : string.Empty;
            string typed = word.Trim('\'', '"');
            int comma = typed.LastIndexOf(',');
            string done = quote + (comma < 0 ? string.Empty : typed.Substring(0, comma + 1));
            string key = typed.Substring(comma + 1);
            if (key.Contains("="))
            {
                return Enumerable.Empty<CompletionResult>();
            }

            var pattern = new WildcardPattern(key + "*", WildcardOptions.IgnoreCase);
            return keys.Where(k => k != "size" && pattern.IsMatch(k)).Distinct().OrderBy(k => k, StringComparer.Ordinal)
                .Select(k => new CompletionResult(done + k + "=", k, CompletionResultType.ParameterValue, k));
        }
    }
}
