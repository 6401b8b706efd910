using VDiskPS.Formats;
using VDiskPS.Formats.Attach;
using VDiskPS.Formats.Nbd;

namespace VDiskPS
{
    /// <summary>A running NBD server, as Start-VDiskServer and Get-VDiskServer show it.</summary>
    public sealed class VDiskServer
    {
        private readonly NbdServer _server;

        public VDiskServer(NbdServer server) => _server = server;

        public int Id => _server.Id;

        /// <summary>What clients connect to: nbd://host:port/name or nbd+unix:///name?socket=PATH.</summary>
        public string Uri => _server.Uri;

        public string Path => _server.Path;

        public string FullName => _server.Path;

        public string Format => _server.Format.ToName();

        public string ExportName => _server.ExportName;

        public string Address => _server.Address;

        public int Port => _server.Port;

        public string UnixSocket => _server.UnixSocket;

        public long Size => _server.Size;

        public bool Writable => _server.Writable;

        public bool Tls => _server.Tls;

        /// <summary>Clients connected now.</summary>
        public int Connections => _server.Connections;

        public long TotalConnections => _server.TotalConnections;

        public bool Running => _server.IsRunning;
    }

    /// <summary>An attached disk, as Mount-VDisk shows it.</summary>
    public sealed class VDiskMount
    {
        private readonly IDiskAttachment _mount;

        public VDiskMount(IDiskAttachment mount) => _mount = mount;

        public string Path => _mount.Path;

        public string FullName => _mount.Path;

        /// <summary>/dev/nbdN, the file under the FUSE mount point that holds the guest disk, or \\.\PhysicalDriveN on Windows.</summary>
        public string DevicePath => _mount.DevicePath;

        public string MountPoint => _mount.MountPoint;

        /// <summary>nbd-client, nbdfuse or virtdisk.</summary>
        public string Method => _mount.Method;

        public bool ReadOnly => _mount.ReadOnly;

        /// <summary>The NBD URI the disk is served on; null where Windows opens the image itself.</summary>
        public string Uri => _mount.Uri;
    }
}
