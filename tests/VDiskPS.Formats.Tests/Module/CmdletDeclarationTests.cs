using System.Collections.Generic;
using System.Linq;
using VDiskPS.Stage;
using Xunit;

namespace VDiskPS.Formats.Tests.Module
{
    /// <summary>The cmdlet contract (CMDLETS.md), checked on the compiled declarations without a PowerShell host.</summary>
    public class CmdletDeclarationTests
    {
        // Get-Verb's approved verbs (PowerShell 5.1 and 7).
        private static readonly HashSet<string> ApprovedVerbs = new HashSet<string>
        {
            "Add", "Clear", "Close", "Copy", "Enter", "Exit", "Find", "Format", "Get", "Hide", "Join", "Lock", "Move", "New", "Open", "Optimize",
            "Pop", "Push", "Redo", "Remove", "Rename", "Reset", "Resize", "Search", "Select", "Set", "Show", "Skip", "Split", "Step", "Switch",
            "Undo", "Unlock", "Watch", "Backup", "Checkpoint", "Compare", "Compress", "Convert", "ConvertFrom", "ConvertTo", "Dismount", "Edit",
            "Expand", "Export", "Group", "Import", "Initialize", "Limit", "Merge", "Mount", "Out", "Publish", "Restore", "Save", "Sync",
            "Unpublish", "Update", "Approve", "Assert", "Build", "Complete", "Confirm", "Deny", "Deploy", "Disable", "Enable", "Install",
            "Invoke", "Register", "Request", "Restart", "Resume", "Start", "Stop", "Submit", "Suspend", "Uninstall", "Unregister", "Wait",
            "Debug", "Measure", "Ping", "Repair", "Resolve", "Test", "Trace", "Connect", "Disconnect", "Read", "Receive", "Send", "Write",
            "Block", "Grant", "Protect", "Revoke", "Unblock", "Unprotect", "Use",
        };

        // Cmdlets that change an existing image, and the ConfirmImpact the contract asks of them.
        private static readonly Dictionary<string, string> ChangesImages = new Dictionary<string, string>
        {
            ["New-VDisk"] = "Medium",
            ["Convert-VDisk"] = "Medium",
            ["Export-VDiskOva"] = "Medium",
            ["Repair-VDisk"] = "High",
            ["Invoke-VDiskCommit"] = "High",
            ["Merge-VDisk"] = "High",
            ["Set-VDisk"] = "Medium",
            ["Resize-VDisk"] = "Medium",
            ["Optimize-VDisk"] = "Medium",
            ["Copy-VDiskData"] = "Medium",
            ["Sync-VDisk"] = "Medium",
            ["New-VDiskSnapshot"] = "Medium",
            ["Restore-VDiskSnapshot"] = "High",
            ["Remove-VDiskSnapshot"] = "High",
            ["Add-VDiskBitmap"] = "Medium",
            ["Remove-VDiskBitmap"] = "High",
            ["Clear-VDiskBitmap"] = "Medium",
            ["Enable-VDiskBitmap"] = "Medium",
            ["Disable-VDiskBitmap"] = "Medium",
            ["Merge-VDiskBitmap"] = "Medium",
            ["Start-VDiskServer"] = "Medium",
            ["Stop-VDiskServer"] = "Medium",
            ["Mount-VDisk"] = "Medium",
            ["Dismount-VDisk"] = "Medium",
        };

        [Fact]
        public void TheModuleHasTheFoundationCmdlets()
        {
            var names = ModuleFixture.Cmdlets.Select(c => c.Name).ToList();
            Assert.Contains("New-VDisk", names);
            Assert.Contains("Get-VDisk", names);
            Assert.Contains("Get-VDiskChain", names);
            Assert.Contains("Convert-VDisk", names);
        }

        [Theory]
        [MemberData(nameof(ModuleFixture.CmdletNames), MemberType = typeof(ModuleFixture))]
        public void VerbIsApproved(string name)
        {
            Assert.Contains(ModuleFixture.Get(name).Verb, ApprovedVerbs);
        }

        [Theory]
        [MemberData(nameof(ModuleFixture.CmdletNames), MemberType = typeof(ModuleFixture))]
        public void NounStartsWithTheModulePrefix(string name)
        {
            Assert.StartsWith("VDisk", ModuleFixture.Get(name).Noun);
        }

        [Theory]
        [MemberData(nameof(ModuleFixture.CmdletNames), MemberType = typeof(ModuleFixture))]
        public void DeclaresItsOutputType(string name)
        {
            var cmdlet = ModuleFixture.Get(name);
            Assert.NotEmpty(cmdlet.OutputTypes);
            Assert.All(cmdlet.OutputTypes, t => Assert.True(t.StartsWith("VDiskPS.") || t.StartsWith("System."), t));
        }

        [Theory]
        [MemberData(nameof(ModuleFixture.CmdletNames), MemberType = typeof(ModuleFixture))]
        public void ShouldProcessWhereTheContractAsks(string name)
        {
            var cmdlet = ModuleFixture.Get(name);
            if (ChangesImages.TryGetValue(name, out string impact))
            {
                Assert.True(cmdlet.SupportsShouldProcess, $"{name} changes images and must support -WhatIf/-Confirm");
                Assert.Equal(impact, cmdlet.ConfirmImpact);
            }
            else
            {
                Assert.True(cmdlet.Verb == "Get" || cmdlet.Verb == "Test" || cmdlet.Verb == "Compare" || cmdlet.Verb == "Measure",
                    $"{name} is not known to be read-only; add it to the ShouldProcess table");
            }
        }

        [Theory]
        [MemberData(nameof(ModuleFixture.CmdletNames), MemberType = typeof(ModuleFixture))]
        public void PathFollowsTheConventions(string name)
        {
            var cmdlet = ModuleFixture.Get(name);
            var path = cmdlet.Parameters.FirstOrDefault(p => p.Name == "Path");
            if (path == null)
            {
                return;
            }

            Assert.Equal("String[]", path.TypeName);
            Assert.Contains("FullName", path.Aliases);
            Assert.All(path.Sets, s => Assert.Equal(0, s.Position));
            Assert.All(path.Sets, s => Assert.True(s.ValueFromPipeline && s.ValueFromPipelineByPropertyName, "Path binds from the pipeline by value and by property name"));
            var literal = cmdlet.Parameters.FirstOrDefault(p => p.Name == "LiteralPath");
            if (literal != null)
            {
                Assert.Contains("PSPath", literal.Aliases);
                Assert.Contains("LP", literal.Aliases);
                Assert.All(literal.Sets, s => Assert.True(s.ValueFromPipelineByPropertyName));
                Assert.Contains(cmdlet.DefaultParameterSetName, path.Sets.Select(s => s.Name));
                Assert.Empty(path.Sets.Select(s => s.Name).Intersect(literal.Sets.Select(s => s.Name)));
            }
        }

        [Theory]
        [MemberData(nameof(ModuleFixture.CmdletNames), MemberType = typeof(ModuleFixture))]
        public void ParameterSetsAreUnambiguous(string name)
        {
            var cmdlet = ModuleFixture.Get(name);
            var sets = cmdlet.ParameterSetNames;
            if (sets.Count > 1)
            {
                Assert.Contains(cmdlet.DefaultParameterSetName, sets);
            }

            foreach (string set in sets)
            {
                var members = cmdlet.Parameters.Select(p => (p, e: cmdlet.EntryFor(p, set))).Where(x => x.e != null).ToList();
                var positions = members.Where(x => x.e.Position != int.MinValue).GroupBy(x => x.e.Position).Where(g => g.Count() > 1).ToList();
                Assert.True(positions.Count == 0, $"{name} set {set}: two parameters at position {positions.FirstOrDefault()?.Key}");
                Assert.True(members.Count(x => x.e.ValueFromPipeline) <= 1, $"{name} set {set}: more than one parameter takes pipeline input by value");
            }

            // Two sets are told apart when one has a mandatory parameter the other lacks.
            foreach (string a in sets)
            {
                foreach (string b in sets.Where(b => string.CompareOrdinal(a, b) < 0))
                {
                    bool distinct = cmdlet.Parameters.Any(p =>
                        (cmdlet.EntryFor(p, a)?.Mandatory == true && cmdlet.EntryFor(p, b) == null) ||
                        (cmdlet.EntryFor(p, b)?.Mandatory == true && cmdlet.EntryFor(p, a) == null));
                    Assert.True(distinct, $"{name}: sets {a} and {b} have no mandatory parameter that tells them apart");
                }
            }
        }

        [Theory]
        [MemberData(nameof(ModuleFixture.CmdletNames), MemberType = typeof(ModuleFixture))]
        public void FormatParametersCompleteTheKnownFormats(string name)
        {
            // Formats a cmdlet writes into (its output, or the image it changes) offer only the formats the
            // registry creates; the others every format it reads.
            var writes = new HashSet<string>
            {
                "Convert-VDisk/Format", "New-VDisk/Format", "Measure-VDisk/Format", "Copy-VDiskData/DestinationFormat", "Sync-VDisk/DestinationFormat",
                "Set-VDisk/Format", "Resize-VDisk/Format", "Optimize-VDisk/Format", "Repair-VDisk/Format", "Invoke-VDiskCommit/Format", "Merge-VDisk/Format",
            };
            foreach (var p in ModuleFixture.Get(name).Parameters.Where(p => p.Name.EndsWith("Format") && p.TypeName == "String"))
            {
                var expected = writes.Contains(name + "/" + p.Name) ? FormatRegistry.Default.CreatableNames : FormatRegistry.Default.ReadableNames;
                Assert.Equal(expected, p.ValidValues);
            }
        }

        [Fact]
        public void SizeParametersTakeQemuStrings()
        {
            var size = ModuleFixture.Get("New-VDisk").Parameters.Single(p => p.Name == "SizeBytes");
            Assert.Equal("UInt64", size.TypeName);
            Assert.Contains("Size", size.Aliases);
        }
    }
}
