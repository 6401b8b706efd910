using System.IO;
using System.Linq;
using System.Text.RegularExpressions;
using VDiskPS.Formats.Tests.Module;
using Xunit;

namespace VDiskPS.Formats.Tests.Core
{
    /// <summary>
    /// The engine says what the caller could change as an <see cref="ImageErrorKind"/>, never as a
    /// cmdlet's switch: the cmdlet layer words it for the cmdlet being run.
    /// </summary>
    public class ErrorKindTests
    {
        // A switch (" -Force", "(-Unsafe") or a cmdlet name ("Set-VDisk") inside a string literal.
        private static readonly Regex s_switchOrCmdlet = new Regex(@"""[^""]*((^|[\s(""])-[A-Z][a-z]|\b[A-Z][a-z]+-VDisk)");

        [Fact]
        public void NoEngineMessageNamesASwitchOrACmdlet()
        {
            string engine = Path.Combine(ModuleFixture.RepoRoot, "src", "VDiskPS.Formats");
            var offenders = Directory.EnumerateFiles(engine, "*.cs", SearchOption.AllDirectories)
                .Where(f => !f.Contains(Path.DirectorySeparatorChar + "obj" + Path.DirectorySeparatorChar) && !f.Contains(Path.DirectorySeparatorChar + "bin" + Path.DirectorySeparatorChar))
                .SelectMany(f => File.ReadLines(f).Select((line, i) => (File: f, Line: i + 1, Text: line.Trim())))
                .Where(l => !l.Text.StartsWith("//", System.StringComparison.Ordinal) && s_switchOrCmdlet.IsMatch(l.Text))
                .Select(l => $"{Path.GetFileName(l.File)}:{l.Line}: {l.Text}")
                .ToList();
            Assert.True(offenders.Count == 0, string.Join("\n", offenders));
        }

        [Fact]
        public void AnExistingOutputIsItsOwnKind()
        {
            using var dir = new TempDir();
            string path = dir.File("there.qcow2");
            File.WriteAllBytes(path, new byte[512]);
            var e = Assert.Throws<ImageIOException>(() => new NewDiskPlan { Path = path, Size = 1 << 20 }.BuildRequest());
            Assert.Equal(ImageErrorKind.OutputExists, e.Kind);
            Assert.Equal(path, e.FilePath);
        }

        [Fact]
        public void AContradictionIsReportedBeforeTheExistingFile()
        {
            using var dir = new TempDir();
            string path = dir.File("there.vhdx");
            File.WriteAllBytes(path, new byte[512]);
            var e = Assert.Throws<ImageOptionException>(() => new NewDiskPlan { Path = path, Size = 1 << 20, Format = Fmt.Qcow2 }.BuildRequest());
            Assert.Equal(ImageErrorKind.FormatContradictsExtension, e.Kind);
        }

        [Fact]
        public void AFixedImageWithAParentIsRefused()
        {
            using var dir = new TempDir();
            var e = Assert.Throws<ImageOptionException>(() => new NewDiskPlan { Path = dir.File("c.qcow2"), Type = DiskType.Fixed, ParentPath = "p.qcow2" }.BuildRequest());
            Assert.Equal(ImageErrorKind.FixedWithParent, e.Kind);
        }

        [Theory]
        [InlineData("x.qcow2")]
        [InlineData("x.vdi")]
        [InlineData("x.raw")]
        public void ASubformatForAFormatWithoutOneIsRefused(string name)
        {
            using var dir = new TempDir();
            var e = Assert.Throws<ImageOptionException>(() => new NewDiskPlan { Path = dir.File(name), Size = 1 << 20, Subformat = "streamOptimized" }.BuildRequest());
            Assert.Equal(ImageErrorKind.SubformatNotApplicable, e.Kind);
        }

        [Fact]
        public void AVhdxSubformatIsQemusSubformatOption()
        {
            using var dir = new TempDir();
            CreateRequest request = new NewDiskPlan { Path = dir.File("x.vhdx"), Size = 1 << 20, Subformat = "fixed" }.BuildRequest();
            Assert.Null(request.Subformat);
            Assert.Equal("fixed", request.Options.Clone().GetString("subformat"));
        }

        [Fact]
        public void TheSubformatGivenTwiceIsRefused()
        {
            using var dir = new TempDir();
            var e = Assert.Throws<ImageOptionException>(() => new NewDiskPlan { Path = dir.File("x.vhdx"), Size = 1 << 20, Subformat = "fixed", Option = "subformat=dynamic" }.BuildRequest());
            Assert.Equal("subformat", e.Field);
        }

        [Fact]
        public void ShrinkingNotAllowedIsItsOwnKind()
        {
            using var dir = new TempDir();
            string path = dir.File("d.qcow2");
            CreateOperation.Create(path, Fmt.Qcow2, new CreateRequest { Size = 4 << 20 });
            var e = Assert.Throws<ImageOptionException>(() => ResizeOperation.Run(path, new ResizeOptions { Size = new DiskSize(1 << 20) }));
            Assert.Equal(ImageErrorKind.ShrinkNotAllowed, e.Kind);
            Assert.Equal(path, e.FilePath);
        }

        [Fact]
        public void TargetIsZeroWithoutWritingIntoAnExistingImageIsItsOwnKind()
        {
            using var dir = new TempDir();
            var e = Assert.Throws<ImageOptionException>(() => new ConvertPlan { SourcePath = dir.File("s.raw"), TargetIsZero = true }.BuildOptions(dir.File("t.raw"), Fmt.Raw));
            Assert.Equal(ImageErrorKind.TargetIsZeroWithoutExistingOutput, e.Kind);
        }
    }
}
