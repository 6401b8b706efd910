using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.Text;

namespace VDiskPS.Formats
{
    /// <summary>
    /// Formats QEMU knows that this module does not implement. Probing recognises them so that their
    /// files are refused by name instead of being read as raw (their container bytes are not the guest's
    /// disk). Each test mirrors the probe function of the QEMU driver named in its comment.
    /// </summary>
    internal static class ForeignFormats
    {
        private sealed class Foreign
        {
            public Foreign(string name, string[] extensions, Func<ProbeContext, bool> matches)
            {
                Name = name;
                Extensions = extensions;
                Matches = matches;
            }

            public string Name { get; }

            public string[] Extensions { get; }

            public Func<ProbeContext, bool> Matches { get; }
        }

        // block/qcow.c: QCOW_MAGIC 'QFI\xfb', version 1 (qcow2 shares the magic with versions 2 and 3).
        private const uint QcowMagic = 0x514649fb;

        // block/qed.h: QED_MAGIC 'Q' | 'E' << 8 | 'D' << 16 | '\0' << 24, little-endian.
        private const uint QedMagic = 0x00444551;

        // block/parallels.c: 16-byte magic (two spellings), then version 2.
        private static readonly byte[] s_parallelsMagic = Encoding.ASCII.GetBytes("WithoutFreeSpace");
        private static readonly byte[] s_parallelsMagicExt = Encoding.ASCII.GetBytes("WithouFreSpacExt");

        // block/bochs.h: NUL-terminated strings in fixed fields, then a little-endian version.
        private static readonly byte[] s_bochsMagic = Encoding.ASCII.GetBytes("Bochs Virtual HD Image\0");
        private static readonly byte[] s_bochsRedolog = Encoding.ASCII.GetBytes("Redolog\0");

        // block/cloop.c: the shell preamble of a version 2.0 compressed loop image.
        private static readonly byte[] s_cloopMagic = Encoding.ASCII.GetBytes("#!/bin/sh\n#V2.0 Format\nmodprobe cloop file=$0 && mount -r -t iso9660 /dev/cloop $1\n");

        // block/dmg.c: the UDIF trailer ("koly") in the last 512 bytes.
        private static readonly byte[] s_dmgTrailer = Encoding.ASCII.GetBytes("koly");

        private static readonly Foreign[] s_formats =
        {
            new Foreign("qcow", Array.Empty<string>(), c => c.Head.Length >= 48 && BinaryPrimitives.ReadUInt32BigEndian(c.Head) == QcowMagic && BinaryPrimitives.ReadUInt32BigEndian(c.Head.AsSpan(4)) == 1),
            new Foreign("qed", new[] { ".qed" }, c => c.Head.Length >= 4 && BinaryPrimitives.ReadUInt32LittleEndian(c.Head) == QedMagic),
            new Foreign("parallels", new[] { ".hds", ".hdd" }, IsParallels),
            new Foreign("bochs", new[] { ".bochs" }, IsBochs),
            new Foreign("cloop", new[] { ".cloop" }, c => StartsWith(c.Head, 0, s_cloopMagic)),
            new Foreign("dmg", new[] { ".dmg" }, c => c.Tail.Length == 512 && StartsWith(c.Tail, 0, s_dmgTrailer)),

            // Hyper-V's VHD Set, known here by its extension only: its content is never read as anything.
            new Foreign(VhdSetName, new[] { ".vhds" }, c => false),
        };

        /// <summary>The name the VHD Set (.vhds) format is refused by.</summary>
        public const string VhdSetName = "VHD Set";

        /// <summary>The name of the unimplemented format whose signature the file carries, or null.</summary>
        public static string Recognise(ProbeContext context)
        {
            foreach (Foreign format in s_formats)
            {
                if (format.Matches(context))
                {
                    return format.Name;
                }
            }

            return null;
        }

        /// <summary>The unimplemented format an extension names (".qed", ".dmg", ...), or null.</summary>
        public static string FromExtension(string extension)
        {
            foreach (Foreign format in s_formats)
            {
                foreach (string e in format.Extensions)
                {
                    if (string.Equals(e, extension, StringComparison.OrdinalIgnoreCase))
                    {
                        return format.Name;
                    }
                }
            }

            return null;
        }

        /// <summary>The refusal for a file of an unimplemented format.</summary>
        public static ImageNotSupportedException NotSupported(string path, string name)
            => name == VhdSetName
                ? new ImageNotSupportedException(path, "format", 0, "VHD Set (.vhds) files are not supported: a VHD Set is Hyper-V's shared-disk container, a small file that names the .avhdx files holding the data; neither reading nor creating one is implemented (for a shared disk make a .vhdx; to read a VHD Set, convert it to .vhdx on Hyper-V first)")
                : new ImageNotSupportedException(path, "format", 0, $"{name} images are not supported yet (the file carries the {name} signature; it is not read as raw)");

        private static bool IsParallels(ProbeContext context)
        {
            byte[] head = context.Head;
            return head.Length >= 64
                && (StartsWith(head, 0, s_parallelsMagic) || StartsWith(head, 0, s_parallelsMagicExt))
                && BinaryPrimitives.ReadUInt32LittleEndian(head.AsSpan(16)) == 2;
        }

        private static bool IsBochs(ProbeContext context)
        {
            // struct bochs_header: magic[32], type[16], subtype[16], version; QEMU reads only "Growing"
            // redologs, but any redolog is a Bochs image, never raw data.
            byte[] head = context.Head;
            if (head.Length < 512 || !StartsWith(head, 0, s_bochsMagic) || !StartsWith(head, 32, s_bochsRedolog))
            {
                return false;
            }

            uint version = BinaryPrimitives.ReadUInt32LittleEndian(head.AsSpan(64));
            return version == 0x00020000 || version == 0x00010000;
        }

        private static bool StartsWith(byte[] data, int offset, IReadOnlyList<byte> prefix)
        {
            if (data.Length - offset < prefix.Count)
            {
                return false;
            }

            for (int i = 0; i < prefix.Count; i++)
            {
                if (data[offset + i] != prefix[i])
                {
                    return false;
                }
            }

            return true;
        }
    }
}
