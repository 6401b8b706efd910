using System;
using System.Collections.Generic;

namespace VDiskPS.Formats.Qcow2
{
    /// <summary>
    /// A bounded least-recently-used cache of L2 tables, keyed by host offset. Entries are the raw
    /// big-endian words decoded to ulong (two per entry with extended L2). Writers update the cached
    /// table and write it through, so evicting never loses changes. Callers hold the layer's lock.
    /// </summary>
    internal sealed class Qcow2L2Cache
    {
        private const long MaxBytes = 32L << 20;
        private const int MaxTables = 4096;

        private readonly Dictionary<long, LinkedListNode<KeyValuePair<long, ulong[]>>> _map = new Dictionary<long, LinkedListNode<KeyValuePair<long, ulong[]>>>();
        private readonly LinkedList<KeyValuePair<long, ulong[]>> _order = new LinkedList<KeyValuePair<long, ulong[]>>();
        private readonly int _capacity;

        public Qcow2L2Cache(int clusterSize)
        {
            _capacity = (int)Math.Max(16, Math.Min(MaxTables, MaxBytes / clusterSize));
        }

        public bool TryGet(long hostOffset, out ulong[] table)
        {
            if (_map.TryGetValue(hostOffset, out var node))
            {
                _order.Remove(node);
                _order.AddFirst(node);
                table = node.Value.Value;
                return true;
            }

            table = null;
            return false;
        }

        public void Put(long hostOffset, ulong[] table)
        {
            if (_map.TryGetValue(hostOffset, out var existing))
            {
                _order.Remove(existing);
                _map.Remove(hostOffset);
            }

            while (_map.Count >= _capacity)
            {
                var last = _order.Last;
                _order.RemoveLast();
                _map.Remove(last.Value.Key);
            }

            var node = new LinkedListNode<KeyValuePair<long, ulong[]>>(new KeyValuePair<long, ulong[]>(hostOffset, table));
            _order.AddFirst(node);
            _map[hostOffset] = node;
        }

        public void Remove(long hostOffset)
        {
            if (_map.TryGetValue(hostOffset, out var node))
            {
                _order.Remove(node);
                _map.Remove(hostOffset);
            }
        }

        public void Clear()
        {
            _map.Clear();
            _order.Clear();
        }
    }
}
