using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Reflection;
using System.Text.RegularExpressions;
using VDiskPS.Stage;

namespace VDiskPS.Formats.Tests.Module
{
    /// <summary>The compiled cmdlets (read through MetadataLoadContext), the manifest and the help sources.</summary>
    public static class ModuleFixture
    {
        private static readonly object s_gate = new object();
        private static List<CmdletModel> s_cmdlets;

        public static string RepoRoot { get; } = Stager.FindRepoRoot(System.AppContext.BaseDirectory);

        public static string Configuration { get; } = typeof(ModuleFixture).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>().First(a => a.Key == "Configuration").Value;

        public static string ModuleAssembly => Path.Combine(Stager.BuildOutput(RepoRoot, Configuration), "VDiskPS.dll");

        public static IReadOnlyList<CmdletModel> Cmdlets
        {
            get
            {
                lock (s_gate)
                {
                    return s_cmdlets ??= CmdletMetadata.Load(ModuleAssembly);
                }
            }
        }

        public static string ManifestText => File.ReadAllText(Path.Combine(RepoRoot, "VDiskPS.psd1"));

        /// <summary>The names in the manifest's CmdletsToExport list.</summary>
        public static IReadOnlyList<string> ExportedCmdlets
        {
            get
            {
                var block = Regex.Match(ManifestText, @"CmdletsToExport\s*=\s*@\((.*?)\)", RegexOptions.Singleline);
                return Regex.Matches(block.Groups[1].Value, @"'([^']+)'").Select(m => m.Groups[1].Value).ToList();
            }
        }

        public static IEnumerable<object[]> CmdletNames() => Cmdlets.Select(c => new object[] { c.Name });

        public static CmdletModel Get(string name) => Cmdlets.Single(c => c.Name == name);
    }
}
