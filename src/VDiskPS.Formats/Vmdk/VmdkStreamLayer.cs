using System;
using System.Collections.Generic;

namespace VDiskPS.Formats.Vmdk
{
    /// <summary>
    /// A streamOptimized disk being created: append-only, every grain compressed, closed by the grain
    /// directory, footer and end-of-stream marker when disposed. Compression runs on the caller's threads.
    /// </summary>
    internal sealed class VmdkStreamLayer : VmdkLayer, ICompressedWriteLayer
    {
        private readonly SparseExtent _stream;

        public VmdkStreamLayer(string path, VmdkDescriptor descriptor, SparseExtent stream, List<HostFile> files, HostFile descriptorFile, long descriptorOffset, long descriptorCapacity)
            : base(path, true, descriptor, new List<VmdkExtent> { stream }, files, descriptorFile, descriptorOffset, descriptorCapacity, false)
        {
            _stream = stream;
        }

        public int CompressionUnit => _stream.GrainSizeBytes;

        public byte[] Compress(ReadOnlySpan<byte> unit) => _stream.CompressGrain(unit);

        public void WriteCompressed(long offset, byte[] compressed)
        {
            EnsureWritable();
            CheckRange(offset, Math.Min(CompressionUnit, Size - offset));
            _stream.WriteCompressedGrain(offset, compressed);
        }

        protected override void Dispose(bool disposing)
        {
            try
            {
                _stream.FinishStream();
            }
            finally
            {
                base.Dispose(disposing);
            }
        }
    }
}
