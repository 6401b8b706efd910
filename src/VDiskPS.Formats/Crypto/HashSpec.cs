using System.Security.Cryptography;

namespace VDiskPS.Formats.Crypto
{
    /// <summary>The hashes a hash-spec names (LUKS1, ESSIV), from the platform.</summary>
    internal static class HashSpec
    {
        public static HashAlgorithm Create(string path, string spec)
        {
            switch ((spec ?? string.Empty).ToLowerInvariant())
            {
                case "sha1":
                    return SHA1.Create();
                case "sha256":
                    return SHA256.Create();
                case "sha384":
                    return SHA384.Create();
                case "sha512":
                    return SHA512.Create();
                default:
                    throw new ImageNotSupportedException(path, "hash-spec", null, $"the '{spec}' hash is not supported (sha1, sha256, sha384 and sha512 are)");
            }
        }

        public static HashAlgorithmName Name(string path, string spec)
        {
            switch ((spec ?? string.Empty).ToLowerInvariant())
            {
                case "sha1":
                    return HashAlgorithmName.SHA1;
                case "sha256":
                    return HashAlgorithmName.SHA256;
                case "sha384":
                    return HashAlgorithmName.SHA384;
                case "sha512":
                    return HashAlgorithmName.SHA512;
                default:
                    throw new ImageNotSupportedException(path, "hash-spec", null, $"the '{spec}' hash is not supported (sha1, sha256, sha384 and sha512 are)");
            }
        }

        /// <summary>PBKDF2 (RFC 2898) with the header's hash.</summary>
        public static byte[] Pbkdf2(string path, string spec, byte[] password, byte[] salt, int iterations, int length)
        {
            using (var kdf = new Rfc2898DeriveBytes(password, salt, iterations, Name(path, spec)))
            {
                return kdf.GetBytes(length);
            }
        }
    }
}
