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
    /// Lays out the importable module: out/VDiskPS/{VDiskPS.psd1, VDiskPS.psm1, format and types
    /// files, en-US help}, one folder per edition ({Desktop,Core}/ with its managed assemblies) and,
    /// in Core/&lt;rid&gt;/, Core's assemblies precompiled for .NET 10 on each of
    /// <see cref="PrecompiledPlatforms"/>; VDiskPS.psm1 picks the folder at import.
    /// </summary>
    public static class Stager
    {
        /// <summary>
        /// The platforms whose PowerShell 7.6+ loads Core/ precompiled (ReadyToRun for .NET 10): the
        /// 64-bit ones PowerShell 7.6 ships for. Elsewhere Core/ itself is loaded.
        /// </summary>
        public static IReadOnlyList<string> PrecompiledPlatforms { get; } = new[] { "win-x64", "linux-x64", "linux-arm64", "osx-arm64" };

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
            File.Copy(Path.Combine(repo, "src", "VDiskPS", "VDiskPS.psm1"), Path.Combine(output, "VDiskPS.psm1"));
            File.Copy(Path.Combine(repo, "src", "VDiskPS", "VDiskPS.Format.ps1xml"), Path.Combine(output, "VDiskPS.Format.ps1xml"));
            File.Copy(Path.Combine(repo, "src", "VDiskPS", "VDiskPS.Types.ps1xml"), Path.Combine(output, "VDiskPS.Types.ps1xml"));
            foreach (var edition in Edition.All)
            {
                StageAssemblies(BuildOutput(repo, configuration, edition), Path.Combine(output, edition.Name));
            }

            string core = Path.Combine(output, Edition.Core.Name);
            foreach (string rid in PrecompiledPlatforms)
            {
                Precompile(repo, configuration, BuildOutput(repo, configuration, Edition.Core), rid, core);
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

        /// <summary>
        /// Publishes tools/VDiskPS.ReadyToRun for one platform and puts the precompiled copy of each of
        /// Core/'s assemblies in Core/&lt;rid&gt;/ (nothing else: not the reference assembly of PowerShell
        /// it compiled against).
        /// </summary>
        private static void Precompile(string repo, string configuration, string bin, string rid, string core)
        {
            string project = Path.Combine(repo, "tools", "VDiskPS.ReadyToRun", "VDiskPS.ReadyToRun.csproj");
            // Fresh build folders every time: the copies of the module's files keep their build's
            // timestamps, so an incremental publish can take a changed assembly for an unchanged one.
            string scratch = Path.Combine(Path.GetTempPath(), "vdiskps-readytorun-" + Guid.NewGuid().ToString("N"));
            string published = Path.Combine(scratch, "publish");
            string slash = Path.DirectorySeparatorChar.ToString();
            try
            {
                Dotnet(repo, "publish", project, "-c", configuration, "-r", rid, "-o", published, "--nologo", "-v", "quiet",
                    "-p:ModuleBuild=" + bin.TrimEnd(Path.DirectorySeparatorChar) + slash,
                    "-p:BaseIntermediateOutputPath=" + Path.Combine(scratch, "obj") + slash,
                    "-p:BaseOutputPath=" + Path.Combine(scratch, "bin") + slash);
                string folder = Path.Combine(core, rid);
                Directory.CreateDirectory(folder);
                foreach (string file in Directory.GetFiles(core, "*.dll"))
                {
                    string compiled = Path.Combine(published, Path.GetFileName(file));
                    if (!File.Exists(compiled))
                    {
                        throw new InvalidOperationException($"precompiling for {rid} made no {Path.GetFileName(file)} in {published}");
                    }

                    File.Copy(compiled, Path.Combine(folder, Path.GetFileName(file)));
                }
            }
            finally
            {
                if (Directory.Exists(scratch))
                {
                    Directory.Delete(scratch, true);
                }
            }
        }

        private static void Dotnet(string repo, params string[] args)
        {
            var psi = new System.Diagnostics.ProcessStartInfo("dotnet")
            {
                UseShellExecute = false,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                WorkingDirectory = repo,
            };
            foreach (string a in args)
            {
                psi.ArgumentList.Add(a);
            }

            using var process = System.Diagnostics.Process.Start(psi);
            var stderr = process.StandardError.ReadToEndAsync();
            string stdout = process.StandardOutput.ReadToEnd();
            process.WaitForExit();
            if (process.ExitCode != 0)
            {
                throw new InvalidOperationException($"dotnet {string.Join(" ", args)} exited {process.ExitCode}:{Environment.NewLine}{stdout}{stderr.Result}");
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
