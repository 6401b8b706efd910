using System;
using System.IO;
using System.Threading;
using VDiskPS.Formats.Ova;
using Xunit;

namespace VDiskPS.Formats.Tests.Ova
{
    /// <summary>The manifest digest of a member is taken as a conversion reads it: right (by coreutils), and without a second pass.</summary>
    public class MemberDigestTests
    {
        [Fact]
        public void TheDigestTakenWhileConvertingIsSha256sumsAndTheMemberIsReadAboutOnce()
        {
            using var dir = new TempDir();
            string raw = dir.File("big.raw");
            using (var file = File.Create(raw))
            {
                file.SetLength(96L << 20);
                file.Write(TestData.Pattern(40 << 20, 3));
                file.Position = 80L << 20;
                file.Write(TestData.Pattern(4 << 20, 4));
            }

            string vmdk = dir.File("big.vmdk");
            Qemu.Img("convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized", raw, vmdk);
            string expected = OvaFixtures.Tool("sha256sum", dir.Path, "big.vmdk").Split(' ')[0];
            long length = new FileInfo(vmdk).Length;

            var counting = new CountingFile(HostFile.Open(vmdk, HostAccess.Read));
            string actual = null;
            using (var window = new WindowFile(counting, 0, counting.Length, vmdk, true) { Digest = new MemberDigest("SHA256", vmdk) })
            using (ImageLayer layer = FormatRegistry.Default.Open(window, Fmt.Vmdk, new OpenOptions()))
            {
                var options = new ConvertOptions { TargetFormat = Fmt.Qcow2, VerifySource = () => actual = window.FinishDigest() };
                ConvertOperation.Run(ImageChain.FromLayers(new[] { layer }), dir.File("out.qcow2"), options);
            }

            Assert.Equal(expected, actual);
            Assert.True(Qemu.Compare(raw, "raw", dir.File("out.qcow2"), "qcow2").Identical);

            // The conversion reads each grain once; the digest adds only what it skipped (tables,
            // markers, footer), never a second pass over the member.
            Assert.True(counting.BytesRead < length + length / 16, $"{counting.BytesRead} bytes read for a {length}-byte member");
        }

        /// <summary>TEST DOUBLE: a read-only source that counts the bytes read through it.</summary>
        private sealed class CountingFile : HostFile
        {
            private readonly HostFile _inner;
            private long _read;

            public CountingFile(HostFile inner)
                : base(inner.Path, false)
            {
                _inner = inner;
            }

            public long BytesRead => Interlocked.Read(ref _read);

            public override long Length => _inner.Length;

            public override int ReadAt(long offset, Span<byte> buffer)
            {
                int n = _inner.ReadAt(offset, buffer);
                Interlocked.Add(ref _read, n);
                return n;
            }

            public override void WriteAt(long offset, ReadOnlySpan<byte> data) => throw new ImageIOException(Path, "the counting source is read-only");

            public override void SetLength(long length) => throw new ImageIOException(Path, "the counting source is read-only");

            public override void Flush(bool durable = true)
            {
            }

            public override void Dispose() => _inner.Dispose();
        }
    }
}
