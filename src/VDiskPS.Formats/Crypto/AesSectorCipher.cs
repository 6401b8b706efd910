using System;
using System.Collections.Concurrent;
using System.Security.Cryptography;

namespace VDiskPS.Formats.Crypto
{
    /// <summary>
    /// Encrypts and decrypts 512-byte sectors as dm-crypt and QEMU do (LUKS1, qcow legacy AES): AES in XTS or CBC
    /// mode with plain, plain64 or ESSIV initial vectors. The block cipher is the platform's AES (ECB
    /// transforms, which run whole sectors at once); only the XTS and CBC chaining is done here.
    /// Thread-safe: transforms are pooled.
    /// </summary>
    internal sealed class AesSectorCipher : ISectorCipher
    {
        public const int SectorSize = 512;
        private const int Block = 16;

        private readonly bool _xts;
        private readonly IvKind _iv;
        private readonly Aes _data;
        private readonly Aes _tweak;
        private readonly ConcurrentBag<ICryptoTransform> _encryptors = new ConcurrentBag<ICryptoTransform>();
        private readonly ConcurrentBag<ICryptoTransform> _decryptors = new ConcurrentBag<ICryptoTransform>();
        private readonly ConcurrentBag<ICryptoTransform> _tweakers = new ConcurrentBag<ICryptoTransform>();

        private AesSectorCipher(bool xts, IvKind iv, byte[] dataKey, byte[] tweakKey)
        {
            _xts = xts;
            _iv = iv;
            _data = Ecb(dataKey);
            _tweak = tweakKey == null ? null : Ecb(tweakKey);
        }

        private enum IvKind
        {
            Plain,
            Plain64,
            Essiv,
        }

        /// <summary>
        /// The cipher of a LUKS1 cipher-name and cipher-mode ("aes", "xts-plain64" / "cbc-essiv:sha256" /
        /// "cbc-plain64" / "cbc-plain") with <paramref name="key"/>; other ciphers and modes are refused by name.
        /// </summary>
        public static AesSectorCipher Create(string path, string cipherName, string cipherMode, byte[] key)
        {
            if (!string.Equals(cipherName, "aes", StringComparison.OrdinalIgnoreCase))
            {
                throw new ImageNotSupportedException(path, "cipher-name", null, $"the '{cipherName}' cipher is not supported (aes is)");
            }

            string[] parts = (cipherMode ?? string.Empty).ToLowerInvariant().Split(new[] { '-' }, 2);
            string chaining = parts[0];
            string ivSpec = parts.Length > 1 ? parts[1] : string.Empty;
            if (chaining != "xts" && chaining != "cbc")
            {
                throw new ImageNotSupportedException(path, "cipher-mode", null, $"the '{cipherMode}' mode is not supported (xts-plain64, cbc-essiv:HASH, cbc-plain64 and cbc-plain are)");
            }

            bool xts = chaining == "xts";
            if (xts ? (key.Length != 32 && key.Length != 64) : (key.Length != 16 && key.Length != 24 && key.Length != 32))
            {
                throw new ImageNotSupportedException(path, "key-bytes", null, $"a {key.Length}-byte key does not fit aes-{chaining}");
            }

            byte[] dataKey = xts ? Slice(key, 0, key.Length / 2) : key;
            byte[] tweakKey = xts ? Slice(key, key.Length / 2, key.Length / 2) : null;
            IvKind iv;
            if (ivSpec == "plain64")
            {
                iv = IvKind.Plain64;
            }
            else if (ivSpec == "plain")
            {
                iv = IvKind.Plain;
            }
            else if (ivSpec.StartsWith("essiv:", StringComparison.Ordinal) && !xts)
            {
                iv = IvKind.Essiv;
                using (HashAlgorithm hash = HashSpec.Create(path, ivSpec.Substring(6)))
                {
                    tweakKey = hash.ComputeHash(key);
                }

                if (tweakKey.Length != 16 && tweakKey.Length != 24 && tweakKey.Length != 32)
                {
                    throw new ImageNotSupportedException(path, "cipher-mode", null, $"ESSIV with {ivSpec.Substring(6)} gives a {tweakKey.Length}-byte key, which AES cannot take");
                }
            }
            else
            {
                throw new ImageNotSupportedException(path, "cipher-mode", null, $"the '{cipherMode}' initial-vector scheme is not supported (plain64, plain and, with cbc, essiv:HASH are)");
            }

            return new AesSectorCipher(xts, iv, dataKey, tweakKey);
        }

        /// <summary>Decrypts whole sectors in place; <paramref name="sector"/> numbers the first one (from the start of the encrypted area).</summary>
        public void Decrypt(long sector, byte[] buffer, int offset, int count) => Run(sector, buffer, offset, count, false);

        /// <summary>Encrypts whole sectors in place.</summary>
        public void Encrypt(long sector, byte[] buffer, int offset, int count) => Run(sector, buffer, offset, count, true);

        public void Dispose()
        {
            foreach (var bag in new[] { _encryptors, _decryptors, _tweakers })
            {
                while (bag.TryTake(out ICryptoTransform t))
                {
                    t.Dispose();
                }
            }

            _data.Dispose();
            _tweak?.Dispose();
        }

        private void Run(long sector, byte[] buffer, int offset, int count, bool encrypt)
        {
            if (count % SectorSize != 0)
            {
                throw new ArgumentException("whole sectors only", nameof(count));
            }

            ICryptoTransform data = Take(encrypt ? _encryptors : _decryptors, encrypt);
            ICryptoTransform tweak = _tweak == null ? null : Take(_tweakers, true);
            byte[] work = new byte[SectorSize * 2];
            try
            {
                for (int at = offset; at < offset + count; at += SectorSize, sector++)
                {
                    byte[] iv = new byte[Block];
                    Iv(sector, iv, tweak);
                    if (_xts)
                    {
                        Xts(data, buffer, at, iv, work);
                    }
                    else if (encrypt)
                    {
                        CbcEncrypt(data, buffer, at, iv, work);
                    }
                    else
                    {
                        CbcDecrypt(data, buffer, at, iv, work);
                    }
                }
            }
            finally
            {
                (encrypt ? _encryptors : _decryptors).Add(data);
                if (tweak != null)
                {
                    _tweakers.Add(tweak);
                }
            }
        }

        private void Iv(long sector, byte[] iv, ICryptoTransform tweak)
        {
            ulong number = _iv == IvKind.Plain ? (uint)sector : (ulong)sector;
            for (int i = 0; i < 8; i++)
            {
                iv[i] = (byte)(number >> (8 * i));
            }

            // XTS encrypts the sector number with the second key half; ESSIV with the hashed key.
            if (_xts || _iv == IvKind.Essiv)
            {
                tweak.TransformBlock(iv, 0, Block, iv, 0);
            }
        }

        /// <summary>XTS (IEEE 1619) over one sector: the tweak sequence XORed before and after one bulk ECB pass.</summary>
        private static void Xts(ICryptoTransform cipher, byte[] buffer, int at, byte[] tweak, byte[] work)
        {
            // work[0..512) holds the tweak of each block, work[512..1024) the data.
            for (int j = 0; j < SectorSize; j += Block)
            {
                Buffer.BlockCopy(tweak, 0, work, j, Block);
                MultiplyByAlpha(tweak);
            }

            for (int i = 0; i < SectorSize; i++)
            {
                work[SectorSize + i] = (byte)(buffer[at + i] ^ work[i]);
            }

            cipher.TransformBlock(work, SectorSize, SectorSize, work, SectorSize);
            for (int i = 0; i < SectorSize; i++)
            {
                buffer[at + i] = (byte)(work[SectorSize + i] ^ work[i]);
            }
        }

        private static void CbcDecrypt(ICryptoTransform cipher, byte[] buffer, int at, byte[] iv, byte[] work)
        {
            Buffer.BlockCopy(buffer, at, work, 0, SectorSize);
            cipher.TransformBlock(work, 0, SectorSize, buffer, at);
            for (int i = 0; i < Block; i++)
            {
                buffer[at + i] ^= iv[i];
            }

            for (int i = Block; i < SectorSize; i++)
            {
                buffer[at + i] ^= work[i - Block];
            }
        }

        private static void CbcEncrypt(ICryptoTransform cipher, byte[] buffer, int at, byte[] iv, byte[] work)
        {
            byte[] previous = iv;
            int previousAt = 0;
            for (int j = at; j < at + SectorSize; j += Block)
            {
                for (int i = 0; i < Block; i++)
                {
                    work[i] = (byte)(buffer[j + i] ^ previous[previousAt + i]);
                }

                cipher.TransformBlock(work, 0, Block, buffer, j);
                previous = buffer;
                previousAt = j;
            }
        }

        /// <summary>Multiplies the 128-bit little-endian tweak by x in GF(2^128) (the polynomial x^128 + x^7 + x^2 + x + 1).</summary>
        private static void MultiplyByAlpha(byte[] t)
        {
            int carry = 0;
            for (int i = 0; i < Block; i++)
            {
                int next = t[i] >> 7;
                t[i] = (byte)((t[i] << 1) | carry);
                carry = next;
            }

            if (carry != 0)
            {
                t[0] ^= 0x87;
            }
        }

        private ICryptoTransform Take(ConcurrentBag<ICryptoTransform> bag, bool encrypt)
        {
            if (bag.TryTake(out ICryptoTransform t))
            {
                return t;
            }

            Aes aes = ReferenceEquals(bag, _tweakers) ? _tweak : _data;
            lock (aes)
            {
                return encrypt ? aes.CreateEncryptor() : aes.CreateDecryptor();
            }
        }

        private static Aes Ecb(byte[] key)
        {
            Aes aes = Aes.Create();
            aes.Mode = CipherMode.ECB;
            aes.Padding = PaddingMode.None;
            aes.Key = key;
            return aes;
        }

        private static byte[] Slice(byte[] a, int start, int length)
        {
            byte[] r = new byte[length];
            Buffer.BlockCopy(a, start, r, 0, length);
            return r;
        }
    }
}
