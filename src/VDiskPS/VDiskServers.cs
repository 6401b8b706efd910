using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Linq;
using System.Management.Automation;
using VDiskPS.Formats;
using VDiskPS.Formats.Attach;
using VDiskPS.Formats.Nbd;

namespace VDiskPS
{
    /// <summary>
    /// The NBD servers and attached disks of this PowerShell process. They live as long as the process
    /// (or the module): removing the module or leaving the session stops them all, flushing each image.
    /// </summary>
    internal static class VDiskServers
    {
        private static readonly ConcurrentDictionary<int, NbdServer> s_servers = new ConcurrentDictionary<int, NbdServer>();
        private static readonly ConcurrentDictionary<IDiskAttachment, long> s_mounts = new ConcurrentDictionary<IDiskAttachment, long>();
        private static long s_mountCount;

        static VDiskServers()
        {
            AppDomain.CurrentDomain.ProcessExit += (sender, e) => StopAll();
        }

        public static IEnumerable<NbdServer> Servers => s_servers.Values.OrderBy(s => s.Id).ToList();

        public static IEnumerable<IDiskAttachment> Mounts => s_mounts.OrderBy(m => m.Value).Select(m => m.Key).ToList();

        public static void Add(NbdServer server) => s_servers[server.Id] = server;

        public static void Add(IDiskAttachment mount) => s_mounts[mount] = System.Threading.Interlocked.Increment(ref s_mountCount);

        public static NbdServer FindServer(int id) => s_servers.TryGetValue(id, out NbdServer server) ? server : null;

        /// <summary>Stops a server (after its clients' requests finish and the image is flushed) and forgets it.</summary>
        public static void Stop(NbdServer server)
        {
            try
            {
                server.Stop();
            }
            finally
            {
                s_servers.TryRemove(server.Id, out _);
            }
        }

        public static void Detach(IDiskAttachment mount)
        {
            try
            {
                mount.Detach();
            }
            finally
            {
                s_mounts.TryRemove(mount, out _);
            }
        }

        /// <summary>Detaches every disk and stops every server; failures of one do not keep the others running.</summary>
        public static void StopAll()
        {
            foreach (IDiskAttachment mount in Mounts)
            {
                try
                {
                    Detach(mount);
                }
                catch (Exception e) when (e is ImageException || e is System.IO.IOException || e is InvalidOperationException || e is System.ComponentModel.Win32Exception)
                {
                    // Leaving the session goes on; the mount was as good as gone.
                }
            }

            foreach (NbdServer server in Servers)
            {
                try
                {
                    Stop(server);
                }
                catch (Exception e) when (e is ImageException || e is System.IO.IOException || e is InvalidOperationException)
                {
                }
            }
        }
    }

    /// <summary>Remove-Module VDiskPS stops the servers and detaches the disks of this session.</summary>
    public sealed class VDiskModuleCleanup : IModuleAssemblyCleanup
    {
        public void OnRemove(PSModuleInfo psModuleInfo) => VDiskServers.StopAll();
    }
}
