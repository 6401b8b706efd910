using System.IO;
using Xunit;

namespace VDiskPS.Formats.Tests.Operations
{
    /// <summary>The decisions New-VDisk and Convert-VDisk make, reachable without a PowerShell host.</summary>
    public class CommandPlanTests
    {
        [Theory]
        [InlineData("disk.img", "qcow2")]
        [InlineData("disk.raw", "vmdk")]
        [InlineData("DISK.IMG", "raw")]
        [InlineData("disk.qcow2", "qcow2")]
        public void ExplicitFormatWinsOverARawExtension(string name, string formatName)
        {
            DiskFormat format = DiskFormat.Parse(formatName);
            Assert.Equal(format, PathPlanner.FormatForNewFile(name, format));
        }

        [Theory]
        [InlineData("y.vhdx", "qcow2")]
        [InlineData("disk.qcow2", "raw")]
        [InlineData("disk.VMDK", "vhd")]
        public void ExplicitFormatContradictingTheExtensionIsRefused(string name, string formatName)
        {
            DiskFormat format = DiskFormat.Parse(formatName);
            var e = Assert.Throws<ImageOptionException>(() => PathPlanner.FormatForNewFile(name, format));
            Assert.Equal(ImageErrorKind.FormatContradictsExtension, e.Kind);
        }

        [Fact]
        public void ExtensionGivesTheFormat()
        {
            Assert.Equal(Fmt.Raw, PathPlanner.FormatForNewFile("/x/disk.img", null));
        }

        [Fact]
        public void UnknownExtensionAsksForFormat()
        {
            var e = Assert.Throws<ImageOptionException>(() => PathPlanner.FormatForNewFile("/x/disk.bak", null));
            Assert.Equal(ImageErrorKind.FormatNotNamed, e.Kind);
            Assert.Equal("format", e.Field);
        }

        [Fact]
        public void ConvertDestinationDefaultsBesideTheSourceWithTheNewExtension()
        {
            using var dir = new TempDir();
            string source = dir.File("vm.disk");
            File.WriteAllBytes(source, new byte[512]);
            string target = PathPlanner.ConvertDestination(source, null, Fmt.Raw, out var format);
            Assert.Equal(dir.File("vm.raw"), target);
            Assert.Equal(Fmt.Raw, format);
        }

        [Fact]
        public void ConvertIntoAFolderKeepsTheSourceName()
        {
            using var dir = new TempDir();
            string source = dir.File("vm.disk");
            Directory.CreateDirectory(dir.File("out"));
            Assert.Equal(Path.Combine(dir.File("out"), "vm.raw"), PathPlanner.ConvertDestination(source, dir.File("out"), Fmt.Raw, out _));
        }

        [Fact]
        public void ConvertIntoAFolderNeedsAFormat()
        {
            using var dir = new TempDir();
            var e = Assert.Throws<ImageOptionException>(() => PathPlanner.ConvertDestination(dir.File("vm.disk"), dir.Path, null, out _));
            Assert.Equal(ImageErrorKind.FormatNotNamed, e.Kind);
        }

        [Fact]
        public void DefaultDestinationThatIsTheSourceIsRefused()
        {
            using var dir = new TempDir();
            Assert.Throws<ImageOptionException>(() => PathPlanner.ConvertDestination(dir.File("vm.raw"), null, Fmt.Raw, out _));
        }

        [Fact]
        public void NewDiskNeedsASizeWithoutParentOrSource()
        {
            using var dir = new TempDir();
            var plan = new NewDiskPlan { Path = dir.File("a.raw") };
            var e = Assert.Throws<ImageOptionException>(() => plan.BuildRequest());
            Assert.Equal("size", e.Field);
            Assert.Equal(ImageErrorKind.SizeNotNamed, e.Kind);
        }

        [Fact]
        public void NewDiskRefusesAnExistingFileWithoutForce()
        {
            using var dir = new TempDir();
            File.WriteAllText(dir.File("a.raw"), "x");
            Assert.Throws<ImageIOException>(() => new NewDiskPlan { Path = dir.File("a.raw"), Size = 1 << 20 }.BuildRequest());
            Assert.True(new NewDiskPlan { Path = dir.File("a.raw"), Size = 1 << 20, Force = true }.BuildRequest().Overwrite);
        }

        [Fact]
        public void DifferencingNeedsAParent()
        {
            using var dir = new TempDir();
            var e = Assert.Throws<ImageOptionException>(() => new NewDiskPlan { Path = dir.File("a.raw"), Size = 1, Type = DiskType.Differencing }.BuildRequest());
            Assert.Equal("parent", e.Field);
            Assert.Equal(ImageErrorKind.ParentNotNamed, e.Kind);
        }

        [Fact]
        public void ParentPathIsRecordedAsWritten()
        {
            using var dir = new TempDir();
            var request = new NewDiskPlan { Path = dir.File("a.qcow2"), ParentPath = "../base.qcow2", ParentFormat = Fmt.Qcow2 }.BuildRequest();
            Assert.Equal("../base.qcow2", request.Backing.RecordedPath);
            Assert.Equal(Fmt.Qcow2, request.Backing.Format);
        }

        [Fact]
        public void OptionStringsAndHashtablesBecomeOptionSets()
        {
            using var dir = new TempDir();
            var request = new NewDiskPlan { Path = dir.File("a.raw"), Size = 1, Option = "preallocation=full" }.BuildRequest();
            Assert.Equal("full", request.Options.GetString("preallocation"));
            request = new NewDiskPlan { Path = dir.File("b.raw"), Size = 1, Option = new System.Collections.Hashtable { ["preallocation"] = "falloc" } }.BuildRequest();
            Assert.Equal("falloc", request.Options.GetString("preallocation"));
        }

        [Fact]
        public void NewDiskFromASourceCopiesIt()
        {
            using var dir = new TempDir();
            string source = dir.File("s.raw");
            CreateOperation.Create(source, Fmt.Raw, new CreateRequest { Size = 1 << 20 });
            using (var layer = FormatRegistry.Default.Open(source, null, new OpenOptions { Writable = true }))
            {
                layer.Write(4096, TestData.Pattern(4096, 5));
            }

            var info = new NewDiskPlan { Path = dir.File("n.img"), SourcePath = source }.Execute();
            Assert.Equal(1 << 20, info.Size);
            Assert.Equal(File.ReadAllBytes(source), File.ReadAllBytes(dir.File("n.img")));
        }

        [Fact]
        public void ConvertRefusesTargetIsZeroWithoutNoCreate()
        {
            using var dir = new TempDir();
            var plan = new ConvertPlan { SourcePath = dir.File("s.raw"), TargetIsZero = true };
            Assert.Throws<ImageOptionException>(() => plan.BuildOptions(dir.File("t.raw"), Fmt.Raw));
        }

        [Fact]
        public void ConvertNoCreateNeedsAnExistingDestination()
        {
            using var dir = new TempDir();
            var plan = new ConvertPlan { SourcePath = dir.File("s.raw"), NoCreate = true };
            Assert.Throws<ImageIOException>(() => plan.BuildOptions(dir.File("t.raw"), Fmt.Raw));
        }

        [Fact]
        public void ConvertDefaultsAreQemuDefaults()
        {
            using var dir = new TempDir();
            var options = new ConvertPlan { SourcePath = dir.File("s.raw") }.BuildOptions(dir.File("t.raw"), Fmt.Raw);
            Assert.Equal(4096, options.SparseSize);
            Assert.Equal(System.Environment.ProcessorCount, options.ThrottleLimit);
            Assert.Null(options.ReadsInFlight);
            Assert.False(options.Compress);
        }

        [Fact]
        public void AnExplicitThrottleLimitAlsoBoundsTheReadsInFlight()
        {
            using var dir = new TempDir();
            var options = new ConvertPlan { SourcePath = dir.File("s.raw"), ThrottleLimit = 1 }.BuildOptions(dir.File("t.raw"), Fmt.Raw);
            Assert.Equal((1, (int?)1), (options.ThrottleLimit, options.ReadsInFlight));
        }

        [Fact]
        public void AzureVhdRoundsUpToWholeMiBWithAWarning()
        {
            using var dir = new TempDir();
            var plan = new NewDiskPlan { Path = dir.File("azure.vhd"), Size = (10L << 20) + 1, Option = "azure=on" };
            var info = plan.Execute();
            Assert.Equal(11L << 20, info.Size);
            Assert.Equal("Fixed", info.Type);
            Assert.Single(plan.Warnings);
        }

        [Fact]
        public void AzureVhdCanRefuseInsteadOfRounding()
        {
            using var dir = new TempDir();
            var plan = new NewDiskPlan { Path = dir.File("azure.vhd"), Size = (10L << 20) + 1, Option = "azure=on,azure_round=refuse" };
            Assert.Throws<ImageOptionException>(() => plan.Execute());
            Assert.False(File.Exists(dir.File("azure.vhd")));
        }
    }
}
