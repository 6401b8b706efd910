using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Security.Cryptography;
using System.Threading.Tasks;
using VDiskPS.Formats.Fuzzing;
using Xunit;

namespace VDiskPS.Formats.Tests.Core
{
    /// <summary>
    /// Replays the inputs the coverage-guided fuzzer (tests/VDiskPS.Fuzz/run.sh) found: every one
    /// gives a typed error or reads through, within bounded time, and its file is left unchanged.
    /// </summary>
    public class FuzzCorpusTests
    {
        private static readonly string Corpus = Path.Combine(AppContext.BaseDirectory, "FuzzCorpus");

        public static IEnumerable<object[]> Inputs()
            => FuzzTarget.Formats.SelectMany(format => Directory.Exists(Path.Combine(Corpus, format))
                ? Directory.GetFiles(Path.Combine(Corpus, format)).OrderBy(f => f, StringComparer.Ordinal).Select(f => new object[] { format, Path.GetFileName(f) })
                : Enumerable.Empty<object[]>());

        [Fact]
        public void EveryFormatHasACorpus()
        {
            foreach (string format in FuzzTarget.Formats)
            {
                Assert.True(Inputs().Any(i => (string)i[0] == format), $"no fuzz corpus for {format} in {Corpus}");
            }
        }

        [Theory]
        [MemberData(nameof(Inputs))]
        public async Task FoundInputGivesATypedErrorOrReadsThrough(string format, string name)
        {
            using var dir = new TempDir();
            string path = dir.File("input." + format);
            FuzzTarget.Materialize(format, File.ReadAllBytes(Path.Combine(Corpus, format, name)), path);
            byte[] before = SHA256.HashData(File.ReadAllBytes(path));
            var work = Task.Run(() => FuzzTarget.Exercise(path, format));
            Assert.True(await Task.WhenAny(work, Task.Delay(TimeSpan.FromSeconds(30))) == work, $"{format}/{name}: no answer within 30 s");
            // Exercise lets every exception but an ImageException escape, so awaiting rethrows it here.
            ImageException error = await work;
            // A package's errors name the package or one of its members (PACKAGE/MEMBER).
            Assert.True(error == null || ((error.FilePath == path || error.FilePath?.StartsWith(path + "/", StringComparison.Ordinal) == true) && !string.IsNullOrEmpty(error.Reason)), $"{format}/{name} gave an error that names no file or reason: {error}");
            Assert.Equal(before, SHA256.HashData(File.ReadAllBytes(path)));
        }
    }
}
