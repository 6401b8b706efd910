using System;
using System.Collections.Generic;
using VDiskPS;

namespace VDiskPS.Formats
{
    // Optional abilities of a layer, as in QEMU's BlockDriver table. An operation asks for one with
    // Capability.Require<T>(layer, "what"), which throws "FORMAT does not support WHAT" when absent.

    /// <summary>Change the virtual size.</summary>
    public interface IResizableLayer
    {
        /// <summary>Grows or (with <paramref name="allowShrink"/>) shrinks; shrinking drops data past the new end.</summary>
        void Resize(long newSize, bool allowShrink, Preallocation preallocation);
    }

    public enum RepairMode
    {
        None,
        Leaks,
        All,
    }

    /// <summary>Consistency check and repair (qemu-img check).</summary>
    public interface ICheckableLayer
    {
        VDiskCheckResult Check(RepairMode repair);
    }

    /// <summary>Make runs unallocated again, so they read from the parent (or as zeros).</summary>
    public interface IDiscardableLayer
    {
        void Discard(long offset, long length);
    }

    /// <summary>Rewrite the recorded parent pointer only (rebase -u); data is the caller's concern.</summary>
    public interface IParentChangeableLayer
    {
        /// <summary>Records <paramref name="backing"/> as the parent (null: no parent). <paramref name="parent"/> is the opened new parent, for formats that record its identity.</summary>
        void SetBacking(BackingReference backing, ImageLayer parent);
    }

    /// <summary>
    /// A flag in the image that other tools honour as "do not use", set while an operation rewrites the
    /// content in place, so that an interrupted rewrite is never taken for a finished image.
    /// </summary>
    public interface IIncompleteMarkerLayer
    {
        /// <summary>
        /// Sets the flag durably before the content changes; false when this image has no place for it.
        /// Refuses an image that carries the flag already (its content cannot be told from damage).
        /// </summary>
        bool MarkIncomplete();

        /// <summary>Flushes the content, then clears the flag durably.</summary>
        void ClearIncomplete();
    }

    /// <summary>
    /// A layer that pins its parent's content identity (VMDK parentCID, VHDX parent_linkage), so it would
    /// no longer open once the parent is written. Before a commit writes into the parent, the child
    /// records the identity the parent is going to take beside its current one, so the chain opens,
    /// and reads the same, before, during and after the parent's change.
    /// </summary>
    public interface IParentIdentityLayer
    {
        /// <summary>
        /// Fixes the identity <paramref name="parent"/> (opened writable) takes at its next content change
        /// and records it here, durably (flushed), as accepted beside the parent's current identity. The
        /// parent may take the new identity at once.
        /// </summary>
        void AcceptParentChange(ImageLayer parent);

        /// <summary>
        /// Pins the parent's identity from before <see cref="AcceptParentChange"/> again, durably: this layer
        /// did not follow the change (a commit dropped it from the chain), so it must no longer open over the
        /// changed parent. A layer that follows the change is re-pinned with <see cref="IParentChangeableLayer.SetBacking"/>.
        /// </summary>
        void AbandonParentChange();
    }

    /// <summary>
    /// Write and WriteZeroes may be called from several threads at once for disjoint ranges (the
    /// layer keeps no allocation state, as raw), so a copy can write from all of its readers.
    /// </summary>
    public interface IConcurrentWriteLayer
    {
    }

    /// <summary>Compressed cluster writes; compression is pure and may run on many threads.</summary>
    public interface ICompressedWriteLayer
    {
        /// <summary>The unit that is compressed: a whole cluster/grain, aligned.</summary>
        int CompressionUnit { get; }

        /// <summary>Compresses one unit; returns null when compression does not pay (write it plainly).</summary>
        byte[] Compress(ReadOnlySpan<byte> unit);

        /// <summary>Stores the output of <see cref="Compress"/> for the unit at <paramref name="offset"/>.</summary>
        void WriteCompressed(long offset, byte[] compressed);
    }

    /// <summary>qemu-img amend: change creation options of an existing image.</summary>
    public interface IAmendableLayer
    {
        void Amend(OptionSet options);
    }

    /// <summary>Internal snapshots (qemu-img snapshot).</summary>
    public interface ISnapshotLayer
    {
        IReadOnlyList<VDiskSnapshotInfo> GetSnapshots();

        VDiskSnapshotInfo CreateSnapshot(string name);

        void ApplySnapshot(string idOrName);

        void DeleteSnapshot(string idOrName);

        /// <summary>A read-only view of the disk as it was in the snapshot.</summary>
        ImageLayer OpenSnapshot(string idOrName);
    }

    /// <summary>Persistent dirty bitmaps.</summary>
    public interface IBitmapLayer
    {
        IReadOnlyList<VDiskBitmapInfo> GetBitmaps();

        void AddBitmap(string name, long granularity, bool disabled);

        void RemoveBitmap(string name);

        void ClearBitmap(string name);

        void SetBitmapEnabled(string name, bool enabled);

        void MergeBitmap(string target, ImageLayer source, string sourceName);

        /// <summary>
        /// Whether the bitmap marks the guest bytes at <paramref name="offset"/> dirty; <paramref name="length"/>
        /// gets how far (at most <paramref name="maxLength"/>) that state goes on.
        /// </summary>
        bool GetBitmapRun(string name, long offset, long maxLength, out long length);
    }

    /// <summary>Reclaim zero-filled allocation units in place and shrink the file (Optimize-VDisk).</summary>
    public interface IOptimizableLayer
    {
        /// <summary>Returns the host bytes released: how much shorter the file got plus the holes punched in it.</summary>
        long Optimize(IProgress<OperationProgress> progress, System.Threading.CancellationToken cancel);
    }

    /// <summary>Change the physical sector size the disk reports to the guest (Set-VHD -PhysicalSectorSizeBytes); the data is not touched.</summary>
    public interface IPhysicalSectorSizeLayer
    {
        void SetPhysicalSectorSize(int bytes);
    }

    /// <summary>
    /// Give the host the file space the image does not use (Optimize-VHD -Mode Retrim): punch holes where
    /// the file holds no live block or structure, moving nothing and keeping the file's length.
    /// </summary>
    public interface IRetrimmableLayer
    {
        /// <summary>Returns the host bytes released by the holes punched (0 where the host cannot punch holes).</summary>
        long Retrim(IProgress<OperationProgress> progress, System.Threading.CancellationToken cancel);
    }

    /// <summary>
    /// Give the disk a new unique identifier (Set-VHD -ResetDiskIdentifier), so that a copy can be attached
    /// next to the original. The current identifier is <see cref="VDiskInfo.DiskIdentifier"/>.
    /// </summary>
    public interface IDiskIdentifierLayer
    {
        /// <summary>Records <paramref name="identifier"/> as the disk's identifier; the data is not touched.</summary>
        void SetDiskIdentifier(Guid identifier);
    }

    public static class Capability
    {
        /// <summary>The layer as <typeparamref name="T"/>, or a precise "FORMAT does not support WHAT" error.</summary>
        public static T Require<T>(ImageLayer layer, string what)
            where T : class
        {
            return layer as T ?? throw ImageNotSupportedException.Capability(layer.Format, what, layer.Path);
        }
    }
}
