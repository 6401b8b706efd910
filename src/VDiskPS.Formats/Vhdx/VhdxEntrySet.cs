using System.Collections.Generic;

namespace VDiskPS.Formats.Vhdx
{
    /// <summary>A set of BAT indices kept as bits, so a hostile BAT of bad entries costs 1/64 of the BAT itself.</summary>
    internal sealed class VhdxEntrySet
    {
        private ulong[] _words = System.Array.Empty<ulong>();

        public long Count { get; private set; }

        public bool Contains(long index) => index >= 0 && (index >> 6) < _words.Length && (_words[index >> 6] & (1UL << (int)(index & 63))) != 0;

        public void Add(long index, long capacity)
        {
            if (_words.Length == 0)
            {
                _words = new ulong[(capacity + 63) >> 6];
            }

            if (!Contains(index))
            {
                _words[index >> 6] |= 1UL << (int)(index & 63);
                Count++;
            }
        }

        public void Remove(long index)
        {
            if (Contains(index))
            {
                _words[index >> 6] &= ~(1UL << (int)(index & 63));
                Count--;
            }
        }

        public List<long> ToList()
        {
            var list = new List<long>();
            for (long word = 0; word < _words.Length; word++)
            {
                for (int bit = 0; _words[word] != 0 && bit < 64; bit++)
                {
                    if ((_words[word] & (1UL << bit)) != 0)
                    {
                        list.Add((word << 6) + bit);
                    }
                }
            }

            return list;
        }
    }
}
