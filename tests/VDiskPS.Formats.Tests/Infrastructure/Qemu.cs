using System;
using System.Diagnostics;
using System.IO;
using System.Linq;
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
            // qemu times its PBKDF2 benchmark with the thread's CPU clock, whose ticks are coarse: when a
            // round takes less than one tick it gives up with this message, at random on a fast idle
            // machine (seen failing 4 times in 10 on a 2-core EPYC with SHA-NI). Nothing was written
            // then; the command is run again, up to 20 times.
            const int attempts = 20;
            for (int attempt = 1; ; attempt++)
            {
                var result = RunOnce(tool, args, expectSuccess && attempt == attempts, workingDirectory);
                if (attempt == attempts || result.ExitCode == 0 || !result.Output.Contains("Unable to get accurate CPU usage"))
                {
                    if (expectSuccess && result.ExitCode != 0)
                    {
                        throw new InvalidOperationException($"{tool} {string.Join(" ", args)} exited {result.ExitCode}: {result.Output}");
                    }

                    return result;
                }
            }
        }

        private static (int ExitCode, string Output) RunOnce(string tool, string[] args, bool expectSuccess, string workingDirectory)
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

        /// <summary>The password of the encrypted images the tests make (ImageSecrets.FromString(Password) on the engine's side).</summary>
        public const string Password = "pass";

        /// <summary>qemu's --object argument holding <see cref="Password"/> as the secret sec0.</summary>
        public const string SecretObject = "secret,id=sec0,data=" + Password;

        /// <summary>An --image-opts string for an image: a luks container, or a qcow2 with (maybe) encryption, takes the secret sec0.</summary>
        public static string ImageOpts(string path, string format) => format switch
        {
            "luks" => $"driver=luks,key-secret=sec0,file.filename={path}",
            "qcow2-encrypted" => $"driver=qcow2,encrypt.key-secret=sec0,file.filename={path}",
            _ => $"driver={format},file.filename={path}",
        };

        /// <summary>qemu-img compare of two images: true when identical. An encrypted format is opened with <see cref="SecretObject"/>.</summary>
        public static (bool Identical, string Output) Compare(string a, string formatA, string b, string formatB, bool strict = false)
        {
            if (IsEncrypted(formatA) || IsEncrypted(formatB))
            {
                var opts = new[] { "compare", "--object", SecretObject, "--image-opts" }.Concat(strict ? new[] { "-s" } : Array.Empty<string>())
                    .Concat(new[] { ImageOpts(a, formatA), ImageOpts(b, formatB) }).ToArray();
                var o = Run("qemu-img", opts);
                return (o.ExitCode == 0, o.Output);
            }

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

        /// <summary>Converts an image opened with <see cref="ImageOpts"/> (and the secret) to raw with qemu-img and returns the bytes.</summary>
        public static byte[] ToRawBytesWithSecret(string imageOpts, string scratchDir)
        {
            string raw = Path.Combine(scratchDir, Guid.NewGuid().ToString("N") + ".raw");
            Img("convert", "--object", SecretObject, "--image-opts", imageOpts, "-O", "raw", raw);
            byte[] bytes = File.ReadAllBytes(raw);
            File.Delete(raw);
            return bytes;
        }

        private static bool IsEncrypted(string format) => format == "luks" || format == "qcow2-encrypted";

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
