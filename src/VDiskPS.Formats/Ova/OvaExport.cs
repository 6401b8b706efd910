using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Security.Cryptography;
using System.Text;
using System.Threading;

namespace VDiskPS.Formats.Ova
{
    /// <summary>How a package is laid out: one .ova archive, or an .ovf with its files in a folder.</summary>
    public enum OvaPackageFormat
    {
        Ova,
        Ovf,
    }

    /// <summary>What an export makes: the VM, its disks and where the package goes.</summary>
    public sealed class OvaExportRequest
    {
        /// <summary>The images (any format, any chain) that become the VM's disks, in order.</summary>
        public IList<string> Images { get; set; } = new List<string>();

        /// <summary>A .ova or .ovf file, or a folder to create NAME.ova / NAME.ovf in.</summary>
        public string Destination { get; set; }

        /// <summary>The VM's name; default: the first image's file name without extension.</summary>
        public string Name { get; set; }

        public int CpuCount { get; set; } = 1;

        public long MemoryMB { get; set; } = 1024;

        public OvfFirmware Firmware { get; set; } = OvfFirmware.Bios;

        /// <summary>A name from <see cref="OvfGuests"/>; default Other64.</summary>
        public string OSType { get; set; }

        public OvfControllerType Controller { get; set; } = OvfControllerType.Scsi;

        /// <summary>The layout; null: from the destination's extension (.ovf: folder layout), else .ova.</summary>
        public OvaPackageFormat? Format { get; set; }

        public bool Overwrite { get; set; }

        /// <summary>Read images another process writes (qemu-img -U).</summary>
        public bool ShareWithWriters { get; set; }

        /// <summary>Parallel readers/compressors.</summary>
        public int ThrottleLimit { get; set; } = Environment.ProcessorCount;

        /// <summary>The most reads in flight when the caller limits them (see <see cref="ConvertOptions.ReadsInFlight"/>); null: the engine's choice.</summary>
        public int? ReadsInFlight { get; set; }
    }

    /// <summary>
    /// Writes an OVF 1.x package from disk images: the descriptor first (as the spec requires of an
    /// OVA), each disk as a streamOptimized VMDK (version 3, the form ESXi and AWS import) and a manifest
    /// of SHA256 digests last. The archive is streamed into the destination: each disk is written
    /// straight into its member and its tar header filled in afterwards (the size is known only then),
    /// its digest taken as the bytes are written. The descriptor's space is reserved at the largest size
    /// its numbers can take and the final text padded with whitespace to it. Everything is written under
    /// a temporary name and renamed into place only when complete, so a failed or cancelled export
    /// leaves nothing behind.
    /// </summary>
    public static class OvaExport
    {
        private const int RecordSize = 10240;

        /// <summary>Where the package will be written and its layout, before anything is opened (for -WhatIf).</summary>
        public static (string Path, OvaPackageFormat Format) ResolveDestination(OvaExportRequest request)
        {
            string name = VmName(request);
            string destination = Path.GetFullPath(request.Destination ?? throw new ImageOptionException(null, "destination", "a destination is needed"));
            bool folder = Directory.Exists(destination) || destination.EndsWith(Path.DirectorySeparatorChar.ToString(), StringComparison.Ordinal);
            OvaPackageFormat? byName = folder ? (OvaPackageFormat?)null
                : OvfPackage.IsArchiveName(destination) ? OvaPackageFormat.Ova
                : OvfPackage.IsDescriptorName(destination) ? OvaPackageFormat.Ovf
                : throw new ImageOptionException(destination, "destination", "the destination is neither a folder nor a .ova or .ovf file");
            if (request.Format.HasValue && byName.HasValue && request.Format != byName)
            {
                throw new ImageOptionException(destination, "format", $"the destination's extension names the {byName.Value.ToString().ToLowerInvariant()} layout, not {request.Format.Value.ToString().ToLowerInvariant()}");
            }

            OvaPackageFormat format = request.Format ?? byName ?? OvaPackageFormat.Ova;
            if (folder)
            {
                destination = Path.Combine(destination, name + (format == OvaPackageFormat.Ova ? ".ova" : ".ovf"));
            }

            return (destination, format);
        }

        /// <summary>Writes the package; returns the VM as read back from the finished descriptor.</summary>
        public static OvfVirtualMachine Run(OvaExportRequest request, IProgress<OperationProgress> progress = null, CancellationToken cancel = default)
        {
            if (request.Images == null || request.Images.Count == 0)
            {
                throw new ImageOptionException(null, "path", "give at least one image");
            }

            if (request.CpuCount < 1 || request.CpuCount > 768)
            {
                throw new ImageOptionException(null, "CPU count", $"{request.CpuCount} is outside 1..768");
            }

            if (request.MemoryMB < 4 || request.MemoryMB > 24L * 1024 * 1024)
            {
                throw new ImageOptionException(null, "memory", $"{request.MemoryMB} MiB is outside 4 MiB..24 TiB");
            }

            if (request.Images.Count > OvfDescriptor.MaxDisks(request.Controller))
            {
                throw new ImageOptionException(null, "controller", $"one {request.Controller.ToString().ToUpperInvariant()} controller takes at most {OvfDescriptor.MaxDisks(request.Controller)} disks, not {request.Images.Count}");
            }

            var (destination, format) = ResolveDestination(request);
            string name = VmName(request);
            var spec = new OvfExportSpec
            {
                Name = name,
                CpuCount = request.CpuCount,
                MemoryMB = request.MemoryMB,
                Firmware = request.Firmware,
                Guest = OvfGuests.Find(string.IsNullOrEmpty(request.OSType) ? "Other64" : request.OSType),
                Controller = request.Controller,
            };

            var chains = new List<ImageChain>();
            try
            {
                foreach (string image in request.Images)
                {
                    string full = Transports.GetFullLocation(image);
                    if (ImageChain.PathComparer.Equals(full, destination))
                    {
                        throw new ImageOptionException(destination, "destination", "the destination is one of the source images");
                    }

                    chains.Add(ImageChain.Open(full, new ChainOptions { ShareWithWriters = request.ShareWithWriters }));
                }

                IOvfDiskDriver diskDriver = OvfDisks.Driver(FormatRegistry.Default);
                for (int i = 0; i < chains.Count; i++)
                {
                    spec.Disks.Add(new OvfDisk
                    {
                        DiskId = "vmdisk" + (i + 1),
                        FileId = "file" + (i + 1),
                        File = $"{name}-disk{i + 1}{diskDriver.OvfDiskExtension}",
                        Format = diskDriver.OvfDiskFormatUri,
                        Capacity = chains[i].Size,
                        Address = request.Controller == OvfControllerType.Scsi && i >= 7 ? i + 1 : i,
                    });
                }

                var staging = new StagedOutput(destination, request.Overwrite);
                try
                {
                    var writer = new PackageWriter(request, spec, chains, staging, format, progress, cancel);
                    writer.Write();
                    staging.Commit();
                }
                catch
                {
                    staging.Abandon();
                    throw;
                }
            }
            finally
            {
                foreach (ImageChain chain in chains)
                {
                    chain.Dispose();
                }
            }

            using (OvfPackage written = OvfPackage.Open(destination))
            {
                return written.Machine;
            }
        }

        /// <summary>The VM name, made safe for file and tar member names (at most 64 bytes of letters, digits, '.', '_' and '-').</summary>
        private static string VmName(OvaExportRequest request)
        {
            string name = request.Name;
            if (string.IsNullOrEmpty(name))
            {
                string first = request.Images?.FirstOrDefault();
                name = first == null ? "vm" : Path.GetFileNameWithoutExtension(Transports.FileNameOf(first));
            }

            var safe = new StringBuilder();
            foreach (char c in name)
            {
                safe.Append(c < 128 && (char.IsLetterOrDigit(c) || c == '.' || c == '_' || c == '-') ? c : '_');
            }

            string result = safe.ToString().Trim('.');
            if (result.Length == 0)
            {
                result = "vm";
            }

            return result.Length > 64 ? result.Substring(0, 64) : result;
        }

        /// <summary>Bytes the chain holds as data (what ovf:populatedSize estimates), from block status alone.</summary>
        private static long PopulatedBytes(ImageChain chain, CancellationToken cancel)
        {
            long total = 0;
            for (long offset = 0; offset < chain.Size;)
            {
                cancel.ThrowIfCancellationRequested();
                BlockStatus status = chain.GetBlockStatus(offset, chain.Size - offset);
                long length = Math.Max(1, Math.Min(status.Length, chain.Size - offset));
                if (status.Kind == ExtentKind.Data)
                {
                    total += length;
                }

                offset += length;
            }

            return total;
        }

        private static string Sha256(byte[] bytes)
        {
            using (var sha = SHA256.Create())
            {
                return string.Concat(sha.ComputeHash(bytes).Select(b => b.ToString("x2", System.Globalization.CultureInfo.InvariantCulture)));
            }
        }

        private static long Pad(long length) => (length + TarHeader.BlockSize - 1) / TarHeader.BlockSize * TarHeader.BlockSize;

        /// <summary>One export's writing: the disks, then the descriptor and the manifest, into one archive or a folder.</summary>
        private sealed class PackageWriter
        {
            private readonly OvaExportRequest _request;
            private readonly OvfExportSpec _spec;
            private readonly List<ImageChain> _chains;
            private readonly StagedOutput _staging;
            private readonly OvaPackageFormat _format;
            private readonly IProgress<OperationProgress> _progress;
            private readonly CancellationToken _cancel;
            private readonly List<KeyValuePair<string, string>> _digests = new List<KeyValuePair<string, string>>();

            public PackageWriter(OvaExportRequest request, OvfExportSpec spec, List<ImageChain> chains, StagedOutput staging, OvaPackageFormat format, IProgress<OperationProgress> progress, CancellationToken cancel)
            {
                _request = request;
                _spec = spec;
                _chains = chains;
                _staging = staging;
                _format = format;
                _progress = progress;
                _cancel = cancel;
            }

            private string DescriptorName => _spec.Name + ".ovf";

            private string ManifestName => _spec.Name + ".mf";

            public void Write()
            {
                string folder = Path.GetDirectoryName(_staging.Destination) ?? string.Empty;

                // The main file's temporary name first: it is renamed into place last.
                string mainTemporary = _staging.TemporaryPathFor(_staging.Destination);
                if (_format == OvaPackageFormat.Ova)
                {
                    using (HostFile archive = HostFile.Create(mainTemporary, false, false))
                    {
                        WriteArchive(archive);
                        archive.Flush();
                    }

                    return;
                }

                string manifestTemporary = _staging.TemporaryPathFor(Path.Combine(folder, ManifestName));
                for (int i = 0; i < _chains.Count; i++)
                {
                    OvfDisk disk = _spec.Disks[i];
                    using (HostFile file = HostFile.Create(_staging.TemporaryPathFor(Path.Combine(folder, disk.File)), false, false))
                    {
                        WriteDisk(i, file, 0, Path.Combine(folder, disk.File));
                        file.Flush();
                    }
                }

                byte[] descriptor = Encoding.UTF8.GetBytes(OvfDescriptor.Write(_spec));
                _digests.Insert(0, new KeyValuePair<string, string>(DescriptorName, Sha256(descriptor)));
                File.WriteAllBytes(mainTemporary, descriptor);
                File.WriteAllBytes(manifestTemporary, Encoding.UTF8.GetBytes(OvfManifest.Write(_digests)));
            }

            private void WriteArchive(HostFile archive)
            {
                // The descriptor goes first; its numbers are known only at the end, so its space is
                // reserved at the largest they can be and the text is padded to it.
                int reserved = ReservedDescriptorLength();
                long position = TarHeader.BlockSize + Pad(reserved);
                for (int i = 0; i < _chains.Count; i++)
                {
                    OvfDisk disk = _spec.Disks[i];
                    long header = position;
                    long length = WriteDisk(i, archive, header + TarHeader.BlockSize, _staging.Destination + "/" + disk.File);
                    archive.WriteAt(header, TarHeader.Build(disk.File, length, DateTimeOffset.UtcNow));
                    position = header + TarHeader.BlockSize + Pad(length);
                }

                byte[] text = Encoding.UTF8.GetBytes(OvfDescriptor.Write(_spec));
                byte[] descriptor = new byte[reserved];
                text.CopyTo(descriptor, 0);
                for (int i = text.Length; i < reserved; i++)
                {
                    descriptor[i] = i == reserved - 1 ? (byte)'\n' : (byte)' ';
                }

                archive.WriteAt(0, TarHeader.Build(DescriptorName, descriptor.Length, DateTimeOffset.UtcNow));
                archive.WriteAt(TarHeader.BlockSize, descriptor);
                _digests.Insert(0, new KeyValuePair<string, string>(DescriptorName, Sha256(descriptor)));

                byte[] manifest = Encoding.UTF8.GetBytes(OvfManifest.Write(_digests));
                archive.WriteAt(position, TarHeader.Build(ManifestName, manifest.Length, DateTimeOffset.UtcNow));
                archive.WriteAt(position + TarHeader.BlockSize, manifest);
                long end = position + TarHeader.BlockSize + Pad(manifest.Length) + 2 * TarHeader.BlockSize;

                // Two zero blocks end the archive; tar pads it to whole 10 KiB records.
                archive.SetLength((end + RecordSize - 1) / RecordSize * RecordSize);
            }

            /// <summary>The descriptor's length with every number at its widest: no final descriptor is longer.</summary>
            private int ReservedDescriptorLength()
            {
                var widest = new OvfExportSpec { Name = _spec.Name, CpuCount = _spec.CpuCount, MemoryMB = _spec.MemoryMB, Firmware = _spec.Firmware, Guest = _spec.Guest, Controller = _spec.Controller };
                foreach (OvfDisk disk in _spec.Disks)
                {
                    widest.Disks.Add(new OvfDisk { DiskId = disk.DiskId, FileId = disk.FileId, File = disk.File, Format = disk.Format, Capacity = disk.Capacity, Address = disk.Address, FileSize = long.MaxValue, PopulatedSize = long.MaxValue });
                }

                return Encoding.UTF8.GetByteCount(OvfDescriptor.Write(widest));
            }

            /// <summary>Writes disk <paramref name="index"/> as a streamOptimized VMDK at <paramref name="start"/> of <paramref name="output"/>; returns its length.</summary>
            private long WriteDisk(int index, HostFile output, long start, string displayPath)
            {
                ImageChain chain = _chains[index];
                OvfDisk disk = _spec.Disks[index];
                disk.PopulatedSize = PopulatedBytes(chain, _cancel);
                var member = new MemberOutputFile(output, start, displayPath, "SHA256");
                IOvfDiskDriver driver = OvfDisks.Driver(FormatRegistry.Default);
                CreateRequest target = driver.OvfDiskRequest(chain.Size);
                target.TargetFile = member;
                target.SyncOnFlush = false;
                ImageLayer layer = driver.Create(displayPath, target);
                try
                {
                    var options = new ConvertOptions { Compress = true, ThrottleLimit = _request.ThrottleLimit, ReadsInFlight = _request.ReadsInFlight };
                    ConvertOperation.CopyInto(chain, layer, options, new DiskProgress(_progress, index, _chains), _cancel);
                }
                finally
                {
                    // Closing writes the grain directory, footer and end-of-stream marker.
                    layer.Dispose();
                }

                var (length, digest) = member.Finish();
                disk.FileSize = length;
                _digests.Add(new KeyValuePair<string, string>(disk.File, digest));
                return length;
            }
        }

        /// <summary>One disk's copy progress as progress over all the disks of the export.</summary>
        private sealed class DiskProgress : IProgress<OperationProgress>
        {
            private readonly IProgress<OperationProgress> _inner;
            private readonly long _before;
            private readonly long _total;
            private readonly string _phase;

            public DiskProgress(IProgress<OperationProgress> inner, int index, List<ImageChain> chains)
            {
                _inner = inner;
                _before = chains.Take(index).Sum(c => c.Size);
                _total = chains.Sum(c => c.Size);
                _phase = $"Disk {index + 1} of {chains.Count}";
            }

            public void Report(OperationProgress value) => _inner?.Report(new OperationProgress(_phase, _before + value.BytesDone, _total));
        }
    }
}
