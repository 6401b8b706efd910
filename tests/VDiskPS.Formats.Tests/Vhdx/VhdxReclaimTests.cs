using System;
using System.IO;
using System.Threading;
using Xunit;

namespace VDiskPS.Formats.Tests.Vhdx
{
    /// <summary>Discard and optimize give space back without changing what the disk reads.</summary>
    public class VhdxReclaimTests
    {
        private const long MiB = 1L << 20;

        [Fact]
        public void DiscardedWholeBlockIsUnallocatedAndReadsZeros()
        {
            using var dir = new TempDir();
            string path = dir.File("d.vhdx");
            CreateOperation.Create(path, Fmt.Vhdx, new CreateRequest { Size = 4 * MiB, ClusterSize = MiB });
            var expected = new byte[4 * MiB];
            using (var layer = FormatRegistry.Default.Open(path, null, new OpenOptions { Writable = true }))
            {
                byte[] data = TestData.Pattern((int)(3 * MiB), 1);
                layer.Write(0, data);
                data.CopyTo(expected, 0);
                ((IDiscardableLayer)layer).Discard(MiB - 100, MiB + 200);
                Array.Clear(expected, (int)MiB - 100, (int)MiB + 200);
                Assert.Equal(ExtentKind.Unallocated, layer.GetBlockStatus(MiB, MiB).Kind);
            }

            Assert.Equal(0, Qemu.Check(path, "vhdx").ExitCode);
            Assert.Equal(expected, Qemu.ToRawBytes(path, "vhdx", dir.Path));
        }

        [Fact]
        public void DiscardInChildShowsTheParentAgain()
        {
            using var dir = new TempDir();
            string parent = dir.File("p.vhdx");
            CreateOperation.Create(parent, Fmt.Vhdx, new CreateRequest { Size = 4 * MiB, ClusterSize = MiB });
            byte[] content = TestData.Pattern((int)(4 * MiB), 2);
            using (var layer = FormatRegistry.Default.Open(parent, null, new OpenOptions { Writable = true }))
            {
                layer.Write(0, content);
            }

            string child = dir.File("c.vhdx");
            CreateOperation.Create(child, Fmt.Vhdx, new CreateRequest { Backing = new BackingReference("p.vhdx", Fmt.Vhdx) });
            using (var chain = ImageChain.Open(child, new ChainOptions { Writable = true }))
            {
                chain.Top.Write(0, new byte[3 * MiB]);
                ((IDiscardableLayer)chain.Top).Discard(4096, 8192);
                ((IDiscardableLayer)chain.Top).Discard(2 * MiB, MiB);
            }

            byte[] expected = new byte[4 * MiB];
            content.CopyTo(expected, 0);
            Array.Clear(expected, 0, (int)(2 * MiB));
            content.AsSpan(4096, 8192).CopyTo(expected.AsSpan(4096));
            Assert.Equal(expected, TestData.ReadAll(child));
        }

        [Fact]
        public void OptimizeDropsZeroBlocksAndShrinksTheFile()
        {
            using var dir = new TempDir();
            string path = dir.File("o.vhdx");
            CreateOperation.Create(path, Fmt.Vhdx, new CreateRequest { Size = 8 * MiB, ClusterSize = MiB });
            var expected = new byte[8 * MiB];
            using (var layer = FormatRegistry.Default.Open(path, null, new OpenOptions { Writable = true }))
            {
                layer.Write(0, new byte[6 * MiB]);
                byte[] tail = TestData.Pattern((int)(2 * MiB), 3);
                layer.Write(6 * MiB, tail);
                tail.CopyTo(expected, (int)(6 * MiB));
            }

            long before = new FileInfo(path).Length;
            long saved;
            using (var layer = FormatRegistry.Default.Open(path, null, new OpenOptions { Writable = true }))
            {
                saved = ((IOptimizableLayer)layer).Optimize(null, CancellationToken.None);
            }

            Assert.Equal(6 * MiB, saved);
            Assert.Equal(before - saved, new FileInfo(path).Length);
            var check = Qemu.Check(path, "vhdx");
            Assert.True(check.ExitCode == 0, check.Output);
            Assert.Equal(expected, Qemu.ToRawBytes(path, "vhdx", dir.Path));
        }

        [Fact]
        public void OptimizeKeepsAChildsContent()
        {
            using var dir = new TempDir();
            string parent = dir.File("p.vhdx");
            CreateOperation.Create(parent, Fmt.Vhdx, new CreateRequest { Size = 4 * MiB, ClusterSize = MiB });
            byte[] content = TestData.Pattern((int)(4 * MiB), 4);
            using (var layer = FormatRegistry.Default.Open(parent, null, new OpenOptions { Writable = true }))
            {
                layer.Write(0, content);
            }

            string child = dir.File("c.vhdx");
            CreateOperation.Create(child, Fmt.Vhdx, new CreateRequest { Backing = new BackingReference("p.vhdx", Fmt.Vhdx) });
            using (var chain = ImageChain.Open(child, new ChainOptions { Writable = true }))
            {
                chain.Top.Write(0, new byte[MiB]);
                byte[] data = TestData.Pattern(5000, 5);
                chain.Top.Write((3 * MiB) + 100, data);
                Array.Clear(content, 0, (int)MiB);
                data.CopyTo(content, (int)(3 * MiB) + 100);
                Assert.True(((IOptimizableLayer)chain.Top).Optimize(null, CancellationToken.None) > 0);
            }

            Assert.Equal(content, TestData.ReadAll(child));
            using var reopened = FormatRegistry.Default.Open(child, null, new OpenOptions());
            Assert.True(((ICheckableLayer)reopened).Check(RepairMode.None).IsValid);
        }
    }
}
