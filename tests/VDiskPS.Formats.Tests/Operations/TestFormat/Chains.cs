using System.IO;

namespace VDiskPS.Formats.Tests.Operations.TestFormat
{
    /// <summary>Chains of the test double for commit, rebase, sync and convert-delta tests.</summary>
    internal static class Chains
    {
        public const int Cluster = OverlayTestDriver.DefaultClusterSize;
        public const long Size = 64 * Cluster;

        /// <summary>base.tdbl &lt;- mid.tdbl &lt;- top.tdbl, each writing over a few clusters of the one below.</summary>
        public static (string Base, string Mid, string Top) ThreeLayers(TempDir dir)
        {
            string basePath = OverlayTestDriver.CreateBase(dir.File("base.tdbl"), Size,
                (0, TestData.Pattern(8 * Cluster, 1)),
                (20 * Cluster, TestData.Pattern(4 * Cluster, 2)),
                (60 * Cluster, TestData.Pattern(4 * Cluster, 3)));
            string mid = OverlayTestDriver.CreateOverlay(dir.File("mid.tdbl"), basePath, Fmt.Qcow2);
            OverlayTestDriver.WriteInto(mid,
                (2 * Cluster + 100, TestData.Pattern(Cluster, 4)),
                (21 * Cluster, new byte[Cluster]),
                (40 * Cluster, TestData.Pattern(3 * Cluster, 5)));
            string top = OverlayTestDriver.CreateOverlay(dir.File("top.tdbl"), mid, Fmt.Qcow2);
            OverlayTestDriver.WriteInto(top,
                (3 * Cluster, TestData.Pattern(Cluster, 6)),
                (41 * Cluster + 7, TestData.Pattern(10, 7)),
                (50 * Cluster, TestData.Pattern(2 * Cluster, 8)));
            return (basePath, mid, top);
        }

        public static byte[] ReadAll(string path)
        {
            using var chain = ImageChain.Open(path, new ChainOptions { Registry = OverlayTestDriver.Registry });
            var buffer = new byte[chain.Size];
            chain.Read(0, buffer);
            return buffer;
        }

        public static int DataClusters(string path)
        {
            using var layer = (OverlayTestLayer)OverlayTestDriver.Registry.Open(path, Fmt.Qcow2, new OpenOptions());
            return layer.DataClusterCount;
        }

        public static int Depth(string path)
        {
            using var chain = ImageChain.Open(path, new ChainOptions { Registry = OverlayTestDriver.Registry });
            return chain.Layers.Count;
        }

        public static string RecordedParent(string path)
        {
            using var layer = OverlayTestDriver.Registry.Open(path, Fmt.Qcow2, new OpenOptions());
            return layer.Backing?.RecordedPath;
        }

        public static string SaveRaw(TempDir dir, string name, byte[] content)
        {
            string path = dir.File(name);
            File.WriteAllBytes(path, content);
            return path;
        }
    }
}
