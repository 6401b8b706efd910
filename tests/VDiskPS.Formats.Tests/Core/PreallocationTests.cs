using System;
using System.IO;
using Xunit;

namespace VDiskPS.Formats.Tests.Core
{
    /// <summary>
    /// Preallocation on a file system that is too small, and what "full" and "falloc" leave on one
    /// that is large enough. The block counts are the kernel's (stat), not the engine's own view.
    /// </summary>
    public class PreallocationTests
    {
        private const long ImageSize = 64L << 20;

        public static TheoryData<DiskFormat, Preallocation> FixedFormats()
        {
            var data = new TheoryData<DiskFormat, Preallocation>();
            foreach (DiskFormat format in new[] { Fmt.Raw, Fmt.Qcow2, Fmt.Vmdk, Fmt.Vhd, Fmt.Vhdx, Fmt.Vdi })
            {
                data.Add(format, Preallocation.Full);
                data.Add(format, Preallocation.Falloc);
            }

            return data;
        }

        [Theory]
        [MemberData(nameof(FixedFormats))]
        public void PreallocationWithoutTheSpaceFailsAndLeavesNoFile(DiskFormat format, Preallocation mode)
        {
            using var fs = new SmallVolume("8m");
            string path = Path.Combine(fs.Path, "disk." + format.ToName());
            var e = Assert.ThrowsAny<ImageIOException>(() => Create(path, format, mode));
            Assert.Contains("no space left on device", e.Message, StringComparison.OrdinalIgnoreCase);
            Assert.Empty(Directory.GetFileSystemEntries(fs.Path));
        }

        [Theory]
        [MemberData(nameof(FixedFormats))]
        public void PreallocationWithTheSpaceAllocatesEveryBlock(DiskFormat format, Preallocation mode)
        {
            using var fs = new SmallVolume("96m");
            string path = Path.Combine(fs.Path, "disk." + format.ToName());
            Create(path, format, mode);
            // The image's files (a flat VMDK has a descriptor and an extent) hold a block for every guest
            // byte; unused metadata space may stay a hole.
            long allocated = AllocatedBytes(fs.Path);
            Assert.True(allocated >= ImageSize, $"{allocated} bytes allocated for a {ImageSize}-byte disk");
            if (format != Fmt.Raw && format != Fmt.Vhd)
            {
                var check = Qemu.Check(path, format.ToQemuName());
                Assert.True(check.ExitCode == 0, check.Output);
            }

            // vpc and raw have no qemu-img check: qemu reading the whole disk as zeros judges them.
            string zeros = Path.Combine(Path.GetTempPath(), Guid.NewGuid().ToString("N") + ".raw");
            try
            {
                using (var stream = File.Create(zeros))
                {
                    stream.SetLength(ImageSize);
                }

                var compare = Qemu.Compare(path, format.ToQemuName(), zeros, "raw");
                Assert.True(compare.Identical, compare.Output);
            }
            finally
            {
                File.Delete(zeros);
            }
        }

        [Fact]
        public void GrowingWithFullPreallocationWithoutTheSpaceKeepsTheOldSize()
        {
            using var fs = new SmallVolume("8m");
            string path = Path.Combine(fs.Path, "disk.raw");
            CreateOperation.Create(path, Fmt.Raw, new CreateRequest { Size = 1 << 20, Preallocation = Preallocation.Full });
            var e = Assert.ThrowsAny<ImageIOException>(() => ResizeOperation.Run(path, new ResizeOptions { Size = new DiskSize(ImageSize), Preallocation = Preallocation.Full }));
            Assert.Contains("no space left on device", e.Message, StringComparison.OrdinalIgnoreCase);
            Assert.Equal(1 << 20, new FileInfo(path).Length);
        }

        private static void Create(string path, DiskFormat format, Preallocation mode)
            => CreateOperation.Create(path, format, new CreateRequest { Size = ImageSize, Type = DiskType.Fixed, Preallocation = mode });

        /// <summary>Bytes of blocks the kernel has given a file or a whole folder (du).</summary>
        private static long AllocatedBytes(string path)
        {
            string output = Run("du", "-s", "--block-size=1", path);
            return long.Parse(output.Split('\t')[0]);
        }

        private static string Run(string tool, params string[] args) => Qemu.Run(tool, args, expectSuccess: true).Output;
    }
}
