using System;
using System.Collections.Generic;
using System.Threading;
using System.Threading.Tasks;

namespace VDiskPS.Formats.Http
{
    /// <summary>
    /// An HTTP resource as a read-only <see cref="HostFile"/>. Reads go through a cache of aligned
    /// blocks, each fetched once by one range request; a read that continues the one before it starts
    /// fetching the blocks ahead (read-ahead), over a few connections at once, so a sequential copy
    /// keeps the pipe full. Memory is bounded: at most <see cref="CacheBlocks"/> blocks are kept, and
    /// a read larger than the cache goes straight to the server.
    /// </summary>
    internal sealed class HttpSource : HttpFile
    {
        /// <summary>The unit of caching and of range requests.</summary>
        internal const int BlockSize = 1 << 20;

        /// <summary>Blocks fetched ahead of a sequential reader.</summary>
        internal const int ReadAheadBlocks = 8;

        /// <summary>Requests in flight at once.</summary>
        internal const int Connections = 4;

        /// <summary>Blocks kept (32 MiB).</summary>
        internal const int CacheBlocks = 32;

        private readonly SemaphoreSlim _connections = new SemaphoreSlim(Connections);
        private readonly Dictionary<long, Block> _blocks = new Dictionary<long, Block>();

        // Block buffers given back by evictions, reused by the next fetches: a long copy allocates
        // about as many as the cache holds, not one per block read.
        private readonly Stack<byte[]> _free = new Stack<byte[]>();
        private readonly object _gate = new object();
        private long _clock;

        private HttpSource(string location, HttpRangeReader reader, byte[] first)
            : base(location, reader)
        {
            if (first.Length > 0)
            {
                _blocks[0] = new Block(0, first, first.Length, Task.CompletedTask, prefetched: false);
            }
        }

        public override long Length => Reader.Length;

        private long BlockCount => (Length + BlockSize - 1) / BlockSize;

        /// <summary>The resource by range requests, or, where the server answered the first with the whole file, as a stream of that answer.</summary>
        public static HostFile Open(Uri uri, string location, TransportOptions options)
        {
            HttpRangeReader reader = HttpRangeReader.Open(uri, location, options, Connections, BlockSize, out byte[] first);
            if (reader.WholeBody != null)
            {
                return HttpStreamFile.Open(location, reader);
            }

            return new HttpSource(location, reader, first);
        }

        public override int ReadAt(long offset, Span<byte> buffer)
        {
            if (offset < 0)
            {
                throw new ImageIOException(Path, $"read at negative offset {offset}");
            }

            long length = Length;
            if (offset >= length || buffer.Length == 0)
            {
                return 0;
            }

            int count = (int)Math.Min(buffer.Length, length - offset);
            if (count > CacheBlocks / 2 * BlockSize)
            {
                ReadDirect(offset, buffer.Slice(0, count));
                return count;
            }

            long firstBlock = offset / BlockSize;
            long lastBlock = (offset + count - 1) / BlockSize;
            var blocks = new Block[lastBlock - firstBlock + 1];
            lock (_gate)
            {
                bool sequential = (_blocks.TryGetValue(firstBlock, out Block start) && start.Prefetched) || _blocks.ContainsKey(firstBlock - 1);
                for (long i = firstBlock; i <= lastBlock; i++)
                {
                    Block block = GetOrFetch(i, prefetch: false);
                    block.Users++;
                    blocks[i - firstBlock] = block;
                }

                if (sequential)
                {
                    for (long i = lastBlock + 1; i <= lastBlock + ReadAheadBlocks && i < BlockCount; i++)
                    {
                        GetOrFetch(i, prefetch: true);
                    }
                }
            }

            int done = 0;
            try
            {
                foreach (Block block in blocks)
                {
                    Wait(block.Fetched);
                    int from = (int)(offset + done - (block.Index * BlockSize));
                    int n = Math.Min(block.Length - from, count - done);
                    if (n <= 0)
                    {
                        throw new ImageRemoteException(Path, RemoteFailure.Failed, null, $"the server sent {block.Length} bytes for the block at offset {block.Index * BlockSize}, fewer than its length promised");
                    }

                    block.Buffer.AsSpan(from, n).CopyTo(buffer.Slice(done));
                    done += n;
                }
            }
            finally
            {
                lock (_gate)
                {
                    // Blocks in use are never evicted; those pushed out meanwhile give their buffer back now.
                    foreach (Block block in blocks)
                    {
                        block.Users--;
                        if (block.Users == 0 && block.Evicted)
                        {
                            Recycle(block);
                        }
                    }

                    Evict();
                }
            }

            return done;
        }

        /// <summary>The cached or in-flight block, else a new fetch; evicts the least recently used finished blocks beyond the bound. Under <see cref="_gate"/>.</summary>
        private Block GetOrFetch(long index, bool prefetch)
        {
            if (_blocks.TryGetValue(index, out Block block))
            {
                if (!block.Fetched.IsFaulted && !block.Fetched.IsCanceled)
                {
                    if (!prefetch)
                    {
                        block.LastUse = ++_clock;
                    }

                    return block;
                }

                // A failed fetch is tried again (the reader's retries had run out; a later read may fare better).
                Drop(block);
            }

            long offset = index * BlockSize;
            int length = (int)Math.Min(BlockSize, Length - offset);
            byte[] buffer = _free.Count > 0 ? _free.Pop() : new byte[BlockSize];
            block = new Block(index, buffer, length, FetchAsync(offset, buffer, length), prefetch) { LastUse = ++_clock };
            _blocks[index] = block;
            Evict();
            return block;
        }

        /// <summary>Drops the least recently used finished blocks nobody is reading until the cache is within its bound. Under <see cref="_gate"/>.</summary>
        private void Evict()
        {
            while (_blocks.Count > CacheBlocks)
            {
                Block oldest = null;
                foreach (Block candidate in _blocks.Values)
                {
                    if (candidate.Fetched.IsCompleted && candidate.Users == 0 && (oldest == null || candidate.LastUse < oldest.LastUse))
                    {
                        oldest = candidate;
                    }
                }

                if (oldest == null)
                {
                    // Everything is in flight or being read: the readers waiting for it bound the excess.
                    return;
                }

                Drop(oldest);
            }
        }

        /// <summary>Takes <paramref name="block"/> out of the cache; its buffer is reused once no reader holds it and its fetch has ended. Under <see cref="_gate"/>.</summary>
        private void Drop(Block block)
        {
            _blocks.Remove(block.Index);
            block.Evicted = true;
            if (block.Users == 0)
            {
                Recycle(block);
            }
        }

        /// <summary>Keeps the buffer of an evicted block for the next fetch (a fetch still writing into it keeps it out). Under <see cref="_gate"/>.</summary>
        private void Recycle(Block block)
        {
            if (block.Fetched.IsCompleted && block.Buffer.Length == BlockSize && _free.Count < CacheBlocks)
            {
                _free.Push(block.Buffer);
            }
        }

        private async Task FetchAsync(long offset, byte[] buffer, int length)
        {
            await _connections.WaitAsync(Disposed.Token).ConfigureAwait(false);
            try
            {
                await Reader.ReadAsync(offset, buffer, length, Disposed.Token).ConfigureAwait(false);
            }
            finally
            {
                _connections.Release();
            }
        }

        private void Wait(Task fetched)
        {
            try
            {
                fetched.GetAwaiter().GetResult();
            }
            catch (OperationCanceledException e)
            {
                throw ClosedWhileWaiting(e);
            }
        }

        /// <summary>A read larger than the cache: fetched block by block, several requests at once, and not kept.</summary>
        private void ReadDirect(long offset, Span<byte> buffer)
        {
            var pending = new Queue<(int At, int Length, byte[] Buffer, Task Fetched)>();
            int issued = 0;
            int done = 0;
            while (done < buffer.Length)
            {
                while (issued < buffer.Length && pending.Count < Connections)
                {
                    int n = Math.Min(BlockSize, buffer.Length - issued);
                    byte[] part = new byte[n];
                    pending.Enqueue((issued, n, part, FetchAsync(offset + issued, part, n)));
                    issued += n;
                }

                var (at, length, bytes, fetched) = pending.Dequeue();
                Wait(fetched);
                bytes.AsSpan(0, length).CopyTo(buffer.Slice(at));
                done += length;
            }
        }

        private sealed class Block
        {
            public Block(long index, byte[] buffer, int length, Task fetched, bool prefetched)
            {
                Index = index;
                Buffer = buffer;
                Length = length;
                Fetched = fetched;
                Prefetched = prefetched;
            }

            public long Index { get; }

            /// <summary>Where the block's bytes are (its first <see cref="Length"/>), once <see cref="Fetched"/> has succeeded.</summary>
            public byte[] Buffer { get; }

            public int Length { get; }

            public Task Fetched { get; }

            /// <summary>Fetched ahead of a reader, not for one: a reader reaching it is reading sequentially.</summary>
            public bool Prefetched { get; }

            public long LastUse { get; set; }

            /// <summary>Readers copying out of the block now (it is not evicted while any are). Under the source's gate.</summary>
            public int Users { get; set; }

            /// <summary>Out of the cache; its buffer goes back to the free list once <see cref="Users"/> is 0.</summary>
            public bool Evicted { get; set; }
        }
    }
}
