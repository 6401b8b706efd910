using System;

namespace VDiskPS.Formats.Vhdx
{
    /// <summary>Fixed locations, signatures and identifiers of [MS-VHDX] 2.2 - 2.6.</summary>
    internal static class VhdxConstants
    {
        public const long MiB = 1024 * 1024;

        // 2.1 header section: file identifier, two headers, two region tables, each in a 64 KiB slot.
        public const long FileIdentifierOffset = 0;
        public const long Header1Offset = 64 * 1024;
        public const long Header2Offset = 128 * 1024;
        public const long RegionTable1Offset = 192 * 1024;
        public const long RegionTable2Offset = 256 * 1024;
        public const long HeaderSectionLength = MiB;
        public const int HeaderLength = 4096;
        public const int RegionTableLength = 64 * 1024;

        public const ulong FileSignature = 0x656C696678646876; // "vhdxfile"
        public const uint HeaderSignature = 0x64616568; // "head"
        public const uint RegionSignature = 0x69676572; // "regi"
        public const ulong MetadataSignature = 0x617461646174656D; // "metadata"
        public const uint LogEntrySignature = 0x65676F6C; // "loge"
        public const uint LogDataDescriptorSignature = 0x63736564; // "desc"
        public const uint LogZeroDescriptorSignature = 0x6F72657A; // "zero"
        public const uint LogDataSectorSignature = 0x61746164; // "data"

        public const int MaxRegionEntries = 2047;
        public const int MaxMetadataEntries = 2047;
        public const int MetadataTableLength = 64 * 1024;
        public const int MaxMetadataItemLength = 1024 * 1024;

        public const long MinBlockSize = MiB;
        public const long MaxBlockSize = 256 * MiB;
        public const long MaxVirtualSize = 64L * 1024 * 1024 * MiB;

        /// <summary>One sector bitmap block covers 2^23 sectors ([MS-VHDX] 2.5 chunk ratio).</summary>
        public const long SectorsPerBitmapBlock = 1L << 23;
        public const int SectorBitmapBlockLength = 1024 * 1024;

        public const int LogSectorLength = 4096;

        /// <summary>Logs larger than this are refused: a replay holds the log in memory.</summary>
        public const long MaxLogLength = 256 * MiB;

        public static readonly Guid BatRegion = new Guid("2DC27766-F623-4200-9D64-115E9BFD4A08");
        public static readonly Guid MetadataRegion = new Guid("8B7CA206-4790-4B9A-B8FE-575F050F886E");

        public static readonly Guid FileParametersItem = new Guid("CAA16737-FA36-4D43-B3B6-33F0AA44E76B");
        public static readonly Guid VirtualDiskSizeItem = new Guid("2FA54224-CD1B-4876-B211-5DBED83BF4B8");
        public static readonly Guid Page83DataItem = new Guid("BECA12AB-B2E6-4523-93EF-C309E000C746");
        public static readonly Guid LogicalSectorSizeItem = new Guid("8141BF1D-A96F-4709-BA47-F233A8FAAB5F");
        public static readonly Guid PhysicalSectorSizeItem = new Guid("CDA348C7-445D-4471-9CC9-E9885251C556");
        public static readonly Guid ParentLocatorItem = new Guid("A8D35F2D-B30B-454D-ABF7-D3D84834AB0C");

        /// <summary>The parent locator type of a VHDX parent ([MS-VHDX] 2.6.2.6.2).</summary>
        public static readonly Guid VhdxParentLocatorType = new Guid("B04AEFB7-D19E-4A81-B789-25B8E9445913");
    }

    /// <summary>BAT entry states ([MS-VHDX] 2.5.1.1 and 2.5.1.2).</summary>
    internal static class BatState
    {
        public const int NotPresent = 0;
        public const int Undefined = 1;
        public const int Zero = 2;
        public const int Unmapped = 3;

        /// <summary>The value early drafts of the specification (and qemu) give "unmapped".</summary>
        public const int UnmappedDraft = 5;
        public const int FullyPresent = 6;
        public const int PartiallyPresent = 7;

        public const int SectorBitmapPresent = 6;

        public const ulong StateMask = 7;
        public const ulong OffsetMask = ~((1UL << 20) - 1);

        public static int StateOf(ulong entry) => (int)(entry & StateMask);

        public static long OffsetOf(ulong entry) => (long)(entry & OffsetMask);

        public static ulong Make(int state, long fileOffset) => ((ulong)fileOffset & OffsetMask) | (uint)state;
    }
}
