using System;
using System.IO;

namespace VDiskPS.Formats.Fuzzing
{
    /// <summary>
    /// What one fuzz input does to the engine, shared by the SharpFuzz harness and the corpus
    /// replay tests: the input becomes an image file, which is inspected, opened read-only through
    /// the registry, read where it stores data and checked. Any exception other than an
    /// <see cref="ImageException"/> escapes and is a finding.
    /// </summary>
    public static class FuzzTarget
    {
        /// <summary>Formats with a target, by the corpus folder name.</summary>
        public static readonly string[] Formats = { "qcow2", "vmdk", "vhd", "vhdx", "vdi", "qcow", "ova", "qed", "parallels", "bochs", "cloop", "dmg", "luks" };

        /// <summary>The password of the encrypted seeds (make-seeds.sh), in scope while an input is exercised.</summary>
        public const string Password = "pass";

        /// <summary>At most this many stored bytes are read from one input.</summary>
        private const long ReadBudget = 64L << 20;

        /// <summary>
        /// Writes the file an input stands for. VHDX regions sit at 1 MiB multiples, beyond what a
        /// fuzzer mutates well, so a VHDX input is its first 256 KiB followed by 64 KiB pieces that
        /// land at 1 MiB, 2 MiB, ... (the log, BAT, metadata and payload of a seed made so).
        /// Every other format's input is the file itself.
        /// </summary>
        public static void Materialize(string format, ReadOnlySpan<byte> input, string path)
        {
            using var file = new FileStream(path, FileMode.Create, FileAccess.Write);
            if (format != "vhdx" || input.Length <= VhdxHead)
            {
                file.Write(input);
                return;
            }

            file.Write(input.Slice(0, VhdxHead));
            int pieces = 0;
            for (int at = VhdxHead; at < input.Length; at += VhdxPiece)
            {
                pieces++;
                file.Position = (long)pieces << 20;
                file.Write(input.Slice(at, Math.Min(VhdxPiece, input.Length - at)));
            }

            file.SetLength(Math.Max(file.Length, VhdxFileLength));
        }

        /// <summary>The first bytes of a VHDX input kept in place (headers and region tables).</summary>
        public const int VhdxHead = 256 << 10;

        /// <summary>The size of each further VHDX piece.</summary>
        public const int VhdxPiece = 128 << 10;

        /// <summary>The length of a materialized VHDX file (past the payload block of the seed).</summary>
        public const long VhdxFileLength = 16L << 20;

        /// <summary>Runs the engine over the image at <paramref name="path"/>; a typed error is a clean answer.</summary>
        /// <returns>null when the image was read through, else the typed error.</returns>
        public static ImageException Exercise(string path, string format)
        {
            if (format == "ova")
            {
                return ExercisePackage(path);
            }

            DiskFormat diskFormat = DiskFormat.Parse(format);
            try
            {
                using var secrets = ImageSecrets.Use(ImageSecrets.FromString(Password));
                ImageInspector.Get(path, diskFormat);
                using (var chain = ImageChain.Open(path, new ChainOptions { Format = diskFormat, NoBacking = true }))
                {
                    ReadThrough(chain, ReadBudget);
                }

                CheckOperation.Run(path, diskFormat, RepairMode.None);
                return null;
            }
            catch (ImageException e)
            {
                return e;
            }
        }

        /// <summary>An OVA input: the tar headers, descriptor and manifest are parsed, each disk opened from its member, read and checked against the manifest.</summary>
        private static ImageException ExercisePackage(string path)
        {
            try
            {
                using (var package = Ova.OvfPackage.Open(path))
                {
                    package.DescribeDisks();
                    long budget = ReadBudget;
                    foreach (Ova.OvfDisk disk in package.Machine.Disks)
                    {
                        if (disk.File == null)
                        {
                            continue;
                        }

                        using (ImageLayer layer = package.OpenDisk(disk, null, true, out Action check))
                        {
                            budget = ReadThrough(ImageChain.FromLayers(new[] { layer }), budget);
                            check?.Invoke();
                        }
                    }
                }

                return null;
            }
            catch (ImageException e)
            {
                return e;
            }
        }

        /// <summary>Reads the chain's data runs, at most <paramref name="budget"/> bytes; returns what is left of the budget.</summary>
        private static long ReadThrough(ImageChain chain, long budget)
        {
            long size = chain.Size;
            var buffer = new byte[1 << 20];
            for (long offset = 0; offset < size && budget > 0;)
            {
                BlockStatus status = chain.GetBlockStatus(offset, size - offset);
                if (status.Length <= 0)
                {
                    throw new InvalidOperationException($"block status at {offset} has length {status.Length}");
                }

                long run = Math.Min(status.Length, size - offset);
                if (status.Kind == ExtentKind.Data)
                {
                    int n = (int)Math.Min(Math.Min(run, buffer.Length), budget);
                    chain.Read(offset, buffer.AsSpan(0, n));
                    budget -= n;
                    offset += n;
                }
                else
                {
                    offset += run;
                }
            }

            return budget;
        }
    }
}
