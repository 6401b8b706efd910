using System;
using System.Buffers.Binary;
using System.Text;

namespace VDiskPS.Formats.Qed
{
    /// <summary>The QED header at offset 0 (qemu docs/interop/qed_spec.txt "Header"), all fields little-endian.</summary>
    internal sealed class QedHeader
    {
        /// <summary>The header structure's length; the backing file name follows it in a new image.</summary>
        public const int Length = 64;

        /// <summary>"QED\0" read as a little-endian 32-bit word.</summary>
        public const uint Magic = 0x00444551;

        public const ulong FeatureBackingFile = 0x01;
        public const ulong FeatureNeedCheck = 0x02;
        public const ulong FeatureBackingFormatNoProbe = 0x04;
        public const ulong FeaturesKnown = FeatureBackingFile | FeatureNeedCheck | FeatureBackingFormatNoProbe;

        /// <summary>The spec defines no compat or autoclear bits yet.</summary>
        public const ulong CompatKnown = 0;

        public const ulong AutoclearKnown = 0;

        /// <summary>The longest backing file name qemu opens (a 4096-byte buffer with its NUL).</summary>
        public const int MaxBackingNameLength = 4095;

        public const int MinClusterSize = 4096;
        public const int MaxClusterSize = 1 << 26;
        public const int MinTableSize = 1;
        public const int MaxTableSize = 16;

        // Field offsets (qed_spec.txt "Header").
        public const int ClusterSizeOffset = 4;
        public const int TableSizeOffset = 8;
        public const int HeaderSizeOffset = 12;
        public const int FeaturesOffset = 16;
        public const int CompatFeaturesOffset = 24;
        public const int AutoclearFeaturesOffset = 32;
        public const int L1TableOffsetOffset = 40;
        public const int ImageSizeOffset = 48;
        public const int BackingNameOffsetOffset = 56;
        public const int BackingNameSizeOffset = 60;

        public uint ClusterSize { get; set; }

        public uint TableSize { get; set; }

        public uint HeaderSize { get; set; }

        public ulong Features { get; set; }

        public ulong CompatFeatures { get; set; }

        public ulong AutoclearFeatures { get; set; }

        public ulong L1TableOffset { get; set; }

        public ulong ImageSize { get; set; }

        public uint BackingNameOffset { get; set; }

        public uint BackingNameSize { get; set; }

        public bool NeedCheck
        {
            get => (Features & FeatureNeedCheck) != 0;
            set => Features = value ? Features | FeatureNeedCheck : Features & ~FeatureNeedCheck;
        }

        public bool HasBackingFile => (Features & FeatureBackingFile) != 0;

        public bool BackingIsPlainData => (Features & FeatureBackingFormatNoProbe) != 0;

        /// <summary>Entries in one L1 or L2 table.</summary>
        public long TableEntries => (long)TableSize * ClusterSize / 8;

        public static bool HasMagic(ReadOnlySpan<byte> head) => head.Length >= Length && BinaryPrimitives.ReadUInt32LittleEndian(head) == Magic;

        /// <summary>The largest virtual size a table geometry can address (qed.c qed_max_image_size).</summary>
        public static ulong MaxImageSize(uint clusterSize, uint tableSize)
        {
            ulong entries = (ulong)tableSize * clusterSize / 8;
            return entries * entries * clusterSize;
        }

        public static bool IsPowerOfTwoIn(long value, long min, long max) => value >= min && value <= max && (value & (value - 1)) == 0;

        public static QedHeader FromBytes(ReadOnlySpan<byte> raw)
        {
            return new QedHeader
            {
                ClusterSize = BinaryPrimitives.ReadUInt32LittleEndian(raw.Slice(ClusterSizeOffset)),
                TableSize = BinaryPrimitives.ReadUInt32LittleEndian(raw.Slice(TableSizeOffset)),
                HeaderSize = BinaryPrimitives.ReadUInt32LittleEndian(raw.Slice(HeaderSizeOffset)),
                Features = BinaryPrimitives.ReadUInt64LittleEndian(raw.Slice(FeaturesOffset)),
                CompatFeatures = BinaryPrimitives.ReadUInt64LittleEndian(raw.Slice(CompatFeaturesOffset)),
                AutoclearFeatures = BinaryPrimitives.ReadUInt64LittleEndian(raw.Slice(AutoclearFeaturesOffset)),
                L1TableOffset = BinaryPrimitives.ReadUInt64LittleEndian(raw.Slice(L1TableOffsetOffset)),
                ImageSize = BinaryPrimitives.ReadUInt64LittleEndian(raw.Slice(ImageSizeOffset)),
                BackingNameOffset = BinaryPrimitives.ReadUInt32LittleEndian(raw.Slice(BackingNameOffsetOffset)),
                BackingNameSize = BinaryPrimitives.ReadUInt32LittleEndian(raw.Slice(BackingNameSizeOffset)),
            };
        }

        /// <summary>The 64 header bytes; what follows them (the backing name) is written separately.</summary>
        public byte[] ToBytes()
        {
            var raw = new byte[Length];
            BinaryPrimitives.WriteUInt32LittleEndian(raw, Magic);
            BinaryPrimitives.WriteUInt32LittleEndian(raw.AsSpan(ClusterSizeOffset), ClusterSize);
            BinaryPrimitives.WriteUInt32LittleEndian(raw.AsSpan(TableSizeOffset), TableSize);
            BinaryPrimitives.WriteUInt32LittleEndian(raw.AsSpan(HeaderSizeOffset), HeaderSize);
            BinaryPrimitives.WriteUInt64LittleEndian(raw.AsSpan(FeaturesOffset), Features);
            BinaryPrimitives.WriteUInt64LittleEndian(raw.AsSpan(CompatFeaturesOffset), CompatFeatures);
            BinaryPrimitives.WriteUInt64LittleEndian(raw.AsSpan(AutoclearFeaturesOffset), AutoclearFeatures);
            BinaryPrimitives.WriteUInt64LittleEndian(raw.AsSpan(L1TableOffsetOffset), L1TableOffset);
            BinaryPrimitives.WriteUInt64LittleEndian(raw.AsSpan(ImageSizeOffset), ImageSize);
            BinaryPrimitives.WriteUInt32LittleEndian(raw.AsSpan(BackingNameOffsetOffset), BackingNameOffset);
            BinaryPrimitives.WriteUInt32LittleEndian(raw.AsSpan(BackingNameSizeOffset), BackingNameSize);
            return raw;
        }

        /// <summary>Checks every field against the spec and the file (qed.c bdrv_qed_do_open), naming the first bad one.</summary>
        public void Validate(string path, long fileLength)
        {
            ulong unknown = Features & ~FeaturesKnown;
            if (unknown != 0)
            {
                throw new ImageNotSupportedException(path, "features", FeaturesOffset, $"the image uses incompatible feature bits this build does not know: 0x{unknown:x} (bit {BitIndex(unknown)})");
            }

            if (!IsPowerOfTwoIn(ClusterSize, MinClusterSize, MaxClusterSize))
            {
                throw new ImageCorruptException(path, "cluster size", ClusterSizeOffset, $"{ClusterSize} is not a power of two between {MinClusterSize} and {MaxClusterSize}");
            }

            if (!IsPowerOfTwoIn(TableSize, MinTableSize, MaxTableSize))
            {
                throw new ImageCorruptException(path, "table size", TableSizeOffset, $"{TableSize} clusters is not a power of two between {MinTableSize} and {MaxTableSize}");
            }

            // qemu opens a header size of 0 (the header cluster is still never a data cluster: offset 0 is "unallocated").
            if (HeaderSize > uint.MaxValue / ClusterSize)
            {
                throw new ImageCorruptException(path, "header size", HeaderSizeOffset, $"{HeaderSize} clusters is not a valid header size");
            }

            if (ImageSize % 512 != 0 || ImageSize > MaxImageSize(ClusterSize, TableSize) || ImageSize > long.MaxValue)
            {
                throw new ImageCorruptException(path, "image size", ImageSizeOffset, $"{ImageSize} bytes is not a multiple of 512 or beyond the {MaxImageSize(ClusterSize, TableSize)} bytes the tables address");
            }

            long headerBytes = (long)HeaderSize * ClusterSize;
            long tableBytes = (long)TableSize * ClusterSize;
            long fileSize = fileLength / ClusterSize * ClusterSize;
            if (L1TableOffset % ClusterSize != 0 || L1TableOffset < (ulong)headerBytes || L1TableOffset > (ulong)(fileSize - tableBytes) || fileSize < tableBytes)
            {
                throw new ImageCorruptException(path, "L1 table offset", L1TableOffsetOffset, $"the L1 table ({tableBytes} bytes at {L1TableOffset}) is unaligned, inside the header or outside the file ({fileLength} bytes)");
            }

            if (HasBackingFile && (ulong)BackingNameOffset + BackingNameSize > (ulong)headerBytes)
            {
                throw new ImageCorruptException(path, "backing file name", BackingNameOffsetOffset, $"the name ({BackingNameSize} bytes at {BackingNameOffset}) lies outside the {headerBytes}-byte header");
            }

            if (HasBackingFile && BackingNameSize > MaxBackingNameLength)
            {
                // qemu reads the name into a PATH_MAX buffer and refuses longer ones (qed.c qed_read_string).
                throw new ImageNotSupportedException(path, "backing file name", BackingNameSizeOffset, $"the name is {BackingNameSize} bytes long, more than the {MaxBackingNameLength} qemu reads");
            }
        }

        public static string DecodeName(byte[] raw) => Encoding.UTF8.GetString(raw);

        private static int BitIndex(ulong bits)
        {
            int i = 0;
            while ((bits & 1) == 0)
            {
                bits >>= 1;
                i++;
            }

            return i;
        }
    }
}
