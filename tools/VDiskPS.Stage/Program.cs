using System;
using System.IO;

namespace VDiskPS.Stage
{
    /// <summary>
    /// Build helper: "stage" lays out out/VDiskPS (module, help XML); "update-help" regenerates the
    /// SYNTAX and PARAMETERS sections of docs/help from the compiled cmdlets.
    /// </summary>
    public static class Program
    {
        public static int Main(string[] args)
        {
            string command = args.Length > 0 ? args[0] : "stage";
            string configuration = Option(args, "--configuration") ?? "Release";
            string repo = Stager.FindRepoRoot(Option(args, "--repo"));
            try
            {
                switch (command)
                {
                    case "stage":
                        string output = Path.GetFullPath(Option(args, "--output") ?? Path.Combine(repo, "out", "VDiskPS"));
                        Stager.Stage(repo, configuration, output);
                        Console.WriteLine($"Staged module: {output}");
                        return 0;
                    case "update-help":
                        foreach (string file in Stager.UpdateHelp(repo, configuration))
                        {
                            Console.WriteLine("updated " + file);
                        }

                        return 0;
                    default:
                        Console.Error.WriteLine("usage: VDiskPS.Stage [stage|update-help] [--configuration Release] [--output DIR] [--repo DIR]");
                        return 2;
                }
            }
            catch (Exception e) when (e is InvalidOperationException || e is IOException)
            {
                Console.Error.WriteLine(e.Message);
                return 1;
            }
        }

        private static string Option(string[] args, string name)
        {
            int i = Array.IndexOf(args, name);
            return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
        }
    }
}
