#!/usr/bin/env bash
# Writes small qemu-made seed images for every fuzz target into DIR/<format>/; QEMU cannot write
# cloop and DMG, so their seeds are the builder-made ones kept in the corpus (seed-*.bin).
# usage: make-seeds.sh DIR
set -euo pipefail
out=$1
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$out"/{qcow2,vmdk,vhd,vhdx,vdi,qcow,ova,qed,parallels,bochs,cloop,dmg,luks}
io() { qemu-io "$@" >/dev/null; }
# qemu-img making a LUKS header: qemu times its PBKDF2 benchmark with the thread's coarse CPU clock
# and, at random on a fast idle machine, gives up ("Unable to get accurate CPU usage"; 4 times in 10
# on a 2-core EPYC with SHA-NI); try again, up to 20 times.
keyed() { local i; for i in $(seq 20); do qemu-img "$@" && return 0; done; return 1; }

# qcow2: data, zero and compressed clusters, an internal snapshot and a persistent bitmap;
# a tiny-cluster version 2 image; zstd compression with 1-bit refcounts.
qemu-img create -q -f qcow2 -o cluster_size=4k "$out/qcow2/features.qcow2" 1M
io -f qcow2 -c "write -P 0x11 0 8k" -c "write -z 64k 4k" -c "write -c -P 0x22 128k 4k" "$out/qcow2/features.qcow2"
qemu-img snapshot -c s1 "$out/qcow2/features.qcow2"
io -f qcow2 -c "write -P 0x33 4k 4k" "$out/qcow2/features.qcow2"
qemu-img bitmap --add "$out/qcow2/features.qcow2" b0
qemu-img create -q -f qcow2 -o cluster_size=512,compat=0.10 "$out/qcow2/v2.qcow2" 256K
io -f qcow2 -c "write -P 0x11 0 1k" "$out/qcow2/v2.qcow2"
qemu-img create -q -f qcow2 -o cluster_size=4k,compression_type=zstd,refcount_bits=1 "$out/qcow2/zstd.qcow2" 1M
io -f qcow2 -c "write -c -P 0x11 0 4k" "$out/qcow2/zstd.qcow2"

# vmdk: monolithicSparse (descriptor, sparse header, grain directory) and streamOptimized (markers).
qemu-img create -q -f vmdk -o subformat=monolithicSparse "$out/vmdk/sparse.vmdk" 1M
io -f vmdk -c "write -P 0x11 0 4k" "$out/vmdk/sparse.vmdk"
qemu-img convert -f qcow2 -O vmdk -o subformat=streamOptimized "$out/qcow2/features.qcow2" "$out/vmdk/stream.vmdk"

# vhd: dynamic (footer, dynamic header, BAT) and fixed.
qemu-img create -q -f vpc -o subformat=dynamic "$out/vhd/dynamic.vhd" 1M
qemu-img create -q -f vpc -o subformat=fixed "$out/vhd/fixed.vhd" 256K

# vdi: header and block map.
qemu-img create -q -f vdi "$out/vdi/dynamic.vdi" 1M

# qcow (version 1): plain and compressed clusters; an overlay naming its backing file; legacy AES.
qemu-img create -q -f qcow "$out/qcow/plain.qcow" 1M
io -f qcow -c "write -P 0x11 0 8k" -c "write -P 0x22 600k 4k" "$out/qcow/plain.qcow"
qemu-img create -q -f qcow "$out/qcow/compressed.qcow" 256K
io -f qcow -c "write -c -P 0x11 0 4k" -c "write -c -P 0x22 8k 4k" "$out/qcow/compressed.qcow"
qemu-img create -q -f qcow -b plain.qcow -F qcow "$out/qcow/overlay.qcow" 1M
qemu-img create -q -f qcow --object secret,id=s0,data=x -o encrypt.format=aes,encrypt.key-secret=s0 "$out/qcow/aes.qcow" 256K
# qed: 4 KiB clusters, 2-cluster tables: header with a backing name, L1, L2, data and zero clusters.
qemu-img create -q -f raw "$scratch/base.raw" 1M
qemu-img create -q -f qed -o cluster_size=4k,table_size=2 -b base.raw -F raw "$scratch/features.qed" 1M
io -f qed -c "write -P 0x11 0 8k" -c "write -z 64k 4k" "$scratch/features.qed"
cp "$scratch/features.qed" "$out/qed/features.qed"
# parallels: header, BAT and two 4 KiB clusters.
qemu-img create -q -f parallels -o cluster_size=4k "$out/parallels/small.hds" 256K
io -f parallels -c "write -P 0x11 0 4k" -c "write -P 0x22 200k 512" "$out/parallels/small.hds"

# bochs: QEMU cannot create it; a version 2 growing redolog by bximage's layout (header, catalog of
# 8 extents of 4 KiB, two stored extents, each a one-sector bitmap then its sectors).
python3 - "$out/bochs/growing.bochs" <<'PY'
import struct, sys
extent, entries = 4096, 8
header = bytearray(512)
header[0:22] = b"Bochs Virtual HD Image"
header[32:39] = b"Redolog"
header[48:55] = b"Growing"
struct.pack_into("<IIIII", header, 64, 0x00020000, 512, entries, 1, extent)
struct.pack_into("<Q", header, 88, entries * extent)
catalog = [0xFFFFFFFF] * entries
catalog[0], catalog[5] = 1, 0
with open(sys.argv[1], "wb") as f:
    f.write(header)
    f.write(struct.pack("<%dI" % entries, *catalog))
    for fill in (0x55, 0x11):
        f.write(bytes([0b00001101]) + bytes(511))
        f.write(bytes([fill]) * extent)
PY
# luks: the smallest key material qemu writes (aes-128-cbc, 16-byte key: 1032 header sectors),
# a short key derivation, and one written sector block; the password is FuzzTarget.Password.
keyed create -q -f luks --object secret,id=sec0,data=pass -o key-secret=sec0,iter-time=1,cipher-alg=aes-128,cipher-mode=cbc,ivgen-alg=plain64 "$out/luks/cbc.luks" 8K
io --object secret,id=sec0,data=pass --image-opts "driver=luks,key-secret=sec0,file.filename=$out/luks/cbc.luks" -c "write -P 0x11 0 4k"

# vhdx: a 1 MiB-block image with data, packed as FuzzTarget.Materialize expects: the first
# 256 KiB (headers, region tables), then 128 KiB of the log, the BAT and the metadata region.
qemu-img create -q -f vhdx -o block_size=1M,log_size=1M "$scratch/x.vhdx" 4M
io -f vhdx -c "write -P 0x11 0 4k" "$scratch/x.vhdx"
{
  head -c $((256 * 1024)) "$scratch/x.vhdx"
  for mib in 1 2 3; do
    dd if="$scratch/x.vhdx" bs=128k skip=$((mib * 8)) count=1 status=none
  done
} > "$out/vhdx/dynamic.vhdx"

# ova: GNU tar (ustar) of a descriptor, a streamOptimized disk and a SHA256 manifest (coreutils).
mkdir -p "$scratch/ova"
cp "$out/vmdk/stream.vmdk" "$scratch/ova/disk1.vmdk"
cat > "$scratch/ova/vm.ovf" <<OVF
<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData">
  <References><File ovf:href="disk1.vmdk" ovf:id="file1" ovf:size="$(stat -c %s "$scratch/ova/disk1.vmdk")"/></References>
  <DiskSection><Info>Disks</Info><Disk ovf:capacity="1" ovf:capacityAllocationUnits="byte * 2^20" ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/></DiskSection>
  <VirtualSystem ovf:id="vm"><Info>A VM</Info><VirtualHardwareSection><Info>Hardware</Info>
    <Item><rasd:InstanceID>1</rasd:InstanceID><rasd:ResourceType>3</rasd:ResourceType><rasd:VirtualQuantity>1</rasd:VirtualQuantity></Item>
    <Item><rasd:InstanceID>3</rasd:InstanceID><rasd:ResourceType>6</rasd:ResourceType></Item>
    <Item><rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource><rasd:InstanceID>4</rasd:InstanceID><rasd:Parent>3</rasd:Parent><rasd:ResourceType>17</rasd:ResourceType></Item>
  </VirtualHardwareSection></VirtualSystem>
</Envelope>
OVF
(cd "$scratch/ova" && sha256sum --tag vm.ovf disk1.vmdk > vm.mf && tar --format=ustar -cf "$out/ova/seed.ova" vm.ovf disk1.vmdk vm.mf)

# cloop and dmg: written by tests/VDiskPS.Formats.Tests/{Cloop/CloopBuilder,Dmg/DmgBuilder}.cs (qemu-img reads them as their content).
corpus=$(cd "$(dirname "$0")/../VDiskPS.Formats.Tests/FuzzCorpus" && pwd)
cp "$corpus"/cloop/seed-*.bin "$out/cloop/"
cp "$corpus"/dmg/seed-*.bin "$out/dmg/"
