namespace VDiskPS.Formats
{
    /// <summary>What a run of guest bytes is, in one layer.</summary>
    public enum ExtentKind
    {
        /// <summary>The layer stores data for the run (it may still happen to be zeros).</summary>
        Data,

        /// <summary>The layer says the run reads as zeros without storing data (zero cluster, hole).</summary>
        Zero,

        /// <summary>The layer has nothing for the run: it reads from the backing layer, or as zeros without one.</summary>
        Unallocated,
    }

    /// <summary>
    /// A run of guest bytes with one status, starting at <see cref="GuestOffset"/>. Returned by
    /// <see cref="ImageLayer.GetBlockStatus"/> (one layer; <see cref="Depth"/> 0) and by
    /// <see cref="ImageChain.GetBlockStatus"/> (the layer that answers, at its depth).
    /// </summary>
    public readonly struct BlockStatus
    {
        public BlockStatus(long guestOffset, long length, ExtentKind kind, long hostOffset = -1, bool compressed = false, string hostFile = null, int depth = 0)
        {
            GuestOffset = guestOffset;
            Length = length;
            Kind = kind;
            HostOffset = hostOffset;
            Compressed = compressed;
            HostFile = hostFile;
            Depth = depth;
        }

        public long GuestOffset { get; }

        public long Length { get; }

        public ExtentKind Kind { get; }

        /// <summary>Where the run's bytes are in <see cref="HostFile"/>, contiguous; -1 when not stored plainly.</summary>
        public long HostOffset { get; }

        public bool Compressed { get; }

        /// <summary>The host file holding the data (an extent or data file), or null for the layer's own file.</summary>
        public string HostFile { get; }

        /// <summary>0 for the top layer, 1 for its backing file, and so on.</summary>
        public int Depth { get; }

        public long End => GuestOffset + Length;

        /// <summary>True when the run reads as zeros for certain (zero, or unallocated at the bottom of a chain).</summary>
        public bool ReadsAsZero => Kind != ExtentKind.Data;

        public BlockStatus WithLength(long length) => new BlockStatus(GuestOffset, length, Kind, HostOffset, Compressed, HostFile, Depth);

        public BlockStatus WithDepth(int depth) => new BlockStatus(GuestOffset, Length, Kind, HostOffset, Compressed, HostFile, depth);

        public override string ToString() => $"{GuestOffset}+{Length} {Kind}{(Compressed ? " compressed" : string.Empty)} host={HostOffset} depth={Depth}";
    }
}
