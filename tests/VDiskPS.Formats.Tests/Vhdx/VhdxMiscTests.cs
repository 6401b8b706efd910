using System;
using System.Text;
using System.Threading.Tasks;
using VDiskPS.Formats.Vhdx;
using Xunit;

namespace VDiskPS.Formats.Tests.Vhdx
{
    public class VhdxMiscTests
    {
        private const long MiB = 1L << 20;

        [Fact]
        public void Crc32CMatchesTheCastagnoliCheckValue()
        {
            Assert.Equal(0xE3069283u, Crc32C.Compute(Encoding.ASCII.GetBytes("123456789")));
            Assert.Equal(0u, Crc32C.Compute(ReadOnlySpan<byte>.Empty));
        }

        [Fact]
        public void Crc32CWithZeroFieldEqualsTheChecksumOfTheZeroedCopy()
        {
            byte[] data = TestData.Pattern(4099, 1);
            uint expected;
            byte[] copy = (byte[])data.Clone();
            Array.Clear(copy, 4, 4);
            expected = Crc32C.Compute(copy);
            Assert.Equal(expected, Crc32C.ComputeWithZeroField(data, 4));
        }

        [Fact]
        public void ProbeRecognisesVhdxOnly()
        {
            using var dir = new TempDir();
            string path = dir.File("p.img");
            CreateOperation.Create(path, Fmt.Vhdx, new CreateRequest { Size = MiB });
            Assert.Equal(Fmt.Vhdx, FormatRegistry.Default.Probe(path));
            Assert.Equal(Fmt.Vhdx, FormatRegistry.Default.FromExtension("x.VHDX"));
        }

        [Fact]
        public void ParallelReadsOfAChainAgreeWithOneSequentialRead()
        {
            using var dir = new TempDir();
            string parent = dir.File("p.vhdx");
            CreateOperation.Create(parent, Fmt.Vhdx, new CreateRequest { Size = 8 * MiB, ClusterSize = MiB });
            using (var layer = FormatRegistry.Default.Open(parent, null, new OpenOptions { Writable = true }))
            {
                layer.Write(0, TestData.Pattern((int)(8 * MiB), 1));
            }

            string child = dir.File("c.vhdx");
            CreateOperation.Create(child, Fmt.Vhdx, new CreateRequest { Backing = new BackingReference("p.vhdx", Fmt.Vhdx) });
            using (var chain = ImageChain.Open(child, new ChainOptions { Writable = true }))
            {
                var rng = new Random(2);
                for (int i = 0; i < 40; i++)
                {
                    chain.Top.Write(rng.Next((int)(8 * MiB) - 5000), TestData.Pattern(rng.Next(1, 5000), i));
                }
            }

            byte[] expected = TestData.ReadAll(child);
            using var reader = ImageChain.Open(child);
            var actual = new byte[expected.Length];
            Parallel.For(0, 64, new ParallelOptions { MaxDegreeOfParallelism = 4 }, i =>
            {
                int length = expected.Length / 64;
                reader.Read((long)i * length, actual.AsSpan(i * length, length));
            });
            Assert.Equal(expected, actual);
        }
    }
}
