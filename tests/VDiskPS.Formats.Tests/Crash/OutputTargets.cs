using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;

namespace VDiskPS.Formats.Tests.Crash
{
    /// <summary>Every writable target a conversion can create, as the tests of interrupted outputs walk them.</summary>
    public sealed class OutputTarget
    {
        private OutputTarget(string name, DiskFormat format, string qemuFormat, string extension, string subformat = null)
        {
            Name = name;
            Format = format;
            QemuFormat = qemuFormat;
            Extension = extension;
            Subformat = subformat;
        }

        public static IReadOnlyList<OutputTarget> All { get; } = new[]
        {
            new OutputTarget("raw", Fmt.Raw, "raw", ".raw"),
            new OutputTarget("qcow2", Fmt.Qcow2, "qcow2", ".qcow2"),
            new OutputTarget("vmdk", Fmt.Vmdk, "vmdk", ".vmdk", "monolithicSparse"),
            new OutputTarget("vmdk-stream", Fmt.Vmdk, "vmdk", ".vmdk", "streamOptimized"),
            new OutputTarget("vmdk-split", Fmt.Vmdk, "vmdk", ".vmdk", "twoGbMaxExtentSparse"),
            new OutputTarget("vhd", Fmt.Vhd, "vpc", ".vhd"),
            new OutputTarget("vhdx", Fmt.Vhdx, "vhdx", ".vhdx"),
            new OutputTarget("vdi", Fmt.Vdi, "vdi", ".vdi"),
        };

        public string Name { get; }

        public DiskFormat Format { get; }

        /// <summary>qemu-img's name of the format.</summary>
        public string QemuFormat { get; }

        public string Extension { get; }

        public string Subformat { get; }

        /// <summary>For [MemberData]: every target by name.</summary>
        public static IEnumerable<object[]> Names => All.Select(t => new object[] { t.Name });

        public static OutputTarget Named(string name) => All.Single(t => t.Name == name);

        public ConvertOptions Options() => new ConvertOptions { TargetFormat = Format, Target = new CreateRequest { Subformat = Subformat } };

        /// <summary>A raw image of random (incompressible) bytes, so every target allocates all of it.</summary>
        public static string RandomRaw(string path, int mebibytes, int seed)
        {
            var rng = new Random(seed);
            var buffer = new byte[1 << 20];
            using (var stream = new FileStream(path, FileMode.CreateNew, FileAccess.Write))
            {
                for (int i = 0; i < mebibytes; i++)
                {
                    rng.NextBytes(buffer);
                    stream.Write(buffer, 0, buffer.Length);
                }
            }

            return path;
        }

        /// <summary>The files in <paramref name="folder"/> besides <paramref name="except"/>, by name.</summary>
        public static string[] FilesIn(string folder, params string[] except)
            => Directory.GetFiles(folder).Select(Path.GetFileName).Where(n => !except.Contains(n)).OrderBy(n => n, StringComparer.Ordinal).ToArray();

        public override string ToString() => Name;
    }

    /// <summary>Calls back on every progress report, on the reporting thread (a test's view into a running operation).</summary>
    internal sealed class OnProgress : IProgress<OperationProgress>
    {
        private readonly Action<OperationProgress> _action;

        public OnProgress(Action<OperationProgress> action) => _action = action;

        public void Report(OperationProgress value) => _action(value);
    }
}
