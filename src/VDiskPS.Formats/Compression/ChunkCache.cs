using System;

namespace VDiskPS.Formats.Compression
{
    /// <summary>
    /// The last chunk a layer decompressed, so that reads of neighbouring sectors do not decompress it
    /// again (qemu keeps one such buffer per image). Thread-safe; decoding runs outside the lock.
    /// </summary>
    internal sealed class ChunkCache
    {
        private readonly object _lock = new object();
        private long _index = -1;
        private byte[] _data;

        /// <summary>The decompressed chunk <paramref name="index"/>, decoded by <paramref name="decode"/> when not cached.</summary>
        public byte[] Get(long index, Func<long, byte[]> decode)
        {
            lock (_lock)
            {
                if (_index == index)
                {
                    return _data;
                }
            }

            byte[] data = decode(index);
            lock (_lock)
            {
                _index = index;
                _data = data;
            }

            return data;
        }
    }
}
