using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Reflection;
using System.Runtime.InteropServices;

namespace VDiskPS.Stage
{
    /// <summary>One parameter's membership in one parameter set.</summary>
    public sealed class ParameterSetEntry
    {
        public string Name { get; set; } = AllSets;
        public bool Mandatory { get; set; }
        public int Position { get; set; } = int.MinValue;
        public bool ValueFromPipeline { get; set; }
        public bool ValueFromPipelineByPropertyName { get; set; }
        public const string AllSets = "__AllParameterSets";
    }

    public sealed class ParameterInfoModel
    {
        public string Name { get; set; }
        public string TypeName { get; set; }
        public string TypeFullName { get; set; }
        public bool IsSwitch => TypeFullName == "System.Management.Automation.SwitchParameter";
        public List<string> Aliases { get; } = new List<string>();
        public List<string> ValidValues { get; } = new List<string>();
        public List<ParameterSetEntry> Sets { get; } = new List<ParameterSetEntry>();
        public string Summary { get; set; }
        /// <summary>The default a [PSDefaultValue(Value = ...)] attribute states, or null.</summary>
        public string DefaultValue { get; set; }
    }

    public sealed class CmdletModel
    {
        public string Verb { get; set; }
        public string Noun { get; set; }
        public string Name => Verb + "-" + Noun;
        public string ClassName { get; set; }
        public string DefaultParameterSetName { get; set; }
        public bool SupportsShouldProcess { get; set; }
        public string ConfirmImpact { get; set; } = "Medium";
        public List<string> OutputTypes { get; } = new List<string>();
        public List<ParameterInfoModel> Parameters { get; } = new List<ParameterInfoModel>();
        public string Summary { get; set; }

        /// <summary>Every named parameter set (or "__AllParameterSets" alone).</summary>
        public IReadOnlyList<string> ParameterSetNames
        {
            get
            {
                var names = Parameters.SelectMany(p => p.Sets).Select(s => s.Name).Where(n => n != ParameterSetEntry.AllSets).Distinct().ToList();
                return names.Count == 0 ? new List<string> { ParameterSetEntry.AllSets } : names;
            }
        }

        /// <summary>The parameter's entry for a set (its own, or its all-sets entry).</summary>
        public ParameterSetEntry EntryFor(ParameterInfoModel p, string set)
            => p.Sets.FirstOrDefault(s => s.Name == set) ?? p.Sets.FirstOrDefault(s => s.Name == ParameterSetEntry.AllSets);
    }

    /// <summary>
    /// Reads the cmdlet declarations of VDiskPS.dll without loading PowerShell: through
    /// MetadataLoadContext against the PowerShellStandard reference assembly.
    /// </summary>
    public static class CmdletMetadata
    {
        public static string PowerShellStandardAssembly()
        {
            string dir = typeof(CmdletMetadata).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>().First(a => a.Key == "PowerShellStandardDir").Value;
            return Path.Combine(dir, "lib", "netstandard2.0", "System.Management.Automation.dll");
        }

        /// <summary>
        /// A list of the engine's format registry (ReadableNames, CreatableNames), read by running the engine
        /// assembly beside the module: the -Format values come from the registry, not from the cmdlets.
        /// </summary>
        public static IReadOnlyList<string> RegistryNames(string moduleAssemblyPath, string property)
        {
            string dir = Path.GetDirectoryName(Path.GetFullPath(moduleAssemblyPath));
            var context = new System.Runtime.Loader.AssemblyLoadContext("vdiskps-formats", isCollectible: true);
            context.Resolving += (c, name) =>
            {
                string candidate = Path.Combine(dir, name.Name + ".dll");
                return File.Exists(candidate) ? c.LoadFromAssemblyPath(candidate) : null;
            };
            try
            {
                Assembly engine = context.LoadFromAssemblyPath(Path.Combine(dir, "VDiskPS.Formats.dll"));
                Type registry = engine.GetType("VDiskPS.Formats.FormatRegistry", throwOnError: true);
                object instance = registry.GetProperty("Default").GetValue(null);
                return ((IEnumerable<string>)registry.GetProperty(property).GetValue(instance)).ToList();
            }
            finally
            {
                context.Unload();
            }
        }

        public static List<CmdletModel> Load(string moduleAssemblyPath)
        {
            moduleAssemblyPath = Path.GetFullPath(moduleAssemblyPath);
            var paths = new List<string>(Directory.GetFiles(RuntimeEnvironment.GetRuntimeDirectory(), "*.dll"));
            paths.AddRange(Directory.GetFiles(Path.GetDirectoryName(moduleAssemblyPath), "*.dll").Where(f => !Path.GetFileName(f).Equals("System.Management.Automation.dll", StringComparison.OrdinalIgnoreCase)));
            paths.Add(PowerShellStandardAssembly());
            var resolver = new PathAssemblyResolver(paths.GroupBy(Path.GetFileName, StringComparer.OrdinalIgnoreCase).Select(g => g.Last()));
            using var context = new MetadataLoadContext(resolver, "netstandard");
            Assembly module = context.LoadFromAssemblyPath(moduleAssemblyPath);
            var docs = XmlDocs.Load(Path.ChangeExtension(moduleAssemblyPath, ".xml"));
            var result = new List<CmdletModel>();
            foreach (Type type in module.GetTypes().Where(t => t.IsPublic && !t.IsAbstract))
            {
                var cmdletAttr = type.GetCustomAttributesData().FirstOrDefault(a => a.AttributeType.FullName == "System.Management.Automation.CmdletAttribute");
                if (cmdletAttr == null)
                {
                    continue;
                }

                var model = new CmdletModel
                {
                    Verb = (string)cmdletAttr.ConstructorArguments[0].Value,
                    Noun = (string)cmdletAttr.ConstructorArguments[1].Value,
                    ClassName = type.FullName,
                    Summary = docs.Summary("T:" + type.FullName),
                };
                foreach (var named in cmdletAttr.NamedArguments)
                {
                    switch (named.MemberName)
                    {
                        case "DefaultParameterSetName":
                            model.DefaultParameterSetName = (string)named.TypedValue.Value;
                            break;
                        case "SupportsShouldProcess":
                            model.SupportsShouldProcess = (bool)named.TypedValue.Value;
                            break;
                        case "ConfirmImpact":
                            model.ConfirmImpact = Enum.GetName(typeof(ConfirmImpactNames), (int)named.TypedValue.Value) ?? named.TypedValue.Value.ToString();
                            break;
                    }
                }

                foreach (var output in type.GetCustomAttributesData().Where(a => a.AttributeType.FullName == "System.Management.Automation.OutputTypeAttribute"))
                {
                    foreach (var arg in output.ConstructorArguments)
                    {
                        if (arg.Value is IEnumerable<CustomAttributeTypedArgument> many)
                        {
                            model.OutputTypes.AddRange(many.Select(m => m.Value is Type t ? t.FullName : m.Value?.ToString()));
                        }
                        else
                        {
                            model.OutputTypes.Add(arg.Value is Type t ? t.FullName : arg.Value?.ToString());
                        }
                    }
                }

                foreach (PropertyInfo property in type.GetProperties(BindingFlags.Public | BindingFlags.Instance))
                {
                    var parameterAttrs = property.GetCustomAttributesData().Where(a => a.AttributeType.FullName == "System.Management.Automation.ParameterAttribute").ToList();
                    if (parameterAttrs.Count == 0)
                    {
                        continue;
                    }

                    var parameter = new ParameterInfoModel
                    {
                        Name = property.Name,
                        TypeName = FriendlyTypeName(property.PropertyType),
                        TypeFullName = property.PropertyType.FullName,
                        Summary = docs.Summary("P:" + property.DeclaringType.FullName + "." + property.Name),
                    };
                    foreach (var attr in parameterAttrs)
                    {
                        var entry = new ParameterSetEntry();
                        foreach (var named in attr.NamedArguments)
                        {
                            switch (named.MemberName)
                            {
                                case "ParameterSetName": entry.Name = (string)named.TypedValue.Value; break;
                                case "Mandatory": entry.Mandatory = (bool)named.TypedValue.Value; break;
                                case "Position": entry.Position = (int)named.TypedValue.Value; break;
                                case "ValueFromPipeline": entry.ValueFromPipeline = (bool)named.TypedValue.Value; break;
                                case "ValueFromPipelineByPropertyName": entry.ValueFromPipelineByPropertyName = (bool)named.TypedValue.Value; break;
                            }
                        }

                        parameter.Sets.Add(entry);
                    }

                    foreach (var alias in property.GetCustomAttributesData().Where(a => a.AttributeType.FullName == "System.Management.Automation.AliasAttribute"))
                    {
                        foreach (var arg in (IEnumerable<CustomAttributeTypedArgument>)alias.ConstructorArguments[0].Value)
                        {
                            parameter.Aliases.Add((string)arg.Value);
                        }
                    }

                    foreach (var validate in property.GetCustomAttributesData().Where(a => a.AttributeType.FullName == "System.Management.Automation.ValidateSetAttribute"))
                    {
                        foreach (var arg in (IEnumerable<CustomAttributeTypedArgument>)validate.ConstructorArguments[0].Value)
                        {
                            parameter.ValidValues.Add((string)arg.Value);
                        }
                    }

                    if (property.PropertyType.IsEnum)
                    {
                        parameter.ValidValues.AddRange(property.PropertyType.GetEnumNames());
                    }

                    foreach (var validate in property.GetCustomAttributesData().Where(a => a.AttributeType.FullName == "VDiskPS.ValidateReadableFormatAttribute" || a.AttributeType.FullName == "VDiskPS.ValidateWritableFormatAttribute"))
                    {
                        parameter.ValidValues.AddRange(RegistryNames(moduleAssemblyPath, validate.AttributeType.Name.Contains("Writable") ? "CreatableNames" : "ReadableNames"));
                    }

                    var defaultValue = property.GetCustomAttributesData().FirstOrDefault(a => a.AttributeType.FullName == "System.Management.Automation.PSDefaultValueAttribute");
                    parameter.DefaultValue = defaultValue?.NamedArguments.Where(n => n.MemberName == "Value").Select(n => n.TypedValue.Value?.ToString()).FirstOrDefault();

                    model.Parameters.Add(parameter);
                }

                result.Add(model);
            }

            return result.OrderBy(c => c.Name, StringComparer.Ordinal).ToList();
        }

        private static string FriendlyTypeName(Type type)
        {
            if (type.IsArray)
            {
                return FriendlyTypeName(type.GetElementType()) + "[]";
            }

            if (type.IsGenericType && type.GetGenericTypeDefinition().FullName == "System.Nullable`1")
            {
                return FriendlyTypeName(type.GetGenericArguments()[0]);
            }

            return type.Name;
        }

        private enum ConfirmImpactNames
        {
            None,
            Low,
            Medium,
            High,
        }
    }

    /// <summary>The /// summaries of the compiler's documentation file.</summary>
    public sealed class XmlDocs
    {
        private readonly Dictionary<string, string> _summaries = new Dictionary<string, string>(StringComparer.Ordinal);

        public static XmlDocs Load(string path)
        {
            var docs = new XmlDocs();
            if (!File.Exists(path))
            {
                return docs;
            }

            var xml = System.Xml.Linq.XDocument.Load(path);
            foreach (var member in xml.Descendants("member"))
            {
                var summary = member.Element("summary");
                if (summary != null)
                {
                    string text = string.Join(" ", summary.Value.Split(new[] { '\n', '\r' }, StringSplitOptions.RemoveEmptyEntries).Select(l => l.Trim())).Trim();
                    docs._summaries[(string)member.Attribute("name")] = text;
                }
            }

            return docs;
        }

        public string Summary(string id) => _summaries.TryGetValue(id, out string s) ? s : null;
    }
}
