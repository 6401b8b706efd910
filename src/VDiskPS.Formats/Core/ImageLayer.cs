using System;
using System.Buffers;
using System.Collections.Generic;
using System.IO;
using VDiskPS;

namespace VDiskPS.Formats
{
    /// <summary>The parent (backing file) an image records.</summary>
    public sealed class BackingReference
    {
        public BackingReference(string recordedPath, DiskFormat? format)
        {
            RecordedPath = recordedPath ?? throw new ArgumentNullException(nameof(recordedPath));
            Format = format;
        }

        /// <summary>The path exactly as the image stores it (may be relative to the image's directory).</summary>
        public string RecordedPath { get; }

        /// <summary>The parent's format as recorded in the image, or null when it must be probed.</summary>
        public DiskFormat? Format { get; }

        /// <summary>The recorded path with '/' separators: the form qcow2 and VMDK record, which qemu, VMware and Windows all follow.</summary>
        public string PortablePath => ToPortable(RecordedPath);

        /// <summary>Paths a format records besides the main one (VHD/VHDX keep relative and absolute forms).</summary>
        public IReadOnlyList<string> AlternatePaths { get; set; } = Array.Empty<string>();

        /// <summary>Resolves the recorded path against the directory of the image that names it.</summary>
        public string Resolve(string childPath) => Transports.Resolve(childPath, Checked(childPath, RecordedPath), ResolveAgainst);

        /// <summary>The first of the recorded paths (main, then alternates) that exists, resolved; else the main one.</summary>
        public string ResolveExisting(string childPath)
        {
            string main = Resolve(childPath);
            if (Transports.IsRemote(main) || File.Exists(main))
            {
                return main;
            }

            foreach (string alt in AlternatePaths)
            {
                string candidate = Transports.Resolve(childPath, Checked(childPath, alt), ResolveAgainst);
                if (!Transports.IsRemote(candidate) && File.Exists(candidate))
                {
                    return candidate;
                }
            }

            return main;
        }

        internal static string ToPortable(string path) => path?.Replace('\\', '/');

        /// <summary>A recorded path with a NUL character names no file: the image is damaged.</summary>
        private static string Checked(string childPath, string recorded)
        {
            int nul = recorded.IndexOf('\0');
            if (nul >= 0)
            {
                throw new ImageCorruptException(childPath, "backing file name", null, $"the recorded parent path has a NUL character at position {nul}");
            }

            return recorded;
        }

        internal static string ResolveAgainst(string directory, string recorded)
        {
            // Windows-style separators recorded by Hyper-V/VMware work on Unix too.
            string normalized = System.IO.Path.DirectorySeparatorChar == '/' ? recorded.Replace('\\', '/') : recorded;
            if (normalized.StartsWith("file:", StringComparison.OrdinalIgnoreCase))
            {
                normalized = normalized.Substring(5);
            }

            return System.IO.Path.GetFullPath(System.IO.Path.IsPathRooted(normalized) ? normalized : System.IO.Path.Combine(directory, normalized));
        }

        public override string ToString() => Format.HasValue ? $"{RecordedPath} ({Format.Value.ToName()})" : RecordedPath;
    }

    /// <summary>
    /// One image file (plus its extents or data file): the format driver's view of a layer. Reads of
    /// unallocated runs fall through to <see cref="Parent"/>, or read as zeros without one. Reads are
    /// thread-safe; writes are issued by one thread at a time.
    /// Optional abilities are the capability interfaces in Capabilities.cs.
    /// </summary>
    public abstract class ImageLayer : IDisposable
    {
        private bool _disposed;

        protected ImageLayer(string path, bool writable)
        {
            Path = Transports.GetFullLocation(path);
            IsWritable = writable;
        }

        /// <summary>Full path of the image's main file (the descriptor for a multi-file VMDK).</summary>
        public string Path { get; }

        public abstract DiskFormat Format { get; }

        /// <summary>Virtual size in bytes.</summary>
        public abstract long Size { get; }

        public bool IsWritable { get; }

        /// <summary>Allocation unit: qcow2 cluster, VMDK grain, VHD/VHDX/VDI block. Raw reports 64 KiB.</summary>
        public abstract int ClusterSize { get; }

        public virtual DiskType DiskType => Backing != null ? DiskType.Differencing : DiskType.Dynamic;

        /// <summary>The parent the image records, or null.</summary>
        public virtual BackingReference Backing => null;

        /// <summary>
        /// The opened parent; reads of unallocated runs, and the copy-on-write of a partial cluster, go there.
        /// A layer never opens or sets it: <see cref="ImageChain"/> composes layers, in one place
        /// (its Stack methods and its own opening).
        /// </summary>
        public ImageLayer Parent { get; private set; }

        /// <summary>Only <see cref="ImageChain"/> calls this (a test checks that no other source file does).</summary>
        internal void LinkParent(ImageLayer parent) => Parent = parent;

        /// <summary>Every host file the image consists of (for FileSize, and deletion on failure).</summary>
        public virtual IReadOnlyList<string> HostFiles => new[] { Path };

        /// <summary>
        /// The layer is read from a source that goes front to back only (<see cref="HostFile.IsSequential"/>):
        /// reads must come in increasing order (a little out of order at most), so what would need the
        /// whole image out of order (a walk of its block map for Get-VDisk) is not attempted.
        /// </summary>
        public virtual bool IsStreamed => false;

        /// <summary>
        /// Reads a <see cref="IsStreamed"/> layer on to the end of its stream, checking what lies after the
        /// last byte copied (a structure out of order is an error there, never dropped); nothing elsewhere.
        /// </summary>
        public virtual void ReadToEnd()
        {
        }

        public virtual int LogicalSectorSize => 512;

        public virtual int PhysicalSectorSize => 512;

        /// <summary>Reads guest bytes; runs this layer lacks come from the parent or read as zeros.</summary>
        public virtual void Read(long offset, Span<byte> buffer)
        {
            CheckRange(offset, buffer.Length);
            while (buffer.Length > 0)
            {
                BlockStatus status = GetBlockStatus(offset, buffer.Length);
                int n = (int)Math.Min(status.Length, buffer.Length);
                if (n <= 0)
                {
                    throw new ImageCorruptException(Path, "block status", offset, "the format returned an empty run");
                }

                Span<byte> part = buffer.Slice(0, n);
                switch (status.Kind)
                {
                    case ExtentKind.Data:
                        ReadData(offset, part, status);
                        break;
                    case ExtentKind.Zero:
                        part.Clear();
                        break;
                    default:
                        ReadFromParent(offset, part);
                        break;
                }

                offset += n;
                buffer = buffer.Slice(n);
            }
        }

        /// <summary>
        /// The status of the run starting at <paramref name="offset"/>, in this layer only, at most
        /// <paramref name="maxLength"/> bytes long (and never past <see cref="Size"/>). Formats merge
        /// adjacent clusters of one kind so that callers walk an image in few calls.
        /// </summary>
        public abstract BlockStatus GetBlockStatus(long offset, long maxLength);

        /// <summary>Writes guest bytes. Partial clusters over a parent copy the rest from it.</summary>
        public void Write(long offset, ReadOnlySpan<byte> data)
        {
            EnsureWritable();
            CheckRange(offset, data.Length);
            if (data.Length > 0)
            {
                WriteCore(offset, data);
            }
        }

        /// <summary>Makes the run read as zeros, using the format's zero markers where it has them.</summary>
        public void WriteZeroes(long offset, long length)
        {
            EnsureWritable();
            CheckRange(offset, length);
            if (length > 0)
            {
                WriteZeroesCore(offset, length);
            }
        }

        public virtual void Flush()
        {
        }

        /// <summary>Fills the format-specific fields of an info object.</summary>
        public virtual void Describe(VDiskInfo info)
        {
        }

        public void Dispose()
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            Dispose(true);
            GC.SuppressFinalize(this);
        }

        /// <summary>Reads a run stored in this layer (status.Kind is Data).</summary>
        protected abstract void ReadData(long offset, Span<byte> buffer, BlockStatus status);

        /// <summary>
        /// Writes guest bytes into this layer. Writing is optional, as creating is (<see cref="ICreatableDriver"/>):
        /// a read-only format leaves this out, and its layers are never opened writable.
        /// </summary>
        protected virtual void WriteCore(long offset, ReadOnlySpan<byte> data)
            => throw ImageNotSupportedException.Capability(Format, "writing", Path);

        protected virtual void WriteZeroesCore(long offset, long length)
        {
            byte[] zeros = ArrayPool<byte>.Shared.Rent((int)Math.Min(length, 1 << 20));
            try
            {
                Array.Clear(zeros, 0, zeros.Length);
                while (length > 0)
                {
                    int n = (int)Math.Min(length, zeros.Length);
                    WriteCore(offset, zeros.AsSpan(0, n));
                    offset += n;
                    length -= n;
                }
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(zeros);
            }
        }

        /// <summary>Reads from the parent, zero past its end or without one.</summary>
        protected void ReadFromParent(long offset, Span<byte> buffer)
        {
            ImageLayer parent = Parent;
            if (parent == null || offset >= parent.Size)
            {
                buffer.Clear();
                return;
            }

            int fromParent = (int)Math.Min(buffer.Length, parent.Size - offset);
            parent.Read(offset, buffer.Slice(0, fromParent));
            buffer.Slice(fromParent).Clear();
        }

        protected void EnsureWritable()
        {
            if (_disposed)
            {
                throw new ObjectDisposedException(GetType().Name);
            }

            if (!IsWritable)
            {
                throw new ImageIOException(Path, "the image is open read-only");
            }
        }

        protected void CheckRange(long offset, long length)
        {
            if (offset < 0 || length < 0 || offset > Size - length)
            {
                throw new ArgumentOutOfRangeException(nameof(offset), $"{Path}: range {offset}+{length} is outside the virtual size {Size}");
            }
        }

        protected virtual void Dispose(bool disposing)
        {
        }
    }
}
