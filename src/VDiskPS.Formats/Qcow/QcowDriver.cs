using System;
using System.Collections.Generic;
using System.IO;
using System.Text;
using VDiskPS;

namespace VDiskPS.Formats.Qcow
{
    /// <summary>
    /// QEMU's original qcow format (version 1, block/qcow.c): read with backing files, compressed clusters
    /// and legacy AES encryption; created and written unencrypted, with compressed clusters as qemu-img
    /// convert -c writes them.
    /// </summary>
    public sealed class QcowDriver : FormatDriver, ICreatableDriver
    {
        /// <summary>The qcow format's identity.</summary>
        public static readonly DiskFormat Id = new DiskFormat("qcow");

        private static readonly CreateOption[] s_options =
        {
            new CreateOption("size", CreateOptionKind.Size, "virtual size"),
            new CreateOption("backing_file", CreateOptionKind.Text, "the parent image"),
            new CreateOption("backing_fmt", CreateOptionKind.Text, "the parent's format (checked, not recorded: qcow has no field for it)"),
            new CreateOption("encryption", CreateOptionKind.Bool, "legacy AES encryption (refused: reading only)"),
            new CreateOption("encrypt.format", CreateOptionKind.Choice, "legacy AES encryption (refused: reading only)", "aes"),
            new CreateOption("encrypt.key-secret", CreateOptionKind.Text, "QEMU's secret for legacy AES encryption (refused: reading only)"),
        };

        public override DiskFormat Format => Id;

        public override string Description => "QEMU copy-on-write version 1 (the original qcow)";

        public override IReadOnlyList<string> Extensions { get; } = new[] { ".qcow" };

        public override IReadOnlyList<CreateOption> CreateOptions => s_options;

        public override int Probe(ProbeContext context) => QcowHeader.HasSignature(context.Head) ? 100 : 0;

        public override ImageLayer Open(HostFile file, OpenOptions options) => DisposingOnFailure(file, () => QcowLayer.Open(file, options));

        /// <summary>Writing legacy AES-encrypted qcow is refused, as QEMU's system emulators refuse using such images at all.</summary>
        internal static ImageNotSupportedException EncryptedWriteRefused(string path)
            => new ImageNotSupportedException(path, "encryption", null,
                "creating or writing AES-encrypted qcow images is not supported: the legacy qcow AES-CBC scheme is weak and QEMU no longer supports such images in its system emulators; they are read here (with the password), so convert the image to an unencrypted qcow, or to raw or qcow2 with LUKS encryption, instead");

        public ImageLayer Create(string path, CreateRequest request)
        {
            CreatePlan plan = Plan(path, request);
            var file = request.CreateFile(path);
            try
            {
                return QcowLayer.Create(file, plan.Size, plan.ClusterBits, plan.L2Bits, plan.BackingFile);
            }
            catch
            {
                file.Dispose();
                File.Delete(file.Path);
                throw;
            }
        }

        public bool SupportsCompression(CreateRequest request) => !request.ClusterSize.HasValue || request.ClusterSize <= 4096;

        /// <summary>
        /// QEMU has no measure for qcow; this is its layout: the header, backing name and L1 table, one L2 table
        /// for every L2 span of the disk (as qcow2's measure counts the metadata of a full image) and the data
        /// clusters, each table and plain cluster starting on a cluster boundary.
        /// </summary>
        public VDiskMeasurement Measure(CreateRequest request, long allocatedBytes)
        {
            CreatePlan plan = Plan(null, request);
            long cs = 1L << plan.ClusterBits;
            long span = 1L << (plan.ClusterBits + plan.L2Bits);
            long l1Entries = (plan.Size + span - 1) / span;
            int nameLength = plan.BackingFile == null ? 0 : Encoding.UTF8.GetByteCount(plan.BackingFile);
            long head = QcowLayer.MetadataStart(nameLength) + QcowLayer.L1Region(l1Entries);
            long tables = l1Entries * RoundUp(8L << plan.L2Bits, cs);
            long clusters = (plan.Size + cs - 1) / cs;
            long used = Math.Min(clusters, (Math.Max(0, allocatedBytes) + cs - 1) / cs);
            long metadata = RoundUp(head, cs) + tables;
            return new VDiskMeasurement
            {
                Format = Id.Name,
                Required = metadata + (used * cs),
                FullyAllocated = metadata + (clusters * cs),
            };
        }

        private static long RoundUp(long value, long unit) => (value + unit - 1) / unit * unit;

        private sealed class CreatePlan
        {
            public long Size;
            public int ClusterBits;
            public int L2Bits;
            public string BackingFile;
        }

        private static CreatePlan Plan(string path, CreateRequest request)
        {
            OptionSet options = (request.Options ?? new OptionSet()).Clone();
            long? sizeOption = options.GetSize("size");
            if (sizeOption.HasValue && request.Size != 0 && sizeOption.Value != request.Size)
            {
                throw new ImageOptionException(path, "size", $"the size option ({sizeOption}) and the size given ({request.Size}) disagree");
            }

            bool encrypted = request.Encryption != null || options.GetBool("encryption") == true || options.GetChoice("encrypt.format", "aes") != null || options.GetString("encrypt.key-secret") != null;
            if (encrypted)
            {
                throw EncryptedWriteRefused(path);
            }

            string backingFile = options.GetString("backing_file");
            if (backingFile != null && request.Backing != null && backingFile != request.Backing.RecordedPath)
            {
                throw new ImageOptionException(path, "backing_file", $"the backing_file option ('{backingFile}') and the backing file given ('{request.Backing.RecordedPath}') disagree");
            }

            string backingFormat = options.GetString("backing_fmt");
            if (backingFormat != null && !FormatRegistry.Default.TryParse(backingFormat, out _))
            {
                // qcow.c: the backing format cannot be stored, but it must name a format.
                throw new ImageOptionException(path, "backing_fmt", $"unknown backing format '{backingFormat}'; known formats: {string.Join(", ", FormatRegistry.Default.ReadableNames)}");
            }

            options.RejectUnknown(Id.Name, s_options);
            if (request.Subformat != null)
            {
                throw new ImageOptionException(path, "subformat", "qcow has no subformats") { Kind = ImageErrorKind.SubformatNotApplicable };
            }

            if (request.Type == DiskType.Fixed || (request.Preallocation.HasValue && request.Preallocation != Preallocation.Off))
            {
                throw new ImageOptionException(path, "preallocation", "qcow images grow as written: they have no fixed type or preallocation (QEMU's qcow has none either)");
            }

            string backing = BackingReference.ToPortable(backingFile ?? request.Backing?.RecordedPath);
            if (backing == null && request.Type == DiskType.Differencing)
            {
                throw new ImageOptionException(path, "backing_file", "a differencing image needs a backing file") { Kind = ImageErrorKind.ParentNotNamed };
            }

            if (backing != null && Encoding.UTF8.GetByteCount(backing) > QcowHeader.MaxBackingFileName)
            {
                throw new ImageOptionException(path, "backing_file", $"the backing file name is longer than the {QcowHeader.MaxBackingFileName} bytes qcow can record");
            }

            long size = sizeOption ?? request.Size;
            if (size <= 0)
            {
                throw new ImageOptionException(path, "size", "the size must be at least one byte (QEMU refuses a zero-length qcow image too)");
            }

            // qcow.c: the size is rounded up to whole sectors. Without a backing file qemu uses 4 KiB clusters
            // and 4 KiB L2 tables; with one, 512-byte clusters (so no write copies unmodified sectors) and
            // 32 KiB L2 tables.
            int clusterBits = backing != null ? 9 : 12;
            if (request.ClusterSize.HasValue)
            {
                long cs = request.ClusterSize.Value;
                if (cs < 512 || cs > 65536 || (cs & (cs - 1)) != 0)
                {
                    throw new ImageOptionException(path, "cluster size", $"{cs} must be a power of two from 512 bytes to 64 KiB");
                }

                clusterBits = 0;
                while ((1L << clusterBits) < cs)
                {
                    clusterBits++;
                }
            }

            int l2Bits = clusterBits == 9 ? 12 : clusterBits - 3;
            size = RoundUp(size, 512);
            long span = 1L << (clusterBits + l2Bits);
            if (size > long.MaxValue - span || (size + span - 1) / span > int.MaxValue / 8)
            {
                throw new ImageOptionException(path, "size", $"{size} bytes is too large for a qcow image with {1 << clusterBits}-byte clusters");
            }

            return new CreatePlan { Size = size, ClusterBits = clusterBits, L2Bits = l2Bits, BackingFile = backing };
        }
    }
}
