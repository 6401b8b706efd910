using System;
using System.Diagnostics;
using System.Security.Cryptography;
using VDiskPS.Formats.Crypto;

namespace VDiskPS.Formats.Luks
{
    /// <summary>
    /// An unlocked LUKS1 container: its header, and the sector cipher of its master key. The master key
    /// and the password never appear in messages; a wrong password is <see cref="ImagePasswordException"/>.
    /// </summary>
    internal sealed class LuksVolume : IDisposable
    {
        private LuksVolume(LuksHeader header, AesSectorCipher cipher)
        {
            Header = header;
            Cipher = cipher;
        }

        /// <summary>The master key size of new containers: aes-256-xts.</summary>
        public const int NewKeyBytes = 64;

        /// <summary>The anti-forensic stripes of new key slots, as qemu and cryptsetup write.</summary>
        public const int NewStripes = 4000;

        public LuksHeader Header { get; }

        public AesSectorCipher Cipher { get; }

        /// <summary>Where the encrypted payload starts in the file, in bytes.</summary>
        public long PayloadOffset => Header.PayloadSector * LuksHeader.SectorSize;

        /// <summary>Reads the header of <paramref name="file"/> and unlocks the first key slot <paramref name="password"/> opens.</summary>
        public static LuksVolume Unlock(HostFile file, byte[] password) => Unlock(file, 0, file.Length, password);

        /// <summary>
        /// Unlocks the LUKS header stored at [<paramref name="offset"/>, +<paramref name="length"/>) of
        /// <paramref name="file"/> (the whole file for a LUKS container; a region of a qcow2 image).
        /// </summary>
        public static LuksVolume Unlock(HostFile file, long offset, long length, byte[] password)
        {
            byte[] head = new byte[LuksHeader.Size];
            file.ReadExactly(offset, head, "LUKS header");
            LuksHeader header = LuksHeader.Parse(file.Path, head, length);

            // The digest check runs the header's hash first, so an unsupported hash or cipher is named before any slot is tried.
            HashSpec.Name(file.Path, header.HashSpec);
            AesSectorCipher.Create(file.Path, header.CipherName, header.CipherMode, new byte[header.KeyBytes]).Dispose();

            // Asked for only now: a header this module cannot read (LUKS2, another cipher) is refused as such, with or without a password.
            if (password == null)
            {
                throw new ImagePasswordException(file.Path, true);
            }
            foreach (LuksKeySlot slot in header.KeySlots)
            {
                if (!slot.Active)
                {
                    continue;
                }

                byte[] key = TrySlot(file, offset, header, slot, password);
                if (key != null)
                {
                    try
                    {
                        return new LuksVolume(header, AesSectorCipher.Create(file.Path, header.CipherName, header.CipherMode, key));
                    }
                    finally
                    {
                        Array.Clear(key, 0, key.Length);
                    }
                }
            }

            throw new ImagePasswordException(file.Path, false);
        }

        public void Dispose() => Cipher.Dispose();

        /// <summary>
        /// A new LUKS1 header area as qemu-img creates one: aes-xts-plain64 with a 512-bit master key,
        /// sha256, one active key slot of 4000 anti-forensic stripes, PBKDF2 iterations benchmarked so that
        /// a slot takes about <paramref name="iterationMilliseconds"/> to open (the master key digest an
        /// eighth of that, as qemu and cryptsetup do), at least 1000 each. Returns the whole area before the
        /// payload in <paramref name="area"/>.
        /// </summary>
        public static LuksVolume Create(string path, byte[] password, int iterationMilliseconds, out byte[] area)
        {
            const string CipherName = "aes";
            const string CipherMode = "xts-plain64";
            const string Hash = "sha256";
            const int KeyBytes = NewKeyBytes;
            const int Stripes = NewStripes;
            const int MinIterations = 1000;

            byte[] masterKey = Random(KeyBytes);
            byte[] slotKey = null;
            byte[] material = null;
            try
            {
                long perSecond = IterationsPerSecond(path, Hash, KeyBytes);
                int slotIterations = (int)Math.Max(MinIterations, Math.Min(LuksHeader.MaxNewIterations, perSecond * iterationMilliseconds / 1000));
                int digestIterations = (int)Math.Max(MinIterations, Math.Min(LuksHeader.MaxNewIterations, perSecond * iterationMilliseconds / 8000));
                byte[] digestSalt = Random(LuksHeader.SaltSize);
                byte[] digest = HashSpec.Pbkdf2(path, Hash, masterKey, digestSalt, digestIterations, LuksHeader.DigestSize);
                LuksHeader header = LuksHeader.New(CipherName, CipherMode, Hash, KeyBytes, Stripes, digest, digestSalt, digestIterations);
                LuksKeySlot slot = header.KeySlots[0];
                slot.Active = true;
                slot.Iterations = slotIterations;
                slot.Salt = Random(LuksHeader.SaltSize);

                slotKey = HashSpec.Pbkdf2(path, Hash, password, slot.Salt, slotIterations, KeyBytes);
                byte[] split = AntiForensic.Split(path, Hash, masterKey, Stripes);
                int sectors = (split.Length + LuksHeader.SectorSize - 1) / LuksHeader.SectorSize;
                material = new byte[sectors * LuksHeader.SectorSize];
                Buffer.BlockCopy(split, 0, material, 0, split.Length);
                Array.Clear(split, 0, split.Length);
                using (AesSectorCipher slotCipher = AesSectorCipher.Create(path, CipherName, CipherMode, slotKey))
                {
                    slotCipher.Encrypt(0, material, 0, material.Length);
                }

                area = new byte[header.PayloadSector * LuksHeader.SectorSize];
                byte[] fixedPart = header.Serialize();
                Buffer.BlockCopy(fixedPart, 0, area, 0, fixedPart.Length);
                Buffer.BlockCopy(material, 0, area, (int)(slot.MaterialSector * LuksHeader.SectorSize), material.Length);
                return new LuksVolume(header, AesSectorCipher.Create(path, CipherName, CipherMode, masterKey));
            }
            finally
            {
                Array.Clear(masterKey, 0, masterKey.Length);
                if (slotKey != null)
                {
                    Array.Clear(slotKey, 0, slotKey.Length);
                }
            }
        }

        /// <summary>PBKDF2 iterations per second of <paramref name="hash"/> for a key of <paramref name="keyBytes"/>: doubling runs until one takes 50 ms.</summary>
        private static long IterationsPerSecond(string path, string hash, int keyBytes)
        {
            byte[] password = new byte[32];
            byte[] salt = new byte[LuksHeader.SaltSize];
            for (int count = 1000; ; count *= 2)
            {
                var clock = Stopwatch.StartNew();
                HashSpec.Pbkdf2(path, hash, password, salt, count, keyBytes);
                long elapsed = clock.ElapsedMilliseconds;
                if (elapsed >= 50 || count >= (1 << 28))
                {
                    return count * 1000L / Math.Max(1, elapsed);
                }
            }
        }

        private static byte[] Random(int length)
        {
            byte[] bytes = new byte[length];
            using (var rng = RandomNumberGenerator.Create())
            {
                rng.GetBytes(bytes);
            }

            return bytes;
        }

        private static byte[] TrySlot(HostFile file, long offset, LuksHeader header, LuksKeySlot slot, byte[] password)
        {
            byte[] slotKey = HashSpec.Pbkdf2(file.Path, header.HashSpec, password, slot.Salt, slot.Iterations, header.KeyBytes);
            int length = header.KeyBytes * slot.Stripes;
            int sectors = (length + LuksHeader.SectorSize - 1) / LuksHeader.SectorSize;
            byte[] material = new byte[sectors * LuksHeader.SectorSize];
            file.ReadExactly(offset + slot.MaterialSector * LuksHeader.SectorSize, material, $"key slot {slot.Index} key material");
            byte[] candidate;
            using (AesSectorCipher slotCipher = AesSectorCipher.Create(file.Path, header.CipherName, header.CipherMode, slotKey))
            {
                slotCipher.Decrypt(0, material, 0, material.Length);
                candidate = AntiForensic.Merge(file.Path, header.HashSpec, material, header.KeyBytes, slot.Stripes);
            }

            Array.Clear(slotKey, 0, slotKey.Length);
            Array.Clear(material, 0, material.Length);
            byte[] digest = HashSpec.Pbkdf2(file.Path, header.HashSpec, candidate, header.DigestSalt, header.DigestIterations, LuksHeader.DigestSize);
            if (FixedTimeEquals(digest, header.Digest))
            {
                return candidate;
            }

            Array.Clear(candidate, 0, candidate.Length);
            return null;
        }

        private static bool FixedTimeEquals(byte[] a, byte[] b)
        {
            int diff = a.Length ^ b.Length;
            for (int i = 0; i < Math.Min(a.Length, b.Length); i++)
            {
                diff |= a[i] ^ b[i];
            }

            return diff == 0;
        }
    }
}
