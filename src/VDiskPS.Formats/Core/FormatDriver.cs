using System;
using System.Collections.Generic;
using System.Linq;
using VDiskPS;

namespace VDiskPS.Formats
{
    /// <summary>How to open one image file.</summary>
    public sealed class OpenOptions
    {
        public bool Writable { get; set; }

        /// <summary>Read even while another process writes the image (qemu-img -U).</summary>
        public bool ShareWithWriters { get; set; }

        /// <summary>Allow extent/data-file/parent paths outside the image's directory tree (absolute, or with "..").</summary>
        public bool AllowExternalPaths { get; set; } = true;

        /// <summary>Allow VMDK extent files outside the descriptor's directory (absolute, or with ".."); refused by default.</summary>
        public bool AllowExternalExtents { get; set; }

        /// <summary>Open a child whose recorded parent identity (VMDK parentCID, VHD/VHDX parent id) does not match.</summary>
        public bool IgnoreParentMismatch { get; set; }

        internal HostAccess Access => Writable ? HostAccess.ReadWrite : ShareWithWriters ? HostAccess.ReadIgnoringWriters : HostAccess.Read;

        public OpenOptions Clone() => (OpenOptions)MemberwiseClone();
    }

    /// <summary>Everything a create needs. Dedicated fields come from cmdlet parameters; <see cref="Options"/> holds the rest.</summary>
    public sealed class CreateRequest
    {
        public long Size { get; set; }

        /// <summary>Fixed or Dynamic; Differencing is implied by <see cref="Backing"/>.</summary>
        public DiskType? Type { get; set; }

        /// <summary>VMDK create type (monolithicSparse, streamOptimized, ...), where the format has subformats.</summary>
        public string Subformat { get; set; }

        /// <summary>The parent to record, or null.</summary>
        public BackingReference Backing { get; set; }

        /// <summary>The opened parent, when <see cref="Backing"/> is set and not -Unsafe (formats read its identity).</summary>
        public ImageLayer BackingLayer { get; set; }

        public Preallocation? Preallocation { get; set; }

        /// <summary>qcow2 cluster, VMDK grain, VHD/VHDX/VDI block size.</summary>
        public long? ClusterSize { get; set; }

        public int? LogicalSectorSize { get; set; }

        public int? PhysicalSectorSize { get; set; }

        public CompressionType? CompressionType { get; set; }

        /// <summary>Encrypt the new image with this scheme ("luks"), where the format can; the password comes from <see cref="ImageSecrets"/>.</summary>
        public string Encryption { get; set; }

        public OptionSet Options { get; set; } = new OptionSet();

        /// <summary>Replace an existing file.</summary>
        public bool Overwrite { get; set; }

        /// <summary>
        /// Flushes wait for the device (true), or leave the data to the OS cache (false: qemu-img
        /// convert's default cache mode, for outputs that are rewritten from scratch on failure).
        /// </summary>
        public bool SyncOnFlush { get; set; } = true;

        /// <summary>
        /// When set, every new file is written under the temporary name this output gives it (the
        /// image records the final names) and the caller renames them into place once complete.
        /// </summary>
        public StagedOutput Staging { get; set; }

        /// <summary>
        /// When set, the image's one file is this byte source (an archive member being written) instead
        /// of a new local file; the layer owns it from then on.
        /// </summary>
        public HostFile TargetFile { get; set; }

        internal bool TargetFileTaken { get; set; }

        /// <summary>What the driver changed from what was asked (a size rounded up, ...), for the caller to show.</summary>
        public IList<string> Warnings { get; } = new List<string>();
    }

    /// <summary>How drivers create the files of a new image.</summary>
    internal static class CreateRequestFiles
    {
        /// <summary>
        /// Creates the file the image calls <paramref name="path"/>: the given <see cref="CreateRequest.TargetFile"/>
        /// for the main file, under its temporary name when staged, else in place. An image that needs
        /// more files than one cannot be written to a given target.
        /// </summary>
        public static HostFile CreateFile(this CreateRequest request, string path)
        {
            if (request.TargetFile != null)
            {
                if (request.TargetFileTaken)
                {
                    throw new ImageNotSupportedException(path, "subformat", null, "this image needs more than one file, but it is written into a single byte source");
                }

                request.TargetFileTaken = true;
                return request.TargetFile;
            }

            return request.Staging != null
                ? HostFile.Create(request.Staging.TemporaryPathFor(path), false, request.SyncOnFlush)
                : HostFile.Create(path, request.Overwrite, request.SyncOnFlush);
        }
    }

    /// <summary>What a driver sees when asked whether a file is its format.</summary>
    public sealed class ProbeContext
    {
        public ProbeContext(string path, byte[] head, byte[] tail, long length)
        {
            Path = path;
            Head = head;
            Tail = tail;
            Length = length;
        }

        public string Path { get; }

        /// <summary>The first bytes of the file (up to 64 KiB).</summary>
        public byte[] Head { get; }

        /// <summary>The last 512 bytes (where a fixed VHD keeps its footer), or empty for short files.</summary>
        public byte[] Tail { get; }

        public long Length { get; }
    }

    /// <summary>
    /// One format, as QEMU's BlockDriver table entry: its identity, extensions, probe, open, and what
    /// differs per format as properties, so that operations never name a format. Creating is the
    /// optional <see cref="ICreatableDriver"/>; a read-only format implements only what it has.
    /// </summary>
    public abstract class FormatDriver
    {
        /// <summary>The format's identity (its lower-case name).</summary>
        public abstract DiskFormat Format { get; }

        /// <summary>The name qemu-img uses for the format (it calls VHD vpc); accepted as -Format too.</summary>
        public virtual string QemuName => Format.Name;

        /// <summary>A line for help and completion: what the format is.</summary>
        public abstract string Description { get; }

        /// <summary>File extensions, with the dot, the first one preferred for new files.</summary>
        public abstract IReadOnlyList<string> Extensions { get; }

        /// <summary>The create options (<see cref="CreateRequest.Options"/>) the format knows, with their types.</summary>
        public virtual IReadOnlyList<CreateOption> CreateOptions => Array.Empty<CreateOption>();

        /// <summary>Names of <see cref="CreateOptions"/>.</summary>
        public IReadOnlyList<string> CreateOptionNames => CreateOptions.Select(o => o.Name).ToList();

        /// <summary>
        /// The file holds the guest's bytes as they are, with no metadata (raw): it is what a file without
        /// any image signature is read as, has no clusters to report, and takes any byte source as a target.
        /// </summary>
        public virtual bool IsPlainData => false;

        /// <summary>
        /// The format can be read front to back from a source that reads only so (<see cref="HostFile.IsSequential"/>):
        /// every other format is refused such a source at opening.
        /// </summary>
        public virtual bool ReadsFrontToBack => false;

        /// <summary>The format distinguishes fixed from dynamic images (VHD's vocabulary), which convert keeps.</summary>
        public virtual bool HasAllocationTypes => false;

        /// <summary>
        /// The format's subformats (-Subformat values); empty when it has none. When the format takes them
        /// as its "subformat" create option they go there, else they are <see cref="CreateRequest.Subformat"/>.
        /// </summary>
        public virtual IReadOnlyList<string> Subformats => Array.Empty<string>();

        /// <summary>
        /// The image can record its parent's format. Where it cannot, but marks a raw parent "do not probe"
        /// (QED), a probed parent may name a further parent, as qemu opens such chains; elsewhere a chain must
        /// record the formats it relies on (a probed raw parent could carry a guest-written header).
        /// </summary>
        public virtual bool RecordsBackingFormat => true;

        /// <summary>qemu-img info --output=json reports the format's fields under "format-specific".</summary>
        public virtual bool HasQemuFormatSpecific => false;

        /// <summary>The Optimize-VDisk mode used when none is given.</summary>
        public virtual OptimizeMode DefaultOptimizeMode => OptimizeMode.Quick;

        /// <summary>Sets what New-VHD would choose for a new image of this format where the request leaves it open.</summary>
        public virtual void ApplyHyperVDefaults(CreateRequest request)
        {
        }

        /// <summary>0: not this format; 1: could be (raw); 100: certain.</summary>
        public abstract int Probe(ProbeContext context);

        /// <summary>Opens the image whose main file is at <paramref name="path"/> (a path or a URL a transport claims).</summary>
        public virtual ImageLayer Open(string path, OpenOptions options) => Open(HostFile.Open(path, options.Access), options);

        /// <summary>
        /// Opens the image stored in <paramref name="file"/>, a byte source the caller opened (an archive
        /// member, a transport): the layer owns it from here, and disposes it when opening fails. Files the
        /// image names beside it (extents, a data file) are looked up against <see cref="HostFile.Path"/>.
        /// </summary>
        public abstract ImageLayer Open(HostFile file, OpenOptions options);

        /// <summary>Runs <paramref name="open"/>, disposing <paramref name="file"/> when it fails (as <see cref="Open(HostFile, OpenOptions)"/> promises).</summary>
        protected static ImageLayer DisposingOnFailure(HostFile file, Func<ImageLayer> open)
        {
            try
            {
                return open();
            }
            catch
            {
                file.Dispose();
                throw;
            }
        }

        public override string ToString() => Format.ToName();
    }

    /// <summary>A format this build can create (and so write): the target side of convert, New-VDisk, measure.</summary>
    public interface ICreatableDriver
    {
        /// <summary>Creates the image and returns it open for writing.</summary>
        ImageLayer Create(string path, CreateRequest request);

        /// <summary>qemu-img measure: space needed for an image of request.Size bytes holding <paramref name="allocatedBytes"/> of data.</summary>
        VDiskMeasurement Measure(CreateRequest request, long allocatedBytes);

        /// <summary>Whether a layer created with <paramref name="request"/> can take compressed writes.</summary>
        bool SupportsCompression(CreateRequest request);
    }

    /// <summary>The type of a create option's value.</summary>
    public enum CreateOptionKind
    {
        Text,
        Size,
        Number,
        Bool,
        Choice,
    }

    /// <summary>One entry of a format's create-option table (qemu-img create -o).</summary>
    public sealed class CreateOption
    {
        public CreateOption(string name, CreateOptionKind kind, string description, params string[] choices)
        {
            Name = name;
            Kind = kind;
            Description = description;
            Choices = choices ?? Array.Empty<string>();
        }

        public string Name { get; }

        public CreateOptionKind Kind { get; }

        public string Description { get; }

        /// <summary>The accepted values of a <see cref="CreateOptionKind.Choice"/> option.</summary>
        public IReadOnlyList<string> Choices { get; }

        public override string ToString() => Name;
    }
}
