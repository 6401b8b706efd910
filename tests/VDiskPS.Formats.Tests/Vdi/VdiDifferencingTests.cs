using System;
using System.IO;
using Xunit;

namespace VDiskPS.Formats.Tests.Vdi
{
    /// <summary>VDI differencing images (VirtualBox snapshots).</summary>
    /// <remarks>
    /// Engine-judged where a child is read: no tool here reads a VDI differencing image (qemu-img has
    /// no VDI backing support and VirtualBox is not installed). Bases and flattened copies are judged
    /// by qemu-img.
    /// </remarks>
    public class VdiDifferencingTests
    {
        private const long DiskSize = 5L << 20;

        private static byte[] MakeBase(string path)
        {
            CreateOperation.Create(path, Fmt.Vdi, new CreateRequest { Size = DiskSize });
            var content = new byte[DiskSize];
            using var layer = FormatRegistry.Default.Open(path, null, new OpenOptions { Writable = true });
            byte[] data = TestData.Pattern(3 << 20, 21);
            layer.Write(0, data);
            data.CopyTo(content, 0);
            return content;
        }

        private static void MakeChild(string child, string recordedParent)
        {
            CreateOperation.Create(child, Fmt.Vdi, new CreateRequest { Backing = new BackingReference(recordedParent, Fmt.Vdi) });
        }

        private static void WriteThrough(string path, byte[] expected, long offset, byte[] data)
        {
            using var chain = ImageChain.Open(path, new ChainOptions { Writable = true });
            chain.Top.Write(offset, data);
            data.CopyTo(expected, offset);
        }

        [Fact]
        public void ChildFindsItsParentByUuidBesideIt()
        {
            using var dir = new TempDir();
            byte[] expected = MakeBase(dir.File("base.vdi"));
            MakeChild(dir.File("{snapshot}.vdi"), "base.vdi");
            using var layer = FormatRegistry.Default.Open(dir.File("{snapshot}.vdi"), null, new OpenOptions());
            Assert.Equal("base.vdi", layer.Backing.RecordedPath);
            Assert.Equal(Fmt.Vdi, layer.Backing.Format);
            Assert.Equal(expected, TestData.ReadAll(dir.File("{snapshot}.vdi")));
        }

        [Fact]
        public void ChildInASnapshotsFolderFindsTheParentAbove()
        {
            using var dir = new TempDir();
            byte[] expected = MakeBase(dir.File("disk.vdi"));
            Directory.CreateDirectory(dir.File("Snapshots"));
            string child = Path.Combine(dir.Path, "Snapshots", "snap.vdi");
            MakeChild(child, "../disk.vdi");
            WriteThrough(child, expected, 4321, TestData.Pattern(9000, 1));
            Assert.Equal(expected, TestData.ReadAll(child));
        }

        [Fact]
        public void PartialWritesCopyTheRestOfTheBlockFromTheParent()
        {
            using var dir = new TempDir();
            byte[] expected = MakeBase(dir.File("base.vdi"));
            string child = dir.File("child.vdi");
            MakeChild(child, "base.vdi");
            WriteThrough(child, expected, 100, TestData.Pattern(50, 2));
            WriteThrough(child, expected, (1L << 20) - 10, TestData.Pattern(30, 3));
            WriteThrough(child, expected, (4L << 20) + 5, TestData.Pattern(1000, 4));
            Assert.Equal(expected, TestData.ReadAll(child));
            using var flat = new TempDir();
            string converted = flat.File("flat.vdi");
            ConvertOperation.Run(child, converted, new ConvertOptions { TargetFormat = Fmt.Vdi });
            Assert.Equal(expected, Qemu.ToRawBytes(converted, "vdi", flat.Path));
        }

        [Fact]
        public void ChainOfThreeReadsThroughEveryLevel()
        {
            using var dir = new TempDir();
            byte[] expected = MakeBase(dir.File("a.vdi"));
            MakeChild(dir.File("b.vdi"), "a.vdi");
            WriteThrough(dir.File("b.vdi"), expected, 2L << 20, TestData.Pattern(4096, 5));
            MakeChild(dir.File("c.vdi"), "b.vdi");
            WriteThrough(dir.File("c.vdi"), expected, (2L << 20) + 2048, TestData.Pattern(4096, 6));
            using var chain = ImageChain.Open(dir.File("c.vdi"));
            Assert.Equal(3, chain.Layers.Count);
            Assert.Equal(expected, TestData.ReadAll(dir.File("c.vdi")));
        }

        [Fact]
        public void MissingParentNamesItsUuid()
        {
            using var dir = new TempDir();
            MakeBase(dir.File("base.vdi"));
            MakeChild(dir.File("child.vdi"), "base.vdi");
            Guid parentUuid;
            using (var parent = FormatRegistry.Default.Open(dir.File("base.vdi"), null, new OpenOptions()))
            {
                parentUuid = ((VDiskPS.Formats.Vdi.VdiLayer)parent).ImageUuid;
            }

            File.Delete(dir.File("base.vdi"));
            // The layer opens (a pointer-only rebase can still give it a parent); its chain does not.
            var error = Assert.Throws<ImageChainException>(() => ImageChain.Open(dir.File("child.vdi")));
            Assert.Contains(parentUuid.ToString(), error.Message);
        }

        [Fact]
        public void DifferencingVdiNeedsAVdiParent()
        {
            using var dir = new TempDir();
            CreateOperation.Create(dir.File("base.raw"), Fmt.Raw, new CreateRequest { Size = 1 << 20 });
            var request = new CreateRequest { Backing = new BackingReference("base.raw", null) };
            Assert.Throws<ImageOptionException>(() => CreateOperation.Create(dir.File("child.vdi"), Fmt.Vdi, request));
            Assert.False(File.Exists(dir.File("child.vdi")));
        }
    }
}
