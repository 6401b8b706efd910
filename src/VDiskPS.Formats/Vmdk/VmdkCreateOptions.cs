using System;
using System.Collections.Generic;
using System.Linq;

namespace VDiskPS.Formats.Vmdk
{
    /// <summary>The create options, named as qemu-img create -o names them for vmdk.</summary>
    internal sealed class VmdkCreateOptions
    {
        public const string MonolithicSparse = "monolithicSparse";
        public const string MonolithicFlat = "monolithicFlat";
        public const string TwoGbMaxExtentSparse = "twoGbMaxExtentSparse";
        public const string TwoGbMaxExtentFlat = "twoGbMaxExtentFlat";
        public const string StreamOptimized = "streamOptimized";
        public const string Vmfs = "vmfs";
        public const string VmfsThin = "vmfsThin";

        public static readonly string[] Subformats = { MonolithicSparse, MonolithicFlat, TwoGbMaxExtentSparse, TwoGbMaxExtentFlat, StreamOptimized, Vmfs, VmfsThin };

        public static readonly CreateOption[] OptionNames =
        {
            new CreateOption("adapter_type", CreateOptionKind.Choice, "the virtual controller the descriptor names", "ide", "buslogic", "lsilogic", "legacyESX"),
            new CreateOption("backing_file", CreateOptionKind.Text, "the parent image"),
            new CreateOption("backing_fmt", CreateOptionKind.Text, "the parent's format"),
            new CreateOption("compat6", CreateOptionKind.Bool, "virtual hardware version 6"),
            new CreateOption("hwversion", CreateOptionKind.Text, "virtual hardware version"),
            new CreateOption("size", CreateOptionKind.Size, "virtual size"),
            new CreateOption("subformat", CreateOptionKind.Choice, "the VMDK create type", Subformats),
            new CreateOption("toolsversion", CreateOptionKind.Text, "VMware Tools version recorded in the descriptor"),
            new CreateOption("zeroed_grain", CreateOptionKind.Bool, "mark zero grains in the grain table"),
        };

        private static readonly string[] s_adapterTypes = { "ide", "buslogic", "lsilogic", "legacyESX" };

        public string Subformat { get; private set; } = MonolithicSparse;

        public string AdapterType { get; private set; }

        public string HardwareVersion { get; private set; } = "4";

        public string ToolsVersion { get; private set; } = "2147483647";

        public bool ZeroedGrain { get; private set; }

        public long Size { get; private set; }

        public long GrainSectors { get; private set; } = 128;

        public BackingReference Backing { get; private set; }

        public Preallocation Preallocation { get; private set; }

        public bool IsSparse => Subformat == MonolithicSparse || Subformat == TwoGbMaxExtentSparse || Subformat == StreamOptimized;

        public bool IsSplit => Subformat == TwoGbMaxExtentSparse || Subformat == TwoGbMaxExtentFlat;

        public bool IsVmfs => Subformat == Vmfs || Subformat == VmfsThin;

        public static VmdkCreateOptions Parse(string path, CreateRequest request)
        {
            OptionSet options = request.Options?.Clone() ?? new OptionSet();
            var result = new VmdkCreateOptions();
            string fromOption = options.GetChoice("subformat", Subformats);
            string fromRequest = request.Subformat == null ? null : Subformats.FirstOrDefault(s => string.Equals(s, request.Subformat, StringComparison.OrdinalIgnoreCase))
                ?? throw new ImageOptionException(path, "subformat", $"'{request.Subformat}' is not one of: {string.Join(", ", Subformats)}");
            if (fromOption != null && fromRequest != null && fromOption != fromRequest)
            {
                throw new ImageOptionException(path, "subformat", $"the subformat is given twice ('{fromRequest}' and '{fromOption}')");
            }

            result.Subformat = fromOption ?? fromRequest ?? (request.Type == DiskType.Fixed ? MonolithicFlat : MonolithicSparse);
            if (request.Type == DiskType.Fixed && (result.IsSparse || result.Subformat == VmfsThin))
            {
                throw new ImageOptionException(path, "subformat", $"a fixed disk needs a flat subformat ({MonolithicFlat}, {TwoGbMaxExtentFlat} or {Vmfs}), not {result.Subformat}");
            }

            string adapter = options.GetChoice("adapter_type", s_adapterTypes);

            // ESXi and cloud importers expect a SCSI adapter on the disks meant for them.
            result.AdapterType = adapter ?? (result.Subformat == StreamOptimized || result.IsVmfs ? "lsilogic" : "ide");
            bool compat6 = options.GetBool("compat6") ?? false;
            string hwversion = options.GetString("hwversion");
            if (compat6 && hwversion != null)
            {
                throw new ImageOptionException(path, "hwversion", "compat6 and hwversion cannot both be given");
            }

            if (hwversion != null && (hwversion.Length == 0 || !hwversion.All(char.IsDigit) || hwversion.Length > 3))
            {
                throw new ImageOptionException(path, "hwversion", $"'{hwversion}' is not a hardware version number");
            }

            result.HardwareVersion = hwversion ?? (compat6 ? "6" : "4");
            string tools = options.GetString("toolsversion");
            if (tools != null && (tools.Length == 0 || !tools.All(char.IsDigit) || tools.Length > 10))
            {
                throw new ImageOptionException(path, "toolsversion", $"'{tools}' is not a tools version number");
            }

            result.ToolsVersion = tools ?? result.ToolsVersion;
            result.ZeroedGrain = options.GetBool("zeroed_grain") ?? false;
            long? size = options.GetSize("size");
            if (size.HasValue && request.Size != 0 && size.Value != request.Size)
            {
                throw new ImageOptionException(path, "size", $"the size is given twice ({request.Size} and {size.Value})");
            }

            result.Size = (size ?? request.Size + SparseHeader.SectorSize - 1) / SparseHeader.SectorSize * SparseHeader.SectorSize;
            if (result.Size < 0 || result.Size > (1L << 40) * SparseHeader.SectorSize)
            {
                throw new ImageOptionException(path, "size", "the size must be between 0 and 512 TiB");
            }

            string backingFile = options.GetString("backing_file");
            string backingFormat = options.GetString("backing_fmt");
            result.Backing = request.Backing;
            if (backingFile != null)
            {
                if (result.Backing != null && result.Backing.RecordedPath != backingFile)
                {
                    throw new ImageOptionException(path, "backing_file", $"the backing file is given twice ('{result.Backing.RecordedPath}' and '{backingFile}')");
                }

                result.Backing = result.Backing ?? new BackingReference(backingFile, VmdkDriver.Id);
            }

            if (backingFormat != null && !string.Equals(backingFormat, "vmdk", StringComparison.OrdinalIgnoreCase))
            {
                throw new ImageOptionException(path, "backing_fmt", $"'{backingFormat}' is not vmdk; a VMDK delta disk's parent must be a VMDK");
            }

            if (result.Backing?.Format != null && result.Backing.Format != VmdkDriver.Id)
            {
                throw new ImageOptionException(path, "backing_fmt", $"the parent is {result.Backing.Format.Value.ToName()}; a VMDK delta disk's parent must be a VMDK");
            }

            if (request.Type == DiskType.Differencing && result.Backing == null)
            {
                throw new ImageOptionException(path, "backing_file", "a differencing disk needs a parent");
            }

            if (result.Backing != null && result.Subformat != MonolithicSparse && result.Subformat != TwoGbMaxExtentSparse)
            {
                throw new ImageOptionException(path, "subformat", $"a delta disk (with a parent) must be {MonolithicSparse} or {TwoGbMaxExtentSparse}, not {result.Subformat}");
            }

            if (request.ClusterSize.HasValue)
            {
                long grain = request.ClusterSize.Value;
                if (!result.IsSparse || result.Subformat == StreamOptimized ? grain != 65536 : (grain < 4096 || grain > (1 << 20) || (grain & (grain - 1)) != 0))
                {
                    throw new ImageOptionException(path, "cluster_size", result.IsSparse && result.Subformat != StreamOptimized
                        ? $"the grain size {grain} is not a power of two from 4 KiB to 1 MiB"
                        : $"{result.Subformat} images have a fixed 64 KiB grain");
                }

                result.GrainSectors = grain / SparseHeader.SectorSize;
            }

            if (request.CompressionType.HasValue && request.CompressionType.Value != CompressionType.Zlib)
            {
                throw new ImageOptionException(path, "compression_type", "VMDK grains are compressed with zlib (deflate) only");
            }

            Preallocation defaultPreallocation = result.Subformat == Vmfs || request.Type == DiskType.Fixed ? Preallocation.Falloc : Preallocation.Off;
            result.Preallocation = request.Preallocation ?? defaultPreallocation;
            if (result.Preallocation != Preallocation.Off && result.Preallocation != Preallocation.Metadata && (result.IsSparse || result.Subformat == VmfsThin))
            {
                throw new ImageOptionException(path, "preallocation", $"{result.Subformat} images are not preallocated; use a flat subformat");
            }

            options.RejectUnknown("vmdk", OptionNames);
            return result;
        }

        /// <summary>The disk database qemu-img writes, plus the identity fields VMware's importers look for.</summary>
        public IEnumerable<KeyValuePair<string, string>> DatabaseEntries()
        {
            bool ide = AdapterType == "ide";
            long heads = ide ? 16 : 255;
            long sectorsPerTrack = 63;
            long cylinders = Size / (heads * sectorsPerTrack * SparseHeader.SectorSize);

            // VMware caps SCSI geometry at 65535 cylinders; IDE stays as qemu-img writes it.
            cylinders = ide ? cylinders : Math.Min(cylinders, 65535);
            yield return Entry("ddb.virtualHWVersion", HardwareVersion);
            yield return Entry("ddb.geometry.cylinders", cylinders.ToString(System.Globalization.CultureInfo.InvariantCulture));
            yield return Entry("ddb.geometry.heads", heads.ToString(System.Globalization.CultureInfo.InvariantCulture));
            yield return Entry("ddb.geometry.sectors", sectorsPerTrack.ToString(System.Globalization.CultureInfo.InvariantCulture));
            yield return Entry("ddb.adapterType", AdapterType);
            yield return Entry("ddb.toolsVersion", ToolsVersion);
            if (Subformat == StreamOptimized || IsVmfs)
            {
                // Tools state "4" with version 2147483647: guest tools managed outside VMware (open-vm-tools).
                yield return Entry("ddb.toolsInstallType", "4");
                yield return Entry("ddb.longContentID", Guid.NewGuid().ToString("N"));
                yield return Entry(VmdkLayer.DiskUuidKey, FormatUuid(Guid.NewGuid()));
            }

            if (Subformat == VmfsThin)
            {
                yield return Entry("ddb.thinProvisioned", "1");
            }
        }

        /// <summary>
        /// VMware's ddb.uuid form: 16 hex bytes, space separated, a dash between the two halves, in RFC 4122
        /// (big-endian) order, so "60 00 c2 ..." is the UUID 6000c2.. VMware shows for the disk.
        /// </summary>
        internal static string FormatUuid(Guid uuid)
        {
            byte[] bytes = uuid.ToByteArray();
            Array.Reverse(bytes, 0, 4);
            Array.Reverse(bytes, 4, 2);
            Array.Reverse(bytes, 6, 2);
            string half(int start) => string.Join(" ", bytes.Skip(start).Take(8).Select(b => b.ToString("x2", System.Globalization.CultureInfo.InvariantCulture)));
            return half(0) + "-" + half(8);
        }

        private static KeyValuePair<string, string> Entry(string key, string value) => new KeyValuePair<string, string>(key, value);
    }
}
