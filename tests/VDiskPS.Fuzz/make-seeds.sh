#!/usr/bin/env bash
# Writes small qemu-made seed images for every fuzz target into DIR/<format>/.
# usage: make-seeds.sh DIR
set -euo pipefail
out=$1
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$out"/{qcow2,vmdk,vhd,vhdx,vdi,ova,luks}
io() { qemu-io "$@" >/dev/null; }

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

# luks: the smallest key material qemu writes (aes-128-cbc, 16-byte key: 1032 header sectors),
# a short key derivation, and one written sector block; the password is FuzzTarget.Password.
qemu-img create -q -f luks --object secret,id=sec0,data=pass -o key-secret=sec0,iter-time=1,cipher-alg=aes-128,cipher-mode=cbc,ivgen-alg=plain64 "$out/luks/cbc.luks" 8K
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
