using System;
using System.Buffers.Binary;
using System.IO;
using Xunit;

namespace VDiskPS.Formats.Tests.Qcow
{
    /// <summary>
    /// Damaged qcow headers and tables give typed errors naming the field, and the consistency check
    /// finds what is damaged. Each damaged image starts as one qemu-img made; where the check's verdict
    /// is asserted, qemu (which has no qcow check) is the judge of what a repaired image reads.
    /// </summary>
    public class QcowHostileInputTests
    {
        private static string Make(TempDir dir, string name = "h.qcow")
        {
            string path = dir.File(name);
            Qemu.Img("create", "-q", "-f", "qcow", path, "5M");
            Qemu.Io("-f", "qcow", "-c", "write -P 0x11 0 8k", "-c", "write -P 0x22 3M 4k", path);
            return path;
        }

        private static void Patch(string path, long offset, byte[] bytes)
        {
            using var file = new FileStream(path, FileMode.Open, FileAccess.Write);
            file.Position = offset;
            file.Write(bytes);
        }

        private static byte[] Be32(uint v)
        {
            var b = new byte[4];
            BinaryPrimitives.WriteUInt32BigEndian(b, v);
            return b;
        }

        private static byte[] Be64(ulong v)
        {
            var b = new byte[8];
            BinaryPrimitives.WriteUInt64BigEndian(b, v);
            return b;
        }

        private static ImageLayer Open(string path) => FormatRegistry.Default.Open(path, Fmt.Qcow, new OpenOptions());

        [Theory]
        [InlineData(24, new byte[] { 0, 0, 0, 0, 0, 0, 0, 1 }, "size")]
        [InlineData(32, new byte[] { 8 }, "cluster_bits")]
        [InlineData(32, new byte[] { 17 }, "cluster_bits")]
        [InlineData(33, new byte[] { 5 }, "l2_bits")]
        [InlineData(33, new byte[] { 14 }, "l2_bits")]
        [InlineData(36, new byte[] { 0, 0, 0, 2 }, "crypt_method")]
        [InlineData(40, new byte[] { 0, 0, 0, 0, 0, 1, 0, 0 }, "l1_table_offset")]
        [InlineData(40, new byte[] { 0, 0, 0, 0, 0, 0, 0, 8 }, "l1_table_offset")]
        [InlineData(24, new byte[] { 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff }, "size")]
        [InlineData(24, new byte[] { 0, 0, 0x10, 0, 0, 0, 0, 0 }, "l1_table_offset")]
        public void DamagedHeaderFieldsAreCorruptionsNamingTheField(long offset, byte[] bytes, string field)
        {
            using var dir = new TempDir();
            string path = Make(dir);
            Patch(path, offset, bytes);
            var error = Assert.Throws<ImageCorruptException>(() => Open(path));
            Assert.Equal(field, error.Field);
            Assert.Equal(path, error.FilePath);
        }

        [Fact]
        public void OtherVersionsAreNotSupportedAndQcow2IsNotProbedAsQcow()
        {
            using var dir = new TempDir();
            string path = Make(dir);
            Patch(path, 4, Be32(2));
            var error = Assert.Throws<ImageNotSupportedException>(() => Open(path));
            Assert.Equal("version", error.Field);
            Assert.Contains("qcow2", error.Message);

            string qcow2 = dir.File("v.qcow2");
            Qemu.Img("create", "-q", "-f", "qcow2", qcow2, "1M");
            Assert.Equal(Fmt.Qcow2, FormatRegistry.Default.Probe(qcow2));
            Assert.Equal("version", Assert.Throws<ImageNotSupportedException>(() => Open(qcow2)).Field);
        }

        [Fact]
        public void ABackingNameTooLongOrPastTheEndIsACorruption()
        {
            using var dir = new TempDir();
            string path = Make(dir);
            Patch(path, 8, Be64(48));
            Patch(path, 16, Be32(1024));
            Assert.Equal("backing_file_size", Assert.Throws<ImageCorruptException>(() => Open(path)).Field);
            Patch(path, 8, Be64(1L << 40));
            Patch(path, 16, Be32(10));
            Assert.Equal("backing_file_offset", Assert.Throws<ImageCorruptException>(() => Open(path)).Field);
        }

        [Fact]
        public void TruncatedFilesAndForeignContentAreTypedErrors()
        {
            using var dir = new TempDir();
            string path = Make(dir);
            byte[] all = File.ReadAllBytes(path);
            File.WriteAllBytes(path, all.AsSpan(0, 40).ToArray());

            // A header cut short still carries the signature: it is a qcow image that does not open, never raw data.
            Assert.Equal(Fmt.Qcow, FormatRegistry.Default.Probe(path));
            Assert.Throws<ImageFormatMismatchException>(() => FormatRegistry.Default.Open(path, null, new OpenOptions()));
            File.WriteAllBytes(path, new byte[4096]);
            Assert.Equal("magic", Assert.Throws<ImageFormatMismatchException>(() => Open(path)).Field);
        }

        [Fact]
        public void AnL2TablePastTheEndIsReportedOnReadAndByTheCheck()
        {
            using var dir = new TempDir();
            string path = Make(dir);
            Patch(path, 48 + 8, Be64(1UL << 40));
            using (var layer = Open(path))
            {
                // The first L2 table is fine; the second (guest 2 MiB to 4 MiB) is not: runs stop before it.
                Assert.Equal(2L << 20, layer.GetBlockStatus(8192, layer.Size).End);
                var buffer = new byte[4096];
                layer.Read(0, buffer);
                Assert.Equal(0x11, buffer[0]);
                var error = Assert.Throws<ImageCorruptException>(() => layer.Read(3L << 20, buffer));
                Assert.Equal("L1 entry 1", error.Field);
                Assert.Equal(48 + 8, error.Offset);
            }

            var check = CheckOperation.Run(path, Fmt.Qcow, RepairMode.None);
            Assert.False(check.IsValid);
            Assert.Equal(1, check.Corruptions);

            var repaired = CheckOperation.Run(path, Fmt.Qcow, RepairMode.All);
            Assert.Equal(1, repaired.CorruptionsFixed);
            Assert.True(CheckOperation.Run(path, Fmt.Qcow, RepairMode.None).Corruptions == 0);

            // qemu reads the repaired image: the lost table's clusters read as zeros, the rest as written.
            var qemu = Qemu.Run("qemu-io", new[] { "-f", "qcow", "-r", "-c", "read -P 0x11 0 8k", "-c", "read -P 0 3M 4k", path });
            Assert.True(qemu.ExitCode == 0 && !qemu.Output.Contains("failed"), qemu.Output);
        }

        [Fact]
        public void DamagedL2EntriesAreCorruptionsAndRefusedWritesLeaveTheFileAlone()
        {
            using var dir = new TempDir();
            string path = Make(dir);
            long l2 = (long)BinaryPrimitives.ReadUInt64BigEndian(File.ReadAllBytes(path).AsSpan(48));
            // Cluster 1 past the end, cluster 2 unaligned, cluster 3 compressed into 0 bytes, cluster 4 onto the L2 table.
            Patch(path, l2 + 8, Be64(1UL << 40));
            Patch(path, l2 + 16, Be64(8192 + 100));
            Patch(path, l2 + 24, Be64((1UL << 63) | 8192));
            Patch(path, l2 + 32, Be64((ulong)l2));
            byte[] before = File.ReadAllBytes(path);
            using (var layer = FormatRegistry.Default.Open(path, Fmt.Qcow, new OpenOptions { Writable = true }))
            {
                var buffer = new byte[512];
                Assert.Throws<ImageCorruptException>(() => layer.Read(4096, buffer));
                Assert.Throws<ImageCorruptException>(() => layer.Read(8192, buffer));
                Assert.Throws<ImageCorruptException>(() => layer.Read(3 * 4096, buffer));

                // A write over a good cluster and a damaged one is refused before anything is written.
                Assert.Throws<ImageCorruptException>(() => layer.Write(0, new byte[8192]));
                var onTable = Assert.Throws<ImageCorruptException>(() => layer.Write(4 * 4096, new byte[10]));
                Assert.Contains("overlaps an L2 table", onTable.Message);
            }

            Assert.Equal(before, File.ReadAllBytes(path));
            var check = CheckOperation.Run(path, Fmt.Qcow, RepairMode.None);
            Assert.Equal(4, check.Corruptions);
        }

        [Fact]
        public void CompressedGarbageIsACorruption()
        {
            using var dir = new TempDir();
            string path = dir.File("z.qcow");
            Qemu.Img("create", "-q", "-f", "qcow", path, "1M");
            Qemu.Io("-f", "qcow", "-c", "write -c -P 0x11 0 4k", path);
            long l2 = (long)BinaryPrimitives.ReadUInt64BigEndian(File.ReadAllBytes(path).AsSpan(48));
            ulong entry = BinaryPrimitives.ReadUInt64BigEndian(File.ReadAllBytes(path).AsSpan((int)l2));
            Assert.True((entry & (1UL << 63)) != 0);
            long host = (long)(entry & ((1UL << 51) - 1));
            Patch(path, host, new byte[] { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff });
            using var layer = Open(path);
            var error = Assert.Throws<ImageCorruptException>(() => layer.Read(0, new byte[4096]));
            Assert.Equal("compressed cluster 0", error.Field);
        }

        [Fact]
        public void TheCheckPassesQemuMadeImagesAndCountsLeakedClusters()
        {
            using var dir = new TempDir();
            string path = Make(dir);
            var clean = CheckOperation.Run(path, Fmt.Qcow, RepairMode.None);
            Assert.True(clean.IsValid && clean.Leaks == 0, string.Join("; ", clean.Messages));
            Assert.Equal(3, clean.AllocatedClusters);
            Assert.Equal(1280, clean.TotalClusters);

            using (var file = new FileStream(path, FileMode.Open))
            {
                file.SetLength(file.Length + (2 * 4096));
            }

            var leaky = CheckOperation.Run(path, Fmt.Qcow, RepairMode.None);
            Assert.True(leaky.IsValid);
            Assert.Equal(2, leaky.Leaks);
        }
    }
}
