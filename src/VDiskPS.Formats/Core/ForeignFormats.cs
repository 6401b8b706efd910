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


        // crypto/block-luks.c: "LUKS\xba\xbe", then a big-endian version (1; cryptsetup writes 2 for LUKS2).
        private static readonly byte[] s_luksMagic = { (byte)'L', (byte)'U', (byte)'K', (byte)'S', 0xba, 0xbe };


        private static readonly Foreign[] s_formats =
        {
            new Foreign("luks", new[] { ".luks" }, c => StartsWith(c.Head, 0, s_luksMagic) && c.Head.Length >= 8),

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

        /// <summary>The unimplemented format an extension names (".vhds", ...), or null.</summary>
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
