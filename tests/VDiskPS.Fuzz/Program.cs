using System;
using System.Diagnostics;
using System.IO;
using SharpFuzz;

namespace VDiskPS.Formats.Fuzzing
{
    /// <summary>
    /// The SharpFuzz harness: "fuzz FORMAT" serves afl-fuzz (run.sh drives it), "replay FORMAT FILE..."
    /// runs inputs once each and prints the answer.
    /// </summary>
    public static class Program
    {
        public static int Main(string[] args)
        {
            if (args.Length >= 2 && args[0] == "fuzz" && Array.IndexOf(FuzzTarget.Formats, args[1]) >= 0)
            {
                string format = args[1];
                // run.sh points VDISKPS_FUZZ_SCRATCH at its work folder, which it deletes at the end.
                string scratch = Path.Combine(Environment.GetEnvironmentVariable("VDISKPS_FUZZ_SCRATCH") ?? Path.GetTempPath(), $"vdiskps-fuzz-{format}-{Environment.ProcessId}.img");
                Fuzzer.Run(stream => RunOne(format, stream, scratch));
                return 0;
            }

            if (args.Length >= 3 && args[0] == "replay" && Array.IndexOf(FuzzTarget.Formats, args[1]) >= 0)
            {
                string scratch = Path.Combine(Path.GetTempPath(), $"vdiskps-replay-{Environment.ProcessId}.img");
                for (int i = 2; i < args.Length; i++)
                {
                    var watch = Stopwatch.StartNew();
                    using (var input = File.OpenRead(args[i]))
                    {
                        FuzzTarget.Materialize(args[1], ReadAll(input), scratch);
                    }

                    ImageException error = FuzzTarget.Exercise(scratch, args[1]);
                    Console.WriteLine($"{args[i]}: {(error == null ? "read through" : error.GetType().Name + ": " + error.Message)} ({watch.ElapsedMilliseconds} ms)");
                }

                File.Delete(scratch);
                return 0;
            }

            Console.Error.WriteLine("usage: VDiskPS.Fuzz fuzz|replay " + string.Join("|", FuzzTarget.Formats) + " [FILE...]");
            return 2;
        }

        private static void RunOne(string format, Stream stream, string scratch)
        {
            FuzzTarget.Materialize(format, ReadAll(stream), scratch);
            FuzzTarget.Exercise(scratch, format);
        }

        private static byte[] ReadAll(Stream stream)
        {
            using var memory = new MemoryStream();
            stream.CopyTo(memory);
            return memory.ToArray();
        }
    }
}
