using System;
using System.Collections.Generic;
using System.Linq;
using System.Text.RegularExpressions;
using System.Xml.Linq;

namespace VDiskPS.Stage
{
    /// <summary>Turns platyPS-schema markdown into the MAML XML that Get-Help reads (VDiskPS.dll-Help.xml).</summary>
    public static class MamlWriter
    {
        private static readonly XNamespace Msh = "http://msh";
        private static readonly XNamespace Maml = "http://schemas.microsoft.com/maml/2004/10";
        private static readonly XNamespace Command = "http://schemas.microsoft.com/maml/dev/command/2004/10";
        private static readonly XNamespace Dev = "http://schemas.microsoft.com/maml/dev/2004/10";

        public static XDocument Write(IEnumerable<HelpDocument> documents)
        {
            var root = new XElement(Msh + "helpItems",
                new XAttribute("schema", "maml"),
                new XAttribute(XNamespace.Xmlns + "maml", Maml),
                new XAttribute(XNamespace.Xmlns + "command", Command),
                new XAttribute(XNamespace.Xmlns + "dev", Dev));
            foreach (var doc in documents)
            {
                root.Add(CommandElement(doc));
            }

            return new XDocument(new XDeclaration("1.0", "utf-8", null), root);
        }

        private static XElement CommandElement(HelpDocument doc)
        {
            string[] nameParts = doc.Name.Split(new[] { '-' }, 2);
            var command = new XElement(Command + "command",
                new XElement(Command + "details",
                    new XElement(Command + "name", doc.Name),
                    new XElement(Command + "verb", nameParts[0]),
                    new XElement(Command + "noun", nameParts.Length > 1 ? nameParts[1] : string.Empty),
                    new XElement(Maml + "description", Paragraphs(doc.Synopsis))),
                new XElement(Maml + "description", Paragraphs(doc.Description)));

            var syntax = new XElement(Command + "syntax");
            foreach (var (setName, _, line) in doc.Syntax)
            {
                var item = new XElement(Command + "syntaxItem", new XElement(Maml + "name", doc.Name));
                foreach (Match m in Regex.Matches(line, @"-(\w+)"))
                {
                    var p = doc.Parameters.FirstOrDefault(x => string.Equals(x.Name, m.Groups[1].Value, StringComparison.OrdinalIgnoreCase));
                    if (p != null)
                    {
                        item.Add(ParameterElement(p, SetSpecificRequired(p, setName)));
                    }
                }

                syntax.Add(item);
            }

            command.Add(syntax);
            var parameters = new XElement(Command + "parameters");
            foreach (var p in doc.Parameters)
            {
                parameters.Add(ParameterElement(p, p.Field("Required").StartsWith("True", StringComparison.OrdinalIgnoreCase)));
            }

            command.Add(parameters);
            command.Add(new XElement(Command + "inputTypes", doc.Inputs.Select(t =>
                new XElement(Command + "inputType", new XElement(Dev + "type", new XElement(Maml + "name", t)), new XElement(Maml + "description")))));
            command.Add(new XElement(Command + "returnValues", doc.Outputs.Select(t =>
                new XElement(Command + "returnValue", new XElement(Dev + "type", new XElement(Maml + "name", t)), new XElement(Maml + "description")))));
            command.Add(new XElement(Maml + "alertSet", new XElement(Maml + "alert", Paragraphs(doc.Notes))));
            command.Add(new XElement(Command + "examples", doc.Examples.Select(e =>
                new XElement(Command + "example",
                    new XElement(Maml + "title", "-------------------------- " + e.Title + " --------------------------"),
                    new XElement(Dev + "code", e.Code),
                    new XElement(Dev + "remarks", Paragraphs(e.Remarks))))));
            command.Add(new XElement(Command + "relatedLinks", Regex.Matches(doc.RelatedLinks ?? string.Empty, @"\[([^\]]+)\]\(([^)]*)\)").Cast<Match>().Select(m =>
                new XElement(Maml + "navigationLink", new XElement(Maml + "linkText", m.Groups[1].Value), new XElement(Maml + "uri", m.Groups[2].Value)))));
            return command;
        }

        private static bool SetSpecificRequired(HelpParameter p, string set)
        {
            string required = p.Field("Required");
            var m = Regex.Match(required, @"(True|False) \(" + Regex.Escape(set) + @"\)");
            return m.Success ? m.Groups[1].Value == "True" : required.StartsWith("True", StringComparison.OrdinalIgnoreCase);
        }

        private static XElement ParameterElement(HelpParameter p, bool required)
        {
            string pipeline = p.Field("Accept pipeline input");
            string position = p.Field("Position");
            var element = new XElement(Command + "parameter",
                new XAttribute("required", required ? "true" : "false"),
                new XAttribute("variableLength", "true"),
                new XAttribute("globbing", p.Field("Accept wildcard characters").StartsWith("True", StringComparison.OrdinalIgnoreCase) ? "true" : "false"),
                new XAttribute("pipelineInput", string.IsNullOrEmpty(pipeline) ? "False" : pipeline),
                new XAttribute("position", string.IsNullOrEmpty(position) || position == "Named" ? "named" : position),
                new XAttribute("aliases", string.IsNullOrEmpty(p.Field("Aliases")) ? "none" : p.Field("Aliases")),
                new XElement(Maml + "name", p.Name),
                new XElement(Maml + "description", Paragraphs(p.Description)));
            string type = p.Field("Type");
            if (type != "SwitchParameter")
            {
                element.Add(new XElement(Command + "parameterValue", new XAttribute("required", "true"), new XAttribute("variableLength", "false"), type));
            }

            element.Add(new XElement(Dev + "type", new XElement(Maml + "name", type)));
            element.Add(new XElement(Dev + "defaultValue", p.Field("Default value")));
            return element;
        }

        private static IEnumerable<XElement> Paragraphs(string text)
        {
            foreach (string para in Regex.Split(text ?? string.Empty, @"\n\s*\n"))
            {
                string t = para.Trim();
                if (t.Length > 0)
                {
                    yield return new XElement(Maml + "para", t);
                }
            }
        }
    }
}
