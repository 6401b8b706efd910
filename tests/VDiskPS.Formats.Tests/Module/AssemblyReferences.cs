using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Reflection;
using System.Reflection.Metadata;
using System.Reflection.PortableExecutable;
using VDiskPS.Stage;

namespace VDiskPS.Formats.Tests.Module
{
    /// <summary>
    /// Checks that every assembly reference of every DLL staged for an edition is satisfied where
    /// that edition runs: by its framework (Microsoft's reference assemblies), by the PowerShell host
    /// (System.Management.Automation), or by a DLL shipped beside it with exactly that version and
    /// public key token. Windows PowerShell has no binding redirects, so "close" is a FileLoadException
    /// at the first call that needs the assembly.
    /// </summary>
    public static class AssemblyReferences
    {
        private const string PowerShellToken = "31bf3856ad364e35";

        /// <summary>
        /// The references that shipped dependencies declare and nothing shipped satisfies, which the module
        /// never resolves (Windows PowerShell only). ZstdSharp 0.8.8 (lib/net462) references
        /// Threading.Tasks.Extensions 4.2.0.1 for the ValueTask of its async stream methods, and that
        /// assembly references Unsafe 4.0.4.1 while ZstdSharp and System.Memory need Unsafe 6.0.1.0: no set
        /// of packages satisfies both. The engine calls only ZstdSharp.Unsafe.Methods (StagingTests pins
        /// that), whose code touches no ValueTask, so Threading.Tasks.Extensions is never loaded and its
        /// Unsafe reference never resolved. SharpZipLib 1.4.2 (lib/netstandard2.0) references System.Memory
        /// 4.0.1.1, System.Buffers 4.0.2.0 and Threading.Tasks.Extensions 4.2.0.0, older than the ones
        /// ZstdSharp needs; the engine uses only its BZip2InputStream, and no code that class can reach
        /// names a type of those three (StagingTests pins both), so those references are never resolved.
        /// </summary>
        public static readonly IReadOnlyList<(string File, string Reference, Version Version)> NeverResolved = new[]
        {
            ("System.Threading.Tasks.Extensions.dll", "System.Runtime.CompilerServices.Unsafe", new Version(4, 0, 4, 1)),
            (SharpZipLibFile, "System.Memory", new Version(4, 0, 1, 1)),
            (SharpZipLibFile, "System.Buffers", new Version(4, 0, 2, 0)),
            (SharpZipLibFile, "System.Threading.Tasks.Extensions", new Version(4, 2, 0, 0)),
        };

        /// <summary>The managed bzip2 the engine ships for DMG chunks.</summary>
        public const string SharpZipLibFile = "ICSharpCode.SharpZipLib.dll";

        /// <summary>What an edition's process provides without the module shipping it.</summary>
        public sealed class Runtime
        {
            public string Name { get; init; }

            /// <summary>The framework's assemblies by simple name (reference assemblies, incl. facades).</summary>
            public IReadOnlyDictionary<string, AssemblyName> Framework { get; init; }

            /// <summary>Desktop: a framework reference must name the framework's exact version; Core accepts lower ones.</summary>
            public bool ExactFrameworkVersion { get; init; }

            /// <summary>The highest System.Management.Automation version the module may reference (the oldest supported host's).</summary>
            public Version HostVersion { get; init; }

            /// <summary>Desktop: Windows PowerShell 5.1 has only System.Management.Automation 3.0.0.0, no newer, no older.</summary>
            public bool ExactHostVersion { get; init; }
        }

        public static Runtime For(Edition edition) => edition == Edition.Desktop ? s_desktop.Value : s_core.Value;

        private static readonly Lazy<Runtime> s_desktop = new Lazy<Runtime>(() => new Runtime
        {
            Name = ".NET Framework 4.7.2 / Windows PowerShell 5.1",
            Framework = ReadFolder(Metadata("Net472ReferenceAssemblies"), Path.Combine(Metadata("Net472ReferenceAssemblies"), "Facades")),
            ExactFrameworkVersion = true,
            HostVersion = new Version(3, 0, 0, 0),
            ExactHostVersion = true,
        });

        private static readonly Lazy<Runtime> s_core = new Lazy<Runtime>(() => new Runtime
        {
            Name = ".NET 8 / PowerShell 7.4",
            Framework = ReadFolder(Net8ReferencePack()),
            ExactFrameworkVersion = false,
            HostVersion = new Version(7, 4, 0, 0),
            ExactHostVersion = false,
        });

        /// <summary>Every unsatisfied reference of the DLLs directly in folder, one line each (empty: all good).</summary>
        public static List<string> Problems(string folder, Runtime runtime)
        {
            var problems = new List<string>();
            var shipped = new Dictionary<string, AssemblyName>(StringComparer.OrdinalIgnoreCase);
            var references = new List<(string File, AssemblyName Reference)>();
            foreach (string file in Directory.GetFiles(folder, "*.dll").OrderBy(f => f, StringComparer.Ordinal))
            {
                using var stream = File.OpenRead(file);
                using var pe = new PEReader(stream);
                if (!pe.HasMetadata)
                {
                    problems.Add($"{Path.GetFileName(file)} is not a .NET assembly: native libraries go in x64/x86");
                    continue;
                }

                var reader = pe.GetMetadataReader();
                if (!reader.IsAssembly)
                {
                    problems.Add($"{Path.GetFileName(file)} is a module, not an assembly");
                    continue;
                }

                var name = reader.GetAssemblyDefinition().GetAssemblyName();
                shipped[name.Name] = name;
                if (!Path.GetFileNameWithoutExtension(file).Equals(name.Name, StringComparison.OrdinalIgnoreCase))
                {
                    problems.Add($"{Path.GetFileName(file)} holds assembly {name.Name}: the loader looks for {name.Name}.dll");
                }

                references.AddRange(reader.AssemblyReferences.Select(h => (Path.GetFileName(file), reader.GetAssemblyReference(h).GetAssemblyName())));
            }

            if (shipped.ContainsKey("System.Management.Automation"))
            {
                problems.Add("System.Management.Automation is shipped: the host brings its own, a shipped copy shadows or conflicts with it");
            }

            foreach (var (file, reference) in references)
            {
                if (runtime.ExactFrameworkVersion && NeverResolved.Any(n => file == n.File && reference.Name == n.Reference && reference.Version == n.Version))
                {
                    continue;
                }

                string problem = Check(reference, shipped, runtime);
                if (problem != null)
                {
                    problems.Add($"{file} references {reference.FullName}: {problem}");
                }
            }

            return problems;
        }

        private static string Check(AssemblyName reference, IReadOnlyDictionary<string, AssemblyName> shipped, Runtime runtime)
        {
            string token = Token(reference);
            if (reference.Name == "System.Management.Automation")
            {
                bool versionOk = runtime.ExactHostVersion ? reference.Version == runtime.HostVersion : reference.Version <= runtime.HostVersion;
                return token == PowerShellToken && versionOk ? null : $"{runtime.Name} provides System.Management.Automation {runtime.HostVersion}, PublicKeyToken={PowerShellToken}";
            }

            if (shipped.TryGetValue(reference.Name, out var beside))
            {
                if (runtime.Framework.ContainsKey(reference.Name) && !runtime.ExactFrameworkVersion)
                {
                    return $"shipped beside it, but {runtime.Name} has its own {reference.Name} that wins";
                }

                if (beside.Version == reference.Version && Token(beside) == token)
                {
                    return null;
                }

                return $"the shipped {reference.Name}.dll is {beside.Version}, PublicKeyToken={Token(beside)}, and there are no binding redirects";
            }

            if (runtime.Framework.TryGetValue(reference.Name, out var framework))
            {
                bool versionOk = runtime.ExactFrameworkVersion ? reference.Version == framework.Version : reference.Version <= framework.Version;
                if (versionOk && Token(framework) == token)
                {
                    return null;
                }

                return $"{runtime.Name} has {framework.Version}, PublicKeyToken={Token(framework)}";
            }

            return $"neither part of {runtime.Name} nor shipped beside it";
        }

        private static string Token(AssemblyName name)
        {
            byte[] token = name.GetPublicKeyToken();
            return token == null || token.Length == 0 ? "null" : Convert.ToHexString(token).ToLowerInvariant();
        }

        private static Dictionary<string, AssemblyName> ReadFolder(params string[] folders)
        {
            var names = new Dictionary<string, AssemblyName>(StringComparer.OrdinalIgnoreCase);
            foreach (string file in folders.SelectMany(f => Directory.GetFiles(f, "*.dll")))
            {
                using var stream = File.OpenRead(file);
                using var pe = new PEReader(stream);
                if (pe.HasMetadata && pe.GetMetadataReader().IsAssembly)
                {
                    var name = pe.GetMetadataReader().GetAssemblyDefinition().GetAssemblyName();
                    names[name.Name] = name;
                }
            }

            Assert(names.ContainsKey("mscorlib") || names.ContainsKey("System.Runtime"), "no framework assemblies in " + string.Join(", ", folders));
            return names;
        }

        /// <summary>The Microsoft.NETCore.App reference pack the SDK compiles net8.0 against: in the SDK's packs/ or the NuGet folder.</summary>
        private static string Net8ReferencePack()
        {
            string[] pack = Metadata("Net8ReferencePack").Split('/');
            Assert(pack.Length == 2, "the test project names no Microsoft.NETCore.App reference pack for net8.0");
            var candidates = Metadata("PackFolders").Split(';', StringSplitOptions.RemoveEmptyEntries)
                .SelectMany(root => new[] { Path.Combine(root, pack[0], pack[1]), Path.Combine(root, pack[0].ToLowerInvariant(), pack[1]) })
                .Select(dir => Path.Combine(dir, "ref", "net8.0"))
                .ToList();
            string found = candidates.FirstOrDefault(Directory.Exists);
            Assert(found != null, "the net8.0 reference pack is not in " + string.Join(", ", candidates) + ": build src/VDiskPS first");
            return found;
        }

        private static string Metadata(string key)
            => typeof(AssemblyReferences).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>().Single(a => a.Key == key).Value;

        private static void Assert(bool condition, string message)
        {
            if (!condition)
            {
                throw new InvalidOperationException(message);
            }
        }
    }
}
