using System;
using System.Collections;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using System.Text;
using VDiskPS.Formats;

namespace VDiskPS
{
    /// <summary>
    /// A record inside <see cref="VDiskInfo.FormatSpecific"/> (a VMDK extent, a qcow2 bitmap), keyed as
    /// qemu-img info names its fields. Its text is its JSON, so a serializer that stops at a depth
    /// (ConvertTo-Json's default 2) writes the record's content, not its type name.
    /// </summary>
    public sealed class QemuRecord : SortedDictionary<string, object>
    {
        public QemuRecord()
            : base(StringComparer.Ordinal)
        {
        }

        public override string ToString() => JsonText.Write(this, indent: false);
    }
}

namespace VDiskPS.Formats
{
    /// <summary>The small JSON writer the qemu-compatible output needs: strings, numbers, booleans, lists and records.</summary>
    public static class JsonText
    {
        public static string Write(object value, bool indent)
        {
            var sb = new StringBuilder();
            Write(sb, value, indent, 0);
            return sb.ToString();
        }

        private static void Write(StringBuilder sb, object value, bool indent, int level)
        {
            switch (value)
            {
                case null:
                    sb.Append("null");
                    break;
                case string s:
                    WriteString(sb, s);
                    break;
                case bool b:
                    sb.Append(b ? "true" : "false");
                    break;
                case Guid g:
                    WriteString(sb, g.ToString());
                    break;
                case IDictionary<string, object> record:
                    WriteMembers(sb, record.Select(kv => (kv.Key, kv.Value)), indent, level);
                    break;
                case IEnumerable list:
                    WriteItems(sb, list.Cast<object>(), indent, level);
                    break;
                case IFormattable number when IsNumber(number):
                    sb.Append(number.ToString(null, CultureInfo.InvariantCulture));
                    break;
                default:
                    WriteString(sb, Convert.ToString(value, CultureInfo.InvariantCulture));
                    break;
            }
        }

        /// <summary>Writes members in the order given: qemu's order, where the caller keeps it.</summary>
        internal static void WriteMembers(StringBuilder sb, IEnumerable<(string Key, object Value)> members, bool indent, int level)
        {
            WriteContainer(sb, '{', '}', members.ToList(), indent, level, member =>
            {
                WriteString(sb, member.Key);
                sb.Append(indent ? ": " : ":");
                Write(sb, member.Value, indent, level + 1);
            });
        }

        private static void WriteItems(StringBuilder sb, IEnumerable<object> values, bool indent, int level)
            => WriteContainer(sb, '[', ']', values.ToList(), indent, level, item => Write(sb, item, indent, level + 1));

        private static void WriteContainer<T>(StringBuilder sb, char open, char close, IReadOnlyList<T> items, bool indent, int level, Action<T> writeItem)
        {
            sb.Append(open);
            for (int i = 0; i < items.Count; i++)
            {
                sb.Append(i == 0 ? string.Empty : ",");
                NewLine(sb, indent, level + 1);
                writeItem(items[i]);
            }

            if (items.Count > 0)
            {
                NewLine(sb, indent, level);
            }

            sb.Append(close);
        }

        private static void NewLine(StringBuilder sb, bool indent, int level)
        {
            if (indent)
            {
                sb.Append('\n').Append(' ', level * 4);
            }
        }

        private static bool IsNumber(object value)
            => value is int || value is long || value is uint || value is ulong || value is short || value is ushort || value is byte || value is sbyte || value is double || value is float || value is decimal;

        private static void WriteString(StringBuilder sb, string s)
        {
            sb.Append('"');
            foreach (char c in s)
            {
                switch (c)
                {
                    case '"': sb.Append("\\\""); break;
                    case '\\': sb.Append("\\\\"); break;
                    case '\n': sb.Append("\\n"); break;
                    case '\r': sb.Append("\\r"); break;
                    case '\t': sb.Append("\\t"); break;
                    default:
                        if (c < 0x20)
                        {
                            sb.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                        }
                        else
                        {
                            sb.Append(c);
                        }

                        break;
                }
            }

            sb.Append('"');
        }
    }

    /// <summary>
    /// qemu-img info --output=json of one image: the same field names, and the same values, for the
    /// fields qemu-img 7.2 writes for that format (QAPI ImageInfo; format-specific data only where
    /// qemu's driver has some: qcow2 and vmdk).
    /// </summary>
    public static class QemuImageInfo
    {
        public static string Json(string path, DiskFormat? format = null, bool shareWithWriters = false, bool ignoreParentMismatch = false)
        {
            using (var layer = FormatRegistry.Default.Open(path, format, new OpenOptions { ShareWithWriters = shareWithWriters, IgnoreParentMismatch = ignoreParentMismatch }))
            {
                VDiskInfo info = ImageInspector.Describe(layer);
                IReadOnlyList<VDiskSnapshotInfo> snapshots = layer is ISnapshotLayer withSnapshots ? withSnapshots.GetSnapshots() : Array.Empty<VDiskSnapshotInfo>();
                long? allocated = Allocated(layer.HostFiles);
                return Json(info, layer.Format, snapshots, allocated);
            }
        }

        private static long? Allocated(IEnumerable<string> files)
        {
            long total = 0;
            foreach (string file in files.Distinct(ImageChain.PathComparer))
            {
                long? bytes = LocalFile.AllocatedBytes(file);
                if (!bytes.HasValue)
                {
                    return null;
                }

                total += bytes.Value;
            }

            return total;
        }

        private static string Json(VDiskInfo info, DiskFormat format, IReadOnlyList<VDiskSnapshotInfo> snapshots, long? allocated)
        {
            FormatDriver driver = FormatRegistry.Default.Get(format);
            var members = new List<(string, object)>
            {
                ("filename", info.Path),
                ("format", format.ToQemuName()),
                ("dirty-flag", info.Dirty),
            };
            if (allocated.HasValue)
            {
                members.Add(("actual-size", allocated.Value));
            }

            members.Add(("virtual-size", info.Size));
            if (info.ClusterSize > 0 && !driver.IsPlainData)
            {
                members.Add(("cluster-size", info.ClusterSize));
            }

            if (info.Encrypted)
            {
                members.Add(("encrypted", true));
            }

            if (!string.IsNullOrEmpty(info.BackingFile))
            {
                members.Add(("backing-filename", info.BackingFile));
                members.Add(("full-backing-filename", info.ParentFullPath ?? BackingReference.ToPortable(System.IO.Path.Combine(System.IO.Path.GetDirectoryName(info.Path) ?? string.Empty, info.BackingFile))));
                if (!string.IsNullOrEmpty(info.ParentFormat))
                {
                    members.Add(("backing-filename-format", FormatRegistry.Default.Parse(info.ParentFormat).ToQemuName()));
                }
            }

            if (snapshots.Count > 0)
            {
                members.Add(("snapshots", snapshots.Select(Snapshot).ToList()));
            }

            if (driver.HasQemuFormatSpecific && info.FormatSpecific.Count > 0)
            {
                var data = new QemuRecord();
                foreach (var kv in info.FormatSpecific)
                {
                    data[kv.Key] = kv.Value;
                }

                members.Add(("format-specific", new Dictionary<string, object> { ["type"] = format.ToQemuName(), ["data"] = data }));
            }

            var sb = new StringBuilder();
            JsonText.WriteMembers(sb, members, indent: true, level: 0);
            return sb.ToString();
        }

        private static QemuRecord Snapshot(VDiskSnapshotInfo snapshot)
        {
            long dateSeconds = (long)Math.Floor((snapshot.Date - new DateTime(1970, 1, 1, 0, 0, 0, DateTimeKind.Utc)).TotalSeconds);
            var record = new QemuRecord
            {
                ["id"] = snapshot.Id,
                ["name"] = snapshot.Name,
                ["vm-state-size"] = snapshot.VmStateSize,
                ["date-sec"] = dateSeconds,
                ["date-nsec"] = snapshot.DateNanoseconds,
                ["vm-clock-sec"] = snapshot.VmClockNanoseconds / 1_000_000_000,
                ["vm-clock-nsec"] = snapshot.VmClockNanoseconds % 1_000_000_000,
            };
            if (snapshot.Icount.HasValue)
            {
                record["icount"] = snapshot.Icount.Value;
            }

            return record;
        }
    }
}
