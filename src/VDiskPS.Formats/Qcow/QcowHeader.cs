using System;
using System.Buffers.Binary;

namespace VDiskPS.Formats.Qcow
{
    /// <summary>
    /// The 48-byte big-endian header of a qcow (version 1) image, as block/qcow.c's QCowHeader: magic
    /// 'QFI\xfb', version 1, the backing file name's place, mtime, the virtual size, the cluster and L2
    /// table sizes as powers of two, the encryption method and the L1 table's place.
    /// </summary>
    internal sealed class QcowHeader
    {
        public const int Length = 48;
        public const uint Magic = 0x514649fb;
        public const uint Version1 = 1;
        public const uint CryptNone = 0;
        public const uint CryptAes = 1;

        // Field offsets (block/qcow.c QCowHeader, packed).
        public const int MagicAt = 0;
        public const int VersionAt = 4;
        public const int BackingFileOffsetAt = 8;
        public const int BackingFileSizeAt = 16;
        public const int MtimeAt = 20;
        public const int SizeAt = 24;
        public const int ClusterBitsAt = 32;
        public const int L2BitsAt = 33;
        public const int CryptMethodAt = 36;
        public const int L1TableOffsetAt = 40;

        /// <summary>qcow.c: cluster_bits 9 to 16 (512 B to 64 KiB clusters).</summary>
        public const int MinClusterBits = 9;
        public const int MaxClusterBits = 16;

        /// <summary>qcow.c: l2_bits 6 to 13 (L2 tables of 512 B to 64 KiB).</summary>
        public const int MinL2Bits = 6;
        public const int MaxL2Bits = 13;

        /// <summary>qcow.c: a backing file name of at most 1023 bytes.</summary>
        public const int MaxBackingFileName = 1023;

        public uint Version { get; set; } = Version1;

        public ulong BackingFileOffset { get; set; }

        public uint BackingFileSize { get; set; }

        public uint Mtime { get; set; }

        public ulong Size { get; set; }

        public int ClusterBits { get; set; }

        public int L2Bits { get; set; }

        public uint CryptMethod { get; set; }

        public ulong L1TableOffset { get; set; }

        public int ClusterSize => 1 << ClusterBits;

        public int L2Entries => 1 << L2Bits;

        /// <summary>Guest bytes one L2 table maps.</summary>
        public long L2Span => 1L << (ClusterBits + L2Bits);

        /// <summary>L1 entries for the virtual size (qcow.c: size rounded up to whole L2 spans).</summary>
        public long L1Entries => (long)((Size + (ulong)L2Span - 1) >> (ClusterBits + L2Bits));

        /// <summary>
        /// Whether <paramref name="head"/> starts with the qcow magic and version 1 (qcow.c qcow_probe). A file
        /// too short for the rest of the header is still claimed, so that opening it is a typed error rather
        /// than a read as raw.
        /// </summary>
        public static bool HasSignature(ReadOnlySpan<byte> head)
            => head.Length >= 8 && BinaryPrimitives.ReadUInt32BigEndian(head) == Magic && BinaryPrimitives.ReadUInt32BigEndian(head.Slice(VersionAt)) == Version1;

        public static QcowHeader FromBytes(ReadOnlySpan<byte> raw)
        {
            return new QcowHeader
            {
                Version = BinaryPrimitives.ReadUInt32BigEndian(raw.Slice(VersionAt)),
                BackingFileOffset = BinaryPrimitives.ReadUInt64BigEndian(raw.Slice(BackingFileOffsetAt)),
                BackingFileSize = BinaryPrimitives.ReadUInt32BigEndian(raw.Slice(BackingFileSizeAt)),
                Mtime = BinaryPrimitives.ReadUInt32BigEndian(raw.Slice(MtimeAt)),
                Size = BinaryPrimitives.ReadUInt64BigEndian(raw.Slice(SizeAt)),
                ClusterBits = raw[ClusterBitsAt],
                L2Bits = raw[L2BitsAt],
                CryptMethod = BinaryPrimitives.ReadUInt32BigEndian(raw.Slice(CryptMethodAt)),
                L1TableOffset = BinaryPrimitives.ReadUInt64BigEndian(raw.Slice(L1TableOffsetAt)),
            };
        }

        public byte[] ToBytes()
        {
            var raw = new byte[Length];
            BinaryPrimitives.WriteUInt32BigEndian(raw.AsSpan(MagicAt), Magic);
            BinaryPrimitives.WriteUInt32BigEndian(raw.AsSpan(VersionAt), Version);
            BinaryPrimitives.WriteUInt64BigEndian(raw.AsSpan(BackingFileOffsetAt), BackingFileOffset);
            BinaryPrimitives.WriteUInt32BigEndian(raw.AsSpan(BackingFileSizeAt), BackingFileSize);
            BinaryPrimitives.WriteUInt32BigEndian(raw.AsSpan(MtimeAt), Mtime);
            BinaryPrimitives.WriteUInt64BigEndian(raw.AsSpan(SizeAt), Size);
            raw[ClusterBitsAt] = (byte)ClusterBits;
            raw[L2BitsAt] = (byte)L2Bits;
            BinaryPrimitives.WriteUInt32BigEndian(raw.AsSpan(CryptMethodAt), CryptMethod);
            BinaryPrimitives.WriteUInt64BigEndian(raw.AsSpan(L1TableOffsetAt), L1TableOffset);
            return raw;
        }
    }
}
