using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;

namespace VDiskPS.Formats
{
    /// <summary>The known format drivers: lookup by name and extension, and probing of files.</summary>
    public sealed class FormatRegistry
    {
        private readonly List<FormatDriver> _drivers;

        public FormatRegistry(IEnumerable<FormatDriver> drivers)
        {
            _drivers = drivers.ToList();
        }

        /// <summary>Every format this build implements.</summary>
        public static FormatRegistry Default { get; } = new FormatRegistry(new FormatDriver[]
        {
            new Raw.RawDriver(),
            new Qcow2.Qcow2Driver(),
            new Vmdk.VmdkDriver(),
            new Vhd.VhdDriver(),
            new Vdi.VdiDriver(),
            new Vhdx.VhdxDriver(),
            new Qcow.QcowDriver(),
            new Qed.QedDriver(),
            new Parallels.ParallelsDriver(),
            new Bochs.BochsDriver(),
            new Cloop.CloopDriver(),
            new Dmg.DmgDriver(),
            new Luks.LuksDriver(),
        });

        public IReadOnlyList<FormatDriver> Drivers => _drivers;

        /// <summary>The names of every format this registry can read (-Format of a reading cmdlet).</summary>
        public IReadOnlyList<string> ReadableNames => _drivers.Select(d => d.Format.Name).ToList();

        /// <summary>The names of the formats this registry can create (-Format of a writing cmdlet).</summary>
        public IReadOnlyList<string> CreatableNames => _drivers.Where(d => d is ICreatableDriver).Select(d => d.Format.Name).ToList();

        /// <summary>The driver a file without any image signature is read with (raw), or null.</summary>
        public FormatDriver PlainData => _drivers.FirstOrDefault(d => d.IsPlainData);

        /// <summary>The plain-data format (raw): the default of a new file whose name says nothing.</summary>
        public DiskFormat PlainDataFormat => (PlainData ?? throw new ImageNotSupportedException(null, "format", null, "this build has no plain-data format")).Format;

        /// <summary>The encryption schemes the drivers offer to formats that embed one (qcow2's encrypt.format).</summary>
        public IReadOnlyList<string> EncryptionSchemes => _drivers.OfType<IEncryptionScheme>().Select(s => s.SchemeName).ToList();

        /// <summary>The driver that offers the encryption scheme <paramref name="name"/> (case-insensitive), or null.</summary>
        public IEncryptionScheme FindEncryption(string name)
            => _drivers.OfType<IEncryptionScheme>().FirstOrDefault(s => string.Equals(s.SchemeName, name, StringComparison.OrdinalIgnoreCase));

        public FormatDriver Find(DiskFormat format) => _drivers.FirstOrDefault(d => d.Format == format);

        public FormatDriver Get(DiskFormat format)
        {
            return Find(format)
                ?? throw new ImageNotSupportedException(null, "format", null, $"the {format.ToName()} format is not available in this build");
        }

        /// <summary>The driver that creates <paramref name="format"/>; a format this build only reads is refused by name.</summary>
        public ICreatableDriver GetCreatable(DiskFormat format, string path = null)
        {
            return Get(format) as ICreatableDriver
                ?? throw new ImageNotSupportedException(path, "format", null, $"{format.ToName()} images can be read but not created or written by this build (formats it writes: {string.Join(", ", CreatableNames)})");
        }

        /// <summary>Parses a format name; accepts qemu's name (vpc for VHD). Case-insensitive.</summary>
        public DiskFormat Parse(string name)
        {
            if (TryParse(name, out var format))
            {
                return format;
            }

            throw new ImageOptionException(null, "format", $"unknown image format '{name}'; known formats: {string.Join(", ", ReadableNames)}");
        }

        public bool TryParse(string name, out DiskFormat format)
        {
            format = default;
            if (string.IsNullOrWhiteSpace(name))
            {
                return false;
            }

            string n = name.Trim();
            FormatDriver driver = _drivers.FirstOrDefault(d => string.Equals(d.Format.Name, n, StringComparison.OrdinalIgnoreCase))
                ?? _drivers.FirstOrDefault(d => string.Equals(d.QemuName, n, StringComparison.OrdinalIgnoreCase));
            if (driver == null)
            {
                return false;
            }

            format = driver.Format;
            return true;
        }

        /// <summary>The format a new file gets from its extension, or null when the extension says nothing.</summary>
        public DiskFormat? FromExtension(string path)
        {
            string ext = Path.GetExtension(Transports.FileNameOf(path ?? string.Empty));
            if (string.IsNullOrEmpty(ext))
            {
                return null;
            }

            foreach (var driver in _drivers)
            {
                if (driver.Extensions.Any(e => string.Equals(e, ext, StringComparison.OrdinalIgnoreCase)))
                {
                    return driver.Format;
                }
            }

            return null;
        }

        /// <summary>The preferred extension for new files of a format (".qcow2", ".vhdx", ...).</summary>
        public string DefaultExtension(DiskFormat format) => Get(format).Extensions[0];

        /// <summary>
        /// Recognises a file's format from its content. A file carrying the signature of a format QEMU knows
        /// but this build does not implement is refused by name; a file whose extension names a format it does
        /// not contain is an error; only a file with neither a known signature nor an image extension is raw
        /// (as qemu-img treats it), with a warning when it is shorter than one sector.
        /// </summary>
        public DiskFormat Probe(string path, bool shareWithWriters = false)
        {
            using (var file = HostFile.Open(path, ProbeAccess(shareWithWriters)))
            {
                return Probe(file);
            }
        }

        private static HostAccess ProbeAccess(bool shareWithWriters) => shareWithWriters ? HostAccess.ReadIgnoringWriters : HostAccess.Read;

        /// <summary>Recognises the format of the image stored in <paramref name="file"/>, by the rules of <see cref="Probe(string, bool)"/>.</summary>
        public DiskFormat Probe(HostFile file)
        {
            long length = file.Length;
            byte[] head = new byte[(int)Math.Min(length, 64 * 1024)];
            file.ReadExactly(0, head, "file header");
            byte[] tail = Array.Empty<byte>();

            // A stream's end is reached only by reading all of it: its formats are known by their header.
            if (length >= 512 && !file.IsSequential)
            {
                tail = new byte[512];
                file.ReadExactly(length - 512, tail, "file footer");
            }

            var context = new ProbeContext(file.Path, head, tail, length);
            FormatDriver best = null;
            int bestScore = 0;
            foreach (var driver in _drivers)
            {
                int score = driver.Probe(context);
                if (score > bestScore)
                {
                    best = driver;
                    bestScore = score;
                }
            }

            if (best != null && !best.IsPlainData)
            {
                return best.Format;
            }

            string foreign = ForeignFormats.Recognise(context);
            if (foreign != null)
            {
                throw ForeignFormats.NotSupported(file.Path, foreign);
            }

            if (Ova.OvfPackage.IsPackage(file.Path, head))
            {
                throw Ova.OvfPackage.NotAnImage(file.Path);
            }

            string extension = Path.GetExtension(Transports.FileNameOf(file.Path));
            DiskFormat? named = FromExtension(file.Path);
            string namedForeign = ForeignFormats.FromExtension(extension);
            if (namedForeign == ForeignFormats.VhdSetName)
            {
                throw ForeignFormats.NotSupported(file.Path, namedForeign);
            }

            if ((named.HasValue && !Get(named.Value).IsPlainData) || namedForeign != null)
            {
                string expected = namedForeign ?? named.Value.ToName();
                string found = length == 0 ? "the file is empty" : "its content carries no known image signature";
                throw new ImageFormatMismatchException(file.Path, "format", 0, $"the extension '{extension}' names a {expected} image, but {found}, so it is not {expected} (to read it as raw data, give the raw format explicitly)");
            }

            if (length < 512)
            {
                ImageWarnings.Report(file.Path, $"the file is {length} bytes long, shorter than one 512-byte sector; it has no image signature and is read as raw");
            }

            return PlainDataFormat;
        }

        /// <summary>Opens the layer stored in <paramref name="file"/> (which it then owns): the explicit format as given, else the probed one.</summary>
        public ImageLayer Open(HostFile file, DiskFormat? format, OpenOptions options)
        {
            FormatDriver driver;
            try
            {
                driver = Writable(Get(format ?? Probe(file)), file.Path, options);
                if (file.IsSequential && !driver.ReadsFrontToBack)
                {
                    throw file.RandomAccessRefused();
                }
            }
            catch
            {
                file.Dispose();
                throw;
            }

            return driver.Open(file, options);
        }

        /// <summary>Opens one layer (no backing chain): the explicit format as given, else the probed one.</summary>
        public ImageLayer Open(string path, DiskFormat? format, OpenOptions options)
        {
            string full = Transports.GetFullLocation(path);
            if (!Transports.Exists(full))
            {
                throw new ImageIOException(full, Directory.Exists(full) ? "is a directory, not an image file" : "file not found");
            }

            // A writer's probe only peeks at the header: the writable open after it takes and tests the
            // writer's locks, and its refusal names the right conflict.
            if (Transports.IsRemote(full) && format != null)
            {
                // Through the overload that refuses a stream (a server that ignores ranges) to a format that cannot read one.
                return Open(HostFile.Open(full, options.Access), format, options);
            }

            DiskFormat? actual = format;
            if (actual == null)
            {
                HostFile probed = HostFile.Open(full, ProbeAccess(options.ShareWithWriters || options.Writable));
                if (probed.IsSequential)
                {
                    // A stream can be read only once: the probed file is the one opened.
                    return Open(probed, null, options);
                }

                using (probed)
                {
                    actual = Probe(probed);
                }
            }

            return Writable(Get(actual.Value), full, options).Open(full, options);
        }

        /// <summary>A format this build only reads is refused for a writable open, by name, before anything is opened.</summary>
        private FormatDriver Writable(FormatDriver driver, string path, OpenOptions options)
        {
            if (options.Writable && !(driver is ICreatableDriver))
            {
                throw new ImageNotSupportedException(path, "format", null, $"{driver.Format.Name} images can be read but not written by this build; convert the image to a format it writes ({string.Join(", ", CreatableNames)}) first");
            }

            return driver;
        }
    }
}
