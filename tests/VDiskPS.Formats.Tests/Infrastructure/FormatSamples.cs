using System;
using System.Collections.Generic;
using System.Linq;

namespace VDiskPS.Formats.Tests
{
    /// <summary>
    /// How the tests get an image of each readable format holding given raw content, made by a tool
    /// nobody here wrote where one can: qemu-img for the formats QEMU writes; for the formats QEMU only
    /// reads, a builder from the format's published layout, whose output qemu-img must read back
    /// identically before the engine is judged on it (the builder's own test checks that).
    /// </summary>
    internal static class FormatSamples
    {
        /// <summary>Formats qemu-img converts into, by this module's name and qemu's.</summary>
        private static readonly Dictionary<string, string> s_qemuWrites = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase)
        {
            ["raw"] = "raw",
            ["qcow2"] = "qcow2",
            ["vmdk"] = "vmdk",
            ["vhd"] = "vpc",
            ["vhdx"] = "vhdx",
            ["vdi"] = "vdi",
            ["qcow"] = "qcow",
            ["qed"] = "qed",
            ["parallels"] = "parallels",
        };

        /// <summary>Formats QEMU cannot create: a builder writes the image at the given path from the raw file.</summary>
        private static readonly Dictionary<string, Action<string, string>> s_builders = new Dictionary<string, Action<string, string>>(StringComparer.OrdinalIgnoreCase)
        {
            ["bochs"] = (raw, path) => Bochs.BochsBuilder.Build(raw, path),
            ["cloop"] = Cloop.CloopBuilder.Build,
            ["dmg"] = Dmg.DmgBuilder.Build,
            // qemu-img writes luks only with a secret: the container's password is Qemu.Password.
            ["luks"] = (raw, path) => Qemu.Img("convert", "--object", Qemu.SecretObject, "-f", "raw", "-O", "luks", "-o", "key-secret=sec0,iter-time=10", raw, path),
        };

        /// <summary>Formats whose images need <see cref="Qemu.Password"/> (an ImageSecrets scope on the engine's side, the secret sec0 on qemu's).</summary>
        public static bool IsEncrypted(string format) => string.Equals(format, "luks", StringComparison.OrdinalIgnoreCase);

        public static IEnumerable<string> Sources => s_qemuWrites.Keys.Concat(s_builders.Keys);

        /// <summary>Makes source.&lt;ext&gt; in <paramref name="dir"/> holding the bytes of <paramref name="raw"/>; returns its path.</summary>
        public static string Make(string format, TempDir dir, string raw)
        {
            FormatDriver driver = FormatRegistry.Default.Get(DiskFormat.Parse(format));
            string path = dir.File("source" + driver.Extensions[0]);
            if (s_builders.TryGetValue(format, out var build))
            {
                build(raw, path);
            }
            else
            {
                Qemu.Img("convert", "-f", "raw", "-O", s_qemuWrites[format], raw, path);
            }

            return path;
        }
    }
}
