"""Checks an OVF 1.x descriptor against the envelope rules the importers rely on (DSP0243):
namespaces, References/File ids matching DiskSection fileRef, one VirtualSystem with an id, and a
VirtualHardwareSection with CPU (3), memory (4), one controller (5/6/20) and disks (17) whose
Parent is that controller's InstanceID and whose HostResource names a DiskSection disk.
Prints OK or the broken rules; exit status 1 when a rule is broken."""
import sys
import xml.etree.ElementTree as ET

OVF = "http://schemas.dmtf.org/ovf/envelope/1"
RASD = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
VSSD = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData"
errors = []
root = ET.parse(sys.argv[1]).getroot()
if root.tag != "{%s}Envelope" % OVF:
    errors.append("root is %s" % root.tag)
o = lambda name: "{%s}%s" % (OVF, name)
r = lambda name: "{%s}%s" % (RASD, name)
files = {f.get(o("id")): f for f in root.findall("%s/%s" % (o("References"), o("File")))}
if not files:
    errors.append("References lists no File")
for f in files.values():
    if not f.get(o("href")) or not f.get(o("size")):
        errors.append("File without href/size")
disks = root.findall("%s/%s" % (o("DiskSection"), o("Disk")))
disk_ids = set()
for d in disks:
    disk_ids.add(d.get(o("diskId")))
    if d.get(o("fileRef")) not in files:
        errors.append("Disk fileRef %s not in References" % d.get(o("fileRef")))
    if not d.get(o("capacity")) or d.get(o("populatedSize")) is None:
        errors.append("Disk without capacity/populatedSize")
    if d.get(o("format")) != "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized":
        errors.append("Disk format %s" % d.get(o("format")))
if root.find(o("NetworkSection")) is None:
    errors.append("no NetworkSection")
systems = root.findall(o("VirtualSystem"))
if len(systems) != 1 or not systems[0].get(o("id")):
    errors.append("expected one VirtualSystem with an id")
else:
    hw = systems[0].find(o("VirtualHardwareSection"))
    if hw is None or hw.find(o("System")) is None or hw.find("%s/{%s}VirtualSystemType" % (o("System"), VSSD)) is None:
        errors.append("no VirtualHardwareSection/System/VirtualSystemType")
    items = hw.findall(o("Item")) if hw is not None else []
    types = [i.findtext(r("ResourceType")) for i in items]
    for needed in ("3", "4"):
        if types.count(needed) != 1:
            errors.append("ResourceType %s appears %d times" % (needed, types.count(needed)))
    controllers = [i for i in items if i.findtext(r("ResourceType")) in ("5", "6", "20")]
    if len(controllers) != 1:
        errors.append("expected one controller, found %d" % len(controllers))
    ids = [i.findtext(r("InstanceID")) for i in items]
    if len(ids) != len(set(ids)):
        errors.append("InstanceIDs repeat")
    for i in items:
        names = [c.tag for c in i]
        if names != sorted(names):
            errors.append("Item %s elements not in schema (alphabetical) order" % i.findtext(r("InstanceID")))
    hard = [i for i in items if i.findtext(r("ResourceType")) == "17"]
    if len(hard) != len(disks):
        errors.append("%d disk items for %d disks" % (len(hard), len(disks)))
    for i in hard:
        if controllers and i.findtext(r("Parent")) != controllers[0].findtext(r("InstanceID")):
            errors.append("disk Parent %s is not the controller" % i.findtext(r("Parent")))
        host = i.findtext(r("HostResource")) or ""
        if not host.startswith("ovf:/disk/") or host[len("ovf:/disk/"):] not in disk_ids:
            errors.append("HostResource %s names no disk" % host)
print("OK" if not errors else "\n".join(errors))
sys.exit(1 if errors else 0)
