using System;
using System.Buffers;

namespace VDiskPS.Formats.Luks
{
    /// <summary>
    /// An unlocked LUKS1 container: guest sector N is payload sector N, encrypted with N as its IV. Every
    /// sector is data (the container has no allocation map; a hole in the file decrypts to noise, so a new
    /// container is written with encrypted zeros). Partial sectors are read, decrypted, merged and re-encrypted.
    /// </summary>
    internal sealed class LuksLayer : ImageLayer
    {
        private const int Sector = LuksHeader.SectorSize;
        private const int ReportedCluster = 64 * 1024;
        private const int Chunk = 1 << 20;
        private readonly HostFile _file;
        private readonly LuksVolume _volume;
        private readonly long _payload;
        private readonly object _gate = new object();
        private long _size;

        internal LuksLayer(HostFile file, LuksVolume volume, long payload, long size)
            : base(file.Path, file.CanWrite)
        {
            _file = file;
            _volume = volume;
            _payload = payload;
            _size = size;
        }

        public override DiskFormat Format => LuksDriver.Id;

        public override long Size => _size;

        public override int ClusterSize => ReportedCluster;

        public override DiskType DiskType => DiskType.Fixed;

        /// <summary>Unlocks the container with the ambient password; the guest size is the payload's whole sectors.</summary>
        public static LuksLayer Open(HostFile file)
        {
            byte[] password = ImageSecrets.HasPassword ? ImageSecrets.Password(file.Path) : null;
            LuksVolume volume;
            try
            {
                volume = LuksVolume.Unlock(file, password);
            }
            finally
            {
                if (password != null)
                {
                    Array.Clear(password, 0, password.Length);
                }
            }

            long payload = volume.PayloadOffset;
            return new LuksLayer(file, volume, payload, (file.Length - payload) / Sector * Sector);
        }

        public override BlockStatus GetBlockStatus(long offset, long maxLength)
            => new BlockStatus(offset, Math.Max(1, Math.Min(maxLength, _size - offset)), ExtentKind.Data, _payload + offset);

        public override void Describe(VDiskInfo info)
        {
            info.Encrypted = true;
        }

        public override void Flush() => _file.Flush();

        /// <summary>Extends a new container to <paramref name="size"/> bytes of encrypted zeros.</summary>
        internal void Grow(long size)
        {
            long from = _size;
            _size = size;
            WriteZeroesCore(from, size - from);
        }

        protected override void ReadData(long offset, Span<byte> buffer, BlockStatus status)
        {
            byte[] work = ArrayPool<byte>.Shared.Rent(Chunk + 2 * Sector);
            try
            {
                while (buffer.Length > 0)
                {
                    long start = offset / Sector * Sector;
                    int lead = (int)(offset - start);
                    int n = Math.Min(buffer.Length, Chunk);
                    int span = (lead + n + Sector - 1) / Sector * Sector;
                    ReadSectors(start, work, span);
                    work.AsSpan(lead, n).CopyTo(buffer);
                    buffer = buffer.Slice(n);
                    offset += n;
                }
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(work);
            }
        }

        protected override void WriteCore(long offset, ReadOnlySpan<byte> data)
        {
            byte[] work = ArrayPool<byte>.Shared.Rent(Chunk + 2 * Sector);
            try
            {
                lock (_gate)
                {
                    while (data.Length > 0)
                    {
                        long start = offset / Sector * Sector;
                        int lead = (int)(offset - start);
                        int n = Math.Min(data.Length, Chunk);
                        int span = (lead + n + Sector - 1) / Sector * Sector;
                        if (lead != 0)
                        {
                            ReadSectors(start, work, Sector);
                        }

                        if ((lead + n) % Sector != 0 && (span > Sector || lead == 0))
                        {
                            ReadSectors(start + span - Sector, work, Sector, span - Sector);
                        }

                        data.Slice(0, n).CopyTo(work.AsSpan(lead));
                        _volume.Cipher.Encrypt(start / Sector, work, 0, span);
                        _file.WriteAt(_payload + start, work.AsSpan(0, span));
                        data = data.Slice(n);
                        offset += n;
                    }
                }
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(work);
            }
        }

        protected override void Dispose(bool disposing)
        {
            try
            {
                if (IsWritable)
                {
                    _file.Flush();
                }
            }
            finally
            {
                _volume.Dispose();
                _file.Dispose();
            }
        }

        /// <summary>Reads and decrypts <paramref name="count"/> bytes of whole sectors at guest <paramref name="guest"/> into work[at..].</summary>
        private void ReadSectors(long guest, byte[] work, int count, int at = 0)
        {
            int valid = (int)Math.Max(0, Math.Min(count, _size - guest));
            _file.ReadZeroPadded(_payload + guest, work.AsSpan(at, count));
            _volume.Cipher.Decrypt(guest / Sector, work, at, count);
            if (valid < count)
            {
                Array.Clear(work, at + valid, count - valid);
            }
        }
    }
}
