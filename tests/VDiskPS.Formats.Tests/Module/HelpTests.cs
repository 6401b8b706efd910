using System.IO;
using System.Linq;
using System.Xml.Linq;
using VDiskPS.Stage;
using Xunit;

namespace VDiskPS.Formats.Tests.Module
{
    public class HelpTests
    {
        private static HelpDocument Doc(string name)
        {
            string file = Path.Combine(ModuleFixture.RepoRoot, "docs", "help", name + ".md");
            Assert.True(File.Exists(file), $"docs/help/{name}.md is missing");
            return HelpDocument.Parse(File.ReadAllText(file));
        }

        [Theory]
        [MemberData(nameof(ModuleFixture.CmdletNames), MemberType = typeof(ModuleFixture))]
        public void EveryCmdletHasSynopsisDescriptionAndTwoExamples(string name)
        {
            var doc = Doc(name);
            Assert.Equal(name, doc.Name);
            Assert.False(string.IsNullOrWhiteSpace(doc.Synopsis));
            Assert.False(string.IsNullOrWhiteSpace(doc.Description));
            Assert.True(doc.Examples.Count >= 2, $"{name} needs at least two examples");
            Assert.All(doc.Examples, e => Assert.Contains(name, e.Code));
        }

        [Theory]
        [MemberData(nameof(ModuleFixture.CmdletNames), MemberType = typeof(ModuleFixture))]
        public void EveryParameterIsDocumented(string name)
        {
            var doc = Doc(name);
            foreach (var p in HelpDocument.AllParameters(ModuleFixture.Get(name)))
            {
                var section = doc.Parameters.FirstOrDefault(x => x.Name == p.Name);
                Assert.True(section != null, $"{name} -{p.Name} is not documented");
                Assert.False(string.IsNullOrWhiteSpace(section.Description), $"{name} -{p.Name} has no description");
            }

            Assert.All(doc.Parameters, s => Assert.Contains(HelpDocument.AllParameters(ModuleFixture.Get(name)), p => p.Name == s.Name));
        }

        [Theory]
        [MemberData(nameof(ModuleFixture.CmdletNames), MemberType = typeof(ModuleFixture))]
        public void GeneratedSectionsMatchTheCompiledCmdlet(string name)
        {
            var doc = Doc(name);
            string expected = HelpDocument.Update(doc, ModuleFixture.Get(name)).Render();
            string actual = File.ReadAllText(Path.Combine(ModuleFixture.RepoRoot, "docs", "help", name + ".md"));
            Assert.True(expected == actual, $"docs/help/{name}.md is out of date: run 'dotnet run --project tools/VDiskPS.Stage -- update-help'");
        }

        [Fact]
        public void NoHelpFileForACmdletThatDoesNotExist()
        {
            var names = ModuleFixture.Cmdlets.Select(c => c.Name + ".md").ToHashSet();
            foreach (string file in Directory.GetFiles(Path.Combine(ModuleFixture.RepoRoot, "docs", "help"), "*-*.md"))
            {
                Assert.Contains(Path.GetFileName(file), names);
            }
        }

        [Fact]
        public void MamlHasACommandPerCmdletWithEveryParameter()
        {
            var docs = Stager.LoadHelp(ModuleFixture.RepoRoot);
            XDocument maml = MamlWriter.Write(docs);
            XNamespace command = "http://schemas.microsoft.com/maml/dev/command/2004/10";
            XNamespace maml2 = "http://schemas.microsoft.com/maml/2004/10";
            var commands = maml.Root.Elements(command + "command").ToList();
            Assert.Equal(ModuleFixture.Cmdlets.Count, commands.Count);
            foreach (var cmdlet in ModuleFixture.Cmdlets)
            {
                var element = commands.Single(c => c.Element(command + "details").Element(command + "name").Value == cmdlet.Name);
                var documented = element.Element(command + "parameters").Elements(command + "parameter").Select(p => p.Element(maml2 + "name").Value).ToList();
                foreach (var p in cmdlet.Parameters)
                {
                    Assert.Contains(p.Name, documented);
                }

                Assert.NotEmpty(element.Element(command + "examples").Elements());
                Assert.NotEmpty(element.Element(command + "syntax").Elements());
            }
        }
    }
}
