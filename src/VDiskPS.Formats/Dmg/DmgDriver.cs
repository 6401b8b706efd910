using System;
using System.Collections.Generic;

namespace VDiskPS.Formats.Dmg
{
    /// <summary>
    /// Apple disk images (UDIF, as QEMU's block/dmg.c reads them): read-only, as in QEMU, which reads
    /// them but cannot create them.
    /// </summary>
    public sealed class DmgDriver : FormatDriver
    {
        /// <summary>The dmg format's identity.</summary>
        public static readonly DiskFormat Id = new DiskFormat("dmg");

        public override DiskFormat Format => Id;

        public override string Description => "Apple disk image (UDIF, read-only)";

        public override IReadOnlyList<string> Extensions { get; } = new[] { ".dmg" };

        /// <summary>The koly trailer in the last 512 bytes (qemu probes by the extension; the trailer is what makes a file a DMG).</summary>
        public override int Probe(ProbeContext context) => DmgTrailer.HasSignature(context.Tail, 0) ? 100 : 0;

        public override ImageLayer Open(HostFile file, OpenOptions options) => DisposingOnFailure(file, () => DmgLayer.Open(file));
    }
}
