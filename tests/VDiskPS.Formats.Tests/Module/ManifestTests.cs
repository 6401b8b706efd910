using System.IO;
using System.Linq;
using System.Text.RegularExpressions;
using VDiskPS.Stage;
using Xunit;

namespace VDiskPS.Formats.Tests.Module
{
    public class ManifestTests
    {
        [Fact]
        public void ExportsExactlyTheCmdletsThatExist()
        {
            var exported = ModuleFixture.ExportedCmdlets.OrderBy(n => n).ToList();
            var actual = ModuleFixture.Cmdlets.Select(c => c.Name).OrderBy(n => n).ToList();
            Assert.Equal(actual, exported);
        }

        [Fact]
        public void NeverExportsWithAWildcard()
        {
            Assert.DoesNotMatch(@"(Cmdlets|Functions|Aliases|Variables)ToExport\s*=\s*'\*'", ModuleFixture.ManifestText);
            Assert.DoesNotContain("'*'", ModuleFixture.ManifestText);
        }

        [Fact]
        public void RunsInWindowsPowerShellAndPowerShell7()
        {
            string text = ModuleFixture.ManifestText;
            Assert.Matches(@"PowerShellVersion\s*=\s*'5\.1'", text);
            Assert.Matches(@"CompatiblePSEditions\s*=\s*@\('Desktop',\s*'Core'\)", text);
        }

        /// <summary>
        /// The root module is the loader, and the loader loads a build from the folders the stager
        /// fills: Desktop/, Core/ or Core/&lt;os-arch&gt;/ (the Pester suite runs it).
        /// </summary>
        [Fact]
        public void RootModuleIsTheLoaderOfTheStagedBuilds()
        {
            Assert.Matches(@"RootModule\s*=\s*'VDiskPS\.psm1'", ModuleFixture.ManifestText);
            string loader = File.ReadAllText(Path.Combine(ModuleFixture.RepoRoot, "src", "VDiskPS", "VDiskPS.psm1"));
            Assert.Contains("$build = '" + Edition.Desktop.Name + "'", loader);
            Assert.Contains("$build = '" + Edition.Core.Name + "'", loader);
            Assert.Contains("$build = \"" + Edition.Core.Name + "/$os-$arch\"", loader);
            Assert.Contains("Import-Module -Name ([System.IO.Path]::Combine($PSScriptRoot, $build, 'VDiskPS.dll'))", loader);
            Assert.All(Stager.PrecompiledPlatforms, rid => Assert.Matches(@"^(win|linux|osx)-(x64|arm64)$", rid));
        }

        [Fact]
        public void HasIdentityAndProjectMetadata()
        {
            string text = ModuleFixture.ManifestText;
            Assert.Matches(@"ModuleVersion\s*=\s*'\d+\.\d+\.\d+'", text);
            Assert.Matches(@"GUID\s*=\s*'[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}'", text);
            Assert.Matches(@"Description\s*=\s*'.{20,}'", text);
            Assert.Matches(@"Tags\s*=\s*@\(", text);
            Assert.Matches(@"ProjectUri\s*=", text);
        }

        [Fact]
        public void FormatFileIsListedAndItsViewsNameRealTypes()
        {
            string text = ModuleFixture.ManifestText;
            Assert.Matches(@"FormatsToProcess\s*=\s*@\('VDiskPS\.Format\.ps1xml'\)", text);
            string format = File.ReadAllText(Path.Combine(ModuleFixture.RepoRoot, "src", "VDiskPS", "VDiskPS.Format.ps1xml"));
            var engine = typeof(VDiskPS.VDiskInfo).Assembly;
            foreach (Match m in Regex.Matches(format, "<TypeName>([^<]+)</TypeName>"))
            {
                Assert.NotNull(engine.GetType(m.Groups[1].Value));
            }
        }

        [Fact]
        public void TypesFileIsListedAndItsAliasesNameRealProperties()
        {
            Assert.Matches(@"TypesToProcess\s*=\s*@\('VDiskPS\.Types\.ps1xml'\)", ModuleFixture.ManifestText);
            var types = System.Xml.Linq.XDocument.Load(Path.Combine(ModuleFixture.RepoRoot, "src", "VDiskPS", "VDiskPS.Types.ps1xml"));
            var engine = typeof(VDiskPS.VDiskInfo).Assembly;
            foreach (var type in types.Root.Elements("Type"))
            {
                System.Type t = engine.GetType(type.Element("Name").Value);
                Assert.NotNull(t);
                foreach (var alias in type.Descendants("AliasProperty"))
                {
                    Assert.NotNull(t.GetProperty(alias.Element("ReferencedMemberName").Value));
                    Assert.Null(t.GetProperty(alias.Element("Name").Value));
                }
            }
        }

        [Fact]
        public void ModuleVersionMatchesTheAssemblies()
        {
            string version = Regex.Match(ModuleFixture.ManifestText, @"ModuleVersion\s*=\s*'([^']+)'").Groups[1].Value;
            Assert.StartsWith(version, typeof(VDiskPS.VDiskInfo).Assembly.GetName().Version.ToString());
        }
    }
}
