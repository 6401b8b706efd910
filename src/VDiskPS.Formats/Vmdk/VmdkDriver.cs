using System;
using System.Collections.Generic;
using VDiskPS;

namespace VDiskPS.Formats.Vmdk
{
    /// <summary>VMware virtual disks (VMware Virtual Disk Format 5.0), as qemu-img reads and writes them.</summary>
    public sealed class VmdkDriver : FormatDriver, Ova.IOvfDiskDriver
    {
        /// <summary>The create types <see cref="CreateRequest.Subformat"/> (or option subformat=) accepts.</summary>
        public override IReadOnlyList<string> Subformats => VmdkCreateOptions.Subformats;

        public override bool HasQemuFormatSpecific => true;

        /// <summary>A streamOptimized disk reads front to back by its markers; other VMDKs are refused a stream when opened.</summary>
        public override bool ReadsFrontToBack => true;

        /// <summary>The vmdk format's identity.</summary>
        public static readonly DiskFormat Id = new DiskFormat("vmdk");

        public override DiskFormat Format => Id;

        public override string Description => "VMware virtual disk (sparse, flat, streamOptimized, ESXi)";

        public override IReadOnlyList<string> Extensions { get; } = new[] { ".vmdk" };

        public override IReadOnlyList<CreateOption> CreateOptions => VmdkCreateOptions.OptionNames;

        public string OvfDiskFormatUri => "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized";

        public string OvfDiskExtension => Extensions[0];

        /// <summary>A streamOptimized (version 3) VMDK, the form ESXi and AWS import.</summary>
        public CreateRequest OvfDiskRequest(long size) => new CreateRequest { Size = size, Subformat = VmdkCreateOptions.StreamOptimized };

        public override int Probe(ProbeContext context)
        {
            byte[] head = context.Head;
            if (SparseHeader.HasMagic(head) || SparseHeader.HasCowdMagic(head))
            {
                return 100;
            }

            return context.Length <= VmdkDescriptor.MaxSize && VmdkDescriptor.LooksLikeDescriptor(head) ? 100 : 0;
        }

        public override ImageLayer Open(HostFile file, OpenOptions options) => VmdkLayer.Open(file, options);

        public ImageLayer Create(string path, CreateRequest request) => VmdkLayer.Create(path, request);

        public bool SupportsCompression(CreateRequest request)
        {
            string subformat = request.Options?.Contains("subformat") == true ? request.Options.Clone().GetString("subformat") : request.Subformat;
            return string.Equals(subformat, VmdkCreateOptions.StreamOptimized, StringComparison.OrdinalIgnoreCase);
        }

        public VDiskMeasurement Measure(CreateRequest request, long allocatedBytes)
        {
            VmdkCreateOptions options = VmdkCreateOptions.Parse(null, request);
            long grainBytes = options.GrainSectors * 512;
            long size = options.Size;
            if (!options.IsSparse)
            {
                return new VDiskMeasurement { Format = "vmdk", Required = options.Subformat == VmdkCreateOptions.VmfsThin ? allocatedBytes : size, FullyAllocated = size };
            }

            long data = (Math.Min(allocatedBytes, size) + grainBytes - 1) / grainBytes * grainBytes;
            long full = (size + grainBytes - 1) / grainBytes * grainBytes;
            if (options.Subformat == VmdkCreateOptions.StreamOptimized)
            {
                // Worst case: incompressible grains, each behind a marker, plus tables and closing sectors.
                long grains = full / grainBytes;
                long tableBytes = (grains + 511) / 512 * (512 * 4 + 512);
                long fixedBytes = 64 * 1024 + tableBytes + ((grains + 511) / 512 * 4 + 511) / 512 * 512 + 4 * 512;
                return new VDiskMeasurement { Format = "vmdk", Required = fixedBytes + data + data / grainBytes * 512, FullyAllocated = fixedBytes + full + grains * 512 };
            }

            long extents = options.IsSplit ? Math.Max(1, (size + (2L << 30) - 1) / (2L << 30)) : 1;
            long perExtentGrains = (options.IsSplit ? Math.Min(full, 2L << 30) : full) / grainBytes;
            long tables = (perExtentGrains + 511) / 512;
            long overhead = (512 + 20 * 512 + 2 * ((tables * 4 + 511) / 512 * 512 + tables * 2048) + grainBytes - 1) / grainBytes * grainBytes;
            return new VDiskMeasurement { Format = "vmdk", Required = overhead * extents + data, FullyAllocated = overhead * extents + full };
        }
    }
}
