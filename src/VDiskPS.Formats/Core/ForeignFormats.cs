using System;
using System.Collections.Generic;

namespace VDiskPS.Formats
{
    /// <summary>
    /// Formats this module does not implement (now only Hyper-V's VHD Set, known by its extension).
    /// Probing recognises them so that their files are refused by name instead of being read as raw
    /// (their container bytes are not the guest's disk).
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

        private static readonly Foreign[] s_formats =
        {
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
    }
}
