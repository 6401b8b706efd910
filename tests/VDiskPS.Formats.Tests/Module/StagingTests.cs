using System.IO;
using System.Xml.Linq;
using VDiskPS.Stage;
using Xunit;

namespace VDiskPS.Formats.Tests.Module
{
    public class StagingTests
    {
        [Fact]
        public void StagedModuleHasManifestAssembliesFormatsAndHelp()
        {
            using var dir = new TempDir();
            string output = Path.Combine(dir.Path, "VDiskPS");
            Stager.Stage(ModuleFixture.RepoRoot, ModuleFixture.Configuration, output);
            foreach (string file in new[] { "VDiskPS.psd1", "VDiskPS.dll", "VDiskPS.Formats.dll", "System.Memory.dll", "System.Buffers.dll", "System.Runtime.CompilerServices.Unsafe.dll", "VDiskPS.Format.ps1xml", "en-US/VDiskPS.dll-Help.xml", "x64/libzstd.dll", "x86/libzstd.dll" })
            {
                Assert.True(File.Exists(Path.Combine(output, file)), $"{file} is missing from the staged module");
            }

            Assert.False(File.Exists(Path.Combine(output, "System.Management.Automation.dll")), "the PowerShell reference assembly must not be shipped");
            XDocument.Load(Path.Combine(output, "en-US", "VDiskPS.dll-Help.xml"));
        }
    }
}
