using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.Text;

namespace VDiskPS.Formats.Vhdx
{
    /// <summary>The metadata region ([MS-VHDX] 2.6): table of items plus the system items this module understands.</summary>
    internal sealed class VhdxMetadata
    {
        private const int TableSignatureField = 0;
        private const int TableEntryCountField = 10;
        private const int TableHeaderLength = 32;
        private const int EntryLength = 32;
        private const int EntryItemIdField = 0;
        private const int EntryOffsetField = 16;
        private const int EntryLengthField = 20;
        private const int EntryFlagsField = 24;

        private const uint FlagIsUser = 1;
        internal const uint FlagIsVirtualDisk = 2;
        private const uint FlagIsRequired = 4;

        private const int MaxUserItems = 1024;

        private const uint ParamLeaveBlocksAllocated = 1;
        private const uint ParamHasParent = 2;

        // 2.6.2.6 parent locator header and key/value entries.
        private const int LocatorTypeField = 0;
        private const int LocatorCountField = 18;
        private const int LocatorHeaderLength = 20;
        private const int LocatorEntryLength = 12;

        public uint BlockSize { get; set; }

        public bool LeaveBlocksAllocated { get; set; }

        public bool HasParent { get; set; }

        public long VirtualSize { get; set; }

        public Guid Page83Data { get; set; }

        public int LogicalSectorSize { get; set; } = 512;

        public int PhysicalSectorSize { get; set; } = 512;

        /// <summary>Parent locator key/value pairs in stored order (keys compare case-sensitively, as stored).</summary>
        public List<KeyValuePair<string, string>> ParentLocator { get; set; }

        public Guid ParentLocatorType { get; set; } = VhdxConstants.VhdxParentLocatorType;

        /// <summary>Items this module does not interpret (user metadata), kept as they are on rewrite.</summary>
        public List<(Guid Id, uint Flags, byte[] Data)> OtherItems { get; } = new List<(Guid, uint, byte[])>();

        public string GetLocator(string key)
        {
            if (ParentLocator == null)
            {
                return null;
            }

            foreach (var kv in ParentLocator)
            {
                if (string.Equals(kv.Key, key, StringComparison.Ordinal))
                {
                    return kv.Value;
                }
            }

            return null;
        }

        /// <summary>Parses the region (already read, <paramref name="region"/> bytes at <paramref name="regionOffset"/> in <paramref name="path"/>).</summary>
        public static VhdxMetadata Parse(byte[] region, long regionOffset, string path)
        {
            if (BinaryPrimitives.ReadUInt64LittleEndian(region.AsSpan(TableSignatureField)) != VhdxConstants.MetadataSignature)
            {
                throw new ImageCorruptException(path, "metadata table signature", regionOffset, "the signature is not 'metadata'");
            }

            int count = BinaryPrimitives.ReadUInt16LittleEndian(region.AsSpan(TableEntryCountField));
            if (count > VhdxConstants.MaxMetadataEntries)
            {
                throw new ImageCorruptException(path, "metadata entry count", regionOffset + TableEntryCountField, $"{count} entries exceed the limit of {VhdxConstants.MaxMetadataEntries}");
            }

            var metadata = new VhdxMetadata();
            var seen = new List<(Guid Id, long Offset, long Length)>();
            int userItems = 0;
            bool hasParameters = false, hasSize = false, hasLogical = false, hasPhysical = false, hasPage83 = false;
            for (int i = 0; i < count; i++)
            {
                int at = TableHeaderLength + (i * EntryLength);
                long fieldOffset = regionOffset + at;
                Guid id = GuidField.Read(region.AsSpan(at + EntryItemIdField));
                uint itemOffset = BinaryPrimitives.ReadUInt32LittleEndian(region.AsSpan(at + EntryOffsetField));
                uint itemLength = BinaryPrimitives.ReadUInt32LittleEndian(region.AsSpan(at + EntryLengthField));
                uint flags = BinaryPrimitives.ReadUInt32LittleEndian(region.AsSpan(at + EntryFlagsField));
                if (itemLength > VhdxConstants.MaxMetadataItemLength
                    || (itemLength > 0 && (itemOffset < VhdxConstants.MetadataTableLength || (long)itemOffset + itemLength > region.Length)))
                {
                    throw new ImageCorruptException(path, $"metadata item {id}", fieldOffset, $"the item ({itemOffset}+{itemLength}) lies outside the {region.Length}-byte metadata region or inside its table");
                }

                foreach (var other in seen)
                {
                    if (other.Id == id && (flags & FlagIsUser) == 0)
                    {
                        throw new ImageCorruptException(path, $"metadata item {id}", fieldOffset, "the item appears twice");
                    }

                    if (itemLength > 0 && other.Length > 0 && itemOffset < other.Offset + other.Length && other.Offset < itemOffset + itemLength)
                    {
                        throw new ImageCorruptException(path, $"metadata item {id}", fieldOffset, $"the item overlaps item {other.Id}");
                    }
                }

                seen.Add((id, itemOffset, itemLength));
                var data = new ReadOnlySpan<byte>(region, (int)itemOffset, (int)itemLength);
                long dataOffset = regionOffset + itemOffset;
                if ((flags & FlagIsUser) != 0)
                {
                    if (++userItems > MaxUserItems)
                    {
                        throw new ImageCorruptException(path, "metadata entry count", fieldOffset, $"more than {MaxUserItems} user metadata items");
                    }

                    metadata.OtherItems.Add((id, flags, data.ToArray()));
                }
                else if (id == VhdxConstants.FileParametersItem)
                {
                    RequireLength(path, "file parameters", dataOffset, itemLength, 8);
                    metadata.BlockSize = BinaryPrimitives.ReadUInt32LittleEndian(data);
                    uint bits = BinaryPrimitives.ReadUInt32LittleEndian(data.Slice(4));
                    metadata.LeaveBlocksAllocated = (bits & ParamLeaveBlocksAllocated) != 0;
                    metadata.HasParent = (bits & ParamHasParent) != 0;
                    hasParameters = true;
                }
                else if (id == VhdxConstants.VirtualDiskSizeItem)
                {
                    RequireLength(path, "virtual disk size", dataOffset, itemLength, 8);
                    ulong size = BinaryPrimitives.ReadUInt64LittleEndian(data);
                    if (size > (ulong)VhdxConstants.MaxVirtualSize)
                    {
                        throw new ImageCorruptException(path, "virtual disk size", dataOffset, $"{size} bytes exceeds 64 TiB");
                    }

                    metadata.VirtualSize = (long)size;
                    hasSize = true;
                }
                else if (id == VhdxConstants.Page83DataItem)
                {
                    RequireLength(path, "page 83 data", dataOffset, itemLength, 16);
                    metadata.Page83Data = GuidField.Read(data);
                    hasPage83 = true;
                }
                else if (id == VhdxConstants.LogicalSectorSizeItem)
                {
                    RequireLength(path, "logical sector size", dataOffset, itemLength, 4);
                    metadata.LogicalSectorSize = ReadSectorSize(path, "logical sector size", dataOffset, data);
                    hasLogical = true;
                }
                else if (id == VhdxConstants.PhysicalSectorSizeItem)
                {
                    RequireLength(path, "physical sector size", dataOffset, itemLength, 4);
                    metadata.PhysicalSectorSize = ReadSectorSize(path, "physical sector size", dataOffset, data);
                    hasPhysical = true;
                }
                else if (id == VhdxConstants.ParentLocatorItem)
                {
                    metadata.ParseParentLocator(path, dataOffset, data);
                }
                else if ((flags & FlagIsRequired) != 0)
                {
                    throw new ImageNotSupportedException(path, $"metadata item {id}", fieldOffset, "the image requires a metadata item this module does not know");
                }
                else
                {
                    metadata.OtherItems.Add((id, flags, data.ToArray()));
                }
            }

            string missing = !hasParameters ? "file parameters" : !hasSize ? "virtual disk size" : !hasLogical ? "logical sector size"
                : !hasPhysical ? "physical sector size" : !hasPage83 ? "page 83 data" : null;
            if (missing != null)
            {
                throw new ImageCorruptException(path, missing, regionOffset, "the required metadata item is missing");
            }

            uint block = metadata.BlockSize;
            if (block < VhdxConstants.MinBlockSize || block > VhdxConstants.MaxBlockSize || (block & (block - 1)) != 0)
            {
                throw new ImageCorruptException(path, "block size", regionOffset, $"{block} is not a power of two from 1 MiB to 256 MiB");
            }

            if (metadata.VirtualSize % metadata.LogicalSectorSize != 0)
            {
                throw new ImageCorruptException(path, "virtual disk size", regionOffset, $"{metadata.VirtualSize} is not a multiple of the logical sector size {metadata.LogicalSectorSize}");
            }

            if (metadata.HasParent && metadata.ParentLocator == null)
            {
                throw new ImageCorruptException(path, "parent locator", regionOffset, "the image has a parent but no parent locator");
            }

            return metadata;
        }

        /// <summary>Serialises table and items (items from 64 KiB on, 8-byte aligned); the length is a multiple of 4 KiB.</summary>
        public byte[] Build(long regionLength)
        {
            var items = new List<(Guid Id, uint Flags, byte[] Data)>();
            var parameters = new byte[8];
            BinaryPrimitives.WriteUInt32LittleEndian(parameters, BlockSize);
            BinaryPrimitives.WriteUInt32LittleEndian(parameters.AsSpan(4), (LeaveBlocksAllocated ? ParamLeaveBlocksAllocated : 0) | (HasParent ? ParamHasParent : 0));
            items.Add((VhdxConstants.FileParametersItem, FlagIsRequired, parameters));
            var size = new byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(size, (ulong)VirtualSize);
            items.Add((VhdxConstants.VirtualDiskSizeItem, FlagIsRequired | FlagIsVirtualDisk, size));
            items.Add((VhdxConstants.Page83DataItem, FlagIsRequired | FlagIsVirtualDisk, Page83Data.ToByteArray()));
            var logical = new byte[4];
            BinaryPrimitives.WriteUInt32LittleEndian(logical, (uint)LogicalSectorSize);
            items.Add((VhdxConstants.LogicalSectorSizeItem, FlagIsRequired | FlagIsVirtualDisk, logical));
            var physical = new byte[4];
            BinaryPrimitives.WriteUInt32LittleEndian(physical, (uint)PhysicalSectorSize);
            items.Add((VhdxConstants.PhysicalSectorSizeItem, FlagIsRequired | FlagIsVirtualDisk, physical));
            if (HasParent && ParentLocator != null)
            {
                items.Add((VhdxConstants.ParentLocatorItem, FlagIsRequired, BuildParentLocator()));
            }

            items.AddRange(OtherItems);
            long needed = VhdxConstants.MetadataTableLength;
            foreach (var item in items)
            {
                needed += (item.Data.Length + 7) & ~7;
            }

            if (needed > regionLength || items.Count > VhdxConstants.MaxMetadataEntries)
            {
                throw new ImageNotSupportedException(null, "metadata region", null, $"the metadata needs {needed} bytes; the region holds {regionLength}");
            }

            var region = new byte[(needed + VhdxConstants.LogSectorLength - 1) / VhdxConstants.LogSectorLength * VhdxConstants.LogSectorLength];
            BinaryPrimitives.WriteUInt64LittleEndian(region.AsSpan(TableSignatureField), VhdxConstants.MetadataSignature);
            BinaryPrimitives.WriteUInt16LittleEndian(region.AsSpan(TableEntryCountField), (ushort)items.Count);
            int dataAt = VhdxConstants.MetadataTableLength;
            for (int i = 0; i < items.Count; i++)
            {
                Span<byte> entry = region.AsSpan(TableHeaderLength + (i * EntryLength), EntryLength);
                GuidField.Write(entry.Slice(EntryItemIdField), items[i].Id);
                BinaryPrimitives.WriteUInt32LittleEndian(entry.Slice(EntryOffsetField), items[i].Data.Length == 0 ? 0u : (uint)dataAt);
                BinaryPrimitives.WriteUInt32LittleEndian(entry.Slice(EntryLengthField), (uint)items[i].Data.Length);
                BinaryPrimitives.WriteUInt32LittleEndian(entry.Slice(EntryFlagsField), items[i].Flags);
                items[i].Data.CopyTo(region, dataAt);
                dataAt += (items[i].Data.Length + 7) & ~7;
            }

            return region;
        }

        private byte[] BuildParentLocator()
        {
            var strings = new List<byte[]>();
            foreach (var kv in ParentLocator)
            {
                strings.Add(Encoding.Unicode.GetBytes(kv.Key));
                strings.Add(Encoding.Unicode.GetBytes(kv.Value));
            }

            int length = LocatorHeaderLength + (ParentLocator.Count * LocatorEntryLength);
            foreach (byte[] s in strings)
            {
                length += s.Length;
            }

            var data = new byte[length];
            GuidField.Write(data.AsSpan(LocatorTypeField), ParentLocatorType);
            BinaryPrimitives.WriteUInt16LittleEndian(data.AsSpan(LocatorCountField), (ushort)ParentLocator.Count);
            int stringAt = LocatorHeaderLength + (ParentLocator.Count * LocatorEntryLength);
            for (int i = 0; i < ParentLocator.Count; i++)
            {
                Span<byte> entry = data.AsSpan(LocatorHeaderLength + (i * LocatorEntryLength), LocatorEntryLength);
                byte[] key = strings[2 * i];
                byte[] value = strings[(2 * i) + 1];
                BinaryPrimitives.WriteUInt32LittleEndian(entry, (uint)stringAt);
                key.CopyTo(data, stringAt);
                stringAt += key.Length;
                BinaryPrimitives.WriteUInt32LittleEndian(entry.Slice(4), (uint)stringAt);
                value.CopyTo(data, stringAt);
                stringAt += value.Length;
                BinaryPrimitives.WriteUInt16LittleEndian(entry.Slice(8), (ushort)key.Length);
                BinaryPrimitives.WriteUInt16LittleEndian(entry.Slice(10), (ushort)value.Length);
            }

            return data;
        }

        private void ParseParentLocator(string path, long dataOffset, ReadOnlySpan<byte> data)
        {
            if (data.Length < LocatorHeaderLength)
            {
                throw new ImageCorruptException(path, "parent locator", dataOffset, $"the item is {data.Length} bytes, shorter than its header");
            }

            ParentLocatorType = GuidField.Read(data.Slice(LocatorTypeField));
            int count = BinaryPrimitives.ReadUInt16LittleEndian(data.Slice(LocatorCountField));
            if (LocatorHeaderLength + ((long)count * LocatorEntryLength) > data.Length)
            {
                throw new ImageCorruptException(path, "parent locator entry count", dataOffset + LocatorCountField, $"{count} entries do not fit in the {data.Length}-byte item");
            }

            var pairs = new List<KeyValuePair<string, string>>(count);
            for (int i = 0; i < count; i++)
            {
                int at = LocatorHeaderLength + (i * LocatorEntryLength);
                long entryOffset = dataOffset + at;
                uint keyOffset = BinaryPrimitives.ReadUInt32LittleEndian(data.Slice(at));
                uint valueOffset = BinaryPrimitives.ReadUInt32LittleEndian(data.Slice(at + 4));
                int keyLength = BinaryPrimitives.ReadUInt16LittleEndian(data.Slice(at + 8));
                int valueLength = BinaryPrimitives.ReadUInt16LittleEndian(data.Slice(at + 10));
                string key = ReadString(path, "parent locator key", entryOffset, data, keyOffset, keyLength);
                string value = ReadString(path, $"parent locator value '{key}'", entryOffset, data, valueOffset, valueLength);
                if (pairs.Exists(p => p.Key == key))
                {
                    throw new ImageCorruptException(path, $"parent locator key '{key}'", entryOffset, "the key appears twice");
                }

                pairs.Add(new KeyValuePair<string, string>(key, value));
            }

            ParentLocator = pairs;
        }

        private static string ReadString(string path, string field, long entryOffset, ReadOnlySpan<byte> data, uint offset, int length)
        {
            if (length == 0 || length % 2 != 0 || offset < LocatorHeaderLength || offset + (long)length > data.Length)
            {
                throw new ImageCorruptException(path, field, entryOffset, $"the string ({offset}+{length}) is empty, of odd length or outside the locator");
            }

            return Encoding.Unicode.GetString(data.Slice((int)offset, length).ToArray());
        }

        private static void RequireLength(string path, string field, long offset, uint actual, uint expected)
        {
            if (actual < expected)
            {
                throw new ImageCorruptException(path, field, offset, $"the item is {actual} bytes, {expected} are needed");
            }
        }

        private static int ReadSectorSize(string path, string field, long offset, ReadOnlySpan<byte> data)
        {
            uint value = BinaryPrimitives.ReadUInt32LittleEndian(data);
            if (value != 512 && value != 4096)
            {
                throw new ImageCorruptException(path, field, offset, $"{value} is neither 512 nor 4096");
            }

            return (int)value;
        }
    }
}
