using System;
using System.Buffers.Binary;
using System.Text;

namespace VDiskPS.Formats.Vdi
{
    /// <summary>VDI image types (VirtualBox VDICore.h, VDI_IMAGE_TYPE_*).</summary>
    internal enum VdiImageType : uint
    {
        Dynamic = 1,
        Static = 2,
        Undo = 3,
        Differencing = 4,
    }

    /// <summary>
    /// The VDI 1.1 pre-header and header, little-endian (VirtualBox VDICore.h VDIPREHEADER/VDIHEADER1,
    /// qemu block/vdi.c VdiHeader). Kept as its 512 raw bytes so fields this module does not know
    /// (legacy geometry, description) survive a rewrite.
    /// </summary>
    internal sealed class VdiHeader
    {
        public const int Length = 512;
        public const uint Signature = 0xBEDA107F;
        public const uint Version11 = 0x00010001;
        public const uint HeaderSize11 = 0x180;
        public const int SectorSize = 512;

        /// <summary>Block map entry of a block never written: reads from the parent (or as zeros).</summary>
        public const uint Unallocated = 0xFFFFFFFF;

        /// <summary>Block map entry of a block known to read as zeros (VBox "ZERO", qemu "discarded").</summary>
        public const uint Zero = 0xFFFFFFFE;

        private const string QemuText = "<<< QEMU VM Virtual Disk Image >>>\n";

        // Field offsets.
        private const int TextOffset = 0x00;
        private const int SignatureOffset = 0x40;
        private const int VersionOffset = 0x44;
        private const int HeaderSizeOffset = 0x48;
        private const int ImageTypeOffset = 0x4C;
        private const int BlocksOffsetOffset = 0x154;
        private const int DataOffsetOffset = 0x158;
        private const int SectorSizeOffset = 0x168;
        private const int DiskSizeOffset = 0x170;
        private const int BlockSizeOffset = 0x178;
        private const int BlockExtraOffset = 0x17C;
        private const int BlocksInImageOffset = 0x180;
        private const int BlocksAllocatedOffset = 0x184;
        private const int UuidCreateOffset = 0x188;
        private const int UuidModifyOffset = 0x198;
        private const int UuidLinkageOffset = 0x1A8;
        private const int UuidParentModifyOffset = 0x1B8;

        private readonly byte[] _raw;

        private VdiHeader(byte[] raw)
        {
            _raw = raw;
        }

        public static VdiHeader CreateNew()
        {
            var header = new VdiHeader(new byte[Length]);
            Encoding.ASCII.GetBytes(QemuText).CopyTo(header._raw, TextOffset);
            header.SetUInt32(SignatureOffset, Signature);
            header.SetUInt32(VersionOffset, Version11);
            header.SetUInt32(HeaderSizeOffset, HeaderSize11);
            header.SetUInt32(SectorSizeOffset, SectorSize);
            return header;
        }

        public static VdiHeader FromBytes(byte[] raw) => new VdiHeader((byte[])raw.Clone());

        public static bool HasSignature(ReadOnlySpan<byte> buffer)
            => buffer.Length >= Length && BinaryPrimitives.ReadUInt32LittleEndian(buffer.Slice(SignatureOffset)) == Signature;

        public uint Version => GetUInt32(VersionOffset);

        public VdiImageType ImageType
        {
            get => (VdiImageType)GetUInt32(ImageTypeOffset);
            set => SetUInt32(ImageTypeOffset, (uint)value);
        }

        public uint BlocksOffset
        {
            get => GetUInt32(BlocksOffsetOffset);
            set => SetUInt32(BlocksOffsetOffset, value);
        }

        public uint DataOffset
        {
            get => GetUInt32(DataOffsetOffset);
            set => SetUInt32(DataOffsetOffset, value);
        }

        public uint SectorSizeField => GetUInt32(SectorSizeOffset);

        public ulong DiskSize
        {
            get => BinaryPrimitives.ReadUInt64LittleEndian(_raw.AsSpan(DiskSizeOffset));
            set => BinaryPrimitives.WriteUInt64LittleEndian(_raw.AsSpan(DiskSizeOffset), value);
        }

        public uint BlockSize
        {
            get => GetUInt32(BlockSizeOffset);
            set => SetUInt32(BlockSizeOffset, value);
        }

        public uint BlockExtra => GetUInt32(BlockExtraOffset);

        public uint BlocksInImage
        {
            get => GetUInt32(BlocksInImageOffset);
            set => SetUInt32(BlocksInImageOffset, value);
        }

        public uint BlocksAllocated
        {
            get => GetUInt32(BlocksAllocatedOffset);
            set => SetUInt32(BlocksAllocatedOffset, value);
        }

        /// <summary>The image's own UUID (qemu uuid_image).</summary>
        public Guid UuidCreate
        {
            get => GetGuid(UuidCreateOffset);
            set => SetGuid(UuidCreateOffset, value);
        }

        /// <summary>Changes when the image content changes (qemu uuid_last_snap).</summary>
        public Guid UuidModify
        {
            get => GetGuid(UuidModifyOffset);
            set => SetGuid(UuidModifyOffset, value);
        }

        /// <summary>The parent's image UUID, for differencing images (qemu uuid_link).</summary>
        public Guid UuidLinkage
        {
            get => GetGuid(UuidLinkageOffset);
            set => SetGuid(UuidLinkageOffset, value);
        }

        /// <summary>The parent's modification UUID when the child was made (qemu uuid_parent).</summary>
        public Guid UuidParentModify
        {
            get => GetGuid(UuidParentModifyOffset);
            set => SetGuid(UuidParentModifyOffset, value);
        }

        public byte[] ToBytes() => (byte[])_raw.Clone();

        // UUIDs are stored in VirtualBox's RTUUID layout: the little-endian GUID layout .NET uses.
        private Guid GetGuid(int offset) => new Guid(_raw.AsSpan(offset, 16).ToArray());

        private void SetGuid(int offset, Guid value) => value.ToByteArray().CopyTo(_raw, offset);

        private uint GetUInt32(int offset) => BinaryPrimitives.ReadUInt32LittleEndian(_raw.AsSpan(offset));

        private void SetUInt32(int offset, uint value) => BinaryPrimitives.WriteUInt32LittleEndian(_raw.AsSpan(offset), value);
    }
}
