using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.IO;
using System.Text;

namespace VDiskPS.Formats.Tests.Operations.TestFormat
{
    /// <summary>
    /// TEST DOUBLE: a tiny differencing format for the chain-logic tests of commit, rebase, sync and
    /// convert with a parent, while the real formats with backing files live elsewhere. It poses as
    /// qcow2 and is registered only in <see cref="Registry"/>, never in FormatRegistry.Default. The
    /// whole image is kept in memory and written back on flush: magic "VDTD", size, cluster size,
    /// backing path, then one state byte per cluster followed by the data clusters in order.
    /// </summary>
    internal sealed class OverlayTestDriver : FormatDriver, ICreatableDriver
    {
        internal static readonly byte[] Magic = Encoding.ASCII.GetBytes("VDTD");

        public const int DefaultClusterSize = 4096;

        /// <summary>Raw plus this double, for tests only.</summary>
        public static FormatRegistry Registry { get; } = new FormatRegistry(new FormatDriver[] { new global::VDiskPS.Formats.Raw.RawDriver(), new OverlayTestDriver() });

        public override DiskFormat Format => Fmt.Qcow2;

        public override IReadOnlyList<string> Extensions { get; } = new[] { ".tdbl" };

        public override string Description => "test double";

        public override int Probe(ProbeContext context)
            => context.Head.Length >= 4 && context.Head.AsSpan(0, 4).SequenceEqual(Magic) ? 100 : 0;

        public override ImageLayer Open(string path, OpenOptions options)
        {
            byte[] bytes = File.ReadAllBytes(path);
            return OverlayTestLayer.Load(path, bytes, options.Writable);
        }

        public override ImageLayer Open(HostFile file, OpenOptions options)
        {
            using (file)
            {
                byte[] bytes = new byte[file.Length];
                file.ReadExactly(0, bytes, "test image");
                return OverlayTestLayer.Load(file.Path, bytes, options.Writable);
            }
        }

        public VDiskMeasurement Measure(CreateRequest request, long allocatedBytes) => throw new NotSupportedException("the overlay test double is never measured");

        public bool SupportsCompression(CreateRequest request) => false;

        public ImageLayer Create(string path, CreateRequest request)
        {
            if (File.Exists(path) && !request.Overwrite)
            {
                throw new ImageIOException(path, "the file already exists");
            }

            // A staged output is written under its temporary name, as the real drivers do.
            string file = request.Staging?.TemporaryPathFor(path) ?? path;
            var layer = new OverlayTestLayer(file, true, request.Size, (int)(request.ClusterSize ?? DefaultClusterSize), request.Backing);
            layer.Flush();
            return layer;
        }

        /// <summary>Creates an empty overlay of <paramref name="parentPath"/> (same size) and returns its path.</summary>
        public static string CreateOverlay(string path, string parentPath, DiskFormat parentFormat, int clusterSize = DefaultClusterSize)
        {
            long size;
            using (var parent = ImageChain.Open(parentPath, new ChainOptions { Registry = Registry, Format = parentFormat }))
            {
                size = parent.Size;
            }

            var layer = new OverlayTestLayer(path, true, size, clusterSize, new BackingReference(Path.GetFileName(parentPath), parentFormat));
            layer.Dispose();
            return path;
        }

        /// <summary>Creates a standalone image of <paramref name="size"/> bytes holding the given writes.</summary>
        public static string CreateBase(string path, long size, params (long Offset, byte[] Data)[] writes)
        {
            using (var layer = new OverlayTestLayer(path, true, size, DefaultClusterSize, null))
            {
                foreach (var (offset, data) in writes)
                {
                    layer.Write(offset, data);
                }
            }

            return path;
        }

        /// <summary>Writes into an image opened alone (its parent linked for copy-on-write).</summary>
        public static void WriteInto(string path, params (long Offset, byte[] Data)[] writes)
        {
            using (var chain = ImageChain.Open(path, new ChainOptions { Registry = Registry, Writable = true }))
            {
                foreach (var (offset, data) in writes)
                {
                    chain.Top.Write(offset, data);
                }
            }
        }

        internal static long ReadInt64(ReadOnlySpan<byte> bytes, ref int position)
        {
            long value = BinaryPrimitives.ReadInt64LittleEndian(bytes.Slice(position, 8));
            position += 8;
            return value;
        }
    }
}
