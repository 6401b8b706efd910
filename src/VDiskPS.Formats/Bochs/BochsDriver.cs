using System.Collections.Generic;

namespace VDiskPS.Formats.Bochs
{
    /// <summary>
    /// Bochs growing redolog images (bximage), read-only as in QEMU. Bochs images have no extension of
    /// their own (bximage suggests .img, which is raw's), so .bochs is claimed only so that the format has
    /// one; such files are always recognised by their header.
    /// </summary>
    public sealed class BochsDriver : FormatDriver
    {
        /// <summary>The bochs format's identity.</summary>
        public static readonly DiskFormat Id = new DiskFormat("bochs");

        public override DiskFormat Format => Id;

        public override string Description => "Bochs growing disk image (read-only)";

        public override IReadOnlyList<string> Extensions { get; } = new[] { ".bochs" };

        /// <summary>Any redolog is claimed (so that undoable and volatile ones are refused by name, never read as raw).</summary>
        public override int Probe(ProbeContext context) => BochsHeader.IsRedolog(context.Head) ? 100 : 0;

        public override ImageLayer Open(HostFile file, OpenOptions options) => DisposingOnFailure(file, () => BochsLayer.Open(file));
    }
}
