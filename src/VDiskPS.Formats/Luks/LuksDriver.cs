using System;
using System.Buffers.Binary;
using System.Collections.Generic;

namespace VDiskPS.Formats.Luks
{
    /// <summary>
    /// QEMU's raw LUKS1 container (block/crypto.c): a LUKS1 header and key material, then the guest's
    /// sectors encrypted one by one. The password is the ambient <see cref="ImageSecrets"/>. The driver also
    /// offers LUKS as the encryption scheme other formats embed (qcow2's encrypt.format=luks).
    /// </summary>
    public sealed class LuksDriver : FormatDriver, ICreatableDriver, IEncryptionScheme
    {
        /// <summary>The luks format's identity.</summary>
        public static readonly DiskFormat Id = new DiskFormat("luks");

        /// <summary>qemu's default iter-time: PBKDF2 is timed to take about 2 s to open a key slot.</summary>
        internal const int DefaultIterationMilliseconds = 2000;

        private static readonly CreateOption[] s_options =
        {
            new CreateOption("size", CreateOptionKind.Size, "virtual size"),
            new CreateOption("iter-time", CreateOptionKind.Number, "milliseconds the key derivation of a key slot takes (PBKDF2 is benchmarked); 2000 by default"),
        };

        public override DiskFormat Format => Id;

        public override string Description => "LUKS1 encrypted container (aes-xts-plain64; reads cryptsetup's cbc-essiv too)";

        public override IReadOnlyList<string> Extensions { get; } = new[] { ".luks" };

        public override IReadOnlyList<CreateOption> CreateOptions => s_options;

        public string SchemeName => Id.Name;

        public long NewHeaderLength => LuksHeader.PayloadSectorFor(LuksVolume.NewKeyBytes, LuksVolume.NewStripes) * LuksHeader.SectorSize;

        /// <summary>The LUKS magic at byte 0 (any version: LUKS2 is refused by name when opened, never read as raw).</summary>
        public override int Probe(ProbeContext context) => LuksHeader.HasMagic(context.Head) && context.Head.Length >= 8 ? 100 : 0;

        public override ImageLayer Open(HostFile file, OpenOptions options) => DisposingOnFailure(file, () => LuksLayer.Open(file));

        public ImageLayer Create(string path, CreateRequest request)
        {
            if (request.Backing != null || request.Type == DiskType.Differencing)
            {
                throw ImageNotSupportedException.Capability(Id, "backing files", path);
            }

            if (request.ClusterSize.HasValue)
            {
                throw ImageNotSupportedException.Capability(Id, "a cluster size", path);
            }

            if (request.Encryption != null && !string.Equals(request.Encryption, SchemeName, StringComparison.OrdinalIgnoreCase))
            {
                throw new ImageOptionException(path, "encryption", $"a LUKS container is encrypted with LUKS, not '{request.Encryption}'");
            }

            OptionSet options = request.Options.Clone();
            long size = options.GetSize("size") ?? request.Size;
            int iterTime = IterationMilliseconds(options, "iter-time");
            options.RejectUnknown(Id.Name, s_options);
            if (size % LuksHeader.SectorSize != 0)
            {
                long rounded = (size + LuksHeader.SectorSize - 1) / LuksHeader.SectorSize * LuksHeader.SectorSize;
                request.Warnings.Add($"the size {size} was rounded up to {rounded} bytes, a whole number of 512-byte encrypted sectors");
                size = rounded;
            }

            byte[] password = ImageSecrets.Password(path);
            LuksVolume volume;
            byte[] area;
            try
            {
                volume = LuksVolume.Create(path, password, iterTime, out area);
            }
            finally
            {
                Array.Clear(password, 0, password.Length);
            }

            HostFile file = null;
            try
            {
                file = request.CreateFile(path);
                file.WriteAt(0, area);
                var layer = new LuksLayer(file, volume, volume.PayloadOffset, 0);
                layer.Grow(size);
                return layer;
            }
            catch
            {
                volume.Dispose();
                if (file != null)
                {
                    file.Dispose();
                    System.IO.File.Delete(file.Path);
                }

                throw;
            }
        }

        public bool SupportsCompression(CreateRequest request) => false;

        public VDiskMeasurement Measure(CreateRequest request, long allocatedBytes)
        {
            // Every sector is written (encrypted zeros read back as garbage), after qemu's 2068480-byte header area.
            long size = (request.Size + LuksHeader.SectorSize - 1) / LuksHeader.SectorSize * LuksHeader.SectorSize;
            return new VDiskMeasurement { Format = Id.Name, Required = NewHeaderLength + size, FullyAllocated = NewHeaderLength + size };
        }

        public byte[] CreateHeader(string path, byte[] password, int iterationMilliseconds, out ISectorCipher cipher)
        {
            LuksVolume volume = LuksVolume.Create(path, password, iterationMilliseconds, out byte[] area);
            cipher = volume.Cipher;
            return area;
        }

        public ISectorCipher Unlock(HostFile file, long offset, long length, byte[] password) => LuksVolume.Unlock(file, offset, length, password).Cipher;

        /// <summary>An iter-time option (milliseconds, 1 .. 60000), or qemu's default.</summary>
        internal static int IterationMilliseconds(OptionSet options, string name) => options.GetInt(name, 1, 60000) ?? DefaultIterationMilliseconds;
    }
}
