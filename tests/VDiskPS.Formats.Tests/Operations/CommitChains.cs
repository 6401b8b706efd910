using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text;
using Xunit;

namespace VDiskPS.Formats.Tests.Operations
{
    /// <summary>Chains of every format for the commit interruption tests, and the checks made on what an interruption leaves.</summary>
    internal static class CommitChains
    {
        private const long MiB = 1 << 20;
        private const long DiskSize = 24 * MiB;

        /// <summary>What the independent tools can judge of a format's chain.</summary>
        internal sealed class Kind
        {
            public DiskFormat Format { get; set; }

            public string Extension { get; set; }

            public string QemuName { get; set; }

            public long Cluster { get; set; }

            /// <summary>qemu opens a differencing chain of this format (qcow2, vmdk); qemu has no differencing VHD, VHDX or VDI.</summary>
            public bool QemuReadsChain { get; set; }

            /// <summary>libvhdi (pyvhdi) reads differencing VHD and VHDX chains.</summary>
            public bool LibvhdiReadsChain { get; set; }

            /// <summary>qemu-img check knows the format (not vpc).</summary>
            public bool QemuChecks { get; set; }
        }

        public static readonly Dictionary<string, Kind> Kinds = new Dictionary<string, Kind>
        {
            ["qcow2"] = new Kind { Format = Fmt.Qcow2, Extension = "qcow2", QemuName = "qcow2", Cluster = 64 << 10, QemuReadsChain = true, QemuChecks = true },
            ["vmdk"] = new Kind { Format = Fmt.Vmdk, Extension = "vmdk", QemuName = "vmdk", Cluster = 64 << 10, QemuReadsChain = true, QemuChecks = true },
            ["vhd"] = new Kind { Format = Fmt.Vhd, Extension = "vhd", QemuName = "vpc", Cluster = 2 * MiB, LibvhdiReadsChain = true },
            ["vhdx"] = new Kind { Format = Fmt.Vhdx, Extension = "vhdx", QemuName = "vhdx", Cluster = MiB, LibvhdiReadsChain = true, QemuChecks = true },
            ["vdi"] = new Kind { Format = Fmt.Vdi, Extension = "vdi", QemuName = "vdi", Cluster = MiB, QemuChecks = true },
        };

        /// <summary>
        /// base (data in most blocks) ← [mid ←] top, each layer writing runs over the one below, some
        /// zero runs among them; returns the top's path. Layers are named base, mid, top.
        /// </summary>
        public static string Build(TempDir dir, Kind kind, int layers)
        {
            string basePath = dir.File("base." + kind.Extension);
            CreateOperation.Create(basePath, kind.Format, new CreateRequest { Size = DiskSize, ClusterSize = kind.Cluster });
            Write(basePath, 1, Enumerable.Range(0, 12).Select(i => (i * 2 * MiB, (int)MiB + 4096)).ToArray());
            string parent = basePath;

            // libvhdi reads sector bitmaps with the other bit order within a byte than the engine and qemu's
            // vpc (VHD: sector 0 is the byte's top bit), and reads PAYLOAD_BLOCK_ZERO in a differencing VHDX
            // from the parent: chains it judges keep to runs it reads as the engine does (4 KiB-aligned, no
            // zeroed blocks above the base).
            int odd = kind.LibvhdiReadsChain ? 0 : 1;
            if (layers == 3)
            {
                parent = Child(dir, kind, "mid", parent);
                Write(parent, 2, (3 * MiB + (512 * odd), (int)(3 * MiB)), (13 * MiB, 100000 - (1696 * (1 - odd))));
                if (odd == 1)
                {
                    WriteZeroes(parent, 18 * MiB, 2 * MiB);
                }
            }

            string top = Child(dir, kind, "top", parent);
            Write(top, 3, (0, 65536), (4 * MiB, (int)(5 * MiB)), (12 * MiB + 4096, 69632 + (368 * odd)), (16 * MiB, (int)MiB), (21 * MiB + (4096 - (3584 * odd)), 4096 - (3072 * odd)), (DiskSize - 4096, 4096));
            if (odd == 1)
            {
                WriteZeroes(top, 8 * MiB, kind.Cluster);
            }

            return top;
        }

        /// <summary>Copies the folder's files (not its subfolders) as they are on disk now; returns the copy's folder.</summary>
        public static string CopyFiles(string from, string to)
        {
            Directory.CreateDirectory(to);
            foreach (string file in Directory.GetFiles(from))
            {
                // The engine holds the images locked; read them past the lock as a second process would.
                using var source = HostFile.Open(file, HostAccess.ReadIgnoringWriters);
                var bytes = new byte[source.Length];
                source.ReadExactly(0, bytes, "copy");
                File.WriteAllBytes(Path.Combine(to, Path.GetFileName(file)), bytes);
            }

            return to;
        }

        /// <summary>What the chain reads before the commit, as the engine and as the independent tool see it.</summary>
        public static (byte[] Engine, byte[] Tool) Content(Kind kind, string top, string folder)
        {
            var content = (TestData.ReadAll(top), ToolRead(kind, top, folder));
            Assert.True(content.Item2 == null || content.Item1.SequenceEqual(content.Item2), "the independent tool reads the chain unlike the engine before the commit");
            return content;
        }

        /// <summary>
        /// The chain in <paramref name="folder"/> opens with no override and reads what it read before the
        /// commit, as the engine and the independent tool see it; a rerun of the commit completes and leaves
        /// the base holding the content, with qemu-img check reporting the base clean or merely leaking.
        /// </summary>
        public static void AssertReadsAndCompletes(string folder, Kind kind, string top, (byte[] Engine, byte[] Tool) expected, string baseName, string when, CommitOptions rerun)
        {
            AssertReads(folder, kind, top, expected, when);
            string basePath = Path.Combine(folder, baseName);
            if (kind.QemuChecks && kind.Format != Fmt.Vhdx)
            {
                // What the interruption left (a VHDX may hold a log to replay, which qemu-img check does not do read-only).
                var left = Qemu.Check(basePath, kind.QemuName);
                Assert.True(left.ExitCode == 0 || left.ExitCode == 3, $"{when}: qemu-img check of the base as the interruption left it: {left.Output}");
            }

            CommitOperation.Run(top, rerun);
            AssertReads(folder, kind, top, expected, when + ", after the rerun");
            Assert.True(expected.Engine.SequenceEqual(Qemu.ToRawBytes(basePath, kind.QemuName, folder)), $"{when}: after the rerun qemu-img reads other content from the base");
            if (kind.QemuChecks)
            {
                var check = Qemu.Check(basePath, kind.QemuName);
                Assert.True(check.ExitCode == 0 || check.ExitCode == 3, $"{when}: qemu-img check of the base after the rerun: {check.Output}");
            }
        }

        private static void AssertReads(string folder, Kind kind, string top, (byte[] Engine, byte[] Tool) expected, string when)
        {
            byte[] engine;
            try
            {
                engine = TestData.ReadAll(top);
            }
            catch (ImageException e)
            {
                throw new Xunit.Sdk.XunitException($"{when}: the chain does not open: {e.Message}");
            }

            Assert.True(expected.Engine.SequenceEqual(engine), $"{when}: the engine reads other content from the chain");
            if (expected.Tool == null)
            {
                return;
            }

            byte[] tool;
            try
            {
                tool = ToolRead(kind, top, folder);
            }
            catch (InvalidOperationException e)
            {
                throw new Xunit.Sdk.XunitException($"{when}: {e.Message}");
            }

            Assert.True(expected.Engine.SequenceEqual(tool), $"{when}: the independent tool reads other content from the chain");
        }

        /// <summary>
        /// The chain as qemu (qcow2, vmdk) or libvhdi (vhd, vhdx) reads it; null for VDI: no installed tool
        /// reads a differencing VDI chain (qemu's vdi driver has no parents, VirtualBox is not here), so the
        /// engine is the only judge there.
        /// </summary>
        private static byte[] ToolRead(Kind kind, string top, string folder)
        {
            if (kind.QemuReadsChain)
            {
                return Qemu.ToRawBytes(top, kind.QemuName, folder);
            }

            return kind.LibvhdiReadsChain ? Libvhdi.ReadChain(top, folder) : null;
        }

        /// <summary>The VHDX's metadata as text (parent locator keys and values are UTF-16LE).</summary>
        public static string VhdxLocatorText(string path)
        {
            byte[] head = new byte[Math.Min(new FileInfo(path).Length, 4 * MiB)];
            using (var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite))
            {
                stream.ReadExactly(head);
            }

            return Encoding.Unicode.GetString(head) + Encoding.Unicode.GetString(head, 1, head.Length - 1);
        }

        /// <summary>The embedded descriptor of a monolithicSparse VMDK (sectors 1-20).</summary>
        public static string VmdkDescriptorText(string path)
        {
            byte[] head = new byte[21 * 512];
            using (var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite))
            {
                stream.ReadExactly(head);
            }

            return Encoding.ASCII.GetString(head, 512, head.Length - 512).TrimEnd('\0');
        }

        private static string Child(TempDir dir, Kind kind, string name, string parent)
        {
            string path = dir.File(name + "." + kind.Extension);
            CreateOperation.Create(path, kind.Format, new CreateRequest { Backing = new BackingReference(Path.GetFileName(parent), kind.Format), ClusterSize = kind.Format == Fmt.Vhdx || kind.Format == Fmt.Qcow2 ? kind.Cluster : (long?)null });
            return path;
        }

        private static void Write(string path, int seed, params (long Offset, int Length)[] runs)
        {
            using var chain = ImageChain.Open(path, new ChainOptions { Writable = true });
            foreach (var (offset, length) in runs)
            {
                chain.Top.Write(offset, TestData.Pattern(length, seed + (int)(offset >> 16)));
            }
        }

        private static void WriteZeroes(string path, long offset, long length)
        {
            using var chain = ImageChain.Open(path, new ChainOptions { Writable = true });
            chain.Top.WriteZeroes(offset, length);
        }
    }

    /// <summary>Reads a VHD or VHDX chain through libvhdi (python3 pyvhdi), which opens differencing images with their parents.</summary>
    internal static class Libvhdi
    {
        private const string Script = @"
import os, sys, pyvhdi
opened = []
def open_chain(path):
    f = pyvhdi.file()
    f.open(path)
    opened.append(f)
    name = f.get_parent_filename()
    if name:
        parent = os.path.join(os.path.dirname(path), name.replace('\\', '/').split('/')[-1])
        f.set_parent(open_chain(parent))
    return f
top = open_chain(sys.argv[1])
size = top.get_media_size()
with open(sys.argv[2], 'wb') as out:
    done = 0
    while done < size:
        n = min(4 << 20, size - done)
        out.write(top.read_buffer_at_offset(n, done))
        done += n
";

        /// <summary>The parent linkage libvhdi reads from a differencing image.</summary>
        public static Guid ParentIdentifier(string path)
        {
            string output = Qemu.Run("/usr/bin/python3", new[] { "-c", "import sys, pyvhdi; f = pyvhdi.file(); f.open(sys.argv[1]); print(f.get_parent_identifier())", path }, expectSuccess: true).Output;
            return Guid.Parse(output.Trim());
        }

        public static byte[] ReadChain(string top, string scratch)
        {
            string script = Path.Combine(scratch, "read-chain.py");
            string raw = Path.Combine(scratch, Guid.NewGuid().ToString("N") + ".libvhdi.raw");
            File.WriteAllText(script, Script);
            try
            {
                Qemu.Run("/usr/bin/python3", new[] { script, top, raw }, expectSuccess: true);
                return File.ReadAllBytes(raw);
            }
            finally
            {
                File.Delete(script);
                File.Delete(raw);
            }
        }
    }
}
