using System;
using System.Diagnostics;
using System.IO;
using System.Text.Json;

namespace VDiskPS.Formats.Tests
{
    /// <summary>Drives the real qemu-img and qemu-io (Debian's qemu-utils) for interop tests.</summary>
    public static class Qemu
    {
        public static bool Available => Find("qemu-img") != null;

        /// <summary>Runs qemu-img; throws with its output when it fails.</summary>
        public static string Img(params string[] args) => Run("qemu-img", args, expectSuccess: true).Output;

        public static string Io(params string[] args) => Run("qemu-io", args, expectSuccess: true).Output;

        /// <summary>Runs a tool and returns exit code and combined output without judging it.</summary>
        public static (int ExitCode, string Output) Run(string tool, string[] args, bool expectSuccess = false, string workingDirectory = null)
        {
            string exe = Find(tool) ?? throw new InvalidOperationException($"{tool} is not installed (apt-get install qemu-utils)");
            var psi = new ProcessStartInfo(exe)
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
                WorkingDirectory = workingDirectory ?? string.Empty,
            };
            foreach (string a in args)
            {
                psi.ArgumentList.Add(a);
            }

            using var p = Process.Start(psi);
            var stderr = p.StandardError.ReadToEndAsync();
            string stdout = p.StandardOutput.ReadToEnd();
            p.WaitForExit();
            string output = stdout + stderr.Result;
            if (expectSuccess && p.ExitCode != 0)
            {
                throw new InvalidOperationException($"{tool} {string.Join(" ", args)} exited {p.ExitCode}: {output}");
            }

            return (p.ExitCode, output);
        }

        /// <summary>qemu-img check: exit code (0 clean, 1 errors, 2 corruptions/leaks..., 3 leaks) and output.</summary>
        public static (int ExitCode, string Output) Check(string path, string format)
            => Run("qemu-img", new[] { "check", "-f", format, path });

        /// <summary>qemu-img compare of two images: true when identical.</summary>
        public static (bool Identical, string Output) Compare(string a, string formatA, string b, string formatB, bool strict = false)
        {
            var args = strict
                ? new[] { "compare", "-s", "-f", formatA, "-F", formatB, a, b }
                : new[] { "compare", "-f", formatA, "-F", formatB, a, b };
            var r = Run("qemu-img", args);
            return (r.ExitCode == 0, r.Output);
        }

        /// <summary>qemu-img info --output=json as a parsed document.</summary>
        public static JsonDocument Info(string path, string format = null)
        {
            string json = format == null ? Img("info", "--output=json", path) : Img("info", "--output=json", "-f", format, path);
            return JsonDocument.Parse(json);
        }

        /// <summary>Converts any image to raw with qemu-img and returns the bytes.</summary>
        public static byte[] ToRawBytes(string path, string format, string scratchDir)
        {
            string raw = Path.Combine(scratchDir, Guid.NewGuid().ToString("N") + ".raw");
            // qemu 7.2 opens a qcow2's relative data_file against its working directory.
            Run("qemu-img", new[] { "convert", "-f", format, "-O", "raw", path, raw }, expectSuccess: true, workingDirectory: Path.GetDirectoryName(path));
            byte[] bytes = File.ReadAllBytes(raw);
            File.Delete(raw);
            return bytes;
        }

        private static string Find(string tool)
        {
            // cryptsetup and sgdisk live in sbin, which a non-root PATH may lack.
            foreach (string dir in (Environment.GetEnvironmentVariable("PATH") + Path.PathSeparator + "/usr/sbin" + Path.PathSeparator + "/sbin").Split(Path.PathSeparator))
            {
                string candidate = Path.Combine(dir, tool);
                if (File.Exists(candidate))
                {
                    return candidate;
                }
            }

            return null;
        }
    }
}
