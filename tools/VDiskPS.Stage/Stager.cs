using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;

namespace VDiskPS.Stage
{
    /// <summary>One PowerShell edition's build of the module and the folder it is staged in.</summary>
    public sealed class Edition
    {
        private Edition(string name, string targetFramework)
        {
            Name = name;
            TargetFramework = targetFramework;
        }

        /// <summary>$PSEdition: also the name of the module's subfolder that holds this build.</summary>
        public string Name { get; }

        public string TargetFramework { get; }

        /// <summary>Windows PowerShell 5.1 on .NET Framework 4.7.2+.</summary>
        public static Edition Desktop { get; } = new Edition("Desktop", "net472");

        /// <summary>PowerShell 7.4+ on .NET 8+.</summary>
        public static Edition Core { get; } = new Edition("Core", "net8.0");

        public static IReadOnlyList<Edition> All { get; } = new[] { Desktop, Core };

        public override string ToString() => Name;
    }

    /// <summary>
    /// Lays out the importable module: out/VDiskPS/{VDiskPS.psd1, format file, en-US help} and one
    /// folder per edition ({Desktop,Core}/ with its managed assemblies); the
    /// manifest picks the folder by $PSEdition.
    /// </summary>
    public static class Stager
    {
        public static string FindRepoRoot(string start = null)
        {
            string dir = Path.GetFullPath(start ?? Directory.GetCurrentDirectory());
            while (dir != null && !File.Exists(Path.Combine(dir, "VDiskPS.sln")))
            {
                dir = Path.GetDirectoryName(dir);
            }

            return dir ?? throw new InvalidOperationException("VDiskPS.sln not found above " + start);
        }

        /// <summary>The build output of src/VDiskPS for an edition (PowerShell 7's by default).</summary>
        public static string BuildOutput(string repo, string configuration, Edition edition = null)
            => Path.Combine(repo, "src", "VDiskPS", "bin", configuration, (edition ?? Edition.Core).TargetFramework);

        public static void Stage(string repo, string configuration, string output)
        {
            foreach (var edition in Edition.All)
            {
                string bin = BuildOutput(repo, configuration, edition);
                if (!File.Exists(Path.Combine(bin, "VDiskPS.dll")))
                {
                    throw new InvalidOperationException($"{bin}/VDiskPS.dll is missing: build with 'dotnet build -c {configuration}' first");
                }
            }

            if (Directory.Exists(output))
            {
                Directory.Delete(output, true);
            }

            Directory.CreateDirectory(output);
            File.Copy(Path.Combine(repo, "VDiskPS.psd1"), Path.Combine(output, "VDiskPS.psd1"));
            File.Copy(Path.Combine(repo, "src", "VDiskPS", "VDiskPS.Format.ps1xml"), Path.Combine(output, "VDiskPS.Format.ps1xml"));
            File.Copy(Path.Combine(repo, "src", "VDiskPS", "VDiskPS.Types.ps1xml"), Path.Combine(output, "VDiskPS.Types.ps1xml"));
            foreach (var edition in Edition.All)
            {
                StageAssemblies(BuildOutput(repo, configuration, edition), Path.Combine(output, edition.Name));
            }

            // PowerShell looks for a cmdlet's help file in its module's ModuleBase (the manifest's folder).
            string helpDir = Path.Combine(output, "en-US");
            Directory.CreateDirectory(helpDir);
            var docs = LoadHelp(repo);
            MamlWriter.Write(docs).Save(Path.Combine(helpDir, "VDiskPS.dll-Help.xml"));
            string about = Path.Combine(repo, "docs", "help", "about_VDiskPS.help.txt");
            if (File.Exists(about))
            {
                File.Copy(about, Path.Combine(helpDir, "about_VDiskPS.help.txt"));
            }
        }

        private static void StageAssemblies(string bin, string folder)
        {
            Directory.CreateDirectory(folder);
            foreach (string file in Directory.GetFiles(bin, "*.dll"))
            {
                // The PowerShell reference assembly is for compiling only; the host brings the real one.
                if (!Path.GetFileName(file).Equals("System.Management.Automation.dll", StringComparison.OrdinalIgnoreCase))
                {
                    File.Copy(file, Path.Combine(folder, Path.GetFileName(file)));
                }
            }
        }

        public static List<HelpDocument> LoadHelp(string repo)
            => Directory.GetFiles(Path.Combine(repo, "docs", "help"), "*-*.md").OrderBy(f => f, StringComparer.Ordinal)
                .Select(f => HelpDocument.Parse(File.ReadAllText(f))).ToList();

        /// <summary>Regenerates the metadata-driven sections of docs/help/*.md, keeping the written ones.</summary>
        public static IReadOnlyList<string> UpdateHelp(string repo, string configuration)
        {
            var written = new List<string>();
            foreach (var cmdlet in CmdletMetadata.Load(Path.Combine(BuildOutput(repo, configuration), "VDiskPS.dll")))
            {
                string file = Path.Combine(repo, "docs", "help", cmdlet.Name + ".md");
                HelpDocument existing = File.Exists(file) ? HelpDocument.Parse(File.ReadAllText(file)) : null;
                string text = HelpDocument.Update(existing, cmdlet).Render();
                if (!File.Exists(file) || File.ReadAllText(file) != text)
                {
                    File.WriteAllText(file, text);
                    written.Add(file);
                }
            }

            return written;
        }
    }
}
