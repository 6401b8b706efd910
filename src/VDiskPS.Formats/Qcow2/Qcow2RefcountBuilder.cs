using System;
using System.Buffers.Binary;
using System.Collections.Generic;

namespace VDiskPS.Formats.Qcow2
{
    /// <summary>Reference counts per host cluster, stored sparsely in chunks so memory follows the clusters in use (4 bytes each).</summary>
    internal sealed class ClusterCounts
    {
        private const int ChunkBits = 14;
        private readonly Dictionary<long, int[]> _chunks = new Dictionary<long, int[]>();

        public long MaxCluster { get; private set; } = -1;

        public long Get(long cluster)
        {
            return _chunks.TryGetValue(cluster >> ChunkBits, out int[] chunk) ? chunk[cluster & ((1 << ChunkBits) - 1)] : 0;
        }

        public void Add(long cluster, long delta)
        {
            if (!_chunks.TryGetValue(cluster >> ChunkBits, out int[] chunk))
            {
                chunk = new int[1 << ChunkBits];
                _chunks[cluster >> ChunkBits] = chunk;
            }

            // Counts saturate: no real image references a cluster two billion times, and a hostile one must not wrap.
            long value = chunk[cluster & ((1 << ChunkBits) - 1)] + delta;
            chunk[cluster & ((1 << ChunkBits) - 1)] = (int)Math.Max(int.MinValue, Math.Min(int.MaxValue, value));
            if (cluster > MaxCluster)
            {
                MaxCluster = cluster;
            }
        }

        public void AddRange(long firstCluster, long count, long delta = 1)
        {
            for (long c = firstCluster; c < firstCluster + count; c++)
            {
                Add(c, delta);
            }
        }

        /// <summary>Whether any cluster in [first, first + count) has a non-zero count.</summary>
        public bool AnyIn(long first, long count)
        {
            long last = first + count - 1;
            for (long chunkIndex = first >> ChunkBits; chunkIndex <= last >> ChunkBits; chunkIndex++)
            {
                if (!_chunks.TryGetValue(chunkIndex, out int[] chunk))
                {
                    continue;
                }

                long from = Math.Max(first, chunkIndex << ChunkBits);
                long to = Math.Min(last, ((chunkIndex + 1) << ChunkBits) - 1);
                for (long c = from; c <= to; c++)
                {
                    if (chunk[c & ((1 << ChunkBits) - 1)] != 0)
                    {
                        return true;
                    }
                }
            }

            return false;
        }
    }

    /// <summary>
    /// Writes a complete refcount structure (table and blocks) for given counts at the end of the
    /// file, counting itself, the way QEMU's rebuild_refcount_structure does. Used by create, by
    /// repair and by amend of refcount_bits. The caller then points the header at it.
    /// </summary>
    internal static class Qcow2RefcountBuilder
    {
        public static (long TableOffset, int TableClusters, long[] Table) Build(HostFile file, ClusterCounts counts, int clusterBits, int order, long startCluster)
        {
            int cs = 1 << clusterBits;
            int perBlockBits = clusterBits + 3 - order;
            long perBlock = 1L << perBlockBits;
            long perTableCluster = cs / 8;
            long maxRefcount = order == 6 ? long.MaxValue : (1L << (1 << order)) - 1;
            long start = Math.Max(startCluster, counts.MaxCluster + 1);

            // Find the fixed point: the blocks must also count the table and themselves.
            long tableClusters = 1;
            var blocks = new SortedSet<long>();
            while (true)
            {
                blocks.Clear();
                for (long b = 0; b <= counts.MaxCluster >> perBlockBits; b++)
                {
                    if (counts.AnyIn(b << perBlockBits, perBlock))
                    {
                        blocks.Add(b);
                    }
                }

                long structureEnd = start + tableClusters + blocks.Count;
                long previous;
                do
                {
                    previous = blocks.Count;
                    structureEnd = start + tableClusters + blocks.Count;
                    for (long b = start >> perBlockBits; b <= (structureEnd - 1) >> perBlockBits; b++)
                    {
                        blocks.Add(b);
                    }
                }
                while (blocks.Count != previous);

                long neededTable = (blocks.Max + 1 + perTableCluster - 1) / perTableCluster;
                if (neededTable <= tableClusters)
                {
                    break;
                }

                tableClusters = neededTable;
            }

            if (tableClusters * cs > Qcow2Header.MaxRefcountTableBytes)
            {
                throw new ImageNotSupportedException(file.Path, "refcount table", null, "the refcount table would exceed QEMU's 8 MiB limit");
            }

            long tableOffset = start << clusterBits;
            var table = new long[tableClusters * perTableCluster];
            long next = start + tableClusters;
            foreach (long b in blocks)
            {
                table[b] = next << clusterBits;
                next++;
            }

            counts.AddRange(start, next - start);
            var block = new byte[cs];
            foreach (long b in blocks)
            {
                Array.Clear(block, 0, cs);
                long first = b << perBlockBits;
                for (long c = first; c < first + perBlock && c <= counts.MaxCluster; c++)
                {
                    long value = counts.Get(c);
                    if (value == 0)
                    {
                        continue;
                    }

                    if (value > maxRefcount || value < 0)
                    {
                        throw new ImageOptionException(file.Path, "refcount_bits", $"cluster {c} has {value} references, more than {1 << order}-bit refcounts can hold");
                    }

                    Qcow2Refcounts.WriteEntry(block, (int)(c - first), order, value);
                }

                file.WriteAt(table[b], block);
            }

            var raw = new byte[tableClusters * cs];
            for (int i = 0; i < table.Length; i++)
            {
                BinaryPrimitives.WriteUInt64BigEndian(raw.AsSpan(i * 8), (ulong)table[i]);
            }

            file.WriteAt(tableOffset, raw);
            return (tableOffset, (int)tableClusters, table);
        }
    }
}
