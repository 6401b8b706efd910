using System;
using System.IO;
using System.Security.Cryptography;
using Xunit;

namespace VDiskPS.Formats.Tests
{
    /// <summary>
    /// Judges an image the engine wrote with tools nobody here wrote: qemu-img check and compare where
    /// qemu 7.2 reads the image (qcow2, vmdk, vdi, 512-byte-sector VHDX without a parent), libvhdi for
    /// every VHD and VHDX (differencing and 4 KiB sectors included), libvmdk for VMDK deltas.
    /// </summary>
    public static class Judge
    {
        private const string Python = "/usr/bin/python3";

        /// <summary>What libvhdi or libvmdk read from an image and its parents.</summary>
        public sealed record LibraryView(long Size, string Sha256, int ParentDepth, int BytesPerSector);

        /// <summary>
        /// Asserts that <paramref name="image"/> (with its backing chain) is structurally clean and
        /// holds exactly the bytes of the raw file <paramref name="referenceRaw"/>.
        /// </summary>
        public static void AssertSameContent(string image, DiskFormat format, string referenceRaw)
        {
            switch (format.Name)
            {
                case "vhd":
                    // qemu 7.2 opens no VHD differencing image and sizes a VHD by CHS unless it knows the
                    // creator, so libvhdi is the judge of every VHD.
                    AssertLibraryReads("vhdi", image, referenceRaw);
                    break;
                case "vhdx":
                    var view = AssertLibraryReads("vhdi", image, referenceRaw);
                    if (view.ParentDepth == 0 && view.BytesPerSector == 512)
                    {
                        AssertQemuSame(image, format, referenceRaw);
                    }

                    break;
                case "vmdk":
                    AssertQemuSame(image, format, referenceRaw);
                    var vmdk = Library("vmdk", image);
                    if (vmdk.ParentDepth > 0)
                    {
                        AssertLibraryMatches("vmdk", image, vmdk, referenceRaw);
                    }

                    break;
                default:
                    AssertQemuSame(image, format, referenceRaw);
                    break;
            }
        }

        /// <summary>Writes a sparse raw reference of <paramref name="size"/> bytes holding the writes, and judges the image against it.</summary>
        public static void AssertSameContent(string image, DiskFormat format, long size, params (long Offset, byte[] Data)[] writes)
        {
            string reference = Path.Combine(Path.GetDirectoryName(image), Guid.NewGuid().ToString("N") + ".reference.raw");
            using (var stream = new FileStream(reference, FileMode.CreateNew, FileAccess.Write))
            {
                stream.SetLength(size);
                foreach (var (offset, data) in writes)
                {
                    stream.Position = offset;
                    stream.Write(data, 0, data.Length);
                }
            }

            try
            {
                AssertSameContent(image, format, reference);
            }
            finally
            {
                File.Delete(reference);
            }
        }

        /// <summary>Judges the image against <paramref name="expected"/>, the whole virtual content.</summary>
        public static void AssertSameContent(string image, DiskFormat format, byte[] expected)
            => AssertSameContent(image, format, expected.LongLength, (0L, expected));

        /// <summary>
        /// Asserts the image is structurally clean: qemu-img check where qemu has a checker for the
        /// format, else (VHD, differencing or 4 KiB-sector VHDX) libvhdi opening and reading every byte.
        /// </summary>
        public static void AssertClean(string image, DiskFormat format)
        {
            if (format == Fmt.Vhd || (format == Fmt.Vhdx && !QemuReadsVhdx(image)))
            {
                Library("vhdi", image);
                return;
            }

            var (code, output) = Qemu.Check(image, format.ToQemuName());
            Assert.True(code == 0, $"qemu-img check {image}: exit {code}: {output}");
        }

        /// <summary>Reads the image and its parents with libvhdi ("vhdi") or libvmdk ("vmdk").</summary>
        public static LibraryView Library(string library, string image)
        {
            string script = Path.Combine(AppContext.BaseDirectory, "Infrastructure", "judge_content.py");
            var (code, output) = Qemu.Run(Python, new[] { script, library, image });
            Assert.True(code == 0, $"lib{library} could not read {image}: {output}");
            string[] parts = output.Trim().Split(' ');
            return new LibraryView(long.Parse(parts[0]), parts[1], int.Parse(parts[2]), int.Parse(parts[3]));
        }

        private static bool QemuReadsVhdx(string image)
        {
            var view = Library("vhdi", image);
            return view.ParentDepth == 0 && view.BytesPerSector == 512;
        }

        private static LibraryView AssertLibraryReads(string library, string image, string referenceRaw)
        {
            var view = Library(library, image);
            AssertLibraryMatches(library, image, view, referenceRaw);
            return view;
        }

        private static void AssertLibraryMatches(string library, string image, LibraryView view, string referenceRaw)
        {
            Assert.True(new FileInfo(referenceRaw).Length == view.Size, $"lib{library} reads {view.Size} bytes from {image}, the reference has {new FileInfo(referenceRaw).Length}");
            string expected;
            using (var stream = File.OpenRead(referenceRaw))
            {
                expected = Convert.ToHexString(SHA256.HashData(stream)).ToLowerInvariant();
            }

            Assert.True(expected == view.Sha256, $"lib{library} reads other content from {image} than the reference {referenceRaw}");
        }

        private static void AssertQemuSame(string image, DiskFormat format, string referenceRaw)
        {
            string qemuFormat = format.ToQemuName();
            if (format != Fmt.Raw)
            {
                var (code, output) = Qemu.Check(image, qemuFormat);
                Assert.True(code == 0, $"qemu-img check {image}: exit {code}: {output}");
            }

            using (var info = Qemu.Info(image, qemuFormat))
            {
                Assert.Equal(new FileInfo(referenceRaw).Length, info.RootElement.GetProperty("virtual-size").GetInt64());
            }

            var compare = Qemu.Compare(referenceRaw, "raw", image, qemuFormat);
            Assert.True(compare.Identical, $"qemu-img compare {referenceRaw} {image}: {compare.Output}");
        }
    }
}
