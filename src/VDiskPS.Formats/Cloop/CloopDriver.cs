using System;
using System.Collections.Generic;
using System.Text;

namespace VDiskPS.Formats.Cloop
{
    /// <summary>
    /// Compressed loop images (Knoppix's cloop, version 2.0, as QEMU's block/cloop.c reads them):
    /// read-only, as in QEMU, which reads them but cannot create them.
    /// </summary>
    public sealed class CloopDriver : FormatDriver
    {
        /// <summary>The cloop format's identity.</summary>
        public static readonly DiskFormat Id = new DiskFormat("cloop");

        /// <summary>The start of the shell preamble qemu probes for (block/cloop.c cloop_probe).</summary>
        internal static readonly byte[] Signature = Encoding.ASCII.GetBytes("#!/bin/sh\n#V2.0 Format\nmodprobe cloop file=$0 && mount -r -t iso9660 /dev/cloop $1\n");

        public override DiskFormat Format => Id;

        public override string Description => "compressed loop image (cloop 2.0, read-only)";

        public override IReadOnlyList<string> Extensions { get; } = new[] { ".cloop" };

        public override int Probe(ProbeContext context)
            => context.Head.Length >= Signature.Length && context.Head.AsSpan(0, Signature.Length).SequenceEqual(Signature) ? 100 : 0;

        public override ImageLayer Open(HostFile file, OpenOptions options) => DisposingOnFailure(file, () => CloopLayer.Open(file));
    }
}
