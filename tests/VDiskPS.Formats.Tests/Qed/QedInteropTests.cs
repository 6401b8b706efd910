using System;
using System.IO;
using System.Linq;
using System.Text.Json;
using Xunit;

namespace VDiskPS.Formats.Tests.Qed
{
    /// <summary>QED images qemu-img and qemu-io make, read bit-exact; images the engine writes, judged by qemu-img check and compare.</summary>
    public class QedInteropTests
    {
        internal static void FillWithQemu(string path)
        {
            Qemu.Io("-f", "qed", "-c", "write -P 0x11 0 64k", "-c", "write -P 0x22 1M 1536k", "-c", "write -z 2M 256k", "-c", "write -P 0x33 3000k 4k", "-c", "write -P 0x44 4095k 1k", path);
        }

        internal static byte[] HeaderBytes(string path, int length = 64)
        {
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
            var raw = new byte[length];
            stream.ReadExactly(raw);
            return raw;
        }

        /// <summary>The header's features word, read by od (a writer holds the file's lock, which a .NET reader would take too).</summary>
        internal static ulong Features(string path) => ulong.Parse(Qemu.Run("od", new[] { "-An", "-t", "u8", "-j", "16", "-N", "8", path }, expectSuccess: true).Output.Trim());

        [Theory]
        [InlineData("cluster_size=65536", "4M")]
        [InlineData("cluster_size=4096,table_size=2", "4M")]
        [InlineData("cluster_size=4096,table_size=16", "4608K")]
        [InlineData("cluster_size=1M", "4194816")]
        public void QemuMadeQedReadsBitExact(string options, string size)
        {
            using var dir = new TempDir();
            string path = dir.File("q.qed");
            Qemu.Img("create", "-f", "qed", "-o", options, path, size);
            FillWithQemu(path);
            Assert.Equal(Qemu.ToRawBytes(path, "qed", dir.Path), TestData.ReadAll(path));
        }

        [Fact]
        public void BlockStatusMatchesQemuImgMap()
        {
            using var dir = new TempDir();
            string path = dir.File("m.qed");
            Qemu.Img("create", "-f", "qed", path, "8M");
            FillWithQemu(path);
            using var doc = JsonDocument.Parse(Qemu.Img("map", "--output=json", "-f", "qed", path));
            using var layer = FormatRegistry.Default.Open(path, null, new OpenOptions());
            foreach (JsonElement run in doc.RootElement.EnumerateArray())
            {
                long start = run.GetProperty("start").GetInt64();
                long length = run.GetProperty("length").GetInt64();
                bool data = run.GetProperty("data").GetBoolean();
                bool present = run.GetProperty("present").GetBoolean();
                for (long at = start; at < start + length;)
                {
                    BlockStatus status = layer.GetBlockStatus(at, start + length - at);
                    ExtentKind expected = data ? ExtentKind.Data : present ? ExtentKind.Zero : ExtentKind.Unallocated;
                    Assert.Equal(expected, status.Kind);
                    if (data)
                    {
                        Assert.Equal(run.GetProperty("offset").GetInt64() + (at - start), status.HostOffset);
                    }

                    at = status.End;
                }
            }
        }

        [Theory]
        [InlineData("qcow2")]
        [InlineData("raw")]
        public void QemuMadeOverlayReadsThroughItsBackingFile(string baseFormat)
        {
            using var dir = new TempDir();
            string basePath = dir.File("base." + baseFormat);
            Qemu.Img("create", "-f", baseFormat, basePath, "4M");
            Qemu.Io("-f", baseFormat, "-c", "write -P 0x55 0 4M", basePath);
            string child = dir.File("child.qed");
            Qemu.Img("create", "-f", "qed", "-b", "base." + baseFormat, "-F", baseFormat, child, "6M");
            Qemu.Io("-f", "qed", "-c", "write -P 0x66 100k 8k", "-c", "write -z 1M 64k", "-c", "write -P 0x77 4M 64k", child);

            using (var layer = FormatRegistry.Default.Open(child, null, new OpenOptions()))
            {
                Assert.Equal("base." + baseFormat, layer.Backing.RecordedPath);
                // Only plain data is recorded (the no-probe flag); any other parent is probed, as qemu does.
                Assert.Equal(baseFormat == "raw" ? FormatRegistry.Default.PlainDataFormat : (DiskFormat?)null, layer.Backing.Format);
                Assert.Equal(ExtentKind.Zero, layer.GetBlockStatus(1L << 20, 65536).Kind);
            }

            Assert.Equal(baseFormat == "raw", (Features(child) & 4) != 0);
            Assert.Equal(Qemu.ToRawBytes(child, "qed", dir.Path), TestData.ReadAll(child));
        }

        /// <summary>
        /// QED cannot record a parent's format, so a QED parent is probed; qemu opens a three-layer chain
        /// of them, and so does the engine (a raw base is still recorded "do not probe").
        /// </summary>
        [Fact]
        public void AChainOfThreeQedLayersReadsAsQemuReadsIt()
        {
            using var dir = new TempDir();
            string basePath = dir.File("base.raw");
            Qemu.Img("create", "-f", "raw", basePath, "4M");
            Qemu.Io("-f", "raw", "-c", "write -P 0x11 0 4M", basePath);
            string mid = dir.File("mid.qed");
            Qemu.Img("create", "-f", "qed", "-b", "base.raw", "-F", "raw", mid, "4M");
            Qemu.Io("-f", "qed", "-c", "write -P 0x22 1M 64k", mid);
            string top = dir.File("top.qed");
            Qemu.Img("create", "-f", "qed", "-b", "mid.qed", "-F", "qed", top, "4M");
            Qemu.Io("-f", "qed", "-c", "write -P 0x33 2M 8k", top);

            using (var chain = ImageChain.Open(top))
            {
                Assert.Equal(3, chain.Layers.Count);
            }

            Assert.Equal(Qemu.ToRawBytes(top, "qed", dir.Path), TestData.ReadAll(top));
        }

        [Fact]
        public void ConvertedQedPassesQemuCheckAndCompare()
        {
            using var dir = new TempDir();
            string raw = TestData.WriteRaw(dir, "src.raw", (5L << 20) + 3584);
            string qed = dir.File("dst.qed");
            ConvertOperation.Run(raw, qed, new ConvertOptions { TargetFormat = Fmt.Qed, Target = new CreateRequest { Options = OptionSet.Parse("cluster_size=4096") } });
            var check = Qemu.Check(qed, "qed");
            Assert.True(check.ExitCode == 0, check.Output);
            var (identical, output) = Qemu.Compare(raw, "raw", qed, "qed");
            Assert.True(identical, output);
            Assert.Equal(0UL, Features(qed) & 2);
        }

        [Fact]
        public void UnalignedWritesMatchQemuAndSetNeedCheckOnlyWhileOpen()
        {
            using var dir = new TempDir();
            string path = dir.File("w.qed");
            CreateOperation.Create(path, Fmt.Qed, new CreateRequest { Size = 6L << 20, Options = OptionSet.Parse("cluster_size=4096,table_size=2") });
            var expected = new byte[6L << 20];
            using (var layer = FormatRegistry.Default.Open(path, null, new OpenOptions { Writable = true }))
            {
                void Write(long offset, byte[] data)
                {
                    layer.Write(offset, data);
                    data.CopyTo(expected, offset);
                }

                Write(100, TestData.Pattern(1000, 1));
                Assert.Equal(2UL, Features(path) & 2);
                Write((2L << 20) - 300, TestData.Pattern(5000, 2));
                Write(3L << 20, TestData.Pattern(3 << 20, 3));
                Write(777, TestData.Pattern(10, 4));
            }

            Assert.Equal(0UL, Features(path) & 2);
            var check = Qemu.Check(path, "qed");
            Assert.True(check.ExitCode == 0, check.Output);
            Assert.Equal(expected, Qemu.ToRawBytes(path, "qed", dir.Path));
            Assert.Equal(expected, TestData.ReadAll(path));
        }

        [Theory]
        [InlineData("qcow2")]
        [InlineData("raw")]
        public void OverlayWritesCopyTheParentIntoPartialClusters(string baseFormat)
        {
            using var dir = new TempDir();
            string basePath = dir.File("base." + baseFormat);
            Qemu.Img("create", "-f", baseFormat, basePath, "4M");
            Qemu.Io("-f", baseFormat, "-c", "write -P 0x55 0 4M", basePath);
            string child = dir.File("child.qed");
            CreateOperation.Create(child, Fmt.Qed, new CreateRequest { Backing = new BackingReference("base." + baseFormat, DiskFormat.Parse(baseFormat)) });
            byte[] expected = Qemu.ToRawBytes(basePath, baseFormat, dir.Path);
            using (var chain = ImageChain.Open(child, new ChainOptions { Writable = true, AllowProbedBackingChain = true }))
            {
                void Write(long offset, byte[] data)
                {
                    chain.Top.Write(offset, data);
                    data.CopyTo(expected, offset);
                }

                Write(1000, TestData.Pattern(3000, 1));
                Write((1L << 20) + 65000, TestData.Pattern(200000, 2));
                chain.Top.WriteZeroes(2L << 20, 128 << 10);
                Array.Clear(expected, 2 << 20, 128 << 10);
                chain.Top.WriteZeroes((3L << 20) + 10, 100);
                Array.Clear(expected, (3 << 20) + 10, 100);
            }

            var info = Qemu.Info(child);
            Assert.Equal("base." + baseFormat, info.RootElement.GetProperty("backing-filename").GetString());
            var check = Qemu.Check(child, "qed");
            Assert.True(check.ExitCode == 0, check.Output);
            Assert.Equal(expected, Qemu.ToRawBytes(child, "qed", dir.Path));

            // The whole clusters written as zeros are zero clusters (present, reading zero), as qemu-io write -z makes.
            using var map = JsonDocument.Parse(Qemu.Img("map", "--output=json", child));
            Assert.Contains(map.RootElement.EnumerateArray(), run => run.GetProperty("start").GetInt64() == 2L << 20 && run.GetProperty("length").GetInt64() == 128 << 10
                && run.GetProperty("zero").GetBoolean() && run.GetProperty("depth").GetInt32() == 0);
        }

        [Fact]
        public void QemuCanWriteIntoAQedWeCreated()
        {
            using var dir = new TempDir();
            string path = dir.File("shared.qed");
            CreateOperation.Create(path, Fmt.Qed, new CreateRequest { Size = 4L << 20 });
            using (var layer = FormatRegistry.Default.Open(path, null, new OpenOptions { Writable = true }))
            {
                layer.Write(2L << 20, TestData.Pattern(4096, 5));
            }

            Qemu.Io("-f", "qed", "-c", "write -P 0x99 0 64k", "-c", "write -P 0x98 2M 512", path);
            var check = Qemu.Check(path, "qed");
            Assert.True(check.ExitCode == 0, check.Output);
            Assert.Equal(Qemu.ToRawBytes(path, "qed", dir.Path), TestData.ReadAll(path));
        }

        [Fact]
        public void GrowingKeepsDataAndShrinkingIsRefused()
        {
            using var dir = new TempDir();
            string path = dir.File("g.qed");
            Qemu.Img("create", "-f", "qed", path, "4M");
            FillWithQemu(path);
            byte[] before = Qemu.ToRawBytes(path, "qed", dir.Path);
            using (var layer = FormatRegistry.Default.Open(path, null, new OpenOptions { Writable = true }))
            {
                ((IResizableLayer)layer).Resize(9L << 20, false, Preallocation.Off);
                Assert.Throws<ImageOptionException>(() => ((IResizableLayer)layer).Resize(1L << 20, false, Preallocation.Off));
                Assert.Throws<ImageNotSupportedException>(() => ((IResizableLayer)layer).Resize(1L << 20, true, Preallocation.Off));
            }

            Assert.Equal(9L << 20, Qemu.Info(path).RootElement.GetProperty("virtual-size").GetInt64());
            var check = Qemu.Check(path, "qed");
            Assert.True(check.ExitCode == 0, check.Output);
            byte[] after = Qemu.ToRawBytes(path, "qed", dir.Path);
            Assert.Equal(before, after.Take(before.Length).ToArray());
            Assert.All(after.Skip(before.Length), b => Assert.Equal(0, b));
        }

        [Fact]
        public void MeasureMatchesTheFilesQemuImgWrites()
        {
            using var dir = new TempDir();
            string raw = dir.File("full.raw");
            File.WriteAllBytes(raw, TestData.Pattern(3 << 20, 1));
            string qed = dir.File("full.qed");
            Qemu.Img("convert", "-f", "raw", "-O", "qed", "-o", "cluster_size=4096,table_size=2", raw, qed);
            var driver = (ICreatableDriver)FormatRegistry.Default.Get(Fmt.Qed);
            var measured = driver.Measure(new CreateRequest { Size = 3L << 20, Options = OptionSet.Parse("cluster_size=4096,table_size=2") }, 3L << 20);
            Assert.Equal(new FileInfo(qed).Length, measured.FullyAllocated);
            Assert.Equal(new FileInfo(qed).Length, measured.Required);
            var empty = driver.Measure(new CreateRequest { Size = 3L << 20 }, 0);
            string blank = dir.File("blank.qed");
            Qemu.Img("create", "-f", "qed", blank, "3M");
            Assert.Equal(new FileInfo(blank).Length, empty.Required);
        }

        [Fact]
        public void CreatedImageHeaderMatchesQemuImgCreate()
        {
            using var dir = new TempDir();
            string ours = dir.File("ours.qed");
            string theirs = dir.File("theirs.qed");
            File.WriteAllBytes(dir.File("b.raw"), new byte[1 << 20]);
            CreateOperation.Create(ours, Fmt.Qed, new CreateRequest { Size = 3L << 20, Backing = new BackingReference("b.raw", FormatRegistry.Default.PlainDataFormat), Options = OptionSet.Parse("cluster_size=8192,table_size=8") });
            Qemu.Img("create", "-f", "qed", "-o", "cluster_size=8192,table_size=8", "-b", "b.raw", "-F", "raw", theirs, "3M");
            Assert.Equal(File.ReadAllBytes(theirs), File.ReadAllBytes(ours));
        }

        [Fact]
        public void TheRecordedParentChangesAsQemuImgRebaseUnsafeChangesIt()
        {
            using var dir = new TempDir();
            File.WriteAllBytes(dir.File("p.raw"), TestData.Pattern(1 << 20, 3));
            Qemu.Img("create", "-f", "qcow2", dir.File("p.qcow2"), "1M");
            string path = dir.File("c.qed");
            Qemu.Img("create", "-f", "qed", path, "1M");
            using (var layer = FormatRegistry.Default.Open(path, null, new OpenOptions { Writable = true }))
            {
                ((IParentChangeableLayer)layer).SetBacking(new BackingReference("p.raw", FormatRegistry.Default.PlainDataFormat), null);
            }

            var info = Qemu.Info(path).RootElement;
            Assert.Equal("p.raw", info.GetProperty("backing-filename").GetString());
            Assert.Equal("raw", info.GetProperty("backing-filename-format").GetString());
            Assert.Equal(File.ReadAllBytes(dir.File("p.raw")), Qemu.ToRawBytes(path, "qed", dir.Path));

            using (var layer = FormatRegistry.Default.Open(path, null, new OpenOptions { Writable = true }))
            {
                ((IParentChangeableLayer)layer).SetBacking(new BackingReference("p.qcow2", DiskFormat.Parse("qcow2")), null);
            }

            info = Qemu.Info(path).RootElement;
            Assert.Equal("p.qcow2", info.GetProperty("backing-filename").GetString());
            Assert.False(info.TryGetProperty("backing-filename-format", out _));
            Assert.Equal(0UL, Features(path) & 4);
            Assert.Equal(0, Qemu.Check(path, "qed").ExitCode);

            using (var layer = FormatRegistry.Default.Open(path, null, new OpenOptions { Writable = true }))
            {
                ((IParentChangeableLayer)layer).SetBacking(null, null);
            }

            Assert.False(Qemu.Info(path).RootElement.TryGetProperty("backing-filename", out _));
        }

        [Theory]
        [InlineData("table_size=1")]
        [InlineData("table_size=3")]
        [InlineData("cluster_size=2048")]
        [InlineData("cluster_size=100000")]
        [InlineData("unknown_option=1")]
        public void BadCreateOptionsAreRefused(string options)
        {
            using var dir = new TempDir();
            Assert.Throws<ImageOptionException>(() => CreateOperation.Create(dir.File("bad.qed"), Fmt.Qed, new CreateRequest { Size = 1L << 20, Options = OptionSet.Parse(options) }));
        }
    }
}
