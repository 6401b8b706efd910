using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text.RegularExpressions;
using VDiskPS.Formats.Tests.Module;
using Xunit;

namespace VDiskPS.Formats.Tests.Core
{
    /// <summary>
    /// The format registry is the only list of formats: a format is one folder and one registry line.
    /// Engine-only check (no outside tool judges source layout).
    /// </summary>
    public class FormatRegistryTests
    {
        private static readonly string Registry = Path.Combine("src", "VDiskPS.Formats", "Core", "FormatRegistry.cs");

        public static IEnumerable<object[]> Formats() => FormatRegistry.Default.Drivers.Select(d => new object[] { d.Format.Name });

        /// <summary>
        /// Counts the source files outside the format's folder that name it: its name, qemu name or an
        /// extension as a string literal, its namespace, or one of its types. At most one: the registry.
        /// </summary>
        [Theory]
        [MemberData(nameof(Formats))]
        public void OnlyTheRegistryNamesAFormatOutsideItsFolder(string name)
        {
            FormatDriver driver = FormatRegistry.Default.Get(FormatRegistry.Default.Parse(name));
            string ns = driver.GetType().Namespace;
            string folderName = ns.Substring(ns.LastIndexOf('.') + 1);
            string folder = Path.Combine(ModuleFixture.RepoRoot, "src", "VDiskPS.Formats", folderName) + Path.DirectorySeparatorChar;
            Assert.True(Directory.Exists(folder), $"{name}'s driver is not in a folder of its own ({folder})");

            // A format that is also an encryption scheme other formats embed (qemu's encrypt.format=luks) is
            // named by that scheme name in their option tables; they reach its code only through Core's
            // IEncryptionScheme, which the namespace and type patterns below still hold them to.
            var schemes = FormatRegistry.Default.EncryptionSchemes;
            var literals = new[] { driver.Format.Name, driver.QemuName }.Concat(driver.Extensions)
                .Where(l => !schemes.Contains(l, StringComparer.OrdinalIgnoreCase))
                .Distinct(StringComparer.OrdinalIgnoreCase).Select(l => "\"" + Regex.Escape(l) + "\"");
            var pattern = new Regex(
                "(" + string.Join("|", literals) + ")" +
                $@"|\bFormats\.{folderName}\b|\b{folderName}\.{folderName}[A-Z]\w*|\b{folderName}(Driver|Layer|Header)\b",
                RegexOptions.IgnoreCase);

            var naming = SourceFiles()
                .Where(f => !f.StartsWith(folder, StringComparison.Ordinal))
                .Where(f => pattern.IsMatch(StripComments(File.ReadAllText(f))))
                .Select(f => f.Substring(ModuleFixture.RepoRoot.Length + 1))
                .ToList();

            Assert.True(naming.Count <= 1 && naming.All(f => f == Registry),
                $"files outside {folderName}/ that name {name}: {string.Join(", ", naming)}");
        }

        [Fact]
        public void ReadOnlyFormatsAreOfferedForReadingOnly()
        {
            Assert.All(FormatRegistry.Default.CreatableNames, n => Assert.Contains(n, FormatRegistry.Default.ReadableNames));
            foreach (FormatDriver driver in FormatRegistry.Default.Drivers.Where(d => !(d is ICreatableDriver)))
            {
                var error = Assert.Throws<ImageNotSupportedException>(() => FormatRegistry.Default.GetCreatable(driver.Format, "out.img"));
                Assert.Contains("can be read but not created", error.Message);
            }
        }

        [Fact]
        public void NamesAndQemuNamesParseToTheSameFormat()
        {
            foreach (FormatDriver driver in FormatRegistry.Default.Drivers)
            {
                Assert.Equal(driver.Format, FormatRegistry.Default.Parse(driver.Format.Name.ToUpperInvariant()));
                Assert.Equal(driver.Format, FormatRegistry.Default.Parse(driver.QemuName));
                Assert.False(string.IsNullOrWhiteSpace(driver.Description));
                Assert.NotEmpty(driver.Extensions);
                Assert.All(driver.CreateOptions, o => Assert.False(o.Kind == CreateOptionKind.Choice && o.Choices.Count == 0, $"{driver}: {o.Name} is a choice without choices"));
            }

            var error = Assert.Throws<ImageOptionException>(() => FormatRegistry.Default.Parse("qcow3"));
            Assert.Contains("unknown image format 'qcow3'", error.Message);
        }

        /// <summary>Layers never link themselves or each other: only the chain composes them (engine-only check of the source).</summary>
        [Fact]
        public void OnlyTheChainLinksALayerToItsParent()
        {
            var linking = SourceFiles().Where(f => File.ReadAllText(f).Contains("LinkParent("))
                .Select(f => f.Substring(ModuleFixture.RepoRoot.Length + 1)).ToList();
            Assert.Equal(new[] { Path.Combine("src", "VDiskPS.Formats", "Core", "ImageChain.cs"), Path.Combine("src", "VDiskPS.Formats", "Core", "ImageLayer.cs") }.OrderBy(f => f), linking.OrderBy(f => f));
        }

        private static IEnumerable<string> SourceFiles()
        {
            string src = Path.Combine(ModuleFixture.RepoRoot, "src");
            return Directory.EnumerateFiles(src, "*.cs", SearchOption.AllDirectories)
                .Where(f => !f.Contains(Path.DirectorySeparatorChar + "obj" + Path.DirectorySeparatorChar) && !f.Contains(Path.DirectorySeparatorChar + "bin" + Path.DirectorySeparatorChar));
        }

        /// <summary>Comments and documentation may mention formats by way of example; code may not.</summary>
        private static string StripComments(string text) => Regex.Replace(text, @"^\s*//.*$", string.Empty, RegexOptions.Multiline);
    }
}
