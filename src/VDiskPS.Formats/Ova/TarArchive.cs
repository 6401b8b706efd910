using System;
using System.Collections.Generic;
using System.Text;

namespace VDiskPS.Formats.Ova
{
    /// <summary>A regular file stored in a tar archive: its name and where its bytes lie.</summary>
    public sealed class TarMember
    {
        public TarMember(string name, long headerOffset, long dataOffset, long size)
        {
            Name = name;
            HeaderOffset = headerOffset;
            DataOffset = dataOffset;
            Size = size;
        }

        /// <summary>The name as stored, without a leading "./".</summary>
        public string Name { get; }

        public long HeaderOffset { get; }

        public long DataOffset { get; }

        public long Size { get; }

        public override string ToString() => Name;
    }

    /// <summary>
    /// Lists the regular files of a tar archive (ustar, GNU, and pax headers, as ovftool, VirtualBox and
    /// GNU tar write them) without reading their data. Every size comes from the untrusted headers and
    /// is bounded by the archive's length; extended headers and member counts are capped.
    /// </summary>
    public static class TarArchive
    {
        /// <summary>Members beyond this are refused: an appliance holds a handful.</summary>
        public const int MaxMembers = 10000;

        /// <summary>A pax or GNU long-name record larger than this is refused (they hold a few names).</summary>
        public const int MaxExtendedHeader = 1 << 20;

        /// <summary>True when the block at the start of <paramref name="head"/> is a tar header with a valid checksum.</summary>
        public static bool LooksLikeTar(ReadOnlySpan<byte> head)
            => head.Length >= TarHeader.BlockSize && !TarHeader.IsZero(head.Slice(0, TarHeader.BlockSize)) && TarHeader.ChecksumMatches(head.Slice(0, TarHeader.BlockSize));

        public static IReadOnlyList<TarMember> ReadMembers(HostFile archive)
        {
            var members = new List<TarMember>();
            var block = new byte[TarHeader.BlockSize];
            long length = archive.Length;
            long position = 0;
            string longName = null;
            string paxPath = null;
            long? paxSize = null;
            int headers = 0;
            while (position < length)
            {
                if (length - position < TarHeader.BlockSize)
                {
                    throw new ImageCorruptException(archive.Path, "tar header", position, $"the archive ends {length - position} bytes into a 512-byte header");
                }

                archive.ReadExactly(position, block, "tar header");
                if (TarHeader.IsZero(block))
                {
                    break;
                }

                if (++headers > MaxMembers * 3)
                {
                    throw new ImageCorruptException(archive.Path, "tar header", position, $"the archive has more than {MaxMembers} members");
                }

                if (!TarHeader.ChecksumMatches(block))
                {
                    throw new ImageCorruptException(archive.Path, "tar header checksum", position + TarHeader.ChecksumOffset, "the header's checksum does not match its bytes: this is not a tar archive, or it is damaged");
                }

                long? headerSize = TarHeader.ReadSize(block);
                if (headerSize == null)
                {
                    throw new ImageCorruptException(archive.Path, "tar header size", position + TarHeader.SizeOffset, "the size field is not a number");
                }

                byte type = block[TarHeader.TypeOffset];
                bool regular = type == TarHeader.TypeRegular || type == TarHeader.TypeRegularOld || type == TarHeader.TypeContiguous;
                long size = regular && paxSize.HasValue ? paxSize.Value : headerSize.Value;
                long dataOffset = position + TarHeader.BlockSize;
                if (size > length - dataOffset)
                {
                    string what = regular ? $"member '{paxPath ?? longName ?? TarHeader.ReadName(block)}'" : "tar extended header";
                    throw new ImageCorruptException(archive.Path, "tar header size", position + TarHeader.SizeOffset, $"the {what} is {size} bytes long, past the end of the archive ({length - dataOffset} bytes follow its header)");
                }

                if (type == TarHeader.TypePaxLocal || type == TarHeader.TypeGnuLongName)
                {
                    byte[] data = ReadExtended(archive, dataOffset, size, position);
                    if (type == TarHeader.TypeGnuLongName)
                    {
                        longName = Encoding.UTF8.GetString(data).TrimEnd('\0');
                    }
                    else
                    {
                        ParsePax(archive.Path, data, dataOffset, ref paxPath, ref paxSize);
                    }
                }
                else if (regular)
                {
                    string name = paxPath ?? longName ?? TarHeader.ReadName(block);
                    while (name.StartsWith("./", StringComparison.Ordinal))
                    {
                        name = name.Substring(2);
                    }

                    members.Add(new TarMember(name, position, dataOffset, size));
                    if (members.Count > MaxMembers)
                    {
                        throw new ImageCorruptException(archive.Path, "tar header", position, $"the archive has more than {MaxMembers} members");
                    }

                    longName = null;
                    paxPath = null;
                    paxSize = null;
                }
                else if (type != TarHeader.TypePaxGlobal)
                {
                    // Folders, links and devices carry no file of the package: the extended names were theirs.
                    longName = null;
                    paxPath = null;
                    paxSize = null;
                }

                position = dataOffset + (size + TarHeader.BlockSize - 1) / TarHeader.BlockSize * TarHeader.BlockSize;
            }

            return members;
        }

        private static byte[] ReadExtended(HostFile archive, long offset, long size, long headerOffset)
        {
            if (size > MaxExtendedHeader)
            {
                throw new ImageCorruptException(archive.Path, "tar extended header", headerOffset, $"the extended header is {size} bytes long; at most {MaxExtendedHeader} are accepted");
            }

            var data = new byte[size];
            archive.ReadExactly(offset, data, "tar extended header");
            return data;
        }

        /// <summary>pax records: "LENGTH KEY=VALUE\n", LENGTH counting the bytes of the whole record (POSIX.1-2001 pax).</summary>
        private static void ParsePax(string path, byte[] data, long offset, ref string paxPath, ref long? paxSize)
        {
            int at = 0;
            while (at < data.Length && data[at] != 0)
            {
                int space = Array.IndexOf(data, (byte)' ', at);
                int recordLength = 0;
                bool numeric = space > at && space - at <= 8;
                for (int i = at; numeric && i < space; i++)
                {
                    numeric = data[i] >= (byte)'0' && data[i] <= (byte)'9';
                    recordLength = recordLength * 10 + (data[i] - '0');
                }

                if (!numeric || recordLength <= space - at + 1 || recordLength > data.Length - at || data[at + recordLength - 1] != (byte)'\n')
                {
                    throw new ImageCorruptException(path, "pax extended header", offset + at, "a record is not \"LENGTH KEY=VALUE\\n\"");
                }

                string record = Encoding.UTF8.GetString(data, space + 1, at + recordLength - space - 2);
                int equals = record.IndexOf('=');
                if (equals > 0)
                {
                    string key = record.Substring(0, equals);
                    string value = record.Substring(equals + 1);
                    if (key == "path")
                    {
                        paxPath = value;
                    }
                    else if (key == "size")
                    {
                        if (!long.TryParse(value, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out long size))
                        {
                            throw new ImageCorruptException(path, "pax extended header size", offset + at, $"the size '{value}' is not a number");
                        }

                        paxSize = size;
                    }
                }

                at += recordLength;
            }
        }
    }
}
