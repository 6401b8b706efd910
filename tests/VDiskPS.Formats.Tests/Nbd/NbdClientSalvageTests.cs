using System;
using System.IO;
using System.Linq;
using Xunit;

namespace VDiskPS.Formats.Tests.Nbd
{
    /// <summary>
    /// Salvaging copies from an export with bad sectors: nbdkit's ddrescue filter fails reads of exactly
    /// the ranges a GNU ddrescue map marks bad, so the bad ranges reported can be checked byte for byte,
    /// and qemu-img compare judges that everything else arrived.
    /// </summary>
    public class NbdClientSalvageTests
    {
        private const int Size = 8 << 20;

        // Bad: one sector at 1 MiB, 64 KiB at 3 MiB, three sectors across a 64 KiB boundary near 5 MiB.
        private static readonly (long Offset, long Length)[] s_bad = { (1 << 20, 512), (3 << 20, 65536), ((5 << 20) - 512, 1536) };

        // For a local file, whole 4 KiB pages: the kernel's page cache reads (and fails) a page at a time.
        private static readonly (long Offset, long Length)[] s_badPages = { (1 << 20, 4096), (3 << 20, 65536) };

        private static (string Source, ExternalNbdServer Server) Serve(TempDir dir)
        {
            (string source, string map) = SourceAndMap(dir, s_bad);
            return (source, ExternalNbdServer.Nbdkit(dir, "-r", "--filter=ddrescue", "file", source, "ddrescue-mapfile=" + map));
        }

        /// <summary>The source and a GNU ddrescue map marking <paramref name="bad"/> unreadable.</summary>
        private static (string Source, string Map) SourceAndMap(TempDir dir, (long Offset, long Length)[] bad)
        {
            string source = dir.File("source.raw");
            File.WriteAllBytes(source, TestData.Pattern(Size, 11));
            string map = dir.File("bad.map");
            using (var writer = new StreamWriter(map))
            {
                writer.WriteLine("# Mapfile");
                writer.WriteLine("0x00000000     ?               1");
                long at = 0;
                foreach (var (offset, length) in bad)
                {
                    writer.WriteLine($"0x{at:x}  0x{offset - at:x}  +");
                    writer.WriteLine($"0x{offset:x}  0x{length:x}  -");
                    at = offset + length;
                }

                writer.WriteLine($"0x{at:x}  0x{Size - at:x}  +");
            }

            return (source, map);
        }

        /// <summary>The source with the bad ranges zeroed: what a salvaged copy must hold.</summary>
        private static string Expected(TempDir dir, string source, (long Offset, long Length)[] bad = null)
        {
            byte[] bytes = File.ReadAllBytes(source);
            foreach (var (offset, length) in bad ?? s_bad)
            {
                Array.Clear(bytes, (int)offset, (int)length);
            }

            string expected = dir.File("expected.raw");
            File.WriteAllBytes(expected, bytes);
            return expected;
        }

        [Fact]
        public void WithoutSalvageTheFirstBadSectorFailsTheConversionNamingItsOffset()
        {
            using var dir = new TempDir();
            var (_, server) = Serve(dir);
            using (server)
            {
                var e = Assert.Throws<ImageReadException>(() => ConvertOperation.Run(server.Uri, dir.File("out.raw"), new ConvertOptions { TargetFormat = Fmt.Raw }));
                Assert.Contains("NBD READ", e.Message);
                Assert.True(e.Offset <= 1 << 20 && e.Offset + e.Length > 1 << 20, $"{e.Offset}+{e.Length}");
                Assert.False(File.Exists(dir.File("out.raw")));
            }
        }

        [Fact]
        public void ConvertWithSalvageReportsExactlyTheBadRangesAndCopiesEverythingElse()
        {
            using var dir = new TempDir();
            var (source, server) = Serve(dir);
            string output = dir.File("out.qcow2");
            var log = new SalvageLog();
            using (server)
            {
                ConvertOperation.Run(server.Uri, output, new ConvertOptions { TargetFormat = Fmt.Qcow2, Salvage = log, ThrottleLimit = 4 });
            }

            Assert.Equal(s_bad, log.Ranges.Select(r => (r.Offset, r.Length)).ToArray());
            Assert.All(log.Ranges, r => Assert.Contains("EIO", r.Reason));
            Assert.Equal(s_bad.Sum(r => r.Length), log.BadBytes);
            var (identical, text) = Qemu.Compare(Expected(dir, source), "raw", output, "qcow2");
            Assert.True(identical, text);
            Assert.Equal(0, Qemu.Check(output, "qcow2").ExitCode);
        }

        [Fact]
        public void DdWithSalvageReportsTheBadRangesInSourceOffsets()
        {
            using var dir = new TempDir();
            var (source, server) = Serve(dir);
            string output = dir.File("out.raw");
            var log = new SalvageLog();
            using (server)
            {
                DdOperation.Run(server.Uri, output, new DdOptions { BlockSize = 1 << 20, Skip = 1, Salvage = log });
            }

            Assert.Equal(s_bad, log.Ranges.Select(r => (r.Offset, r.Length)).ToArray());

            // The output starts at input block 1: compare it with the expected bytes from 1 MiB on.
            byte[] expected = File.ReadAllBytes(Expected(dir, source)).Skip(1 << 20).ToArray();
            Assert.True(File.ReadAllBytes(output).AsSpan().SequenceEqual(expected));
        }

        [Fact]
        public void ALocalFileWithBadSectorsIsSalvagedLikeAnExport()
        {
            // nbdfuse (libnbd) turns the failing export into a local file whose bad pages fail read(2) with EIO.
            using var dir = new TempDir();
            (string source, string map) = SourceAndMap(dir, s_badPages);
            string mount = dir.File("mnt");
            Directory.CreateDirectory(mount);
            string local = Path.Combine(mount, "disk.raw");
            var fuse = System.Diagnostics.Process.Start("nbdfuse", new[] { local, "[", "nbdkit", "-r", "--filter=ddrescue", "file", source, "ddrescue-mapfile=" + map, "]" });
            try
            {
                for (int wait = 0; !File.Exists(local); wait++)
                {
                    Assert.False(fuse.HasExited || wait > 400, "nbdfuse did not start");
                    System.Threading.Thread.Sleep(50);
                }

                Assert.Throws<ImageReadException>(() => ConvertOperation.Run(local, dir.File("fail.raw"), new ConvertOptions { TargetFormat = Fmt.Raw }));
                string output = dir.File("out.raw");
                var log = new SalvageLog();
                ConvertOperation.Run(local, output, new ConvertOptions { TargetFormat = Fmt.Raw, Salvage = log });
                Assert.Equal(s_badPages, log.Ranges.Select(r => (r.Offset, r.Length)).ToArray());
                var (identical, text) = Qemu.Compare(Expected(dir, source, s_badPages), "raw", output, "raw");
                Assert.True(identical, text);
            }
            finally
            {
                Qemu.Run("fusermount3", new[] { "-u", mount });
                fuse.WaitForExit(10000);
            }
        }
    }
}
