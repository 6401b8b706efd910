using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Reflection;
using System.Xml.Linq;
using VDiskPS.Stage;
using Xunit;

namespace VDiskPS.Formats.Tests.Module
{
    /// <summary>The module staged once, in a temporary folder, for all staging tests.</summary>
    public sealed class StagedModule : IDisposable
    {
        private readonly TempDir _dir = new TempDir();

        public StagedModule()
        {
            Root = Path.Combine(_dir.Path, "VDiskPS");
            Stager.Stage(ModuleFixture.RepoRoot, ModuleFixture.Configuration, Root);
        }

        public string Root { get; }

        public string Folder(Edition edition) => Path.Combine(Root, edition.Name);

        public void Dispose() => _dir.Dispose();
    }

    public class StagingTests : IClassFixture<StagedModule>
    {
        private readonly StagedModule _module;

        public StagingTests(StagedModule module) => _module = module;

        public static IEnumerable<object[]> Editions() => Edition.All.Select(e => new object[] { e.Name });

        private static Edition EditionNamed(string name) => Edition.All.Single(e => e.Name == name);

        [Fact]
        public void StagedModuleHasManifestAssembliesFormatsAndHelp()
        {
            var expected = new[] { "VDiskPS.psd1", "VDiskPS.psm1", "VDiskPS.Format.ps1xml", "VDiskPS.Types.ps1xml", "en-US/VDiskPS.dll-Help.xml", "en-US/about_VDiskPS.help.txt" }
                .Concat(new[] { "VDiskPS.dll", "VDiskPS.Formats.dll", "ZstdSharp.dll", AssemblyReferences.SharpZipLibFile }.SelectMany(f => Edition.All.Select(e => e.Name + "/" + f)))
                .Concat(new[] { "System.Memory.dll", "System.Buffers.dll", "System.Runtime.CompilerServices.Unsafe.dll", "System.Numerics.Vectors.dll", "System.Threading.Tasks.Extensions.dll" }.Select(f => "Desktop/" + f))
                .Concat(Stager.PrecompiledPlatforms.Select(rid => "Core/" + rid + "/VDiskPS.dll"));
            foreach (string file in expected)
            {
                Assert.True(File.Exists(Path.Combine(_module.Root, file)), $"{file} is missing from the staged module");
            }

            XDocument.Load(Path.Combine(_module.Root, "en-US", "VDiskPS.dll-Help.xml"));
        }

        public static IEnumerable<object[]> PrecompiledPlatforms() => Stager.PrecompiledPlatforms.Select(rid => new object[] { rid });

        /// <summary>
        /// The PE machine field of a ReadyToRun image: the CPU's, XOR-ed with a value per operating
        /// system for all but Windows (the runtime's own table: Linux 0x7B79, macOS 0x4644).
        /// </summary>
        private static ushort MachineOf(string rid)
        {
            ushort cpu = rid.EndsWith("-x64", StringComparison.Ordinal) ? (ushort)0x8664 : (ushort)0xAA64;
            ushort os = rid.StartsWith("win-", StringComparison.Ordinal) ? (ushort)0 : rid.StartsWith("osx-", StringComparison.Ordinal) ? (ushort)0x4644 : (ushort)0x7B79;
            return (ushort)(cpu ^ os);
        }

        /// <summary>
        /// Core/&lt;rid&gt;/ holds exactly Core/'s assemblies, each the same IL (the module version id the
        /// compiler gave it) with native code for that platform (a ReadyToRun header, the platform's
        /// machine): the rest of the platforms cannot be run here, so their files are read instead.
        /// The Pester suite shows .NET 10 running linux-x64's without the JIT.
        /// </summary>
        [Theory]
        [MemberData(nameof(PrecompiledPlatforms))]
        public void ThePrecompiledFolderIsCoresILWithNativeCodeForItsPlatform(string rid)
        {
            string core = _module.Folder(Edition.Core);
            string folder = Path.Combine(core, rid);
            Assert.Equal(
                Directory.GetFiles(core, "*.dll").Select(Path.GetFileName).OrderBy(f => f, StringComparer.Ordinal),
                Directory.GetFiles(folder).Select(Path.GetFileName).OrderBy(f => f, StringComparer.Ordinal));
            foreach (string file in Directory.GetFiles(core, "*.dll"))
            {
                var (ilMachine, ilNative, ilMvid) = PeFacts(file);
                var (machine, native, mvid) = PeFacts(Path.Combine(folder, Path.GetFileName(file)));
                Assert.Equal(0, ilNative);
                Assert.Equal(ilMvid, mvid);
                Assert.True(native > 0, $"{rid}/{Path.GetFileName(file)} has no ReadyToRun header");
                Assert.Equal(MachineOf(rid), machine);
                Assert.NotEqual(ilMachine, machine);
            }
        }

        private static (ushort Machine, int NativeHeader, Guid Mvid) PeFacts(string file)
        {
            using var stream = File.OpenRead(file);
            using var pe = new System.Reflection.PortableExecutable.PEReader(stream);
            var reader = System.Reflection.Metadata.PEReaderExtensions.GetMetadataReader(pe);
            return ((ushort)pe.PEHeaders.CoffHeader.Machine, pe.PEHeaders.CorHeader.ManagedNativeHeaderDirectory.Size, reader.GetGuid(reader.GetModuleDefinition().Mvid));
        }

        [Fact]
        public void ThePowerShellReferenceAssemblyIsNotShipped()
        {
            var shipped = Directory.GetFiles(_module.Root, "*", SearchOption.AllDirectories).Select(Path.GetFileName);
            Assert.DoesNotContain("System.Management.Automation.dll", shipped, StringComparer.OrdinalIgnoreCase);
        }

        /// <summary>
        /// Windows PowerShell 5.1 has no binding redirects (issue 9): every reference of every staged
        /// DLL must be the framework's (Microsoft's reference assemblies of .NET Framework 4.7.2 and
        /// .NET 8 are the judge), the host's System.Management.Automation, or the exact version shipped
        /// beside it. Nothing can run Windows PowerShell here, so the references are compared instead.
        /// </summary>
        [Theory]
        [MemberData(nameof(Editions))]
        public void EveryAssemblyReferenceIsSatisfiedByTheFrameworkTheHostOrTheExactShippedVersion(string name)
        {
            var edition = EditionNamed(name);
            var problems = AssemblyReferences.Problems(_module.Folder(edition), AssemblyReferences.For(edition));
            Assert.True(problems.Count == 0, string.Join(Environment.NewLine, problems));
        }

        /// <summary>
        /// The check itself finds the failure of issue 9: System.Memory 4.6.0 references System.Buffers
        /// 4.0.4.0, and the netstandard2.0 System.Buffers.dll of the 4.5.1 package (what the old
        /// netstandard2.0 build shipped against) is 4.0.2.0.
        /// </summary>
        [Fact]
        public void TheCheckFindsASystemBuffersVersionMismatch()
        {
            using var dir = new TempDir();
            foreach (string file in Directory.GetFiles(_module.Folder(Edition.Desktop), "*.dll"))
            {
                File.Copy(file, Path.Combine(dir.Path, Path.GetFileName(file)));
            }

            string package = typeof(AssemblyReferences).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>().Single(a => a.Key == "SystemBuffersPackage").Value;
            File.Copy(Path.Combine(package, "ref", "netstandard2.0", "System.Buffers.dll"), Path.Combine(dir.Path, "System.Buffers.dll"), true);
            var problems = AssemblyReferences.Problems(dir.Path, AssemblyReferences.For(Edition.Desktop));
            Assert.Contains(problems, p => p.StartsWith("System.Memory.dll references System.Buffers, Version=4.0.4.0", StringComparison.Ordinal) && p.Contains("4.0.2.0"));
        }

        /// <summary>
        /// The one unsatisfiable reference the check lets pass (Threading.Tasks.Extensions, wanted only by
        /// ZstdSharp's async streams) stays unreached only while the engine uses nothing of ZstdSharp but
        /// its libzstd-style static API, ZstdSharp.Unsafe.Methods and its buffer structs.
        /// </summary>
        [Theory]
        [MemberData(nameof(Editions))]
        public void TheEngineUsesOnlyZstdSharpsStaticApi(string name)
        {
            var used = EngineTypesFrom(name, "ZstdSharp");
            Assert.Contains("ZstdSharp.Unsafe.Methods", used);
            Assert.All(used, t => Assert.StartsWith("ZstdSharp.Unsafe.", t));
        }

        /// <summary>
        /// SharpZipLib's references that Windows PowerShell cannot satisfy (System.Memory 4.0.1.1, Buffers
        /// 4.0.2.0, Threading.Tasks.Extensions 4.2.0.0) stay unresolved only while the engine uses nothing of
        /// it but BZip2InputStream, and no code that class can reach names a type of those assemblies.
        /// </summary>
        [Theory]
        [MemberData(nameof(Editions))]
        public void TheEngineUsesOnlySharpZipLibsBZip2InputStream(string name)
            => Assert.Equal(new[] { "ICSharpCode.SharpZipLib.BZip2.BZip2InputStream" }, EngineTypesFrom(name, "ICSharpCode.SharpZipLib"));

        [Fact]
        public void NoCodeBZip2InputStreamReachesNamesATypeOfTheUnsatisfiedReferences()
        {
            string dll = Path.Combine(_module.Folder(Edition.Desktop), AssemblyReferences.SharpZipLibFile);
            var unsatisfied = AssemblyReferences.NeverResolved.Where(n => n.File == AssemblyReferences.SharpZipLibFile).Select(n => n.Reference).ToList();
            Assert.Equal(3, unsatisfied.Count);
            var usesThem = ReferenceUse.MethodsUsing(dll, unsatisfied);
            var reachable = ReferenceUse.Reachable(dll, "ICSharpCode.SharpZipLib.BZip2.BZip2InputStream");

            // The check sees the uses there are (the tar streams' Span and ValueTask code) and the decoder's own code.
            Assert.Contains("ICSharpCode.SharpZipLib.Tar.TarInputStream::ReadAsync", usesThem);
            Assert.Contains("ICSharpCode.SharpZipLib.BZip2.BZip2InputStream::Read", reachable);
            Assert.Contains("ICSharpCode.SharpZipLib.Checksum.BZip2Crc::Update", reachable);
            Assert.Empty(reachable.Intersect(usesThem));
        }

        /// <summary>The full names of the types of <paramref name="assembly"/> that the edition's engine references.</summary>
        private List<string> EngineTypesFrom(string edition, string assembly)
        {
            using var stream = File.OpenRead(Path.Combine(_module.Folder(EditionNamed(edition)), "VDiskPS.Formats.dll"));
            using var pe = new System.Reflection.PortableExecutable.PEReader(stream);
            var reader = System.Reflection.Metadata.PEReaderExtensions.GetMetadataReader(pe);
            var used = new List<string>();
            foreach (var handle in reader.TypeReferences)
            {
                var type = reader.GetTypeReference(handle);
                if (type.ResolutionScope.Kind == System.Reflection.Metadata.HandleKind.AssemblyReference
                    && reader.GetString(reader.GetAssemblyReference((System.Reflection.Metadata.AssemblyReferenceHandle)type.ResolutionScope).Name) == assembly)
                {
                    used.Add(reader.GetString(type.Namespace) + "." + reader.GetString(type.Name));
                }
            }

            return used;
        }

        /// <summary>An assembly of the PowerShell 7 build is not loadable in Windows PowerShell: the check says so.</summary>
        [Fact]
        public void TheCheckRejectsADotNet8AssemblyForWindowsPowerShell()
        {
            using var dir = new TempDir();
            File.Copy(Path.Combine(_module.Folder(Edition.Core), "VDiskPS.Formats.dll"), Path.Combine(dir.Path, "VDiskPS.Formats.dll"));
            var problems = AssemblyReferences.Problems(dir.Path, AssemblyReferences.For(Edition.Desktop));
            Assert.Contains(problems, p => p.StartsWith("VDiskPS.Formats.dll references System.Runtime, Version=8.0.0.0", StringComparison.Ordinal));
        }

        [Fact]
        public void BothEditionsDeclareTheSameCmdlets()
        {
            static List<string> Signature(string assembly) => CmdletMetadata.Load(assembly)
                .Select(c => c.Name + "(" + string.Join(",", c.Parameters.Select(p => p.Name + ":" + p.TypeFullName)) + ")")
                .OrderBy(s => s, StringComparer.Ordinal).ToList();

            Assert.Equal(
                Signature(Path.Combine(Stager.BuildOutput(ModuleFixture.RepoRoot, ModuleFixture.Configuration, Edition.Core), "VDiskPS.dll")),
                Signature(Path.Combine(Stager.BuildOutput(ModuleFixture.RepoRoot, ModuleFixture.Configuration, Edition.Desktop), "VDiskPS.dll")));
        }
    }
}
