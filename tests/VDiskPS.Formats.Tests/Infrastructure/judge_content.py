# Reads a VHD/VHDX (libvhdi) or VMDK (libvmdk) image with its whole parent chain and prints
# "<media size> <sha256 of the virtual content> <parent depth> <bytes per sector>".
# Used by Judge.cs so content written by the engine is judged by libraries nobody here wrote.
import hashlib
import os
import sys


def open_layer(lib, path):
    if lib == "vhdi":
        import pyvhdi
        layer = pyvhdi.file()
        layer.open(path)
    else:
        import pyvmdk
        layer = pyvmdk.handle()
        layer.open(path)
        layer.open_extent_data_files()
    return layer


def resolve(child, name):
    name = name.replace("\\", "/")
    for candidate in (name, os.path.join(os.path.dirname(child), name), os.path.join(os.path.dirname(child), os.path.basename(name))):
        if os.path.exists(candidate):
            return candidate
    raise SystemExit("parent %r of %s not found" % (name, child))


def main():
    lib, path = sys.argv[1], sys.argv[2]
    top = open_layer(lib, path)
    layers = [(path, top)]
    while layers[-1][1].get_parent_filename():
        if len(layers) > 16:
            raise SystemExit("chain deeper than 16")
        child_path, child = layers[-1]
        parent_path = resolve(child_path, child.get_parent_filename())
        parent = open_layer(lib, parent_path)
        child.set_parent(parent)
        layers.append((parent_path, parent))
    depth = len(layers) - 1
    size = top.get_media_size()
    digest = hashlib.sha256()
    offset = 0
    while offset < size:
        n = min(1 << 20, size - offset)
        data = top.read_buffer_at_offset(n, offset)
        if len(data) != n:
            raise SystemExit("short read at %d" % offset)
        digest.update(data)
        offset += n
    sector = top.get_bytes_per_sector() if lib == "vhdi" else 512
    print(size, digest.hexdigest(), depth, sector)


main()
