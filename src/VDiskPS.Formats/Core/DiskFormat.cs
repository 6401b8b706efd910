using System;
using System.Collections.Generic;

namespace VDiskPS.Formats
{
    /// <summary>
    /// A format's identity: the name its driver gives it. The formats themselves are listed only by
    /// <see cref="FormatRegistry"/>; each driver declares its own identity in its folder.
    /// </summary>
    public readonly struct DiskFormat : IEquatable<DiskFormat>
    {
        /// <summary>Declares a format; only a driver does this, for itself.</summary>
        public DiskFormat(string name)
        {
            if (string.IsNullOrWhiteSpace(name))
            {
                throw new ArgumentException("a format needs a name", nameof(name));
            }

            Name = name.ToLowerInvariant();
        }

        /// <summary>The lower-case name this module uses (-Format values, VDiskInfo.Format).</summary>
        public string Name { get; }

        /// <summary>Looks a name (or qemu's name for it) up in the default registry; PowerShell converts strings with this.</summary>
        public static DiskFormat Parse(string name) => FormatRegistry.Default.Parse(name);

        public bool Equals(DiskFormat other) => string.Equals(Name, other.Name, StringComparison.Ordinal);

        public override bool Equals(object obj) => obj is DiskFormat other && Equals(other);

        public override int GetHashCode() => Name == null ? 0 : StringComparer.Ordinal.GetHashCode(Name);

        public override string ToString() => Name ?? string.Empty;

        public static bool operator ==(DiskFormat left, DiskFormat right) => left.Equals(right);

        public static bool operator !=(DiskFormat left, DiskFormat right) => !left.Equals(right);
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
        /// <summary>The lower-case name (raw, qcow2, vmdk, vhd, ...).</summary>
        public static string ToName(this DiskFormat format) => format.Name;

        /// <summary>qemu-img's driver name for the format (as the format's driver gives it).</summary>
        public static string ToQemuName(this DiskFormat format) => FormatRegistry.Default.Find(format)?.QemuName ?? format.Name;
    }
}
