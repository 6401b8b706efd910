using System;
using VDiskPS.Formats;

namespace VDiskPS.CommitChild
{
    /// <summary>
    /// Usage: VDiskPS.CommitChild TOP BASE|- KEEPTOP(0|1) RATE(bytes/s). Prints "started" once the chain is
    /// about to be committed and "done" when the commit returned; the test kills it somewhere in between.
    /// </summary>
    public static class Program
    {
        public static int Main(string[] args)
        {
            if (args.Length != 4)
            {
                Console.Error.WriteLine("usage: VDiskPS.CommitChild TOP BASE|- KEEPTOP(0|1) RATE");
                return 2;
            }

            var options = new CommitOptions
            {
                BasePath = args[1] == "-" ? null : args[1],
                KeepTop = args[2] == "1",
                RateLimit = long.Parse(args[3], System.Globalization.CultureInfo.InvariantCulture),
            };
            Console.WriteLine("started");
            Console.Out.Flush();
            CommitOperation.Run(args[0], options);
            Console.WriteLine("done");
            return 0;
        }
    }
}
