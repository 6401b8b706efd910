using System;
using System.Collections;
using System.Collections.Generic;
using System.Linq;
using System.Management.Automation;
using System.Management.Automation.Language;
using VDiskPS.Formats;

namespace VDiskPS
{
    /// <summary>Parameter-set names shared by the cmdlets.</summary>
    internal static class ParameterSets
    {
        public const string Path = "Path";
        public const string LiteralPath = "LiteralPath";
        public const string Size = "Size";
    }

    /// <summary>
    /// A -Format value naming a format this build reads (the registry's list, or qemu's name for one).
    /// The values come from the format registry, so a new format needs no change here.
    /// </summary>
    [AttributeUsage(AttributeTargets.Property | AttributeTargets.Field)]
    public sealed class ValidateReadableFormatAttribute : ValidateArgumentsAttribute
    {
        protected override void Validate(object arguments, EngineIntrinsics engineIntrinsics)
            => FormatParameter.Check(arguments, FormatRegistry.Default.ReadableNames, "reads");
    }

    /// <summary>A -Format value naming a format this build creates and writes; a read-only format is refused by name.</summary>
    [AttributeUsage(AttributeTargets.Property | AttributeTargets.Field)]
    public sealed class ValidateWritableFormatAttribute : ValidateArgumentsAttribute
    {
        protected override void Validate(object arguments, EngineIntrinsics engineIntrinsics)
            => FormatParameter.Check(arguments, FormatRegistry.Default.CreatableNames, "writes");
    }

    /// <summary>Completes -Format with the formats this build reads.</summary>
    public sealed class ReadableFormatCompleter : IArgumentCompleter
    {
        public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete, CommandAst commandAst, IDictionary fakeBoundParameters)
            => FormatParameter.Complete(FormatRegistry.Default.ReadableNames, wordToComplete);
    }

    /// <summary>Completes -Format with the formats this build writes.</summary>
    public sealed class WritableFormatCompleter : IArgumentCompleter
    {
        public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete, CommandAst commandAst, IDictionary fakeBoundParameters)
            => FormatParameter.Complete(FormatRegistry.Default.CreatableNames, wordToComplete);
    }

    internal static class FormatParameter
    {
        public static void Check(object arguments, IReadOnlyList<string> allowed, string verb)
        {
            string value = (arguments is PSObject ps ? ps.BaseObject : arguments)?.ToString();
            if (string.IsNullOrEmpty(value))
            {
                return;
            }

            bool knownFormat = FormatRegistry.Default.TryParse(value, out DiskFormat format);
            if (knownFormat && allowed.Contains(format.Name))
            {
                return;
            }

            string known = knownFormat
                ? $"this build reads {format.Name} images but does not write them"
                : "it is not a format this build knows";
            throw new ValidationMetadataException($"'{value}' is not accepted: {known}. Formats it {verb}: {string.Join(", ", allowed)}.");
        }

        public static IEnumerable<CompletionResult> Complete(IReadOnlyList<string> names, string word)
        {
            return Completion.Matching(names, word).Select(r =>
            {
                FormatDriver driver = FormatRegistry.Default.Get(FormatRegistry.Default.Parse(r.ListItemText));
                return new CompletionResult(r.CompletionText, r.ListItemText, r.ResultType, driver.Description);
            });
        }
    }
}
