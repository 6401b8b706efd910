using System;
using System.Collections.Generic;
using System.IO;
using System.Security.Cryptography;
using VDiskPS.Formats.Vhdx;
using Xunit;

namespace VDiskPS.Formats.Tests.Vhdx
{
    /// <summary>Pending logs: replayed in memory for readers, on disk for writers; torn entries ignored.</summary>
    public class VhdxLogTests
    {
        private const long MiB = 1L << 20;

        private sealed class PendingLogImage
        {
            public string Path;
            public byte[] Expected;
            public byte[] WithoutLog;
            public Guid LogGuid;
            public long Block0Host;
            public long NewHost;
            public long FileLength;
        }

        /// <summary>An image (Hyper-V style when 4 KiB sectors) with a log entry that changes data in block 0 and maps block 2.</summary>
        private static PendingLogImage MakePendingLog(TempDir dir, int sectorSize, bool inject = true)
        {
            var image = new PendingLogImage { Path = dir.File($"log{sectorSize}.vhdx"), LogGuid = Guid.NewGuid() };
            CreateOperation.Create(image.Path, Fmt.Vhdx, new CreateRequest { Size = 8 * MiB, ClusterSize = MiB, LogicalSectorSize = sectorSize, PhysicalSectorSize = 4096 });
            byte[] a = TestData.Pattern((int)MiB, 1);
            using (var layer = FormatRegistry.Default.Open(image.Path, null, new OpenOptions { Writable = true }))
            {
                layer.Write(0, a);
            }

            image.WithoutLog = new byte[8 * MiB];
            a.CopyTo(image.WithoutLog, 0);
            image.Block0Host = BatState.OffsetOf(VhdxSurgery.ReadBatEntry(image.Path, 0));
            image.FileLength = new FileInfo(image.Path).Length;
            image.NewHost = (image.FileLength + MiB - 1) / MiB * MiB;
            image.Expected = (byte[])image.WithoutLog.Clone();
            Array.Fill(image.Expected, (byte)0xBB, 0, 4096);
            Array.Fill(image.Expected, (byte)0xCC, (int)(2 * MiB) + 4096, 4096);
            if (inject)
            {
                byte[] entry = VhdxSurgery.Entry(image.LogGuid, 1, image.NewHost + MiB, image.FileLength, EntryPages(image));
                VhdxSurgery.InjectLog(image.Path, image.LogGuid, (0, entry));
            }

            return image;
        }

        private static KeyValuePair<long, byte[]>[] EntryPages(PendingLogImage image) => new[]
        {
            new KeyValuePair<long, byte[]>(image.Block0Host, VhdxSurgery.Page(0xBB)),
            VhdxSurgery.BatPageWith(image.Path, 2, BatState.Make(BatState.FullyPresent, image.NewHost)),
            new KeyValuePair<long, byte[]>(image.NewHost + 4096, VhdxSurgery.Page(0xCC)),

            // qemu's replay does not extend the file to LastFileOffset; logging the block's last page does.
            new KeyValuePair<long, byte[]>(image.NewHost + MiB - 4096, VhdxSurgery.Page(0)),
        };

        private static byte[] Hash(string path) => SHA256.HashData(File.ReadAllBytes(path));

        [Theory]
        [InlineData(4096)]
        [InlineData(512)]
        public void ReadOnlyOpenShowsLoggedDataAndLeavesTheFileUnchanged(int sectorSize)
        {
            using var dir = new TempDir();
            var image = MakePendingLog(dir, sectorSize);
            byte[] before = Hash(image.Path);
            Assert.Equal(image.Expected, TestData.ReadAll(image.Path));
            Assert.True(ImageInspector.Get(image.Path).Dirty);
            Assert.Equal(before, Hash(image.Path));
        }

        [Fact]
        public void WritableOpenReplaysTheLogOnDiskAndEmptiesIt()
        {
            using var dir = new TempDir();
            var image = MakePendingLog(dir, 4096);
            using (FormatRegistry.Default.Open(image.Path, null, new OpenOptions { Writable = true }))
            {
            }

            Assert.Equal(Guid.Empty, VhdxSurgery.ReadHeader(image.Path).LogGuid);
            Assert.True(new FileInfo(image.Path).Length >= image.NewHost + MiB);
            Assert.Equal(image.Expected, TestData.ReadAll(image.Path));
            Assert.False(ImageInspector.Get(image.Path).Dirty);

            // qemu 7.2 opens only 512-byte-sector VHDX files; this module's own check judges the 4 KiB one.
            using var layer = FormatRegistry.Default.Open(image.Path, null, new OpenOptions());
            var result = ((ICheckableLayer)layer).Check(RepairMode.None);
            Assert.True(result.IsValid, string.Join("; ", result.Messages));
        }

        [Fact]
        public void ReplayMatchesQemuAndLeavesQemuCheckClean()
        {
            using var dir = new TempDir();
            var image = MakePendingLog(dir, 512);
            string copy = dir.File("copy.vhdx");
            File.Copy(image.Path, copy);

            // qemu replays a log only when it may write (check -r all).
            var repair = Qemu.Run("qemu-img", new[] { "check", "-r", "all", "-f", "vhdx", copy });
            Assert.Contains("repaired", repair.Output);
            Assert.Equal(Qemu.ToRawBytes(copy, "vhdx", dir.Path), TestData.ReadAll(image.Path));

            using (FormatRegistry.Default.Open(image.Path, null, new OpenOptions { Writable = true }))
            {
            }

            var check = Qemu.Check(image.Path, "vhdx");
            Assert.True(check.ExitCode == 0, check.Output);
            var compare = Qemu.Compare(image.Path, "vhdx", copy, "vhdx");
            Assert.True(compare.Identical, compare.Output);
        }

        [Fact]
        public void EntryWithBadChecksumIsIgnored()
        {
            using var dir = new TempDir();
            var image = MakePendingLog(dir, 512, inject: false);
            byte[] entry = VhdxSurgery.Entry(image.LogGuid, 1, image.NewHost + MiB, image.FileLength, EntryPages(image));
            entry[5000] ^= 1;
            VhdxSurgery.InjectLog(image.Path, image.LogGuid, (0, entry));
            Assert.Equal(image.WithoutLog, TestData.ReadAll(image.Path));
        }

        [Fact]
        public void EntryWithWrongDescriptorSequenceNumberIsIgnored()
        {
            using var dir = new TempDir();
            var image = MakePendingLog(dir, 512, inject: false);
            byte[] entry = VhdxSurgery.Entry(image.LogGuid, 1, image.NewHost + MiB, image.FileLength, EntryPages(image));
            entry[64 + 24] = 9; // first descriptor's sequence number
            VhdxSurgery.Reseal(entry);
            VhdxSurgery.InjectLog(image.Path, image.LogGuid, (0, entry));
            Assert.Equal(image.WithoutLog, TestData.ReadAll(image.Path));
        }

        [Fact]
        public void EntryOfAnotherLogGuidIsIgnored()
        {
            using var dir = new TempDir();
            var image = MakePendingLog(dir, 512, inject: false);
            byte[] entry = VhdxSurgery.Entry(Guid.NewGuid(), 1, image.NewHost + MiB, image.FileLength, EntryPages(image));
            VhdxSurgery.InjectLog(image.Path, image.LogGuid, (0, entry));
            Assert.Equal(image.WithoutLog, TestData.ReadAll(image.Path));
        }

        [Fact]
        public void LaterEntryOfTheSequenceWins()
        {
            using var dir = new TempDir();
            var image = MakePendingLog(dir, 512, inject: false);
            byte[] first = VhdxSurgery.Entry(image.LogGuid, 7, image.NewHost + MiB, image.FileLength, EntryPages(image));
            byte[] second = VhdxSurgery.Entry(image.LogGuid, 8, image.NewHost + MiB, image.FileLength, new KeyValuePair<long, byte[]>(image.Block0Host, VhdxSurgery.Page(0xDD)));
            VhdxSurgery.InjectLog(image.Path, image.LogGuid, (0, first), (first.Length, second));
            byte[] expected = (byte[])image.Expected.Clone();
            Array.Fill(expected, (byte)0xDD, 0, 4096);
            Assert.Equal(expected, TestData.ReadAll(image.Path));
        }

        [Fact]
        public void EntryThatWrapsAroundTheLogEndIsReplayed()
        {
            using var dir = new TempDir();
            var image = MakePendingLog(dir, 512, inject: false);
            byte[] entry = VhdxSurgery.Entry(image.LogGuid, 3, image.NewHost + MiB, image.FileLength, EntryPages(image));
            long logLength = VhdxSurgery.ReadHeader(image.Path).LogLength;
            long position = logLength - 8192;
            BitConverterWriteTail(entry, (uint)position);
            VhdxSurgery.Reseal(entry);
            VhdxSurgery.InjectLog(image.Path, image.LogGuid, (position, entry.AsSpan(0, 8192).ToArray()), (0, entry.AsSpan(8192).ToArray()));
            Assert.Equal(image.Expected, TestData.ReadAll(image.Path));
        }

        [Fact]
        public void LogWriteOverTheHeadersIsCorruption()
        {
            using var dir = new TempDir();
            var image = MakePendingLog(dir, 512, inject: false);
            byte[] entry = VhdxSurgery.Entry(image.LogGuid, 1, image.FileLength, image.FileLength, new KeyValuePair<long, byte[]>(64 * 1024, VhdxSurgery.Page(1)));
            VhdxSurgery.InjectLog(image.Path, image.LogGuid, (0, entry));
            byte[] before = Hash(image.Path);
            var e = Assert.Throws<ImageCorruptException>(() => TestData.ReadAll(image.Path));
            Assert.Equal("log descriptor file offset", e.Field);
            Assert.Equal(before, Hash(image.Path));
        }

        [Fact]
        public void LogFromALongerFileIsCorruption()
        {
            using var dir = new TempDir();
            var image = MakePendingLog(dir, 512, inject: false);
            byte[] entry = VhdxSurgery.Entry(image.LogGuid, 1, image.NewHost + MiB, image.FileLength + (64 * MiB), EntryPages(image));
            VhdxSurgery.InjectLog(image.Path, image.LogGuid, (0, entry));
            var e = Assert.Throws<ImageCorruptException>(() => TestData.ReadAll(image.Path));
            Assert.Equal("log entry FlushedFileOffset", e.Field);
            Assert.NotNull(e.Offset);
        }

        [Fact]
        public void LogGuidWithoutEntriesOpensAsIs()
        {
            using var dir = new TempDir();
            var image = MakePendingLog(dir, 512, inject: false);
            VhdxSurgery.InjectLog(image.Path, image.LogGuid);
            Assert.Equal(image.WithoutLog, TestData.ReadAll(image.Path));
        }

        [Fact]
        public void OwnWritesLeaveAnEmptyLogBehind()
        {
            using var dir = new TempDir();
            var image = MakePendingLog(dir, 512, inject: false);
            Assert.Equal(Guid.Empty, VhdxSurgery.ReadHeader(image.Path).LogGuid);

            // The BAT update went through the log: its entry is there, under a GUID no longer current.
            VhdxHeader header = VhdxSurgery.ReadHeader(image.Path);
            byte[] log = VhdxSurgery.ReadBytes(image.Path, header.LogOffset, 4);
            Assert.Equal("loge", System.Text.Encoding.ASCII.GetString(log));
        }

        [Theory]
        [InlineData(true)]
        [InlineData(false)]
        public void ZeroDescriptorClearsTheRun(bool writable)
        {
            using var dir = new TempDir();
            var image = MakePendingLog(dir, 4096, inject: false);
            VhdxSurgery.InjectLog(image.Path, image.LogGuid, (0, VhdxSurgery.ZeroEntry(image.LogGuid, 1, image.FileLength, image.Block0Host + 8192, 16384)));
            if (writable)
            {
                using (FormatRegistry.Default.Open(image.Path, null, new OpenOptions { Writable = true }))
                {
                }
            }

            byte[] expected = (byte[])image.WithoutLog.Clone();
            Array.Clear(expected, 8192, 16384);
            Assert.Equal(expected, TestData.ReadAll(image.Path));
        }

        [Fact]
        public void SequenceWhoseTailIsMissingIsNotReplayed()
        {
            using var dir = new TempDir();
            var image = MakePendingLog(dir, 512, inject: false);
            byte[] entry = VhdxSurgery.Entry(image.LogGuid, 5, image.NewHost + MiB, image.FileLength, EntryPages(image));
            BitConverterWriteTail(entry, 64 * 1024);
            VhdxSurgery.Reseal(entry);
            VhdxSurgery.InjectLog(image.Path, image.LogGuid, (0, entry));
            Assert.Equal(image.WithoutLog, TestData.ReadAll(image.Path));
        }

        [Fact]
        public void OwnLastEntryIsAValidSequenceThatReplaysToTheSameContent()
        {
            using var dir = new TempDir();
            var image = MakePendingLog(dir, 512, inject: false);
            VhdxHeader header = VhdxSurgery.ReadHeader(image.Path);
            var entryGuid = new Guid(VhdxSurgery.ReadBytes(image.Path, header.LogOffset + 32, 16));
            VhdxSurgery.InjectLog(image.Path, entryGuid);
            Assert.True(ImageInspector.Get(image.Path).Dirty);
            Assert.Equal(image.WithoutLog, TestData.ReadAll(image.Path));
        }

        private static void BitConverterWriteTail(byte[] entry, uint tail) => System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(entry.AsSpan(12), tail);
    }
}
