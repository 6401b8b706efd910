using System;
using System.Collections.Generic;

namespace VDiskPS.Formats.Raw
{
    /// <summary>Plain disk images: byte N of the file is byte N of the disk.</summary>
    public sealed class RawDriver : FormatDriver, ICreatableDriver
    {
        private static readonly CreateOption[] s_optionNames =
        {
            new CreateOption("preallocation", CreateOptionKind.Choice, "how the file's space is reserved", "off", "falloc", "full"),
            new CreateOption("size", CreateOptionKind.Size, "virtual size"),
        };

        /// <summary>The raw format's identity.</summary>
        public static readonly DiskFormat Id = new DiskFormat("raw");

        public override DiskFormat Format => Id;

        public override string Description => "Plain disk image: byte N of the file is byte N of the disk";

        public override IReadOnlyList<string> Extensions { get; } = new[] { ".raw", ".img", ".bin", ".iso" };

        public override IReadOnlyList<CreateOption> CreateOptions => s_optionNames;

        public override bool IsPlainData => true;

        /// <summary>Byte N of the disk is byte N of the file: a copy reads it front to back.</summary>
        public override bool ReadsFrontToBack => true;

        /// <summary>Anything can be raw; every real format outbids it.</summary>
        public override int Probe(ProbeContext context) => 1;

        public override ImageLayer Open(HostFile file, OpenOptions options) => new RawLayer(file);

        public ImageLayer Create(string path, CreateRequest request)
        {
            if (request.Backing != null)
            {
                throw ImageNotSupportedException.Capability(RawDriver.Id, "backing files", path);
            }

            if (request.Type == DiskType.Differencing)
            {
                throw ImageNotSupportedException.Capability(RawDriver.Id, "differencing images", path);
            }

            OptionSet options = request.Options.Clone();
            Preallocation preallocation = options.GetPreallocation("preallocation", Preallocation.Off, Preallocation.Falloc, Preallocation.Full)
                ?? request.Preallocation
                ?? (request.Type == DiskType.Fixed ? Preallocation.Falloc : Preallocation.Off);
            if (preallocation == Preallocation.Metadata)
            {
                throw new ImageOptionException(path, "preallocation", "raw has no metadata to preallocate; use off, falloc or full");
            }

            long size = options.GetSize("size") ?? request.Size;
            options.RejectUnknown("raw", s_optionNames);
            if (request.ClusterSize.HasValue)
            {
                throw ImageNotSupportedException.Capability(RawDriver.Id, "a cluster size", path);
            }

            var file = request.CreateFile(path);
            try
            {
                var layer = new RawLayer(file);
                layer.Extend(size, preallocation);
                return layer;
            }
            catch
            {
                file.Dispose();
                System.IO.File.Delete(file.Path);
                throw;
            }
        }

        public bool SupportsCompression(CreateRequest request) => false;

        public VDiskMeasurement Measure(CreateRequest request, long allocatedBytes)
        {
            // qemu's raw_measure: a raw image needs its whole size, rounded up to a sector, whatever it holds.
            long size = (request.Size + 511) / 512 * 512;
            return new VDiskMeasurement
            {
                Format = "raw",
                Required = size,
                FullyAllocated = size,
            };
        }
    }
}
