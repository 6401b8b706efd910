using System;
using System.IO;
using System.Threading;
using Xunit;

namespace VDiskPS.Formats.Tests.Operations
{
    /// <summary>
    /// Commit, rebase and delta convert on chains of real formats the engine builds, each result
    /// judged against the test's own model of the content by tools nobody here wrote (qemu-img for
    /// qcow2 and vmdk, libvhdi for VHD and VHDX, libvmdk for VMDK deltas: see <see cref="Judge"/>).
    /// CommitTests, RebaseTests and ConvertDeltaTests run the same operations on the in-memory test
    /// format as engine unit tests.
    /// </summary>
    public class ChainJudgedTests
    {
        private const long Size = 8L << 20;

        /// <summary>The formats with backing files that a tool here reads with their parents.</summary>
        public static TheoryData<DiskFormat> ChainFormats => new TheoryData<DiskFormat> { Fmt.Qcow2, Fmt.Vmdk, Fmt.Vhd, Fmt.Vhdx };

        /// <summary>base &lt;- mid &lt;- top, each writing over parts of the one below; returns the paths and the expected content.</summary>
        private static (string Base, string Mid, string Top, byte[] Model) ThreeLayers(TempDir dir, DiskFormat format)
        {
            string ext = "." + format.ToName();
            // VHDX blocks of 1 MiB keep the images small; the others use their defaults.
            long? unit = format == Fmt.Vhdx ? 1L << 20 : (long?)null;
            var model = new byte[Size];
            string basePath = dir.File("base" + ext);
            CreateOperation.Create(basePath, format, new CreateRequest { Size = Size, ClusterSize = unit });
            Write(basePath, model, (0, TestData.Pattern(1 << 20, 1)), (5L << 20, TestData.Pattern(512 << 10, 2)));
            string mid = dir.File("mid" + ext);
            CreateOperation.Create(mid, format, new CreateRequest { Backing = new BackingReference("base" + ext, format), ClusterSize = unit });
            // libvhdi 20210425 reads a VHD sector bitmap a byte (8 sectors) at a time, so the VHD chain
            // writes whole 4 KiB runs; VhdDifferencingTests cover partial sectors (engine-judged).
            int odd = format == Fmt.Vhd ? 0 : 100;
            Write(mid, model, ((512 << 10) + odd, TestData.Pattern(64 << 10, 4)), ((5L << 20) + (64 << 10), new byte[64 << 10]), (3L << 20, TestData.Pattern(192 << 10, 5)));
            string top = dir.File("top" + ext);
            CreateOperation.Create(top, format, new CreateRequest { Backing = new BackingReference("mid" + ext, format), ClusterSize = unit });
            Write(top, model, (192 << 10, TestData.Pattern(64 << 10, 6)), ((3L << 20) + (64 << 10) + (odd / 10), TestData.Pattern(odd == 0 ? 4096 : 10, 7)), (6L << 20, TestData.Pattern(128 << 10, 8)));
            return (basePath, mid, top, model);
        }

        private static void Write(string path, byte[] model, params (long Offset, byte[] Data)[] writes)
        {
            using var chain = ImageChain.Open(path, new ChainOptions { Writable = true });
            foreach (var (offset, data) in writes)
            {
                chain.Top.Write(offset, data);
                data.CopyTo(model, offset);
            }
        }

        private static void AssertHolds(TempDir dir, string image, DiskFormat format, byte[] model)
        {
            string reference = dir.File(Guid.NewGuid().ToString("N") + ".model.raw");
            File.WriteAllBytes(reference, model);
            Judge.AssertSameContent(image, format, reference);
            File.Delete(reference);
        }

        [Theory]
        [MemberData(nameof(ChainFormats))]
        public void TheChainItselfReadsAsTheModel(DiskFormat format)
        {
            using var dir = new TempDir();
            var (_, _, top, model) = ThreeLayers(dir, format);
            AssertHolds(dir, top, format, model);
        }

        [Theory]
        [MemberData(nameof(ChainFormats))]
        public void TheJudgeSeesOneWrongByte(DiskFormat format)
        {
            using var dir = new TempDir();
            var (_, _, top, model) = ThreeLayers(dir, format);
            model[(5L << 20) + 3] ^= 1;
            Assert.ThrowsAny<Xunit.Sdk.XunitException>(() => AssertHolds(dir, top, format, model));
        }

        [Theory]
        [MemberData(nameof(ChainFormats))]
        public void CommitIntoTheParentKeepsTheContent(DiskFormat format)
        {
            using var dir = new TempDir();
            var (_, mid, top, model) = ThreeLayers(dir, format);
            CommitOperation.Run(top, new CommitOptions { KeepTop = true });
            AssertHolds(dir, mid, format, model);
            AssertHolds(dir, top, format, model);
        }

        [Theory]
        [MemberData(nameof(ChainFormats))]
        public void CommitIntoTheGrandparentRepointsTheTop(DiskFormat format)
        {
            using var dir = new TempDir();
            var (basePath, _, top, model) = ThreeLayers(dir, format);
            CommitOperation.Run(top, new CommitOptions { BasePath = basePath, KeepTop = true });
            AssertHolds(dir, basePath, format, model);
            // The judge reads the top through the parent it records: the base now.
            File.Delete(dir.File("mid." + format.ToName()));
            AssertHolds(dir, top, format, model);
        }

        [Theory]
        [MemberData(nameof(ChainFormats))]
        public void SafeRebaseOntoTheGrandparentKeepsTheContent(DiskFormat format)
        {
            using var dir = new TempDir();
            var (_, _, top, model) = ThreeLayers(dir, format);
            RebaseOperation.Run(top, new RebaseOptions { NewParentPath = "base." + format.ToName(), NewParentFormat = format });
            File.Delete(dir.File("mid." + format.ToName()));
            AssertHolds(dir, top, format, model);
        }

        [Theory]
        [InlineData("qcow2")]
        [InlineData("vhdx")]
        public void CancelledCommitLeavesEveryLayerAsItWas(string formatName)
        {
            DiskFormat format = DiskFormat.Parse(formatName);
            using var dir = new TempDir();
            var (_, mid, top, model) = ThreeLayers(dir, format);
            using var cts = new CancellationTokenSource();
            cts.Cancel();
            Assert.ThrowsAny<OperationCanceledException>(() => CommitOperation.Run(top, new CommitOptions(), null, cts.Token));
            AssertHolds(dir, top, format, model);
        }

        [Theory]
        [MemberData(nameof(ChainFormats))]
        public void ConvertWithAParentWritesADeltaThatReadsAsTheSource(DiskFormat format)
        {
            using var dir = new TempDir();
            string ext = "." + format.ToName();
            byte[] content = TestData.Pattern((int)Size, 1);
            string parentRaw = dir.File("parent.raw");
            File.WriteAllBytes(parentRaw, content);
            string parent = dir.File("parent" + ext);
            ConvertOperation.Run(parentRaw, parent, new ConvertOptions { TargetFormat = format });
            byte[] changed = (byte[])content.Clone();
            changed[(3L << 20) + 17] ^= 0xFF;
            Array.Clear(changed, 6 << 20, 64 << 10);
            string source = dir.File("disk.raw");
            File.WriteAllBytes(source, changed);
            string delta = dir.File("delta" + ext);
            ConvertOperation.Run(source, delta, new ConvertOptions
            {
                TargetFormat = format,
                Target = new CreateRequest { Backing = new BackingReference("parent" + ext, format) },
            });
            Judge.AssertSameContent(parent, format, parentRaw);
            Judge.AssertSameContent(delta, format, source);
        }
    }
}
