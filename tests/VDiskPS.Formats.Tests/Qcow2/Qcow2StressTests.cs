using System;
using Xunit;

namespace VDiskPS.Formats.Tests.Qcow2
{
    /// <summary>Random mixes of writes, zero writes, discards, compressed writes and snapshots, judged by qemu-img.</summary>
    public class Qcow2StressTests
    {
        [Theory]
        [InlineData("cluster_size=4k", 1, false)]
        [InlineData("cluster_size=16k,extended_l2=on", 2, false)]
        [InlineData("compat=0.10,cluster_size=4k", 3, false)]
        [InlineData("cluster_size=4k,refcount_bits=2,compression_type=zstd", 4, false)]
        [InlineData("cluster_size=4k", 5, true)]
        [InlineData("cluster_size=16k,extended_l2=on", 6, true)]
        [InlineData("compat=0.10,cluster_size=4k", 7, true)]
        [InlineData("cluster_size=512", 8, true)]
        public void RandomOperationsKeepImageConsistent(string options, int seed, bool overBackingFile)
        {
            using var dir = new TempDir();
            const int size = 6 << 20;
            string path = dir.File("stress.qcow2");
            var model = new byte[size];
            byte[] baseContent = null;
            var request = new CreateRequest { Size = size, Options = OptionSet.Parse(options) };
            if (overBackingFile)
            {
                baseContent = TestData.Pattern(size, seed);
                model = (byte[])baseContent.Clone();
                System.IO.File.WriteAllBytes(dir.File("base.raw"), baseContent);
                request.Backing = new BackingReference("base.raw", Fmt.Raw);
            }

            CreateOperation.Create(path, Fmt.Qcow2, request);
            var rng = new Random(seed);
            var snapshotModels = new System.Collections.Generic.Dictionary<string, byte[]>();
            using (var chain = ImageChain.Open(path, new ChainOptions { Writable = true }))
            {
                ImageLayer layer = chain.Top;
                var compressed = (ICompressedWriteLayer)layer;
                int unit = compressed.CompressionUnit;
                for (int op = 0; op < 150; op++)
                {
                    int kind = rng.Next(10);
                    long offset = rng.Next(size);
                    int length = (int)Math.Min(size - offset, 1 + rng.Next(3 * unit));
                    switch (kind)
                    {
                        case 0:
                            layer.WriteZeroes(offset, length);
                            Array.Clear(model, (int)offset, length);
                            break;
                        case 1:
                            long start = (offset + unit - 1) / unit * unit;
                            long end = (offset + length) / unit * unit;
                            ((IDiscardableLayer)layer).Discard(offset, length);
                            if (end > start && overBackingFile)
                            {
                                // Discarded clusters read from the backing file again.
                                Array.Copy(baseContent, start, model, start, end - start);
                            }
                            else if (end > start)
                            {
                                Array.Clear(model, (int)start, (int)(end - start));
                            }

                            break;
                        case 2:
                            long cluster = offset / unit * unit;
                            var data = new byte[Math.Min(unit, size - cluster)];
                            Array.Fill(data, (byte)rng.Next(256), 0, data.Length / 2);
                            byte[] packed = compressed.Compress(data);
                            if (packed != null)
                            {
                                compressed.WriteCompressed(cluster, packed);
                                Array.Copy(data, 0, model, cluster, data.Length);
                            }

                            break;
                        case 3:
                            if (options.Contains("compat=0.10") || rng.Next(3) != 0)
                            {
                                goto default;
                            }

                            var snapshots = (ISnapshotLayer)layer;
                            if (snapshots.GetSnapshots().Count > 0 && rng.Next(3) == 0)
                            {
                                string id = snapshots.GetSnapshots()[rng.Next(snapshots.GetSnapshots().Count)].Id;
                                try
                                {
                                    snapshots.ApplySnapshot(id);
                                    model = (byte[])snapshotModels[id].Clone();
                                }
                                catch (ImageNotSupportedException e) when (e.Field == "refcount_bits")
                                {
                                    // Narrow refcounts cannot count both trees; the image stays as it was.
                                }
                            }
                            else if (snapshots.GetSnapshots().Count > 1)
                            {
                                string id = snapshots.GetSnapshots()[0].Id;
                                snapshots.DeleteSnapshot(id);
                                snapshotModels.Remove(id);
                            }
                            else
                            {
                                try
                                {
                                    snapshotModels[snapshots.CreateSnapshot("s" + op).Id] = (byte[])model.Clone();
                                }
                                catch (ImageNotSupportedException e) when (e.Field == "refcount_bits")
                                {
                                    // Narrow refcounts cannot count what a snapshot adds; the image stays as it was.
                                }
                            }

                            break;
                        default:
                            var bytes = TestData.Pattern(length, op + seed * 1000);
                            layer.Write(offset, bytes);
                            Array.Copy(bytes, 0, model, offset, length);
                            break;
                    }
                }
            }

            Qcow2TestImages.AssertQemuCheckClean(path);
            string raw = dir.File("model.raw");
            Qcow2TestImages.WriteRaw(raw, model);
            var compare = Qemu.Compare(raw, "raw", path, "qcow2");
            Assert.True(compare.Identical, compare.Output);
            Assert.Equal(model, TestData.ReadAll(path, Fmt.Qcow2));
        }
    }
}
