using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text;

namespace VDiskPS.Stage
{
    /// <summary>A parameter section of a platyPS help file.</summary>
    public sealed class HelpParameter
    {
        public string Name { get; set; }
        public string Description { get; set; } = string.Empty;
        public Dictionary<string, string> Fields { get; } = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);

        public string Field(string key) => Fields.TryGetValue(key, out string v) ? v : string.Empty;
    }

    public sealed class HelpExample
    {
        public string Title { get; set; }
        public string Code { get; set; }
        public string Remarks { get; set; }
    }

    /// <summary>
    /// A cmdlet help file in platyPS's markdown schema (2.0.0): parsed, and rendered back with the
    /// SYNTAX, PARAMETERS, INPUTS and OUTPUTS sections regenerated from the cmdlet's metadata.
    /// </summary>
    public sealed class HelpDocument
    {
        public string Name { get; set; }
        public string Synopsis { get; set; } = string.Empty;
        public string Description { get; set; } = string.Empty;
        public List<(string SetName, bool IsDefault, string Syntax)> Syntax { get; } = new List<(string, bool, string)>();
        public List<HelpExample> Examples { get; } = new List<HelpExample>();
        public List<HelpParameter> Parameters { get; } = new List<HelpParameter>();
        public List<string> Inputs { get; } = new List<string>();
        public List<string> Outputs { get; } = new List<string>();
        public string Notes { get; set; } = string.Empty;
        public string RelatedLinks { get; set; } = string.Empty;

        public static HelpDocument Parse(string text)
        {
            var doc = new HelpDocument();
            var lines = text.Replace("\r\n", "\n").Split('\n');
            int i = 0;
            if (lines.Length > 0 && lines[0].Trim() == "---")
            {
                i = 1;
                while (i < lines.Length && lines[i].Trim() != "---")
                {
                    i++;
                }

                i++;
            }

            string section = null;
            var buffer = new List<string>();
            HelpParameter currentParameter = null;
            HelpExample currentExample = null;
            string currentSet = null;
            bool currentSetDefault = false;

            void FlushSub()
            {
                string body = string.Join("\n", buffer).Trim();
                buffer.Clear();
                switch (section)
                {
                    case "SYNOPSIS": doc.Synopsis = body; break;
                    case "DESCRIPTION": doc.Description = body; break;
                    case "NOTES": doc.Notes = body; break;
                    case "RELATED LINKS": doc.RelatedLinks = body; break;
                    case "SYNTAX":
                        if (currentSet != null)
                        {
                            doc.Syntax.Add((currentSet, currentSetDefault, StripFence(body)));
                        }

                        break;
                    case "EXAMPLES":
                        if (currentExample != null)
                        {
                            SplitExample(body, currentExample);
                            doc.Examples.Add(currentExample);
                            currentExample = null;
                        }

                        break;
                    case "PARAMETERS":
                        if (currentParameter != null)
                        {
                            SplitParameter(body, currentParameter);
                            if (currentParameter.Name != "CommonParameters")
                            {
                                doc.Parameters.Add(currentParameter);
                            }

                            currentParameter = null;
                        }

                        break;
                    case "INPUTS":
                    case "OUTPUTS":
                        break;
                }
            }

            bool inFence = false;
            for (; i < lines.Length; i++)
            {
                string line = lines[i];
                if (line.TrimStart().StartsWith("```", StringComparison.Ordinal))
                {
                    inFence = !inFence;
                }

                if (!inFence && line.StartsWith("# ", StringComparison.Ordinal) && doc.Name == null)
                {
                    doc.Name = line.Substring(2).Trim();
                    continue;
                }

                if (!inFence && line.StartsWith("## ", StringComparison.Ordinal))
                {
                    FlushSub();
                    section = line.Substring(3).Trim().ToUpperInvariant();
                    continue;
                }

                if (!inFence && line.StartsWith("### ", StringComparison.Ordinal))
                {
                    FlushSub();
                    string heading = line.Substring(4).Trim();
                    switch (section)
                    {
                        case "SYNTAX":
                            currentSetDefault = heading.EndsWith("(Default)", StringComparison.Ordinal);
                            currentSet = heading.Replace("(Default)", string.Empty).Trim();
                            break;
                        case "EXAMPLES":
                            currentExample = new HelpExample { Title = heading };
                            break;
                        case "PARAMETERS":
                            currentParameter = new HelpParameter { Name = heading.TrimStart('-') };
                            break;
                        case "INPUTS":
                            doc.Inputs.Add(heading);
                            break;
                        case "OUTPUTS":
                            doc.Outputs.Add(heading);
                            break;
                    }

                    continue;
                }

                buffer.Add(line);
            }

            FlushSub();
            return doc;
        }

        /// <summary>Rebuilds the document for <paramref name="cmdlet"/>: generated sections from metadata, written ones kept.</summary>
        public static HelpDocument Update(HelpDocument existing, CmdletModel cmdlet)
        {
            var doc = new HelpDocument { Name = cmdlet.Name };
            doc.Synopsis = NonEmpty(existing?.Synopsis, cmdlet.Summary);
            doc.Description = NonEmpty(existing?.Description, cmdlet.Summary);
            doc.Notes = existing?.Notes ?? string.Empty;
            doc.RelatedLinks = existing?.RelatedLinks ?? string.Empty;
            if (existing != null)
            {
                doc.Examples.AddRange(existing.Examples);
            }

            var sets = cmdlet.ParameterSetNames;
            foreach (string set in sets)
            {
                bool isDefault = sets.Count == 1 || set == cmdlet.DefaultParameterSetName;
                doc.Syntax.Add((set == ParameterSetEntry.AllSets ? "__AllParameterSets" : set, isDefault && sets.Count > 1, SyntaxLine(cmdlet, set)));
            }

            foreach (var p in AllParameters(cmdlet))
            {
                var hp = new HelpParameter { Name = p.Name };
                string written = existing?.Parameters.FirstOrDefault(x => string.Equals(x.Name, p.Name, StringComparison.OrdinalIgnoreCase))?.Description;
                hp.Description = NonEmpty(written, p.Summary);
                hp.Fields["Type"] = p.TypeName;
                hp.Fields["Parameter Sets"] = p.Sets.Any(s => s.Name == ParameterSetEntry.AllSets) || sets.Count == 1 ? "(All)" : string.Join(", ", p.Sets.Select(s => s.Name));
                hp.Fields["Aliases"] = p.Aliases.Count == 0 ? string.Empty : string.Join(", ", p.Aliases);
                if (p.ValidValues.Count > 0)
                {
                    hp.Fields["Accepted values"] = string.Join(", ", p.ValidValues);
                }

                var first = p.Sets.First();
                hp.Fields["Required"] = p.Sets.Select(s => s.Mandatory).Distinct().Count() > 1
                    ? string.Join(", ", p.Sets.Select(s => $"{(s.Mandatory ? "True" : "False")} ({s.Name})"))
                    : (first.Mandatory ? "True" : "False");
                hp.Fields["Position"] = first.Position == int.MinValue ? "Named" : first.Position.ToString();
                hp.Fields["Default value"] = p.DefaultValue ?? "None";
                var pipeline = new List<string>();
                if (p.Sets.Any(s => s.ValueFromPipelineByPropertyName)) pipeline.Add("ByPropertyName");
                if (p.Sets.Any(s => s.ValueFromPipeline)) pipeline.Add("ByValue");
                hp.Fields["Accept pipeline input"] = pipeline.Count == 0 ? "False" : $"True ({string.Join(", ", pipeline)})";
                hp.Fields["Accept wildcard characters"] = p.Name == "Path" && cmdlet.Parameters.Any(x => x.Name == "LiteralPath") ? "True" : "False";
                doc.Parameters.Add(hp);
            }

            foreach (var p in cmdlet.Parameters.Where(p => p.Sets.Any(s => s.ValueFromPipeline || s.ValueFromPipelineByPropertyName)))
            {
                if (!doc.Inputs.Contains(InputTypeName(p)))
                {
                    doc.Inputs.Add(InputTypeName(p));
                }
            }

            if (doc.Inputs.Count == 0)
            {
                doc.Inputs.Add("None");
            }

            doc.Outputs.AddRange(cmdlet.OutputTypes.Count == 0 ? new[] { "None" } : cmdlet.OutputTypes);
            return doc;
        }

        /// <summary>The cmdlet's parameters plus -WhatIf/-Confirm when it supports ShouldProcess.</summary>
        public static IEnumerable<ParameterInfoModel> AllParameters(CmdletModel cmdlet)
        {
            foreach (var p in cmdlet.Parameters)
            {
                yield return p;
            }

            if (cmdlet.SupportsShouldProcess)
            {
                var whatIf = new ParameterInfoModel { Name = "WhatIf", TypeName = "SwitchParameter", TypeFullName = "System.Management.Automation.SwitchParameter", Summary = "Shows what would happen if the cmdlet runs. The cmdlet is not run." };
                whatIf.Aliases.Add("wi");
                whatIf.Sets.Add(new ParameterSetEntry());
                yield return whatIf;
                var confirm = new ParameterInfoModel { Name = "Confirm", TypeName = "SwitchParameter", TypeFullName = "System.Management.Automation.SwitchParameter", Summary = "Prompts you for confirmation before running the cmdlet." };
                confirm.Aliases.Add("cf");
                confirm.Sets.Add(new ParameterSetEntry());
                yield return confirm;
            }
        }

        public string Render()
        {
            var sb = new StringBuilder();
            sb.Append("---\nexternal help file: VDiskPS.dll-Help.xml\nModule Name: VDiskPS\nonline version:\nschema: 2.0.0\n---\n\n");
            sb.Append("# ").Append(Name).Append("\n\n## SYNOPSIS\n").Append(Synopsis).Append("\n\n## SYNTAX\n\n");
            foreach (var (set, isDefault, syntax) in Syntax)
            {
                sb.Append("### ").Append(set).Append(isDefault ? " (Default)" : string.Empty).Append("\n```\n").Append(syntax).Append("\n```\n\n");
            }

            sb.Append("## DESCRIPTION\n").Append(Description).Append("\n\n## EXAMPLES\n\n");
            foreach (var example in Examples)
            {
                sb.Append("### ").Append(example.Title).Append("\n```powershell\n").Append(example.Code).Append("\n```\n\n");
                if (!string.IsNullOrWhiteSpace(example.Remarks))
                {
                    sb.Append(example.Remarks).Append("\n\n");
                }
            }

            sb.Append("## PARAMETERS\n\n");
            foreach (var p in Parameters)
            {
                sb.Append("### -").Append(p.Name).Append('\n').Append(p.Description).Append("\n\n```yaml\n");
                foreach (string key in new[] { "Type", "Parameter Sets", "Aliases", "Accepted values" })
                {
                    if (p.Fields.ContainsKey(key))
                    {
                        sb.Append(key).Append(": ").Append(p.Fields[key]).Append('\n');
                    }
                }

                sb.Append('\n');
                foreach (string key in new[] { "Required", "Position", "Default value", "Accept pipeline input", "Accept wildcard characters" })
                {
                    sb.Append(key).Append(": ").Append(p.Field(key)).Append('\n');
                }

                sb.Append("```\n\n");
            }

            sb.Append("### CommonParameters\nThis cmdlet supports the common parameters: -Debug, -ErrorAction, -ErrorVariable, -InformationAction, -InformationVariable, -OutVariable, -OutBuffer, -PipelineVariable, -Verbose, -WarningAction, and -WarningVariable. For more information, see [about_CommonParameters](http://go.microsoft.com/fwlink/?LinkID=113216).\n\n");
            sb.Append("## INPUTS\n\n");
            foreach (string input in Inputs)
            {
                sb.Append("### ").Append(input).Append("\n\n");
            }

            sb.Append("## OUTPUTS\n\n");
            foreach (string output in Outputs)
            {
                sb.Append("### ").Append(output).Append("\n\n");
            }

            sb.Append("## NOTES\n").Append(Notes).Append("\n\n## RELATED LINKS\n").Append(RelatedLinks).Append('\n');
            return sb.ToString().Replace("\n\n\n", "\n\n");
        }

        private static string InputTypeName(ParameterInfoModel p) => p.TypeFullName == "System.String[]" || p.TypeFullName == "System.String" ? "System.String[]" : p.TypeFullName;

        private static string SyntaxLine(CmdletModel cmdlet, string set)
        {
            var parts = new List<string> { cmdlet.Name };
            var inSet = cmdlet.Parameters.Select(p => (p, e: cmdlet.EntryFor(p, set))).Where(x => x.e != null)
                .OrderBy(x => x.e.Position == int.MinValue ? int.MaxValue : x.e.Position).ThenBy(x => x.e.Mandatory ? 0 : 1);
            foreach (var (p, e) in inSet)
            {
                string name = e.Position == int.MinValue ? $"-{p.Name}" : $"[-{p.Name}]";
                string part = p.IsSwitch ? $"-{p.Name}" : $"{name} <{p.TypeName}>";
                parts.Add(e.Mandatory ? part : $"[{part}]");
            }

            if (cmdlet.SupportsShouldProcess)
            {
                parts.Add("[-WhatIf]");
                parts.Add("[-Confirm]");
            }

            parts.Add("[<CommonParameters>]");
            return string.Join(" ", parts);
        }

        private static string NonEmpty(string preferred, string fallback) => string.IsNullOrWhiteSpace(preferred) ? (fallback ?? string.Empty) : preferred;

        private static string StripFence(string body) => string.Join("\n", body.Split('\n').Where(l => !l.TrimStart().StartsWith("```", StringComparison.Ordinal))).Trim();

        private static void SplitExample(string body, HelpExample example)
        {
            var lines = body.Split('\n');
            int start = Array.FindIndex(lines, l => l.TrimStart().StartsWith("```", StringComparison.Ordinal));
            int end = start < 0 ? -1 : Array.FindIndex(lines, start + 1, l => l.TrimStart().StartsWith("```", StringComparison.Ordinal));
            if (start < 0 || end < 0)
            {
                example.Code = string.Empty;
                example.Remarks = body;
                return;
            }

            example.Code = string.Join("\n", lines.Skip(start + 1).Take(end - start - 1));
            example.Remarks = (string.Join("\n", lines.Take(start)) + "\n" + string.Join("\n", lines.Skip(end + 1))).Trim();
        }

        private static void SplitParameter(string body, HelpParameter parameter)
        {
            var lines = body.Split('\n');
            int start = Array.FindIndex(lines, l => l.TrimStart().StartsWith("```yaml", StringComparison.Ordinal));
            int end = start < 0 ? -1 : Array.FindIndex(lines, start + 1, l => l.TrimStart().StartsWith("```", StringComparison.Ordinal));
            parameter.Description = string.Join("\n", start < 0 ? lines : lines.Take(start)).Trim();
            if (start < 0 || end < 0)
            {
                return;
            }

            foreach (string line in lines.Skip(start + 1).Take(end - start - 1))
            {
                int colon = line.IndexOf(':');
                if (colon > 0)
                {
                    parameter.Fields[line.Substring(0, colon).Trim()] = line.Substring(colon + 1).Trim();
                }
            }
        }
    }
}
