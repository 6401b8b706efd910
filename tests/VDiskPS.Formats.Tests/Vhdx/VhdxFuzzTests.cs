using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Security.Cryptography;
using VDiskPS.Formats.Vhdx;
using Xunit;

namespace VDiskPS.Formats.Tests.Vhdx
{
    /// <summary>Damaged and hostile images give typed errors naming file, field and offset, and stay unchanged.</summary>
    public class VhdxFuzzTests
    {
        private const long MiB = 1L << 20;

        private static string MakeImage(TempDir dir, string name = "f.vhdx")
        {
            string path = dir.File(name);
            CreateOperation.Create(path, Fmt.Vhdx, new CreateRequest { Size = 4 * MiB, ClusterSize = MiB });
            using var layer = FormatRegistry.Default.Open(path, null, new OpenOptions { Writable = true });
            layer.Write(MiB, TestData.Pattern(100000, 1));
            return path;
        }

        /// <summary>Opens read-only and reads everything; returns the typed error, if any, and checks the file is unchanged.</summary>
        private static ImageException OpenAndRead(string path)
        {
            byte[] before = SHA256.HashData(File.ReadAllBytes(path));
            ImageException error = null;
            try
            {
                using var layer = FormatRegistry.Default.Open(path, Fmt.Vhdx, new OpenOptions());
                var buffer = new byte[Math.Min(layer.Size, 8 * MiB)];
                layer.Read(0, buffer);
                for (long offset = 0; offset < layer.Size;)
                {
                    offset = layer.GetBlockStatus(offset, layer.Size - offset).End;
                }
                ((ICheckableLayer)layer).Check(RepairMode.None);
                ImageInspector.Describe(layer);
            }
            catch (ImageException e)
            {
                error = e;
            }

            Assert.Equal(before, SHA256.HashData(File.ReadAllBytes(path)));
            return error;
        }

        private static void RewriteRegions(string path, Action<List<VhdxRegion>> edit)
        {
            var regions = VhdxSurgery.Regions(path);
            edit(regions);
            byte[] table = VhdxRegionTable.Build(regions);
            VhdxSurgery.WriteBytes(path, VhdxConstants.RegionTable1Offset, table);
            VhdxSurgery.WriteBytes(path, VhdxConstants.RegionTable2Offset, table);
        }

        private static void RewriteMetadata(string path, Action<byte[]> edit)
        {
            long offset = VhdxSurgery.RegionOffset(path, VhdxConstants.MetadataRegion);
            byte[] region = VhdxSurgery.ReadBytes(path, offset, (int)MiB);
            edit(region);
            VhdxSurgery.WriteBytes(path, offset, region);
        }

        /// <summary>The offset (in the region) of a metadata item's data.</summary>
        private static int ItemOffset(byte[] region, Guid id)
        {
            int count = BinaryPrimitives.ReadUInt16LittleEndian(region.AsSpan(10));
            for (int i = 0; i < count; i++)
            {
                if (new Guid(region.AsSpan(32 + (i * 32), 16)) == id)
                {
                    return (int)BinaryPrimitives.ReadUInt32LittleEndian(region.AsSpan(32 + (i * 32) + 16));
                }
            }

            throw new InvalidOperationException("no such item");
        }

        [Fact]
        public void NotAVhdxIsAFormatMismatch()
        {
            using var dir = new TempDir();
            string path = dir.File("x.vhdx");
            File.WriteAllBytes(path, new byte[1 << 20]);
            var e = Assert.IsType<ImageFormatMismatchException>(OpenAndRead(path));
            Assert.Equal("file identifier", e.Field);
            Assert.Equal(path, e.FilePath);
        }

        [Fact]
        public void OneTornHeaderFallsBackToTheOther()
        {
            using var dir = new TempDir();
            string path = MakeImage(dir);
            VhdxSurgery.WriteBytes(path, VhdxConstants.Header2Offset + 100, new byte[] { 0xFF });
            Assert.Null(OpenAndRead(path));
        }

        [Fact]
        public void BothHeadersBadIsCorruption()
        {
            using var dir = new TempDir();
            string path = MakeImage(dir);
            VhdxSurgery.WriteBytes(path, VhdxConstants.Header1Offset + 100, new byte[] { 0xFF });
            VhdxSurgery.WriteBytes(path, VhdxConstants.Header2Offset + 100, new byte[] { 0xFF });
            var e = Assert.IsType<ImageCorruptException>(OpenAndRead(path));
            Assert.Equal("header", e.Field);
            Assert.Contains("checksum", e.Message);
            Assert.Equal(VhdxConstants.Header1Offset, e.Offset);
        }

        [Fact]
        public void FirstRegionTableBadUsesTheSecond()
        {
            using var dir = new TempDir();
            string path = MakeImage(dir);
            VhdxSurgery.WriteBytes(path, VhdxConstants.RegionTable1Offset + 40, new byte[] { 0x55 });
            Assert.Null(OpenAndRead(path));
        }

        [Fact]
        public void BothRegionTablesBadIsCorruption()
        {
            using var dir = new TempDir();
            string path = MakeImage(dir);
            VhdxSurgery.WriteBytes(path, VhdxConstants.RegionTable1Offset + 40, new byte[] { 0x55 });
            VhdxSurgery.WriteBytes(path, VhdxConstants.RegionTable2Offset + 40, new byte[] { 0x55 });
            var e = Assert.IsType<ImageCorruptException>(OpenAndRead(path));
            Assert.Equal("region table", e.Field);
        }

        [Fact]
        public void RegionsPointingAtEachOtherAreCorruption()
        {
            using var dir = new TempDir();
            string path = MakeImage(dir);
            RewriteRegions(path, r => r[1].FileOffset = r[0].FileOffset);
            var e = Assert.IsType<ImageCorruptException>(OpenAndRead(path));
            Assert.Equal("region table", e.Field);
            Assert.Contains("overlaps", e.Message);
        }

        [Fact]
        public void RegionOverTheLogIsCorruption()
        {
            using var dir = new TempDir();
            string path = MakeImage(dir);
            RewriteRegions(path, r => r[0].FileOffset = MiB);
            var e = Assert.IsType<ImageCorruptException>(OpenAndRead(path));
            Assert.Contains("log", e.Message);
        }

        [Fact]
        public void RegionPastTheEndIsCorruption()
        {
            using var dir = new TempDir();
            string path = MakeImage(dir);
            RewriteRegions(path, r => r[0].FileOffset = 1L << 50);
            Assert.IsType<ImageCorruptException>(OpenAndRead(path));
        }

        [Fact]
        public void UnknownRequiredRegionIsNotSupported()
        {
            using var dir = new TempDir();
            string path = MakeImage(dir);
            RewriteRegions(path, r => r.Add(new VhdxRegion { Id = Guid.NewGuid(), FileOffset = r[1].End, Length = MiB, Required = true }));
            Assert.IsType<ImageNotSupportedException>(OpenAndRead(path));
        }

        [Theory]
        [InlineData(3 * 1024 * 1024)]
        [InlineData(512 * 1024)]
        [InlineData(0)]
        public void BadBlockSizeIsCorruption(int blockSize)
        {
            using var dir = new TempDir();
            string path = MakeImage(dir);
            RewriteMetadata(path, m => BinaryPrimitives.WriteUInt32LittleEndian(m.AsSpan(ItemOffset(m, VhdxConstants.FileParametersItem)), (uint)blockSize));
            var e = Assert.IsType<ImageCorruptException>(OpenAndRead(path));
            Assert.Equal("block size", e.Field);
        }

        [Fact]
        public void AbsurdVirtualSizeIsCorruption()
        {
            using var dir = new TempDir();
            string path = MakeImage(dir);
            RewriteMetadata(path, m => BinaryPrimitives.WriteUInt64LittleEndian(m.AsSpan(ItemOffset(m, VhdxConstants.VirtualDiskSizeItem)), 1UL << 62));
            var e = Assert.IsType<ImageCorruptException>(OpenAndRead(path));
            Assert.Equal("virtual disk size", e.Field);
            Assert.NotNull(e.Offset);
        }

        [Fact]
        public void VirtualSizeBeyondTheBatIsCorruption()
        {
            using var dir = new TempDir();
            string path = MakeImage(dir);
            RewriteMetadata(path, m => BinaryPrimitives.WriteUInt64LittleEndian(m.AsSpan(ItemOffset(m, VhdxConstants.VirtualDiskSizeItem)), 60UL << 40));
            var e = Assert.IsType<ImageCorruptException>(OpenAndRead(path));
            Assert.Equal("BAT region", e.Field);
        }

        [Fact]
        public void OddLogicalSectorSizeIsCorruption()
        {
            using var dir = new TempDir();
            string path = MakeImage(dir);
            RewriteMetadata(path, m => BinaryPrimitives.WriteUInt32LittleEndian(m.AsSpan(ItemOffset(m, VhdxConstants.LogicalSectorSizeItem)), 1000));
            Assert.Equal("logical sector size", Assert.IsType<ImageCorruptException>(OpenAndRead(path)).Field);
        }

        [Fact]
        public void MetadataItemOutsideTheRegionIsCorruption()
        {
            using var dir = new TempDir();
            string path = MakeImage(dir);
            RewriteMetadata(path, m => BinaryPrimitives.WriteUInt32LittleEndian(m.AsSpan(32 + 16), 0xFFFFFF00));
            var e = Assert.IsType<ImageCorruptException>(OpenAndRead(path));
            Assert.StartsWith("metadata item", e.Field);
        }

        [Fact]
        public void UnknownRequiredMetadataItemIsNotSupported()
        {
            using var dir = new TempDir();
            string path = MakeImage(dir);
            RewriteMetadata(path, m => Guid.NewGuid().ToByteArray().CopyTo(m, 32));
            Assert.IsType<ImageNotSupportedException>(OpenAndRead(path));
        }

        [Fact]
        public void AbsurdLogLengthIsRefused()
        {
            using var dir = new TempDir();
            string path = MakeImage(dir);
            VhdxHeader header = VhdxSurgery.ReadHeader(path);
            header.LogLength = 0xFFF00000;
            VhdxSurgery.WriteHeader(path, header);
            var e = OpenAndRead(path);
            Assert.NotNull(e);
            Assert.Contains("log", e.Field);
        }

        [Fact]
        public void TruncatedFileIsCorruption()
        {
            using var dir = new TempDir();
            string path = MakeImage(dir);
            using (var stream = new FileStream(path, FileMode.Open))
            {
                stream.SetLength(300 * 1024);
            }

            Assert.IsType<ImageCorruptException>(OpenAndRead(path));
        }

        [Fact]
        public void HostileLogOfOverlappingEntriesIsBounded()
        {
            using var dir = new TempDir();
            string path = MakeImage(dir);
            VhdxHeader header = VhdxSurgery.ReadHeader(path);
            var guid = Guid.NewGuid();

            // Every sector claims to start an entry as long as the whole log, each with a wrong checksum.
            var log = new byte[header.LogLength];
            for (int at = 0; at < log.Length; at += 4096)
            {
                BinaryPrimitives.WriteUInt32LittleEndian(log.AsSpan(at), VhdxConstants.LogEntrySignature);
                BinaryPrimitives.WriteUInt32LittleEndian(log.AsSpan(at + 8), header.LogLength);
                BinaryPrimitives.WriteUInt64LittleEndian(log.AsSpan(at + 16), 1);
                guid.ToByteArray().CopyTo(log, at + 32);
            }

            VhdxSurgery.InjectLog(path, guid, (0, log));
            var watch = Stopwatch.StartNew();
            Assert.Null(OpenAndRead(path));
            Assert.True(watch.Elapsed < TimeSpan.FromSeconds(20), watch.Elapsed.ToString());
        }

        [Fact]
        public void RandomDamageGivesOnlyTypedErrors()
        {
            using var dir = new TempDir();
            string pristine = MakeImage(dir, "pristine.vhdx");
            byte[] original = File.ReadAllBytes(pristine);
            long bat = VhdxSurgery.BatOffset(pristine);
            long metadata = VhdxSurgery.RegionOffset(pristine, VhdxConstants.MetadataRegion);
            var rng = new Random(1234);
            string path = dir.File("damaged.vhdx");

            // Aim at the structures: file identifier, headers, region tables, BAT and metadata.
            long[] targets = { 0, VhdxConstants.Header1Offset, VhdxConstants.Header2Offset, VhdxConstants.RegionTable1Offset, VhdxConstants.RegionTable2Offset, bat, metadata, metadata + 65536 };
            for (int round = 0; round < 80; round++)
            {
                byte[] damaged = (byte[])original.Clone();
                int flips = 1 + rng.Next(8);
                for (int i = 0; i < flips; i++)
                {
                    long at = targets[rng.Next(targets.Length)] + rng.Next(rng.Next(2) == 0 ? 128 : 4096);
                    damaged[at] = (byte)rng.Next(256);
                }

                // Damage that keeps checksums valid reaches deeper: reseal the headers and region tables.
                if (rng.Next(2) == 0)
                {
                    foreach (long h in new[] { VhdxConstants.Header1Offset, VhdxConstants.Header2Offset })
                    {
                        BinaryPrimitives.WriteUInt32LittleEndian(damaged.AsSpan((int)h + 4), Crc32C.ComputeWithZeroField(damaged.AsSpan((int)h, 4096), 4));
                    }

                    foreach (long r in new[] { VhdxConstants.RegionTable1Offset, VhdxConstants.RegionTable2Offset })
                    {
                        BinaryPrimitives.WriteUInt32LittleEndian(damaged.AsSpan((int)r + 4), Crc32C.ComputeWithZeroField(damaged.AsSpan((int)r, 65536), 4));
                    }
                }

                File.WriteAllBytes(path, damaged);
                OpenAndRead(path);
            }
        }

        [Fact]
        public void RandomDamageToAChildsLocatorAndBitmapsGivesOnlyTypedErrors()
        {
            using var dir = new TempDir();
            string parent = dir.File("parent.vhdx");
            CreateOperation.Create(parent, Fmt.Vhdx, new CreateRequest { Size = 4 * MiB, ClusterSize = MiB });
            string child = dir.File("child.vhdx");
            CreateOperation.Create(child, Fmt.Vhdx, new CreateRequest { Backing = new BackingReference("parent.vhdx", Fmt.Vhdx) });
            using (var chain = ImageChain.Open(child, new ChainOptions { Writable = true }))
            {
                chain.Top.Write(MiB + 512, TestData.Pattern(5000, 3));
            }

            byte[] original = File.ReadAllBytes(child);
            long metadata = VhdxSurgery.RegionOffset(child, VhdxConstants.MetadataRegion);
            long bat = VhdxSurgery.BatOffset(child);
            ulong bitmapEntry = VhdxSurgery.ReadBatEntry(child, VhdxConstants.SectorsPerBitmapBlock * 512 / MiB);
            long bitmap = BatState.OffsetOf(bitmapEntry);
            long[] targets = { metadata, metadata + 65536, metadata + 65536 + 40, bat, bitmap };
            var rng = new Random(99);
            for (int round = 0; round < 40; round++)
            {
                byte[] damaged = (byte[])original.Clone();
                for (int i = 0, flips = 1 + rng.Next(6); i < flips; i++)
                {
                    long at = targets[rng.Next(targets.Length)] + rng.Next(512);
                    damaged[at] = (byte)rng.Next(256);
                }

                File.WriteAllBytes(child, damaged);
                byte[] before = SHA256.HashData(damaged);
                try
                {
                    using var chain = ImageChain.Open(child, new ChainOptions { IgnoreParentMismatch = rng.Next(2) == 0 });
                    var buffer = new byte[chain.Size];
                    chain.Read(0, buffer);
                }
                catch (ImageException)
                {
                }

                Assert.Equal(before, SHA256.HashData(File.ReadAllBytes(child)));
            }
        }

        [Fact]
        public void RandomDamageToAPendingLogGivesOnlyTypedErrors()
        {
            using var dir = new TempDir();
            string path = MakeImage(dir);
            VhdxHeader header = VhdxSurgery.ReadHeader(path);
            var guid = Guid.NewGuid();
            long length = new FileInfo(path).Length;
            byte[] entry = VhdxSurgery.Entry(guid, 1, length, length, VhdxSurgery.BatPageWith(path, 2, BatState.Make(BatState.Zero, 0)), new KeyValuePair<long, byte[]>(length - 4096, VhdxSurgery.Page(3)));
            VhdxSurgery.InjectLog(path, guid, (0, entry));
            byte[] original = File.ReadAllBytes(path);
            var rng = new Random(7);
            for (int round = 0; round < 60; round++)
            {
                byte[] damaged = (byte[])original.Clone();
                byte[] damagedEntry = entry.AsSpan().ToArray();
                for (int i = 0, flips = 1 + rng.Next(4); i < flips; i++)
                {
                    damagedEntry[rng.Next(rng.Next(2) == 0 ? 128 : damagedEntry.Length)] = (byte)rng.Next(256);
                }

                // Half the time the checksum is made right again, so the damage reaches the field checks.
                if (rng.Next(2) == 0)
                {
                    VhdxSurgery.Reseal(damagedEntry);
                }

                damagedEntry.CopyTo(damaged, header.LogOffset);
                File.WriteAllBytes(path, damaged);
                OpenAndRead(path);
            }
        }
    }
}
