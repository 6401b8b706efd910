using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Text;
using System.Xml;
using System.Xml.Linq;

namespace VDiskPS.Formats.Ova
{
    /// <summary>The controller the disks of an exported package hang on.</summary>
    public enum OvfControllerType
    {
        Scsi,
        Sata,
        Ide,
    }

    /// <summary>The firmware an exported package asks for.</summary>
    public enum OvfFirmware
    {
        Bios,
        Efi,
    }

    /// <summary>What an exported descriptor says: the VM and its disks as written.</summary>
    internal sealed class OvfExportSpec
    {
        public string Name { get; set; }

        public int CpuCount { get; set; }

        public long MemoryMB { get; set; }

        public OvfFirmware Firmware { get; set; }

        public OvfGuest Guest { get; set; }

        public OvfControllerType Controller { get; set; }

        public List<OvfDisk> Disks { get; } = new List<OvfDisk>();
    }

    /// <summary>
    /// OVF 1.x descriptors (DMTF DSP0243): written for an export, parsed for reading a package. The
    /// parser is bounded (<see cref="MaxSize"/>, no DTD, no external entities) and gives typed errors.
    /// </summary>
    internal static class OvfDescriptor
    {
        public const string OvfNs = "http://schemas.dmtf.org/ovf/envelope/1";
        public const string Ovf2Ns = "http://schemas.dmtf.org/ovf/envelope/2";
        public const string RasdNs = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData";
        public const string VssdNs = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData";
        public const string VmwNs = "http://www.vmware.com/schema/ovf";
        public const string CimNs = "http://schemas.dmtf.org/wbem/wscim/1/common";
        public const string XsiNs = "http://www.w3.org/2001/XMLSchema-instance";
        public const string NetworkName = "VM Network";

        /// <summary>Descriptors larger than this are refused (real ones are a few tens of KiB).</summary>
        public const int MaxSize = 4 << 20;

        private const int ResourceCpu = 3;
        private const int ResourceMemory = 4;
        private const int ResourceIde = 5;
        private const int ResourceScsi = 6;
        private const int ResourceEthernet = 10;
        private const int ResourceDisk = 17;
        private const int ResourceOtherStorage = 20;

        /// <summary>The units each controller takes, and the addresses it skips (SCSI id 7 is the controller's own).</summary>
        public static int MaxDisks(OvfControllerType controller) => controller == OvfControllerType.Ide ? 2 : controller == OvfControllerType.Scsi ? 15 : 30;

        /// <summary>The descriptor text. Numbers are exact; the caller pads the text to the length it reserved.</summary>
        public static string Write(OvfExportSpec spec)
        {
            var settings = new XmlWriterSettings { Indent = true, Encoding = new UTF8Encoding(false), OmitXmlDeclaration = false };
            var text = new StringBuilder();
            using (var writer = XmlWriter.Create(new Utf8StringWriter(text), settings))
            {
                writer.WriteStartDocument();
                writer.WriteStartElement("Envelope", OvfNs);
                writer.WriteAttributeString("xmlns", "ovf", null, OvfNs);
                writer.WriteAttributeString("xmlns", "cim", null, CimNs);
                writer.WriteAttributeString("xmlns", "rasd", null, RasdNs);
                writer.WriteAttributeString("xmlns", "vmw", null, VmwNs);
                writer.WriteAttributeString("xmlns", "vssd", null, VssdNs);
                writer.WriteAttributeString("xmlns", "xsi", null, XsiNs);

                writer.WriteStartElement("References", OvfNs);
                foreach (OvfDisk disk in spec.Disks)
                {
                    writer.WriteStartElement("File", OvfNs);
                    writer.WriteAttributeString("href", OvfNs, disk.File);
                    writer.WriteAttributeString("id", OvfNs, disk.FileId);
                    writer.WriteAttributeString("size", OvfNs, Number(disk.FileSize ?? 0));
                    writer.WriteEndElement();
                }

                writer.WriteEndElement();

                writer.WriteStartElement("DiskSection", OvfNs);
                writer.WriteElementString("Info", OvfNs, "Virtual disk information");
                foreach (OvfDisk disk in spec.Disks)
                {
                    writer.WriteStartElement("Disk", OvfNs);
                    writer.WriteAttributeString("capacity", OvfNs, Number(disk.Capacity));
                    writer.WriteAttributeString("capacityAllocationUnits", OvfNs, "byte");
                    writer.WriteAttributeString("diskId", OvfNs, disk.DiskId);
                    writer.WriteAttributeString("fileRef", OvfNs, disk.FileId);
                    writer.WriteAttributeString("format", OvfNs, disk.Format);
                    writer.WriteAttributeString("populatedSize", OvfNs, Number(disk.PopulatedSize ?? 0));
                    writer.WriteEndElement();
                }

                writer.WriteEndElement();

                writer.WriteStartElement("NetworkSection", OvfNs);
                writer.WriteElementString("Info", OvfNs, "The list of logical networks");
                writer.WriteStartElement("Network", OvfNs);
                writer.WriteAttributeString("name", OvfNs, NetworkName);
                writer.WriteElementString("Description", OvfNs, $"The {NetworkName} network");
                writer.WriteEndElement();
                writer.WriteEndElement();

                writer.WriteStartElement("VirtualSystem", OvfNs);
                writer.WriteAttributeString("id", OvfNs, spec.Name);
                writer.WriteElementString("Info", OvfNs, "A virtual machine");
                writer.WriteElementString("Name", OvfNs, spec.Name);

                writer.WriteStartElement("OperatingSystemSection", OvfNs);
                writer.WriteAttributeString("id", OvfNs, Number(spec.Guest.CimId));
                writer.WriteAttributeString("osType", VmwNs, spec.Guest.VmwareId);
                writer.WriteElementString("Info", OvfNs, "The kind of installed guest operating system");
                writer.WriteElementString("Description", OvfNs, spec.Guest.Description);
                writer.WriteEndElement();

                writer.WriteStartElement("VirtualHardwareSection", OvfNs);
                writer.WriteElementString("Info", OvfNs, "Virtual hardware requirements");
                writer.WriteStartElement("System", OvfNs);
                writer.WriteElementString("ElementName", VssdNs, "Virtual Hardware Family");
                writer.WriteElementString("InstanceID", VssdNs, "0");
                writer.WriteElementString("VirtualSystemIdentifier", VssdNs, spec.Name);
                writer.WriteElementString("VirtualSystemType", VssdNs, "vmx-13");
                writer.WriteEndElement();

                int instance = 1;
                WriteItem(writer, new SortedDictionary<string, string>(StringComparer.Ordinal)
                {
                    ["AllocationUnits"] = "hertz * 10^6",
                    ["Description"] = "Number of Virtual CPUs",
                    ["ElementName"] = $"{spec.CpuCount} virtual CPU(s)",
                    ["InstanceID"] = Number(instance++),
                    ["ResourceType"] = Number(ResourceCpu),
                    ["VirtualQuantity"] = Number(spec.CpuCount),
                });
                WriteItem(writer, new SortedDictionary<string, string>(StringComparer.Ordinal)
                {
                    ["AllocationUnits"] = "byte * 2^20",
                    ["Description"] = "Memory Size",
                    ["ElementName"] = $"{spec.MemoryMB}MB of memory",
                    ["InstanceID"] = Number(instance++),
                    ["ResourceType"] = Number(ResourceMemory),
                    ["VirtualQuantity"] = Number(spec.MemoryMB),
                });

                int controllerId = instance++;
                var controller = new SortedDictionary<string, string>(StringComparer.Ordinal)
                {
                    ["Address"] = "0",
                    ["InstanceID"] = Number(controllerId),
                };
                switch (spec.Controller)
                {
                    case OvfControllerType.Ide:
                        controller["Description"] = "IDE Controller";
                        controller["ElementName"] = "IDE 0";
                        controller["ResourceType"] = Number(ResourceIde);
                        break;
                    case OvfControllerType.Sata:
                        controller["Description"] = "SATA Controller";
                        controller["ElementName"] = "SATA controller 0";
                        controller["ResourceSubType"] = "vmware.sata.ahci";
                        controller["ResourceType"] = Number(ResourceOtherStorage);
                        break;
                    default:
                        controller["Description"] = "SCSI Controller";
                        controller["ElementName"] = "SCSI controller 0";
                        controller["ResourceSubType"] = "lsilogic";
                        controller["ResourceType"] = Number(ResourceScsi);
                        break;
                }

                WriteItem(writer, controller);
                for (int i = 0; i < spec.Disks.Count; i++)
                {
                    OvfDisk disk = spec.Disks[i];
                    WriteItem(writer, new SortedDictionary<string, string>(StringComparer.Ordinal)
                    {
                        ["AddressOnParent"] = Number(disk.Address ?? i),
                        ["ElementName"] = $"Hard disk {i + 1}",
                        ["HostResource"] = "ovf:/disk/" + disk.DiskId,
                        ["InstanceID"] = Number(instance++),
                        ["Parent"] = Number(controllerId),
                        ["ResourceType"] = Number(ResourceDisk),
                    });
                }

                WriteItem(writer, new SortedDictionary<string, string>(StringComparer.Ordinal)
                {
                    ["AddressOnParent"] = "7",
                    ["AutomaticAllocation"] = "true",
                    ["Connection"] = NetworkName,
                    ["Description"] = $"E1000 ethernet adapter on \"{NetworkName}\"",
                    ["ElementName"] = "Network adapter 1",
                    ["InstanceID"] = Number(instance++),
                    ["ResourceSubType"] = "E1000",
                    ["ResourceType"] = Number(ResourceEthernet),
                });

                writer.WriteStartElement("Config", VmwNs);
                writer.WriteAttributeString("required", OvfNs, "false");
                writer.WriteAttributeString("key", VmwNs, "firmware");
                writer.WriteAttributeString("value", VmwNs, spec.Firmware == OvfFirmware.Efi ? "efi" : "bios");
                writer.WriteEndElement();

                writer.WriteEndElement();
                writer.WriteEndElement();
                writer.WriteEndElement();
                writer.WriteEndDocument();
            }

            return text.Append('\n').ToString();
        }

        /// <summary>Reads the VM and its disks from descriptor bytes; <paramref name="path"/> names the descriptor in errors.</summary>
        public static OvfVirtualMachine Parse(byte[] bytes, string path)
        {
            if (bytes.Length > MaxSize)
            {
                throw new ImageCorruptException(path, "OVF descriptor", 0, $"the descriptor is {bytes.Length} bytes long; at most {MaxSize} are accepted");
            }

            XDocument document;
            try
            {
                var settings = new XmlReaderSettings { DtdProcessing = DtdProcessing.Prohibit, XmlResolver = null, MaxCharactersInDocument = MaxSize, MaxCharactersFromEntities = 1024 };
                using (var reader = XmlReader.Create(new MemoryStream(bytes), settings))
                {
                    document = XDocument.Load(reader, LoadOptions.SetLineInfo);
                }
            }
            catch (XmlException e)
            {
                throw new ImageCorruptException(path, "OVF descriptor", null, $"the descriptor is not well-formed XML (line {e.LineNumber}, position {e.LinePosition}): {e.Message}", e);
            }

            XElement envelope = document.Root;
            XNamespace ovf = envelope?.Name.Namespace;
            if (envelope == null || envelope.Name.LocalName != "Envelope" || (ovf != OvfNs && ovf != Ovf2Ns))
            {
                throw new ImageFormatMismatchException(path, "OVF descriptor", 0, $"the root element is {envelope?.Name.ToString() ?? "missing"}, not an OVF 1.x or 2.x Envelope ({OvfNs})");
            }

            XNamespace rasd = RasdNs;
            XNamespace vmw = VmwNs;
            var files = new Dictionary<string, (string Href, long? Size)>(StringComparer.Ordinal);
            foreach (XElement file in envelope.Elements(ovf + "References").Elements(ovf + "File"))
            {
                string id = Required(file, ovf + "id", path);
                string href = Required(file, ovf + "href", path);
                files[id] = (href, OptionalLong(file, ovf + "size", path));
            }

            XElement system = envelope.Descendants(ovf + "VirtualSystem").FirstOrDefault()
                ?? throw new ImageCorruptException(path, "VirtualSystem", null, "the descriptor describes no VirtualSystem");
            var machine = new OvfVirtualMachine
            {
                Id = (string)system.Attribute(ovf + "id"),
                Firmware = "bios",
                Networks = envelope.Elements(ovf + "NetworkSection").Elements(ovf + "Network").Select(n => (string)n.Attribute(ovf + "name")).Where(n => n != null).ToArray(),
            };
            machine.Name = (string)system.Element(ovf + "Name") ?? machine.Id;
            XElement os = system.Element(ovf + "OperatingSystemSection");
            if (os != null)
            {
                machine.OSId = (int?)OptionalLong(os, ovf + "id", path);
                machine.OSType = (string)os.Attribute(vmw + "osType") ?? (string)os.Element(ovf + "Description") ?? machine.OSId?.ToString(CultureInfo.InvariantCulture);
            }

            XElement hardware = system.Element(ovf + "VirtualHardwareSection");
            var items = hardware?.Elements(ovf + "Item").ToList() ?? new List<XElement>();
            machine.HardwareFamily = (string)hardware?.Element(ovf + "System")?.Element((XNamespace)VssdNs + "VirtualSystemType");
            foreach (XElement config in hardware?.Elements(vmw + "Config") ?? Enumerable.Empty<XElement>())
            {
                if ((string)config.Attribute(vmw + "key") == "firmware")
                {
                    machine.Firmware = ((string)config.Attribute(vmw + "value"))?.ToLowerInvariant() ?? "bios";
                }
            }

            var controllers = new Dictionary<string, XElement>(StringComparer.Ordinal);
            foreach (XElement item in items)
            {
                int type = ResourceType(item, rasd, path);
                string quantity = (string)item.Element(rasd + "VirtualQuantity");
                if (type == ResourceCpu && machine.CpuCount == null)
                {
                    machine.CpuCount = (int)ParseLong(quantity, path, "CPU VirtualQuantity");
                }
                else if (type == ResourceMemory && machine.MemoryMB == null)
                {
                    long bytes64 = ScaleToBytes(ParseLong(quantity, path, "memory VirtualQuantity"), (string)item.Element(rasd + "AllocationUnits") ?? "byte * 2^20", path, "memory AllocationUnits");
                    machine.MemoryMB = bytes64 / (1024 * 1024);
                }
                else if (type == ResourceIde || type == ResourceScsi || type == ResourceOtherStorage || type == 19 || type == 7 || type == 8)
                {
                    string id = (string)item.Element(rasd + "InstanceID");
                    if (id != null)
                    {
                        controllers[id] = item;
                    }
                }
            }

            var attachments = new Dictionary<string, XElement>(StringComparer.Ordinal);
            foreach (XElement item in items)
            {
                string host = (string)item.Element(rasd + "HostResource");
                if (ResourceType(item, rasd, path) == ResourceDisk && host != null)
                {
                    string diskId = host.StartsWith("ovf:/disk/", StringComparison.Ordinal) ? host.Substring(10) : host.StartsWith("/disk/", StringComparison.Ordinal) ? host.Substring(6) : host;
                    attachments[diskId] = item;
                }
            }

            var disks = new List<OvfDisk>();
            foreach (XElement disk in envelope.Elements(ovf + "DiskSection").Elements(ovf + "Disk"))
            {
                string diskId = Required(disk, ovf + "diskId", path);
                string fileRef = (string)disk.Attribute(ovf + "fileRef");
                long capacity = ParseLong(Required(disk, ovf + "capacity", path), path, $"capacity of disk '{diskId}'");
                var entry = new OvfDisk
                {
                    DiskId = diskId,
                    FileId = fileRef,
                    Capacity = ScaleToBytes(capacity, (string)disk.Attribute(ovf + "capacityAllocationUnits") ?? "byte", path, $"capacityAllocationUnits of disk '{diskId}'"),
                    PopulatedSize = OptionalLong(disk, ovf + "populatedSize", path),
                    Format = (string)disk.Attribute(ovf + "format"),
                };
                if (fileRef != null)
                {
                    if (!files.TryGetValue(fileRef, out var file))
                    {
                        throw new ImageCorruptException(path, "DiskSection", null, $"disk '{diskId}' names the file '{fileRef}', which References does not list");
                    }

                    entry.File = file.Href;
                    entry.FileSize = file.Size;
                }

                if (attachments.TryGetValue(diskId, out XElement attached))
                {
                    string address = (string)attached.Element(rasd + "AddressOnParent");
                    entry.Address = address == null ? (int?)null : (int)ParseLong(address, path, $"AddressOnParent of disk '{diskId}'");
                    string parent = (string)attached.Element(rasd + "Parent");
                    if (parent != null && controllers.TryGetValue(parent, out XElement controller))
                    {
                        entry.ControllerModel = (string)controller.Element(rasd + "ResourceSubType");
                        entry.Controller = ControllerName(ResourceType(controller, rasd, path), entry.ControllerModel);
                    }
                }

                disks.Add(entry);
            }

            machine.Disks = disks.ToArray();
            return machine;
        }

        private static string ControllerName(int type, string model)
        {
            switch (type)
            {
                case ResourceIde:
                    return "IDE";
                case ResourceScsi:
                    return "SCSI";
                case ResourceOtherStorage:
                    return model != null && model.IndexOf("nvme", StringComparison.OrdinalIgnoreCase) >= 0 ? "NVMe" : "SATA";
                default:
                    return type.ToString(CultureInfo.InvariantCulture);
            }
        }

        private static int ResourceType(XElement item, XNamespace rasd, string path)
        {
            string text = (string)item.Element(rasd + "ResourceType");
            return text == null ? 0 : (int)ParseLong(text, path, "ResourceType");
        }

        /// <summary>Bytes from a quantity and its units: "byte", "byte * 2^N", "byte * 10^N", and the old KiloBytes/MegaBytes/GigaBytes.</summary>
        internal static long ScaleToBytes(long quantity, string units, string path, string field)
        {
            string compact = units.Replace(" ", string.Empty).ToLowerInvariant();
            long factor;
            switch (compact)
            {
                case "byte":
                case "bytes":
                    factor = 1;
                    break;
                case "kilobytes":
                    factor = 1L << 10;
                    break;
                case "megabytes":
                    factor = 1L << 20;
                    break;
                case "gigabytes":
                    factor = 1L << 30;
                    break;
                default:
                    factor = PowerFactor(compact, path, field, units);
                    break;
            }

            if (quantity < 0 || (quantity > 0 && factor > long.MaxValue / quantity))
            {
                throw new ImageCorruptException(path, field, null, $"{quantity} x '{units}' is out of range");
            }

            return quantity * factor;
        }

        private static long PowerFactor(string compact, string path, string field, string units)
        {
            // "byte*2^30", "byte*10^6"
            if (compact.StartsWith("byte*", StringComparison.Ordinal))
            {
                string power = compact.Substring(5);
                int caret = power.IndexOf('^');
                if (caret > 0 && int.TryParse(power.Substring(0, caret), NumberStyles.None, CultureInfo.InvariantCulture, out int baseValue)
                    && int.TryParse(power.Substring(caret + 1), NumberStyles.None, CultureInfo.InvariantCulture, out int exponent)
                    && (baseValue == 2 || baseValue == 10) && exponent <= (baseValue == 2 ? 62 : 18))
                {
                    long factor = 1;
                    for (int i = 0; i < exponent; i++)
                    {
                        factor *= baseValue;
                    }

                    return factor;
                }
            }

            throw new ImageNotSupportedException(path, field, null, $"the units '{units}' are not understood (expected byte, byte * 2^N or byte * 10^N)");
        }

        private static string Required(XElement element, XName attribute, string path)
            => (string)element.Attribute(attribute) ?? throw new ImageCorruptException(path, $"{element.Name.LocalName}/@{attribute.LocalName}", null, $"a {element.Name.LocalName} element (line {((IXmlLineInfo)element).LineNumber}) lacks its {attribute.LocalName} attribute");

        private static long? OptionalLong(XElement element, XName attribute, string path)
        {
            string text = (string)element.Attribute(attribute);
            return text == null ? (long?)null : ParseLong(text, path, $"{element.Name.LocalName}/@{attribute.LocalName}");
        }

        private static long ParseLong(string text, string path, string field)
        {
            if (text == null || !long.TryParse(text.Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out long value))
            {
                throw new ImageCorruptException(path, field, null, $"'{text}' is not a non-negative whole number");
            }

            return value;
        }

        private static string Number(long value) => value.ToString(CultureInfo.InvariantCulture);

        private static void WriteItem(XmlWriter writer, SortedDictionary<string, string> fields)
        {
            // The CIM_ResourceAllocationSettingData schema is a sequence in alphabetical order.
            writer.WriteStartElement("Item", OvfNs);
            foreach (var field in fields)
            {
                writer.WriteElementString(field.Key, RasdNs, field.Value);
            }

            writer.WriteEndElement();
        }

        private sealed class Utf8StringWriter : StringWriter
        {
            public Utf8StringWriter(StringBuilder builder)
                : base(builder, CultureInfo.InvariantCulture)
            {
            }

            public override Encoding Encoding => new UTF8Encoding(false);
        }
    }
}
