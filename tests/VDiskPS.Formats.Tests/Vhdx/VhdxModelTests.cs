using System;
using Xunit;

namespace VDiskPS.Formats.Tests.Vhdx
{
    /// <summary>Random writes, zero writes, discards and resizes against an in-memory model: the image always reads as the model says.</summary>
    public class VhdxModelTests
    {
        private const long MiB = 1L << 20;

        [Theory]
        [InlineData(512, false, 1)]
        [InlineData(4096, false, 2)]
        [InlineData(512, true, 3)]
        [InlineData(4096, true, 4)]
        [InlineData(512, true, 80)]
        [InlineData(512, false, 81)]
        public void RandomOperationsMatchTheModel(int sectorSize, bool differencing, int seed)
        {
            using var dir = new TempDir();
            var rng = new Random(seed);
            long size = 6 * MiB;
            byte[] model = new byte[size];
            byte[] parentContent = null;
            string path = dir.File("m.vhdx");
            if (differencing)
            {
                string parent = dir.File("p.vhdx");
                CreateOperation.Create(parent, Fmt.Vhdx, new CreateRequest { Size = size, ClusterSize = MiB, LogicalSectorSize = sectorSize });
                model = TestData.Pattern((int)size, seed);
                parentContent = (byte[])model.Clone();
                using (var layer = FormatRegistry.Default.Open(parent, null, new OpenOptions { Writable = true }))
                {
                    layer.Write(0, model);
                }

                CreateOperation.Create(path, Fmt.Vhdx, new CreateRequest { Backing = new BackingReference("p.vhdx", Fmt.Vhdx) });
            }
            else
            {
                CreateOperation.Create(path, Fmt.Vhdx, new CreateRequest { Size = size, ClusterSize = MiB, LogicalSectorSize = sectorSize });
            }

            for (int session = 0; session < 4; session++)
            {
                using (var chain = ImageChain.Open(path, new ChainOptions { Writable = true }))
                {
                    ImageLayer top = chain.Top;
                    for (int step = 0; step < 25; step++)
                    {
                        if (rng.Next(12) == 0)
                        {
                            // Grow or shrink by whole sectors, within a few blocks.
                            size = sectorSize * (long)rng.Next((int)(MiB / sectorSize), (int)(8 * MiB / sectorSize));
                            ((IResizableLayer)top).Resize(size, true, Preallocation.Off);
                            Array.Resize(ref model, (int)size);
                            if (parentContent != null)
                            {
                                Array.Resize(ref parentContent, Math.Max(parentContent.Length, (int)size));
                            }

                            continue;
                        }

                        long offset = rng.Next((int)size);
                        int length = (int)Math.Min(size - offset, rng.Next(4) == 0 ? rng.Next(3 * (int)MiB) : rng.Next(20000));
                        switch (rng.Next(4))
                        {
                            case 0:
                            case 1:
                                byte[] data = TestData.Pattern(length, rng.Next());
                                top.Write(offset, data);
                                data.CopyTo(model, offset);
                                break;
                            case 2:
                                top.WriteZeroes(offset, length);
                                Array.Clear(model, (int)offset, length);
                                break;
                            default:
                                ((IDiscardableLayer)top).Discard(offset, length);
                                Discarded(model, parentContent, offset, length, sectorSize);
                                break;
                        }

                        if (step % 10 == 9)
                        {
                            top.Flush();
                        }
                    }
                }

                Assert.Equal(model, TestData.ReadAll(path));
                using var layer = FormatRegistry.Default.Open(path, null, new OpenOptions { IgnoreParentMismatch = true });
                Assert.True(((ICheckableLayer)layer).Check(RepairMode.None).IsValid);
            }

            // libvhdi reads every case (4 KiB sectors and differencing included); qemu-img checks and
            // compares the 512-byte-sector images without a parent.
            Judge.AssertSameContent(path, Fmt.Vhdx, model);
        }

        /// <summary>Without a parent a discarded run reads as zeros; with one, whole blocks and whole sectors show the parent again.</summary>
        private static void Discarded(byte[] model, byte[] parent, long offset, int length, int sectorSize)
        {
            if (parent == null)
            {
                Array.Clear(model, (int)offset, length);
                return;
            }

            long end = offset + length;
            while (offset < end)
            {
                long blockEnd = Math.Min(end, ((offset / MiB) + 1) * MiB);
                long first = (offset + sectorSize - 1) / sectorSize * sectorSize;
                long last = blockEnd / sectorSize * sectorSize;
                if (last > first)
                {
                    Array.Copy(parent, first, model, first, last - first);
                }

                offset = blockEnd;
            }
        }
    }
}
