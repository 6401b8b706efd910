using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text;

namespace VDiskPS.Formats.Tests.Ova
{
    /// <summary>
    /// OVF packages built by other tools: streamOptimized VMDKs by qemu-img, the manifest by coreutils
    /// (sha1sum/sha256sum --tag), the archive by GNU tar --format=ustar; only the descriptor is written
    /// here, by hand, in the form ovftool gives it.
    /// </summary>
    internal static class OvaFixtures
    {
        public const string PythonPath = "/usr/bin/python3";

        /// <summary>A foreign OVA of the given raw disks (disk1.vmdk, ...); returns its path.</summary>
        public static string ForeignOva(TempDir dir, IReadOnlyList<string> raws, string hashTool = "sha256sum", bool withCert = false, string name = "appliance")
        {
            string folder = Path.Combine(dir.Path, name + "-parts");
            Directory.CreateDirectory(folder);
            var files = ForeignParts(folder, raws, hashTool, withCert, name);
            string ova = dir.File(name + ".ova");
            Tool("tar", folder, new[] { "--format=ustar", "-cf", ova }.Concat(files).ToArray());
            return ova;
        }

        /// <summary>The files of a foreign package in <paramref name="folder"/>, in archive order.</summary>
        public static List<string> ForeignParts(string folder, IReadOnlyList<string> raws, string hashTool, bool withCert, string name)
        {
            var disks = new List<string>();
            var sizes = new List<long>();
            for (int i = 0; i < raws.Count; i++)
            {
                string vmdk = $"disk{i + 1}.vmdk";
                Qemu.Img("convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized", raws[i], Path.Combine(folder, vmdk));
                disks.Add(vmdk);
                sizes.Add(new FileInfo(raws[i]).Length);
            }

            File.WriteAllText(Path.Combine(folder, name + ".ovf"), Descriptor(name, disks, sizes, disks.Select(d => new FileInfo(Path.Combine(folder, d)).Length).ToList()));
            var files = new List<string> { name + ".ovf" };
            files.AddRange(disks);
            string manifest = Tool(hashTool, folder, new[] { "--tag" }.Concat(files).ToArray());
            File.WriteAllText(Path.Combine(folder, name + ".mf"), manifest);
            files.Add(name + ".mf");
            if (withCert)
            {
                File.WriteAllText(Path.Combine(folder, name + ".cert"), "SHA256(" + name + ".mf)= 00\n-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
                files.Add(name + ".cert");
            }

            return files;
        }

        /// <summary>An ovftool-style descriptor: 2 CPUs, 4096 MiB, EFI, the disks on one SATA controller.</summary>
        public static string Descriptor(string name, IReadOnlyList<string> files, IReadOnlyList<long> capacities, IReadOnlyList<long> fileSizes)
        {
            var text = new StringBuilder();
            text.Append("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
            text.Append("<Envelope vmw:buildId=\"build-1\" xmlns=\"http://schemas.dmtf.org/ovf/envelope/1\" xmlns:cim=\"http://schemas.dmtf.org/wbem/wscim/1/common\" xmlns:ovf=\"http://schemas.dmtf.org/ovf/envelope/1\" xmlns:rasd=\"http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData\" xmlns:vmw=\"http://www.vmware.com/schema/ovf\" xmlns:vssd=\"http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\">\n");
            text.Append("  <References>\n");
            for (int i = 0; i < files.Count; i++)
            {
                text.Append($"    <File ovf:href=\"{files[i]}\" ovf:id=\"file{i + 1}\" ovf:size=\"{fileSizes[i]}\"/>\n");
            }

            text.Append("  </References>\n  <DiskSection>\n    <Info>Virtual disk information</Info>\n");
            for (int i = 0; i < files.Count; i++)
            {
                text.Append($"    <Disk ovf:capacity=\"{capacities[i] >> 20}\" ovf:capacityAllocationUnits=\"byte * 2^20\" ovf:diskId=\"vmdisk{i + 1}\" ovf:fileRef=\"file{i + 1}\" ovf:format=\"http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized\" ovf:populatedSize=\"0\"/>\n");
            }

            text.Append("  </DiskSection>\n  <NetworkSection>\n    <Info>The list of logical networks</Info>\n    <Network ovf:name=\"VM Network\">\n      <Description>The VM Network network</Description>\n    </Network>\n  </NetworkSection>\n");
            text.Append($"  <VirtualSystem ovf:id=\"{name}\">\n    <Info>A virtual machine</Info>\n    <Name>{name}</Name>\n");
            text.Append("    <OperatingSystemSection ovf:id=\"94\" vmw:osType=\"ubuntu64Guest\">\n      <Info>The kind of installed guest operating system</Info>\n    </OperatingSystemSection>\n");
            text.Append("    <VirtualHardwareSection>\n      <Info>Virtual hardware requirements</Info>\n      <System>\n        <vssd:ElementName>Virtual Hardware Family</vssd:ElementName>\n        <vssd:InstanceID>0</vssd:InstanceID>\n        <vssd:VirtualSystemIdentifier>" + name + "</vssd:VirtualSystemIdentifier>\n        <vssd:VirtualSystemType>vmx-14</vssd:VirtualSystemType>\n      </System>\n");
            text.Append("      <Item>\n        <rasd:AllocationUnits>hertz * 10^6</rasd:AllocationUnits>\n        <rasd:Description>Number of Virtual CPUs</rasd:Description>\n        <rasd:ElementName>2 virtual CPU(s)</rasd:ElementName>\n        <rasd:InstanceID>1</rasd:InstanceID>\n        <rasd:ResourceType>3</rasd:ResourceType>\n        <rasd:VirtualQuantity>2</rasd:VirtualQuantity>\n      </Item>\n");
            text.Append("      <Item>\n        <rasd:AllocationUnits>byte * 2^30</rasd:AllocationUnits>\n        <rasd:Description>Memory Size</rasd:Description>\n        <rasd:ElementName>4GB of memory</rasd:ElementName>\n        <rasd:InstanceID>2</rasd:InstanceID>\n        <rasd:ResourceType>4</rasd:ResourceType>\n        <rasd:VirtualQuantity>4</rasd:VirtualQuantity>\n      </Item>\n");
            text.Append("      <Item>\n        <rasd:Address>0</rasd:Address>\n        <rasd:Description>SATA Controller</rasd:Description>\n        <rasd:ElementName>SATA controller 0</rasd:ElementName>\n        <rasd:InstanceID>3</rasd:InstanceID>\n        <rasd:ResourceSubType>vmware.sata.ahci</rasd:ResourceSubType>\n        <rasd:ResourceType>20</rasd:ResourceType>\n      </Item>\n");
            for (int i = 0; i < files.Count; i++)
            {
                text.Append($"      <Item>\n        <rasd:AddressOnParent>{i}</rasd:AddressOnParent>\n        <rasd:ElementName>Hard disk {i + 1}</rasd:ElementName>\n        <rasd:HostResource>ovf:/disk/vmdisk{i + 1}</rasd:HostResource>\n        <rasd:InstanceID>{4 + i}</rasd:InstanceID>\n        <rasd:Parent>3</rasd:Parent>\n        <rasd:ResourceType>17</rasd:ResourceType>\n      </Item>\n");
            }

            text.Append("      <vmw:Config ovf:required=\"false\" vmw:key=\"firmware\" vmw:value=\"efi\"/>\n    </VirtualHardwareSection>\n  </VirtualSystem>\n</Envelope>\n");
            return text.ToString();
        }

        /// <summary>A raw image of <paramref name="size"/> bytes with data at a few places (seeded), zeros elsewhere.</summary>
        public static string Raw(TempDir dir, string name, long size, int seed)
        {
            string path = dir.File(name);
            using (var file = File.Create(path))
            {
                file.SetLength(size);
                file.Position = 0;
                file.Write(TestData.Pattern(300000, seed));
                file.Position = (3L << 20) + 777;
                file.Write(TestData.Pattern(90000, seed + 1));
                file.Position = size - 4096;
                file.Write(TestData.Pattern(4096, seed + 2));
            }

            return path;
        }

        /// <summary>Runs a tool in <paramref name="folder"/>; throws with its output when it fails.</summary>
        public static string Tool(string tool, string folder, params string[] args)
        {
            var (code, output) = Qemu.Run(tool, args, false, folder);
            if (code != 0)
            {
                throw new InvalidOperationException($"{tool} {string.Join(" ", args)} exited {code}: {output}");
            }

            return output;
        }

        /// <summary>Extracts an archive with GNU tar into a new folder and returns it.</summary>
        public static string Extract(TempDir dir, string ova)
        {
            string folder = Path.Combine(dir.Path, "extracted-" + Guid.NewGuid().ToString("N").Substring(0, 6));
            Directory.CreateDirectory(folder);
            Tool("tar", folder, "-xf", ova);
            return folder;
        }
    }
}
