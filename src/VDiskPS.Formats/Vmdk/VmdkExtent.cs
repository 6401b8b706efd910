using System;

namespace VDiskPS.Formats.Vmdk
{
    /// <summary>Reads the guest bytes below an extent (the parent's, or zeros) for copy-on-write of partial grains.</summary>
    internal delegate void ReadBelow(long extentOffset, Span<byte> buffer);

    /// <summary>
    /// One extent of a VMDK: a run of the virtual disk stored in one file (or nowhere, for ZERO).
    /// Offsets passed to an extent are relative to its start on the virtual disk.
    /// </summary>
    internal abstract class VmdkExtent
    {
        protected VmdkExtent(ExtentLine line, HostFile file)
        {
            Line = line;
            File = file;
        }

        /// <summary>The descriptor line that names the extent.</summary>
        public ExtentLine Line { get; }

        /// <summary>The extent's host file; null for ZERO extents.</summary>
        public HostFile File { get; }

        public long Length => Line.Sectors * SparseHeader.SectorSize;

        /// <summary>qemu-img info's extent "format" when it is not the descriptor type (empty for a monolithic file).</summary>
        public string DescribedType { get; set; }

        /// <summary>Grain size for sparse extents; null where the extent has none.</summary>
        public virtual int? GrainBytes => null;

        public virtual bool Compressed => false;

        /// <summary>The extent is read front to back from a source that reads only so.</summary>
        public virtual bool IsStreamed => false;

        /// <summary>Reads a streamed extent on to the end of its stream (see <see cref="ImageLayer.ReadToEnd"/>).</summary>
        public virtual void ReadToEnd()
        {
        }

        /// <summary>Why the extent cannot be written, or null when it can.</summary>
        public virtual string ReadOnlyReason => null;

        public abstract BlockStatus GetStatus(long offset, long maxLength);

        public abstract void ReadData(long offset, Span<byte> buffer, BlockStatus status);

        public abstract void Write(long offset, ReadOnlySpan<byte> data, ReadBelow below);

        /// <summary>Makes whole grains read as zeros by metadata alone; returns the bytes handled from <paramref name="offset"/> (0: write zeros instead).</summary>
        public virtual long TryWriteZeroGrains(long offset, long length, bool hasParent) => 0;

        public virtual void Flush()
        {
        }
    }

    /// <summary>FLAT and VMFS extents: the bytes at an offset of a plain file.</summary>
    internal sealed class FlatExtent : VmdkExtent
    {
        private readonly long _baseOffset;

        public FlatExtent(ExtentLine line, HostFile file)
            : base(line, file)
        {
            _baseOffset = line.Offset * SparseHeader.SectorSize;
        }

        public override BlockStatus GetStatus(long offset, long maxLength)
        {
            // Holes of a sparse host file read as zeros; reporting them lets convert skip them.
            var allocation = File.QueryAllocation(_baseOffset + offset, maxLength);
            if (allocation == null || allocation.Value.IsData)
            {
                long length = Math.Max(1, Math.Min(maxLength, allocation?.Length ?? maxLength));
                return new BlockStatus(offset, length, ExtentKind.Data, _baseOffset + offset, false, File.Path);
            }

            return new BlockStatus(offset, Math.Max(1, Math.Min(maxLength, allocation.Value.Length)), ExtentKind.Zero);
        }

        public override void ReadData(long offset, Span<byte> buffer, BlockStatus status) => File.ReadZeroPadded(_baseOffset + offset, buffer);

        public override void Write(long offset, ReadOnlySpan<byte> data, ReadBelow below) => File.WriteAt(_baseOffset + offset, data);
    }

    /// <summary>ZERO extents: no file, reads as zeros.</summary>
    internal sealed class ZeroExtent : VmdkExtent
    {
        public ZeroExtent(ExtentLine line)
            : base(line, null)
        {
        }

        public override BlockStatus GetStatus(long offset, long maxLength) => new BlockStatus(offset, maxLength, ExtentKind.Zero);

        public override void ReadData(long offset, Span<byte> buffer, BlockStatus status) => buffer.Clear();

        public override string ReadOnlyReason => "a ZERO extent cannot store data";

        public override void Write(long offset, ReadOnlySpan<byte> data, ReadBelow below)
            => throw new ImageNotSupportedException(null, "extent", null, ReadOnlyReason);
    }
}
