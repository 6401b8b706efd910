using System;

namespace VDiskPS.Formats.Vdi
{
    // The disk identifier is the header's image UUID (uuidCreate), as VirtualBox's "VBoxManage internalcommands sethduuid" sets it.
    public sealed partial class VdiLayer : IDiskIdentifierLayer
    {
        /// <summary>
        /// Writes a new image UUID into the header; the modification UUID and the data stay. Differencing VDI
        /// images find their parent by this UUID (uuidLinkage), so children of this image no longer find it
        /// afterwards: rebase them (Set-VDisk -ParentPath -Unsafe) or keep the old identifier.
        /// </summary>
        public void SetDiskIdentifier(Guid identifier)
        {
            EnsureWritable();
            _header.UuidCreate = identifier;
            _file.WriteAt(0, _header.ToBytes());
            _file.Flush();
        }
    }
}
