using System;
using System.Buffers.Binary;
using System.Text;

namespace VDiskPS.Formats.Luks
{
    /// <summary>
    /// The LUKS1 header (LUKS On-Disk Format Specification 1.2.3): 592 bytes, big-endian, then the key
    /// material of eight key slots and the payload. Field offsets are named as the spec lays them out.
    /// </summary>
    internal sealed class LuksHeader
    {
        public const int Size = 592;
        public const int SectorSize = 512;
        public const int KeySlotCount = 8;
        public const int DigestSize = 20;
        public const int SaltSize = 32;
        public const uint SlotActive = 0x00AC71F3;
        public const uint SlotInactive = 0x0000DEAD;

        private const int MagicOffset = 0;
        private const int VersionOffset = 6;
        private const int CipherNameOffset = 8;
        private const int CipherModeOffset = 40;
        private const int HashSpecOffset = 72;
        private const int PayloadOffsetOffset = 104;
        private const int KeyBytesOffset = 108;
        private const int DigestOffset = 112;
        private const int DigestSaltOffset = 132;
        private const int DigestIterationsOffset = 164;
        private const int UuidOffset = 168;
        private const int KeySlotsOffset = 208;
        private const int KeySlotSize = 48;
        private const int NameSize = 32;

        // qemu aligns key material and payload to 4 KiB (QCRYPTO_BLOCK_LUKS_KEY_SLOT_OFFSET / ..._SECTOR_SIZE).
        private const long Align = 4096 / SectorSize;

        // Bounds on untrusted fields: qemu and cryptsetup write 4000 stripes and 32/64-byte keys.
        private const uint MaxStripes = 65536;
        private const int MaxKeyBytes = 64;

        // A slot timed to 2 s takes some 10 million iterations on a fast host; a damaged count could ask
        // for billions (hours of PBKDF2), so counts past 2^28 (about a minute) are refused as damage.
        private const uint MaxIterations = 1u << 28;

        /// <summary>The most iterations a new key slot gets, so that this reader opens what it writes.</summary>
        public const long MaxNewIterations = MaxIterations;

        private static readonly byte[] s_magic = { (byte)'L', (byte)'U', (byte)'K', (byte)'S', 0xBA, 0xBE };

        public string CipherName { get; private set; }

        public string CipherMode { get; private set; }

        public string HashSpec { get; private set; }

        /// <summary>Where the encrypted payload starts, in 512-byte sectors.</summary>
        public long PayloadSector { get; private set; }

        public int KeyBytes { get; private set; }

        public byte[] Digest { get; private set; }

        public byte[] DigestSalt { get; private set; }

        public int DigestIterations { get; private set; }

        public string Uuid { get; private set; }

        public LuksKeySlot[] KeySlots { get; } = new LuksKeySlot[KeySlotCount];

        /// <summary>
        /// A new header as qemu's crypto/block-luks.c lays it out: key material regions from 4 KiB on, each
        /// rounded up to 4 KiB, the payload after the eighth; only slot 0 is filled in by the caller.
        /// </summary>
        public static LuksHeader New(string cipherName, string cipherMode, string hashSpec, int keyBytes, int stripes, byte[] digest, byte[] digestSalt, int digestIterations)
        {
            long stride = SlotStride(keyBytes, stripes);
            var h = new LuksHeader
            {
                CipherName = cipherName,
                CipherMode = cipherMode,
                HashSpec = hashSpec,
                KeyBytes = keyBytes,
                Digest = digest,
                DigestSalt = digestSalt,
                DigestIterations = digestIterations,
                Uuid = Guid.NewGuid().ToString("D"),
                PayloadSector = PayloadSectorFor(keyBytes, stripes),
            };

            for (int i = 0; i < KeySlotCount; i++)
            {
                h.KeySlots[i] = new LuksKeySlot { Index = i, Salt = new byte[SaltSize], MaterialSector = Align + i * stride, Stripes = stripes };
            }

            return h;
        }

        /// <summary>Where qemu puts the payload of a new header: after eight key material regions.</summary>
        public static long PayloadSectorFor(int keyBytes, int stripes) => Align + KeySlotCount * SlotStride(keyBytes, stripes);

        /// <summary>Sectors between key material regions: one region rounded up to 4 KiB.</summary>
        private static long SlotStride(int keyBytes, int stripes)
        {
            long materialSectors = ((long)keyBytes * stripes + SectorSize - 1) / SectorSize;
            return (materialSectors + Align - 1) / Align * Align;
        }

        /// <summary>The 592 header bytes.</summary>
        public byte[] Serialize()
        {
            byte[] b = new byte[Size];
            s_magic.CopyTo(b, MagicOffset);
            BinaryPrimitives.WriteUInt16BigEndian(b.AsSpan(VersionOffset), 1);
            PutText(b, CipherNameOffset, NameSize, CipherName);
            PutText(b, CipherModeOffset, NameSize, CipherMode);
            PutText(b, HashSpecOffset, NameSize, HashSpec);
            BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(PayloadOffsetOffset), checked((uint)PayloadSector));
            BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(KeyBytesOffset), (uint)KeyBytes);
            Digest.CopyTo(b, DigestOffset);
            DigestSalt.CopyTo(b, DigestSaltOffset);
            BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(DigestIterationsOffset), (uint)DigestIterations);
            PutText(b, UuidOffset, 40, Uuid);
            foreach (LuksKeySlot slot in KeySlots)
            {
                int at = KeySlotsOffset + slot.Index * KeySlotSize;
                BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(at), slot.Active ? SlotActive : SlotInactive);
                BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(at + 4), (uint)slot.Iterations);
                slot.Salt.CopyTo(b, at + 8);
                BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(at + 40), checked((uint)slot.MaterialSector));
                BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(at + 44), (uint)slot.Stripes);
            }

            return b;
        }

        /// <summary>True when the header's first bytes are the LUKS magic, of any version.</summary>
        public static bool HasMagic(ReadOnlySpan<byte> head) => head.Length >= 6 && head.Slice(0, 6).SequenceEqual(s_magic);

        public static LuksHeader Parse(string path, ReadOnlySpan<byte> b, long fileLength)
        {
            if (b.Length < Size || !HasMagic(b))
            {
                throw new ImageCorruptException(path, "LUKS magic", MagicOffset, "the file does not start with the LUKS signature");
            }

            ushort version = BinaryPrimitives.ReadUInt16BigEndian(b.Slice(VersionOffset));
            if (version != 1)
            {
                throw new ImageNotSupportedException(path, "LUKS version", VersionOffset, $"LUKS version {version} is not supported (LUKS1 is)");
            }

            var h = new LuksHeader
            {
                CipherName = Text(b, CipherNameOffset, NameSize),
                CipherMode = Text(b, CipherModeOffset, NameSize),
                HashSpec = Text(b, HashSpecOffset, NameSize),
                PayloadSector = BinaryPrimitives.ReadUInt32BigEndian(b.Slice(PayloadOffsetOffset)),
                Digest = b.Slice(DigestOffset, DigestSize).ToArray(),
                DigestSalt = b.Slice(DigestSaltOffset, SaltSize).ToArray(),
                Uuid = Text(b, UuidOffset, 40),
            };

            uint keyBytes = BinaryPrimitives.ReadUInt32BigEndian(b.Slice(KeyBytesOffset));
            if (keyBytes == 0 || keyBytes > MaxKeyBytes)
            {
                throw new ImageCorruptException(path, "key-bytes", KeyBytesOffset, $"a master key of {keyBytes} bytes is outside 1..{MaxKeyBytes}");
            }

            h.KeyBytes = (int)keyBytes;
            h.DigestIterations = Iterations(path, "mk-digest-iter", DigestIterationsOffset, BinaryPrimitives.ReadUInt32BigEndian(b.Slice(DigestIterationsOffset)));
            long payloadStart = h.PayloadSector * SectorSize;
            if (payloadStart < Size || payloadStart > fileLength)
            {
                throw new ImageCorruptException(path, "payload-offset", PayloadOffsetOffset, $"the payload would start at byte {payloadStart}, outside the header's end ({Size}) .. the file's end ({fileLength})");
            }

            for (int i = 0; i < KeySlotCount; i++)
            {
                int at = KeySlotsOffset + i * KeySlotSize;
                uint active = BinaryPrimitives.ReadUInt32BigEndian(b.Slice(at));
                if (active != SlotActive && active != SlotInactive)
                {
                    throw new ImageCorruptException(path, $"key slot {i} state", at, $"0x{active:x8} is neither active (0x{SlotActive:x8}) nor inactive (0x{SlotInactive:x8})");
                }

                var slot = new LuksKeySlot
                {
                    Index = i,
                    Active = active == SlotActive,
                    Salt = b.Slice(at + 8, SaltSize).ToArray(),
                    MaterialSector = BinaryPrimitives.ReadUInt32BigEndian(b.Slice(at + 40)),
                };

                if (slot.Active)
                {
                    slot.Iterations = Iterations(path, $"key slot {i} iterations", at + 4, BinaryPrimitives.ReadUInt32BigEndian(b.Slice(at + 4)));
                    uint stripes = BinaryPrimitives.ReadUInt32BigEndian(b.Slice(at + 44));
                    if (stripes == 0 || stripes > MaxStripes)
                    {
                        throw new ImageCorruptException(path, $"key slot {i} stripes", at + 44, $"{stripes} anti-forensic stripes is outside 1..{MaxStripes}");
                    }

                    slot.Stripes = (int)stripes;
                    long start = slot.MaterialSector * SectorSize;
                    long end = start + (long)h.KeyBytes * slot.Stripes;
                    if (start < Size || end > payloadStart)
                    {
                        throw new ImageCorruptException(path, $"key slot {i} key-material-offset", at + 40, $"the key material [{start}, {end}) lies outside the header area [{Size}, {payloadStart})");
                    }
                }

                h.KeySlots[i] = slot;
            }

            return h;
        }

        private static int Iterations(string path, string field, int offset, uint value)
        {
            if (value == 0 || value > MaxIterations)
            {
                throw new ImageCorruptException(path, field, offset, $"{value} PBKDF2 iterations is outside 1..{MaxIterations}");
            }

            return (int)value;
        }

        private static void PutText(byte[] b, int offset, int length, string text)
        {
            byte[] bytes = Encoding.ASCII.GetBytes(text);
            Buffer.BlockCopy(bytes, 0, b, offset, Math.Min(bytes.Length, length - 1));
        }

        private static string Text(ReadOnlySpan<byte> b, int offset, int length)
        {
            ReadOnlySpan<byte> field = b.Slice(offset, length);
            int nul = field.IndexOf((byte)0);
            return Encoding.ASCII.GetString(field.Slice(0, nul < 0 ? length : nul).ToArray());
        }
    }

    /// <summary>One of the eight LUKS1 key slots.</summary>
    internal sealed class LuksKeySlot
    {
        public int Index { get; set; }

        public bool Active { get; set; }

        public int Iterations { get; set; }

        public byte[] Salt { get; set; }

        /// <summary>Where the slot's encrypted, anti-forensically split key material starts, in sectors.</summary>
        public long MaterialSector { get; set; }

        public int Stripes { get; set; }
    }
}
