using System;
using System.Collections.Generic;
using VDiskPS.Formats;

namespace VDiskPS.CrashChild
{
    /// <summary>
    /// Runs one engine operation named on the command line, for the crash tests: prints "ready" just
    /// before the operation starts (so a kill can be timed from there) and "done" when it returned.
    /// Exit codes: 0 done, 2 the engine refused with an ImageException, 64 bad arguments.
    /// To add an operation, add an entry to <see cref="Operations"/>.
    /// </summary>
    public static class Program
    {
        private static readonly Dictionary<string, (string Usage, int Arguments, Action<string[]> Run)> Operations = new Dictionary<string, (string, int, Action<string[]>)>(StringComparer.Ordinal)
        {
            ["convert"] = ("convert SOURCE DESTINATION FORMAT [SUBFORMAT]", 3, a => ConvertOperation.Run(a[0], a[1], new ConvertOptions
            {
                TargetFormat = DiskFormat.Parse(a[2]),
                Target = new CreateRequest { Subformat = a.Length > 3 ? a[3] : null },
            })),
            ["convert-into"] = ("convert-into SOURCE EXISTING-DESTINATION FORMAT (convert -n)", 3, a => ConvertOperation.Run(a[0], a[1], new ConvertOptions
            {
                TargetFormat = DiskFormat.Parse(a[2]),
                NoCreate = true,
            })),
            ["commit"] = ("commit TOP", 1, a => CommitOperation.Run(a[0])),
            ["commit-into"] = ("commit-into TOP BASE|- KEEPTOP(0|1) RATE(bytes/s)", 4, a => CommitOperation.Run(a[0], new CommitOptions
            {
                BasePath = a[1] == "-" ? null : a[1],
                KeepTop = a[2] == "1",
                RateLimit = long.Parse(a[3], System.Globalization.CultureInfo.InvariantCulture),
            })),
            ["resize"] = ("resize IMAGE SIZE", 2, a => ResizeOperation.Run(a[0], new ResizeOptions { Size = DiskSize.Parse(a[1]) })),
            ["snapshot-create"] = ("snapshot-create IMAGE NAME", 2, a => SnapshotOperations.Create(a[0], a[1])),
        };

        public static int Main(string[] args)
        {
            if (args.Length == 0 || !Operations.TryGetValue(args[0], out var operation) || args.Length - 1 < operation.Arguments)
            {
                Console.Error.WriteLine("usage: VDiskPS.CrashChild OPERATION ARGUMENTS...");
                foreach (var entry in Operations.Values)
                {
                    Console.Error.WriteLine("  " + entry.Usage);
                }

                return 64;
            }

            string[] rest = new string[args.Length - 1];
            Array.Copy(args, 1, rest, 0, rest.Length);
            Console.Out.WriteLine("ready");
            Console.Out.Flush();
            try
            {
                operation.Run(rest);
            }
            catch (ImageException e)
            {
                Console.Error.WriteLine(e.Message);
                return 2;
            }

            Console.Out.WriteLine("done");
            return 0;
        }
    }
}
