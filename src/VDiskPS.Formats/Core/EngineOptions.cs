namespace VDiskPS.Formats
{
    /// <summary>
    /// The engine context an operation runs in: which formats exist (the registry) and how images are
    /// opened (the open policy). Every operation's options and <see cref="ChainOptions"/> derive from it,
    /// so an operation hands its context on whole (<see cref="OpenChain"/>) instead of copying fields.
    /// </summary>
    public abstract class EngineOptions
    {
        /// <summary>The formats images are probed and opened with.</summary>
        public FormatRegistry Registry { get; set; } = FormatRegistry.Default;

        /// <summary>Read even while another process writes the image (qemu-img -U); a writable open ignores it.</summary>
        public bool ShareWithWriters { get; set; }

        /// <summary>Open a child whose recorded parent identity (VMDK parentCID, VHD/VHDX parent id) no longer matches its parent.</summary>
        public bool IgnoreParentMismatch { get; set; }

        /// <summary>Options to open a chain in this context: the top image's <paramref name="format"/> (null: probe), writable or not, with its backing files or (<paramref name="noBacking"/>) without.</summary>
        public ChainOptions OpenChain(DiskFormat? format, bool writable = false, bool noBacking = false) => new ChainOptions
        {
            Format = format,
            Writable = writable,
            NoBacking = noBacking,
            Registry = Registry ?? FormatRegistry.Default,
            ShareWithWriters = ShareWithWriters,
            IgnoreParentMismatch = IgnoreParentMismatch,
        };
    }
}
