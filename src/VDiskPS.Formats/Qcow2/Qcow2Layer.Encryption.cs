using System;
using System.Buffers;
using System.Security.Cryptography;

namespace VDiskPS.Formats.Qcow2
{
    /// <summary>
    /// Encrypted images (qcow2.rst "crypt_method"): every data cluster is encrypted sector by sector.
    /// LUKS (method 2, its header in clusters the crypto header extension points at) numbers a sector by
    /// its host offset / 512, as QEMU's qcow2 does for every scheme but the legacy one (crypt_physical_offset);
    /// legacy AES (method 1, AES-128-CBC keyed with the password, read only here) by its guest offset / 512.
    /// The password is the ambient <see cref="ImageSecrets"/>.
    /// </summary>
    internal sealed partial class Qcow2Layer
    {
        /// <summary>qemu's encrypt.format name of the scheme crypt_method 2 means, as the registry offers it.</summary>
        internal const string LuksScheme = "luks";

        private const int CryptSector = 512;
        private const int CryptChunk = 1 << 20;

        private ISectorCipher _cipher;
        private bool _cipherByGuestOffset;

        private bool Encrypted => _header.CryptMethod != Qcow2Header.CryptNone;

        /// <summary>The LUKS scheme as the registry offers it, or a precise refusal.</summary>
        internal static IEncryptionScheme LuksEncryption(string path)
            => FormatRegistry.Default.FindEncryption(LuksScheme)
               ?? throw new ImageNotSupportedException(path, "encrypt.format", null, "LUKS encryption is not available in this build");

        /// <summary>Opens the image's cipher with the ambient password (a missing or wrong one is <see cref="ImagePasswordException"/>).</summary>
        private void Unlock()
        {
            if (!Encrypted)
            {
                return;
            }

            if (_dataFile != null)
            {
                throw ImageNotSupportedException.Capability(Qcow2Driver.Id, "encryption with an external data file", Path);
            }

            if (_header.CryptMethod == Qcow2Header.CryptAes && IsWritable)
            {
                throw new ImageNotSupportedException(Path, "crypt_method", Qcow2Header.CryptMethodOffset,
                    "legacy AES-encrypted qcow2 images can be read but not written (QEMU no longer supports the scheme for running guests); convert the image to LUKS encryption to change it");
            }

            byte[] password = ImageSecrets.Password(Path);
            try
            {
                if (_header.CryptMethod == Qcow2Header.CryptAes)
                {
                    _cipher = new LegacyAesCipher(password);
                    _cipherByGuestOffset = true;
                }
                else
                {
                    _cipher = LuksEncryption(Path).Unlock(_file, _header.CryptoHeaderOffset, _header.CryptoHeaderLength, password);
                }
            }
            finally
            {
                Array.Clear(password, 0, password.Length);
            }
        }

        /// <summary>Reads and decrypts guest bytes at <paramref name="guest"/> stored at <paramref name="host"/> of <paramref name="source"/>.</summary>
        private void ReadDecrypted(HostFile source, long guest, long host, Span<byte> buffer)
        {
            byte[] work = ArrayPool<byte>.Shared.Rent(CryptChunk + 2 * CryptSector);
            try
            {
                while (buffer.Length > 0)
                {
                    int lead = (int)(host % CryptSector);
                    int n = Math.Min(buffer.Length, CryptChunk);
                    int span = (lead + n + CryptSector - 1) / CryptSector * CryptSector;
                    source.ReadZeroPadded(host - lead, work.AsSpan(0, span));
                    _cipher.Decrypt(SectorOf(guest - lead, host - lead), work, 0, span);
                    work.AsSpan(lead, n).CopyTo(buffer);
                    buffer = buffer.Slice(n);
                    guest += n;
                    host += n;
                }
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(work);
            }
        }

        /// <summary>
        /// Writes whole data clusters at <paramref name="host"/>, encrypted when the image is. Only LUKS images
        /// are written (legacy AES ones open read-only), so the host offset numbers the sectors.
        /// </summary>
        private void WriteClusterData(HostFile target, long host, ReadOnlySpan<byte> data)
        {
            if (_cipher == null)
            {
                target.WriteAt(host, data);
                return;
            }

            byte[] work = ArrayPool<byte>.Shared.Rent(CryptChunk);
            try
            {
                while (data.Length > 0)
                {
                    int n = Math.Min(data.Length, CryptChunk);
                    data.Slice(0, n).CopyTo(work);
                    _cipher.Encrypt(host / CryptSector, work, 0, n);
                    target.WriteAt(host, work.AsSpan(0, n));
                    data = data.Slice(n);
                    host += n;
                }
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(work);
            }
        }

        private long SectorOf(long guest, long host) => (_cipherByGuestOffset ? guest : host) / CryptSector;

        private void RefuseWithEncryption(string what)
        {
            if (Encrypted)
            {
                throw new ImageNotSupportedException(Path, "crypt_method", Qcow2Header.CryptMethodOffset, $"{what} and encryption are not supported at the same time (as in QEMU)");
            }
        }

        /// <summary>
        /// qcow's legacy AES (crypto/block-qcow.c): AES-128-CBC whose key is the password's first 16 bytes,
        /// zero-padded; each sector's IV is its number, little-endian (plain64). Decryption only.
        /// </summary>
        private sealed class LegacyAesCipher : ISectorCipher
        {
            private readonly Aes _aes;

            public LegacyAesCipher(byte[] password)
            {
                byte[] key = new byte[16];
                Buffer.BlockCopy(password, 0, key, 0, Math.Min(16, password.Length));
                _aes = Aes.Create();
                _aes.Mode = CipherMode.CBC;
                _aes.Padding = PaddingMode.None;
                _aes.Key = key;
                Array.Clear(key, 0, key.Length);
            }

            public void Encrypt(long sector, byte[] buffer, int offset, int count)
                => throw new ImageNotSupportedException(null, "crypt_method", Qcow2Header.CryptMethodOffset, "legacy AES-encrypted qcow2 images are read only");

            public void Decrypt(long sector, byte[] buffer, int offset, int count)
            {
                byte[] iv = new byte[16];
                for (int at = offset; at < offset + count; at += CryptSector, sector++)
                {
                    for (int i = 0; i < 8; i++)
                    {
                        iv[i] = (byte)((ulong)sector >> (8 * i));
                    }

                    lock (_aes)
                    {
                        using (ICryptoTransform decryptor = _aes.CreateDecryptor(_aes.Key, iv))
                        {
                            decryptor.TransformBlock(buffer, at, CryptSector, buffer, at);
                        }
                    }
                }
            }

            public void Dispose() => _aes.Dispose();
        }
    }
}
