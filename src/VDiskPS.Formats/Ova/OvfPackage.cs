using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Threading;

namespace VDiskPS.Formats.Ova
{
    /// <summary>
    /// An OVF package opened for reading: an .ova (a tar archive holding the descriptor, the disks and
    /// the manifest) or an .ovf with its files beside it. Its disks open beneath any format straight
    /// from the archive, through a window over their member; the manifest, when present, is checked for
    /// the descriptor on opening and for a disk as a conversion reads it.
    /// </summary>
    public sealed class OvfPackage : IDisposable
    {
        private readonly HostFile _archive;
        private readonly IReadOnlyList<TarMember> _members;
        private readonly Dictionary<string, (string Algorithm, string Digest)> _manifest;
        private readonly HostAccess _access;

        private OvfPackage(string path, HostFile archive, IReadOnlyList<TarMember> members, OvfVirtualMachine machine, Dictionary<string, (string, string)> manifest, HostAccess access)
        {
            Path = path;
            _archive = archive;
            _members = members;
            Machine = machine;
            _manifest = manifest;
            _access = access;
        }

        /// <summary>The .ova or .ovf file.</summary>
        public string Path { get; }

        /// <summary>The virtual machine the descriptor describes, with its disks.</summary>
        public OvfVirtualMachine Machine { get; }

        /// <summary>Whether the package has a manifest.</summary>
        public bool HasManifest => _manifest != null;

        /// <summary>The names of the archive's files, in archive order (the .ovf's files for a folder package).</summary>
        public IReadOnlyList<string> Files => _members != null ? _members.Select(m => m.Name).ToList() : Machine.Disks.Select(d => d.File).Where(f => f != null).ToList();

        /// <summary>True for a file an OVF package is (by its .ova or .ovf extension).</summary>
        public static bool IsPackage(string path) => IsArchiveName(path) || IsDescriptorName(path);

        /// <summary>True for a package by its name, or for a tar archive whose first member is an OVF descriptor.</summary>
        internal static bool IsPackage(string path, byte[] head)
        {
            if (IsPackage(path))
            {
                return true;
            }

            return TarArchive.LooksLikeTar(head) && TarHeader.ReadName(head).EndsWith(".ovf", StringComparison.OrdinalIgnoreCase);
        }

        /// <summary>The refusal for a package opened as if it were one disk image.</summary>
        internal static ImageNotSupportedException NotAnImage(string path)
            => new ImageNotSupportedException(path, "format", 0, "the file is an OVF package (an appliance), not a disk image: each of its disks is opened as a member of the package");

        public static OvfPackage Open(string path, bool shareWithWriters = false)
        {
            string full = Transports.GetFullLocation(path);
            HostAccess access = shareWithWriters ? HostAccess.ReadIgnoringWriters : HostAccess.Read;
            if (IsDescriptorName(full))
            {
                byte[] descriptor;
                using (HostFile file = HostFile.Open(full, access))
                {
                    descriptor = ReadBounded(file, 0, file.Length, OvfDescriptor.MaxSize, full, "OVF descriptor");
                }

                string manifestPath = Beside(full, System.IO.Path.ChangeExtension(Transports.FileNameOf(full), ".mf"));
                Dictionary<string, (string, string)> manifest = null;
                using (HostFile file = OpenIfPresent(manifestPath, access))
                {
                    if (file != null)
                    {
                        manifest = OvfManifest.Parse(ReadBounded(file, 0, file.Length, OvfManifest.MaxSize, manifestPath, "manifest"), manifestPath);
                    }
                }

                OvfVirtualMachine machine = OvfDescriptor.Parse(descriptor, full);
                machine.Path = full;
                var package = new OvfPackage(full, null, null, machine, manifest, access);
                package.CheckWhole(System.IO.Path.GetFileName(full), descriptor);
                return package;
            }

            HostFile archive = HostFile.Open(full, access);
            try
            {
                if (archive.IsSequential)
                {
                    // The manifest comes after the disks, and a disk's member is found by the headers before it.
                    throw archive.RandomAccessRefused();
                }

                IReadOnlyList<TarMember> members = TarArchive.ReadMembers(archive);
                List<TarMember> descriptors = members.Where(m => IsDescriptorName(m.Name) && m.Name.IndexOf('/') < 0).ToList();
                if (descriptors.Count != 1)
                {
                    throw new ImageCorruptException(full, "OVF descriptor", null, descriptors.Count == 0
                        ? $"the archive holds no .ovf descriptor (its members: {Describe(members)})"
                        : $"the archive holds {descriptors.Count} .ovf descriptors ({string.Join(", ", descriptors.Select(d => d.Name))}); an OVA has one");
                }

                TarMember descriptorMember = descriptors[0];
                byte[] descriptorBytes = ReadBounded(archive, descriptorMember.DataOffset, descriptorMember.Size, OvfDescriptor.MaxSize, full, $"member '{descriptorMember.Name}'");
                TarMember manifestMember = members.FirstOrDefault(m => string.Equals(m.Name, System.IO.Path.ChangeExtension(descriptorMember.Name, ".mf"), StringComparison.Ordinal))
                    ?? members.FirstOrDefault(m => m.Name.EndsWith(".mf", StringComparison.OrdinalIgnoreCase));
                Dictionary<string, (string, string)> manifest = manifestMember == null ? null
                    : OvfManifest.Parse(ReadBounded(archive, manifestMember.DataOffset, manifestMember.Size, OvfManifest.MaxSize, full, $"member '{manifestMember.Name}'"), full + "/" + manifestMember.Name);
                OvfVirtualMachine machine = OvfDescriptor.Parse(descriptorBytes, full + "/" + descriptorMember.Name);
                machine.Path = full;
                var package = new OvfPackage(full, archive, members, machine, manifest, access);
                package.CheckWhole(descriptorMember.Name, descriptorBytes);
                return package;
            }
            catch
            {
                archive.Dispose();
                throw;
            }
        }

        /// <summary>
        /// The disk stored in <paramref name="member"/> (a file name or a disk id), or with none given the
        /// package's only disk; several disks and no choice is an error listing them.
        /// </summary>
        public OvfDisk SelectDisk(string member)
        {
            var disks = Machine.Disks.Where(d => d.File != null).ToList();
            if (string.IsNullOrEmpty(member))
            {
                if (disks.Count == 1)
                {
                    return disks[0];
                }

                throw new ImageOptionException(Path, "member", disks.Count == 0
                    ? "the package describes no disk stored in a file"
                    : $"the package holds {disks.Count} disks ({string.Join(", ", disks.Select(d => d.File))}); name the one to use");
            }

            return disks.FirstOrDefault(d => string.Equals(d.File, member, StringComparison.Ordinal) || string.Equals(d.DiskId, member, StringComparison.Ordinal))
                ?? disks.FirstOrDefault(d => string.Equals(d.File, member, StringComparison.OrdinalIgnoreCase))
                ?? throw new ImageOptionException(Path, "member", $"the package has no disk '{member}' (its disks: {string.Join(", ", disks.Select(d => d.File))})");
        }

        /// <summary>
        /// Opens <paramref name="disk"/> beneath its format, read-only. With <paramref name="verify"/> and a
        /// manifest entry for its file, the returned check (else null) compares the digest of what was read.
        /// </summary>
        public ImageLayer OpenDisk(OvfDisk disk, DiskFormat? format, bool verify, out Action check)
        {
            check = null;
            WindowFile window = OpenFile(disk.File);
            if (verify && _manifest != null && _manifest.TryGetValue(disk.File, out var expected))
            {
                window.Digest = new MemberDigest(expected.Algorithm, window.Path);
                WindowFile hashed = window;
                string name = disk.File;
                check = () =>
                {
                    string actual = hashed.FinishDigest();
                    if (!string.Equals(actual, expected.Digest, StringComparison.Ordinal))
                    {
                        throw Mismatch(name, expected.Algorithm, actual, expected.Digest);
                    }
                };
            }

            ImageLayer layer = FormatRegistry.Default.Open(window, format, new OpenOptions { ShareWithWriters = _access == HostAccess.ReadIgnoringWriters, AllowExternalExtents = false });
            if (layer.Backing != null)
            {
                layer.Dispose();
                throw new ImageNotSupportedException(Path, $"member '{disk.File}'", null, $"the disk names a backing file ('{layer.Backing.RecordedPath}'); a disk of a package must stand alone");
            }

            return layer;
        }

        /// <summary>One info object per disk, as Get-VDisk gives for an image: Path is the package, Member and DiskId say which disk.</summary>
        public IReadOnlyList<VDiskInfo> DescribeDisks(DiskFormat? format = null)
        {
            var result = new List<VDiskInfo>();
            foreach (OvfDisk disk in Machine.Disks.Where(d => d.File != null))
            {
                using (ImageLayer layer = OpenDisk(disk, format, false, out _))
                {
                    VDiskInfo info = ImageInspector.Describe(layer);
                    info.Path = Path;
                    info.Member = disk.File;
                    info.DiskId = disk.DiskId;
                    info.FileSize = FileLength(disk.File);
                    result.Add(info);
                }
            }

            return result;
        }

        /// <summary>
        /// Converts one disk straight out of the package into <paramref name="destination"/>. With a manifest,
        /// the member is hashed front to back as the conversion reads it (the bytes it skips, such as grain
        /// tables and markers, are read for the digest as the reads pass them, the rest at the end), and a
        /// mismatch abandons the output before it is renamed into place.
        /// </summary>
        public void Convert(string member, string destination, ConvertOptions options, IProgress<OperationProgress> progress = null, CancellationToken cancel = default)
        {
            OvfDisk disk = SelectDisk(member);
            if (ImageChain.PathComparer.Equals(Transports.GetFullLocation(destination), Path))
            {
                throw new ImageOptionException(destination, "destination", "the destination is the package itself");
            }

            using (ImageLayer layer = OpenDisk(disk, options.SourceFormat, true, out Action check))
            {
                ImageChain chain = ImageChain.FromLayers(new[] { layer });
                options.VerifySource = check;
                try
                {
                    ConvertOperation.Run(chain, destination, options, progress, cancel);
                }
                finally
                {
                    options.VerifySource = null;
                }
            }
        }

        public void Dispose() => _archive?.Dispose();

        internal static bool IsArchiveName(string path) => string.Equals(System.IO.Path.GetExtension(Transports.FileNameOf(path)), ".ova", StringComparison.OrdinalIgnoreCase);

        internal static bool IsDescriptorName(string path) => string.Equals(System.IO.Path.GetExtension(Transports.FileNameOf(path)), ".ovf", StringComparison.OrdinalIgnoreCase);

        /// <summary>A window over the file the package calls <paramref name="name"/>: a member of the archive, or the file beside the descriptor.</summary>
        private WindowFile OpenFile(string name)
        {
            if (_members != null)
            {
                TarMember entry = FindMember(name);
                return new WindowFile(_archive, entry.DataOffset, entry.Size, Path + "/" + entry.Name, false);
            }

            string local = ResolveBeside(name);
            HostFile file = HostFile.Open(local, _access);
            try
            {
                return new WindowFile(file, 0, file.Length, local, true);
            }
            catch
            {
                file.Dispose();
                throw;
            }
        }

        private long FileLength(string name)
        {
            if (_members != null)
            {
                return FindMember(name).Size;
            }

            using (HostFile file = HostFile.Open(ResolveBeside(name), _access))
            {
                return file.Length;
            }
        }

        private TarMember FindMember(string name)
            => _members.FirstOrDefault(m => string.Equals(m.Name, name, StringComparison.Ordinal))
               ?? throw new ImageCorruptException(Path, "References", null, $"the descriptor names the file '{name}', which the archive does not hold (its members: {Describe(_members)})");

        /// <summary>A file named by a folder package's descriptor: beside it, never outside its folder.</summary>
        private string ResolveBeside(string name)
        {
            if (Transports.IsRemote(name) || System.IO.Path.IsPathRooted(name) || name.Replace('\\', '/').Split('/').Contains(".."))
            {
                throw new ImageNotSupportedException(Path, "References", null, $"the file '{name}' lies outside the package's folder; only files beside the descriptor are read");
            }

            string full = Beside(Path, name);
            if (!Transports.IsRemote(full) && !File.Exists(full))
            {
                throw new ImageIOException(full, $"the file '{name}' named by the descriptor {Path} does not exist");
            }

            return full;
        }

        /// <summary>The location of <paramref name="name"/> in the folder of <paramref name="location"/>: a path beside a local file, a URL beside a URL.</summary>
        private static string Beside(string location, string name)
            => Transports.Resolve(location, name, BackingReference.ResolveAgainst);

        /// <summary>The file at <paramref name="location"/>, or null where there is none (a local file missing, a server's 404).</summary>
        private static HostFile OpenIfPresent(string location, HostAccess access)
        {
            if (!Transports.IsRemote(location))
            {
                return File.Exists(location) ? HostFile.Open(location, access) : null;
            }

            try
            {
                return HostFile.Open(location, access);
            }
            catch (ImageRemoteException e) when (e.Failure == RemoteFailure.NotFound)
            {
                return null;
            }
        }

        /// <summary>Checks a file read whole (the descriptor) against the manifest.</summary>
        private void CheckWhole(string name, byte[] bytes)
        {
            if (_manifest == null || !_manifest.TryGetValue(name, out var expected))
            {
                return;
            }

            using (var digest = new MemberDigest(expected.Algorithm, Path))
            {
                digest.ObserveWrite(0, bytes);
                string actual = digest.Finish(bytes.Length, null);
                if (!string.Equals(actual, expected.Digest, StringComparison.Ordinal))
                {
                    throw Mismatch(name, expected.Algorithm, actual, expected.Digest);
                }
            }
        }

        private ImageCorruptException Mismatch(string name, string algorithm, string actual, string expected)
            => new ImageCorruptException(Path, $"member '{name}'", null, $"its {algorithm} digest is {actual}, but the manifest records {expected}: the file is damaged or was changed");

        private static string Describe(IReadOnlyList<TarMember> members)
            => members.Count == 0 ? "none" : string.Join(", ", members.Take(20).Select(m => m.Name)) + (members.Count > 20 ? ", ..." : string.Empty);

        private static byte[] ReadBounded(HostFile file, long offset, long length, int limit, string path, string field)
        {
            if (length > limit)
            {
                throw new ImageCorruptException(path, field, offset, $"the {field} is {length} bytes long; at most {limit} are accepted");
            }

            var bytes = new byte[length];
            file.ReadExactly(offset, bytes, field);
            return bytes;
        }
    }
}
