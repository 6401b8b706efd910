using System;
using System.Security.Cryptography;

namespace VDiskPS.Formats.Luks
{
    /// <summary>
    /// An unlocked LUKS1 container: its header, and the sector cipher of its master key. The master key
    /// and the password never appear in messages; a wrong password is <see cref="ImagePasswordException"/>.
    /// </summary>
    internal sealed class LuksVolume : IDisposable
    {
        private LuksVolume(LuksHeader header, LuksSectorCipher cipher)
        {
            Header = header;
            Cipher = cipher;
        }

        public LuksHeader Header { get; }

        public LuksSectorCipher Cipher { get; }

        /// <summary>Where the encrypted payload starts in the file, in bytes.</summary>
        public long PayloadOffset => Header.PayloadSector * LuksHeader.SectorSize;

        /// <summary>Reads the header of <paramref name="file"/> and unlocks the first key slot <paramref name="password"/> opens.</summary>
        public static LuksVolume Unlock(HostFile file, byte[] password)
        {
            if (password == null)
            {
                throw new ImagePasswordException(file.Path, true);
            }

            byte[] head = new byte[LuksHeader.Size];
            file.ReadExactly(0, head, "LUKS header");
            LuksHeader header = LuksHeader.Parse(file.Path, head, file.Length);

            // The digest check runs the header's hash first, so an unsupported hash or cipher is named before any slot is tried.
            LuksHash.Name(file.Path, header.HashSpec);
            LuksSectorCipher.Create(file.Path, header.CipherName, header.CipherMode, new byte[header.KeyBytes]).Dispose();
            foreach (LuksKeySlot slot in header.KeySlots)
            {
                if (!slot.Active)
                {
                    continue;
                }

                byte[] key = TrySlot(file, header, slot, password);
                if (key != null)
                {
                    try
                    {
                        return new LuksVolume(header, LuksSectorCipher.Create(file.Path, header.CipherName, header.CipherMode, key));
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

        private static byte[] TrySlot(HostFile file, LuksHeader header, LuksKeySlot slot, byte[] password)
        {
            byte[] slotKey = LuksHash.Pbkdf2(file.Path, header.HashSpec, password, slot.Salt, slot.Iterations, header.KeyBytes);
            int length = header.KeyBytes * slot.Stripes;
            int sectors = (length + LuksHeader.SectorSize - 1) / LuksHeader.SectorSize;
            byte[] material = new byte[sectors * LuksHeader.SectorSize];
            file.ReadExactly(slot.MaterialSector * LuksHeader.SectorSize, material, $"key slot {slot.Index} key material");
            byte[] candidate;
            using (LuksSectorCipher slotCipher = LuksSectorCipher.Create(file.Path, header.CipherName, header.CipherMode, slotKey))
            {
                slotCipher.Decrypt(0, material, 0, material.Length);
                candidate = AntiForensic.Merge(file.Path, header.HashSpec, material, header.KeyBytes, slot.Stripes);
            }

            Array.Clear(slotKey, 0, slotKey.Length);
            Array.Clear(material, 0, material.Length);
            byte[] digest = LuksHash.Pbkdf2(file.Path, header.HashSpec, candidate, header.DigestSalt, header.DigestIterations, LuksHeader.DigestSize);
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
