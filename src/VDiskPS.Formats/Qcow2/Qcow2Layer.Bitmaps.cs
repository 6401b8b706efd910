using System;
using System.Collections.Generic;
using VDiskPS;

namespace VDiskPS.Formats.Qcow2
{
    /// <summary>Persistent dirty bitmaps (qcow2.rst "Bitmaps"): listing for info and check.</summary>
    internal sealed partial class Qcow2Layer
    {
        private void DescribeBitmaps(VDiskInfo info)
        {
            List<Qcow2Bitmap> bitmaps = Qcow2Bitmap.ReadDirectory(_file, _header);
            info.Bitmaps = bitmaps.Count;
            if (bitmaps.Count == 0)
            {
                return;
            }

            var list = new List<IDictionary<string, object>>();
            foreach (var bitmap in bitmaps)
            {
                var flags = new List<string>();
                if (bitmap.InUse)
                {
                    flags.Add("in-use");
                }

                if (bitmap.Auto)
                {
                    flags.Add("auto");
                }

                list.Add(new SortedDictionary<string, object>(StringComparer.Ordinal)
                {
                    ["name"] = bitmap.Name,
                    ["granularity"] = 1L << bitmap.GranularityBits,
                    ["flags"] = flags.ToArray(),
                });
            }

            info.FormatSpecific["bitmaps"] = list.ToArray();
        }

        /// <summary>The entries of a bitmap's table (offsets of its data clusters), validated for size.</summary>
        private long[] ReadBitmapTable(Qcow2Bitmap bitmap)
        {
            if (bitmap.TableSize == 0)
            {
                return Array.Empty<long>();
            }

            if ((bitmap.TableOffset & ClusterMask) != 0 || bitmap.TableOffset == 0)
            {
                throw new ImageCorruptException(Path, $"bitmap '{bitmap.Name}' table offset", null, $"0x{bitmap.TableOffset:x} is not cluster aligned");
            }

            return ReadL1(_file, bitmap.TableOffset, bitmap.TableSize, $"bitmap '{bitmap.Name}' table");
        }
    }
}
