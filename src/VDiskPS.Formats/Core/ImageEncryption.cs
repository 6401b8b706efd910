using System;

namespace VDiskPS.Formats
{
    /// <summary>The cipher of an unlocked encrypted image: whole 512-byte sectors, numbered by the caller (the IV).</summary>
    public interface ISectorCipher : IDisposable
    {
        void Encrypt(long sector, byte[] buffer, int offset, int count);

        void Decrypt(long sector, byte[] buffer, int offset, int count);
    }

    /// <summary>
    /// An encryption scheme a driver offers to other formats, which keep its header inside their own file
    /// (qcow2's encrypt.format=luks). Formats find it with <see cref="FormatRegistry.FindEncryption"/> by the
    /// scheme's name (<see cref="CreateRequest.Encryption"/>), so that they never name the driver.
    /// </summary>
    public interface IEncryptionScheme
    {
        /// <summary>The scheme's name, as <see cref="CreateRequest.Encryption"/> and qemu's encrypt.format give it.</summary>
        string SchemeName { get; }

        /// <summary>The bytes <see cref="CreateHeader"/> returns (for measuring a new image).</summary>
        long NewHeaderLength { get; }

        /// <summary>
        /// A new header with one key slot that <paramref name="password"/> opens (the key derivation timed to
        /// about <paramref name="iterationMilliseconds"/>): the bytes to store, a whole number of sectors, and
        /// the cipher of the new master key.
        /// </summary>
        byte[] CreateHeader(string path, byte[] password, int iterationMilliseconds, out ISectorCipher cipher);

        /// <summary>Unlocks the header stored at [<paramref name="offset"/>, +<paramref name="length"/>) of <paramref name="file"/>.</summary>
        ISectorCipher Unlock(HostFile file, long offset, long length, byte[] password);
    }
}
