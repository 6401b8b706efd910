using System;
using System.Collections.Generic;

namespace VDiskPS.Formats
{
    /// <summary>The image formats the engine knows.</summary>
    public enum DiskFormat
    {
        Raw,
        Qcow2,
        Vmdk,
        Vhd,
        Vhdx,
        Vdi,
    }

    /// <summary>How the image allocates its space (the Hyper-V VhdType vocabulary).</summary>
    public enum DiskType
    {
        Fixed,
        Dynamic,
        Differencing,
    }

    /// <summary>qemu's preallocation modes.</summary>
    public enum Preallocation
    {
        Off,
        Metadata,
        Falloc,
        Full,
    }

    /// <summary>Cluster compression algorithms.</summary>
    public enum CompressionType
    {
        Zlib,
        Zstd,
    }

    public static class DiskFormatNames
    {
        /// <summary>The lower-case name qemu-img uses (raw, qcow2, vmdk, vpc for VHD, vhdx, vdi).</summary>
        public static string ToName(this DiskFormat format) => format.ToString().ToLowerInvariant();

        /// <summary>qemu-img's driver name for the format (VHD is "vpc" there).</summary>
        public static string ToQemuName(this DiskFormat format) => format == DiskFormat.Vhd ? "vpc" : format.ToName();

        /// <summary>Parses a format name; accepts qemu's "vpc" for VHD. Case-insensitive.</summary>
        public static DiskFormat Parse(string name)
        {
            if (TryParse(name, out var format))
            {
                return format;
            }

            throw new ImageOptionException(null, "format", $"unknown image format '{name}'; known formats: {string.Join(", ", AllNames)}");
        }

        public static bool TryParse(string name, out DiskFormat format)
        {
            format = default;
            if (string.IsNullOrWhiteSpace(name))
            {
                return false;
            }

            string n = name.Trim().ToLowerInvariant();
            if (n == "vpc")
            {
                format = DiskFormat.Vhd;
                return true;
            }

            foreach (DiskFormat f in Enum.GetValues(typeof(DiskFormat)))
            {
                if (f.ToName() == n)
                {
                    format = f;
                    return true;
                }
            }

            return false;
        }

        public static IReadOnlyList<string> AllNames { get; } = new[] { "raw", "qcow2", "vmdk", "vhd", "vhdx", "vdi" };
    }
}
