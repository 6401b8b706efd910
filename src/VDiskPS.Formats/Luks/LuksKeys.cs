using System;
using System.Security.Cryptography;
using VDiskPS.Formats.Crypto;

namespace VDiskPS.Formats.Luks
{
    /// <summary>LUKS1's anti-forensic information splitter (AF_merge and AF_split of the spec).</summary>
    internal static class AntiForensic
    {
        /// <summary>Recovers a key of <paramref name="keyBytes"/> bytes from <paramref name="stripes"/> stripes.</summary>
        public static byte[] Merge(string path, string hashSpec, byte[] material, int keyBytes, int stripes)
        {
            byte[] d = new byte[keyBytes];
            using (HashAlgorithm hash = HashSpec.Create(path, hashSpec))
            {
                for (int i = 0; i < stripes - 1; i++)
                {
                    Xor(d, material, i * keyBytes);
                    Diffuse(hash, d);
                }
            }

            Xor(d, material, (stripes - 1) * keyBytes);
            return d;
        }

        /// <summary>Splits <paramref name="key"/> into <paramref name="stripes"/> stripes, all but the last random.</summary>
        public static byte[] Split(string path, string hashSpec, byte[] key, int stripes)
        {
            int n = key.Length;
            byte[] material = new byte[n * stripes];
            using (var rng = RandomNumberGenerator.Create())
            {
                byte[] random = new byte[n * (stripes - 1)];
                rng.GetBytes(random);
                Buffer.BlockCopy(random, 0, material, 0, random.Length);
            }

            byte[] d = new byte[n];
            using (HashAlgorithm hash = HashSpec.Create(path, hashSpec))
            {
                for (int i = 0; i < stripes - 1; i++)
                {
                    Xor(d, material, i * n);
                    Diffuse(hash, d);
                }
            }

            for (int i = 0; i < n; i++)
            {
                material[(stripes - 1) * n + i] = (byte)(d[i] ^ key[i]);
            }

            return material;
        }

        private static void Xor(byte[] d, byte[] material, int at)
        {
            for (int i = 0; i < d.Length; i++)
            {
                d[i] ^= material[at + i];
            }
        }

        /// <summary>Hashes the buffer digest-sized piece by piece, each piece prefixed by its big-endian index; the last piece is cut to size.</summary>
        private static void Diffuse(HashAlgorithm hash, byte[] d)
        {
            int size = hash.HashSize / 8;
            byte[] input = new byte[4 + size];
            for (int j = 0, at = 0; at < d.Length; j++, at += size)
            {
                int piece = Math.Min(size, d.Length - at);
                input[0] = (byte)(j >> 24);
                input[1] = (byte)(j >> 16);
                input[2] = (byte)(j >> 8);
                input[3] = (byte)j;
                Buffer.BlockCopy(d, at, input, 4, piece);
                byte[] digest = hash.ComputeHash(input, 0, 4 + piece);
                Buffer.BlockCopy(digest, 0, d, at, piece);
            }
        }
    }
}
