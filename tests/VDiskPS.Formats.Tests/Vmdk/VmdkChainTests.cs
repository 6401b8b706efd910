using System;
using System.IO;
using Xunit;

namespace VDiskPS.Formats.Tests.Vmdk
{
    public class VmdkChainTests
    {
        private const long Size = 4L << 20;

        [Fact]
        public void DeltaDiskRecordsParentNameAndCid()
        {
            using var dir = new TempDir();
            string gold = CreateGold(dir);
            string child = CreateChild(dir, "child.vmdk", "gold.vmdk");
            using var json = Qemu.Info(child, "vmdk");
            Assert.Equal("gold.vmdk", json.RootElement.GetProperty("backing-filename").GetString());
            using var parent = (Formats.Vmdk.VmdkLayer)FormatRegistry.Default.Open(gold, Fmt.Vmdk, new OpenOptions());
            Assert.Equal((long)parent.Cid, json.RootElement.GetProperty("format-specific").GetProperty("data").GetProperty("parent-cid").GetInt64());
        }

        [Fact]
        public void ThreeLevelChainReadsRebasesAndCommits()
        {
            using var dir = new TempDir();
            string gold = CreateGold(dir);
            byte[] expected = File.ReadAllBytes(ToRaw(dir, gold));

            string department = CreateChild(dir, "department.vmdk", "gold.vmdk");
            WriteThroughChain(department, expected, 70000, TestData.Pattern(100000, 11));
            string user = CreateChild(dir, "user.vmdk", "department.vmdk");
            byte[] userData = TestData.Pattern(3000, 12);
            WriteThroughChain(user, expected, 65536 + 100, userData);

            // Read: the engine and qemu agree with the expected merge of all three layers.
            Assert.Equal(expected, TestData.ReadAll(user));
            Assert.Equal(expected, Qemu.ToRawBytes(user, "vmdk", dir.Path));
            Assert.Equal(0, Qemu.Check(user, "vmdk").ExitCode);

            // Commit: the user's grains go into the department image through its Write.
            using (var chain = ImageChain.Open(user, new ChainOptions { WritableDepth = 1 }))
            {
                ImageLayer top = chain.Layers[0];
                ImageLayer parent = chain.Layers[1];
                for (long offset = 0; offset < top.Size;)
                {
                    BlockStatus status = top.GetBlockStatus(offset, top.Size - offset);
                    if (status.Kind == ExtentKind.Data)
                    {
                        var buffer = new byte[status.Length];
                        top.Read(offset, buffer);
                        parent.Write(offset, buffer);
                    }

                    offset = status.End;
                }
            }

            Assert.Equal(expected, Qemu.ToRawBytes(department, "vmdk", dir.Path));
            Assert.Equal(0, Qemu.Check(department, "vmdk").ExitCode);

            // Rebase pointer-only: the user image now sits directly on gold; only its own grains remain.
            using (var chain = ImageChain.Open(user, new ChainOptions { Writable = true, IgnoreParentMismatch = true }))
            using (var newParent = FormatRegistry.Default.Open(gold, Fmt.Vmdk, new OpenOptions()))
            {
                ((IParentChangeableLayer)chain.Top).SetBacking(new BackingReference("gold.vmdk", Fmt.Vmdk), newParent);
            }

            byte[] rebased = File.ReadAllBytes(ToRaw(dir, gold, "gold2.raw"));
            Array.Copy(expected, 65536, rebased, 65536, 65536);
            Assert.Equal(rebased, TestData.ReadAll(user));
            Assert.Equal(rebased, Qemu.ToRawBytes(user, "vmdk", dir.Path));
        }

        [Fact]
        public void ParentCidMismatchIsReportedAndCanBeOverridden()
        {
            using var dir = new TempDir();
            string gold = CreateGold(dir);
            string child = CreateChild(dir, "child.vmdk", "gold.vmdk");
            using (var layer = FormatRegistry.Default.Open(gold, Fmt.Vmdk, new OpenOptions { Writable = true }))
            {
                layer.Write(0, new byte[512]);
            }

            var e = Assert.Throws<ImageParentMismatchException>(() => TestData.ReadAll(child));
            Assert.Equal("parentCID", e.Field);
            using var chain = ImageChain.Open(child, new ChainOptions { IgnoreParentMismatch = true });
            var buffer = new byte[512];
            chain.Read(0, buffer);
            Assert.Equal(new byte[512], buffer);
        }

        [Fact]
        public void QemuDeltaDiskReadsBitExact()
        {
            using var dir = new TempDir();
            string gold = CreateGold(dir);
            string child = dir.File("qchild.vmdk");
            Qemu.Img("create", "-q", "-f", "vmdk", "-b", "gold.vmdk", "-F", "vmdk", child);
            Qemu.Io("-f", "vmdk", "-c", "write -P 0x42 1000 70000", child);
            Assert.Equal(Qemu.ToRawBytes(child, "vmdk", dir.Path), TestData.ReadAll(child));
        }

        [Fact]
        public void FirstWriteGivesTheDiskANewCid()
        {
            using var dir = new TempDir();
            string gold = CreateGold(dir);
            uint before;
            using (var layer = (Formats.Vmdk.VmdkLayer)FormatRegistry.Default.Open(gold, Fmt.Vmdk, new OpenOptions { Writable = true }))
            {
                before = layer.Cid;
                layer.Write(0, new byte[] { 1 });
                Assert.NotEqual(before, layer.Cid);
            }

            using var json = Qemu.Info(gold, "vmdk");
            Assert.NotEqual((long)before, json.RootElement.GetProperty("format-specific").GetProperty("data").GetProperty("cid").GetInt64());
        }

        [Fact]
        public void ConvertOntoAParentWritesADeltaThatQemuReadsAsTheSource()
        {
            using var dir = new TempDir();
            string gold = CreateGold(dir);
            string source = dir.File("source.raw");
            byte[] content = Qemu.ToRawBytes(gold, "vmdk", dir.Path);
            TestData.Pattern(5000, 20).CopyTo(content, 100000);
            File.WriteAllBytes(source, content);
            string delta = dir.File("delta.vmdk");
            ConvertOperation.Run(source, delta, new ConvertOptions
            {
                TargetFormat = Fmt.Vmdk,
                Target = new CreateRequest { Backing = new BackingReference("gold.vmdk", Fmt.Vmdk) },
            });
            Assert.Equal(0, Qemu.Check(delta, "vmdk").ExitCode);
            var (identical, output) = Qemu.Compare(source, "raw", delta, "vmdk");
            Assert.True(identical, output);
            using var layer = FormatRegistry.Default.Open(delta, Fmt.Vmdk, new OpenOptions());
            Assert.Equal(ExtentKind.Unallocated, layer.GetBlockStatus(0, 65536).Kind);
            Assert.Equal(ExtentKind.Data, layer.GetBlockStatus(65536, 65536).Kind);
        }

        [Fact]
        public void NonVmdkParentIsRefused()
        {
            using var dir = new TempDir();
            string raw = dir.File("base.raw");
            CreateOperation.Create(raw, Fmt.Raw, new CreateRequest { Size = Size });
            var e = Assert.Throws<ImageOptionException>(() => CreateOperation.Create(dir.File("c.vmdk"), Fmt.Vmdk, new CreateRequest { Backing = new BackingReference("base.raw", Fmt.Raw) }));
            Assert.Equal("backing_fmt", e.Field);
        }

        private static string CreateGold(TempDir dir)
        {
            string gold = dir.File("gold.vmdk");
            CreateOperation.Create(gold, Fmt.Vmdk, new CreateRequest { Size = Size });
            using var layer = FormatRegistry.Default.Open(gold, Fmt.Vmdk, new OpenOptions { Writable = true });
            layer.Write(0, TestData.Pattern(300000, 10));
            layer.Write(Size - 65536, TestData.Pattern(65536, 13));
            return gold;
        }

        private static string CreateChild(TempDir dir, string name, string parent)
        {
            string path = dir.File(name);
            CreateOperation.Create(path, Fmt.Vmdk, new CreateRequest { Backing = new BackingReference(parent, Fmt.Vmdk) });
            return path;
        }

        private static void WriteThroughChain(string path, byte[] expected, long offset, byte[] data)
        {
            using var chain = ImageChain.Open(path, new ChainOptions { Writable = true });
            chain.Top.Write(offset, data);
            data.CopyTo(expected, offset);
        }

        private static string ToRaw(TempDir dir, string path, string name = "gold.raw")
        {
            string raw = dir.File(name);
            Qemu.Img("convert", "-f", "vmdk", "-O", "raw", path, raw);
            return raw;
        }
    }
}
