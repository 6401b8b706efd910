using System;
using System.Collections.Generic;
using System.IO;
using System.Runtime.InteropServices;

namespace VDiskPS.Formats
{
    /// <summary>
    /// The files of a new image, written under temporary names beside their final ones and renamed into
    /// place only once complete and durable. An interrupted write (a crash, a kill, a full disk) never
    /// leaves a file under a final name: the destination is either absent (or, when replacing, the old
    /// one) or complete. The main file (the one the user named) is renamed last, so it is the commit
    /// point; the other files (VMDK extents, a qcow2 data file) are recorded inside it by their final
    /// names, and a crash between their renames and the main one leaves no destination, only them.
    /// Temporary names are ".NAME.vdiskps-partial-TOKEN" for the main file and
    /// ".NAME.vdiskps-partial-TOKEN.FILE" beside each other file, so a leftover is plainly a partial
    /// output and says whose.
    /// </summary>
    public sealed class StagedOutput
    {
        /// <summary>What every temporary name carries after the destination's name.</summary>
        public const string PartialMarker = ".vdiskps-partial-";

        private static readonly bool s_isWindows = RuntimeInformation.IsOSPlatform(OSPlatform.Windows);

        private readonly List<KeyValuePair<string, string>> _files = new List<KeyValuePair<string, string>>();
        private readonly string _prefix;

        /// <summary>Starts an output at <paramref name="destination"/>, removing stale partial files an interrupted run left there.</summary>
        public StagedOutput(string destination, bool overwrite)
        {
            HostFile.RefuseRemoteCreate(destination);
            Destination = Path.GetFullPath(destination);
            Overwrite = overwrite;
            _prefix = "." + Path.GetFileName(Destination) + PartialMarker;
            CheckReplaceable(Destination);
            RemoveStale(Destination);
            string token = Guid.NewGuid().ToString("N").Substring(0, 12);
            _prefix += token;
        }

        /// <summary>The final path of the main file.</summary>
        public string Destination { get; }

        /// <summary>Whether existing files under the final names are replaced (at the rename, not before).</summary>
        public bool Overwrite { get; }

        /// <summary>The temporary files written so far.</summary>
        public IEnumerable<string> TemporaryFiles
        {
            get
            {
                foreach (var pair in _files)
                {
                    yield return pair.Value;
                }
            }
        }

        /// <summary>The final paths of every file, main first.</summary>
        public IReadOnlyList<string> FinalFiles
        {
            get
            {
                var list = new List<string>();
                foreach (var pair in _files)
                {
                    list.Add(pair.Key);
                }

                return list;
            }
        }

        /// <summary>The temporary path to write <paramref name="finalPath"/> under (the destination itself or a file beside it).</summary>
        public string TemporaryPathFor(string finalPath)
        {
            finalPath = Path.GetFullPath(finalPath);
            foreach (var pair in _files)
            {
                if (ImageChain.PathComparer.Equals(pair.Key, finalPath))
                {
                    return pair.Value;
                }
            }

            if (!ImageChain.PathComparer.Equals(finalPath, Destination))
            {
                CheckReplaceable(finalPath);
            }

            string name = ImageChain.PathComparer.Equals(finalPath, Destination) ? _prefix : _prefix + "." + Path.GetFileName(finalPath);
            string temporary = Path.Combine(Path.GetDirectoryName(finalPath) ?? string.Empty, name);
            _files.Add(new KeyValuePair<string, string>(finalPath, temporary));
            return temporary;
        }

        /// <summary>The final path a temporary path stands for, or null when it is not one of this output's.</summary>
        public string FinalPathOf(string path)
        {
            if (path == null)
            {
                return null;
            }

            foreach (var pair in _files)
            {
                if (ImageChain.PathComparer.Equals(pair.Value, path))
                {
                    return pair.Key;
                }
            }

            return null;
        }

        /// <summary>
        /// Makes every file durable, then renames the other files and last the main file into place, and
        /// makes the renames durable. Call after the image is closed.
        /// </summary>
        public void Commit()
        {
            var handles = new List<FileStream>();
            try
            {
                // Held open (locked) until renamed, so that no other run takes them for stale leftovers.
                foreach (var pair in _files)
                {
                    var handle = OpenForFlush(pair.Value);
                    handles.Add(handle);
                    FlushDurably(handle, pair.Value);
                }

                if (s_isWindows)
                {
                    // Windows renames files nobody has open; the lock window is the renames alone.
                    CloseAll(handles);
                }

                CheckReplaceable(Destination);
                bool mainFirst = false;
                for (int i = 1; i < _files.Count; i++)
                {
                    mainFirst |= File.Exists(_files[i].Key);
                }

                if (mainFirst && File.Exists(Destination))
                {
                    // An old main file must not name new files beside it even for a moment.
                    Delete(Destination);
                }

                for (int i = _files.Count - 1; i >= 0; i--)
                {
                    MoveIntoPlace(_files[i].Value, _files[i].Key);
                }

                var folders = new HashSet<string>(ImageChain.PathComparer);
                foreach (var pair in _files)
                {
                    folders.Add(Path.GetDirectoryName(pair.Key) ?? string.Empty);
                }

                foreach (string folder in folders)
                {
                    FlushFolder(folder);
                }
            }
            finally
            {
                CloseAll(handles);
            }
        }

        /// <summary>Deletes the temporary files (after a failure or cancellation; the image must be closed).</summary>
        public void Abandon()
        {
            foreach (var pair in _files)
            {
                TryDelete(pair.Value);
            }
        }

        /// <summary>
        /// Deletes the partial files an interrupted run left for <paramref name="destination"/> in its
        /// folder. A partial file still open in a running conversion is locked, and is kept.
        /// </summary>
        public static void RemoveStale(string destination)
        {
            string folder = Path.GetDirectoryName(Path.GetFullPath(destination));
            if (string.IsNullOrEmpty(folder) || !Directory.Exists(folder))
            {
                return;
            }

            string prefix = "." + Path.GetFileName(destination) + PartialMarker;
            foreach (string file in Directory.GetFiles(folder, prefix + "*"))
            {
                if (!Path.GetFileName(file).StartsWith(prefix, StringComparison.Ordinal))
                {
                    // The name held a wildcard character that matched another destination's files.
                    continue;
                }

                try
                {
                    using (new FileStream(file, FileMode.Open, FileAccess.ReadWrite, FileShare.None, 1, FileOptions.None))
                    {
                    }

                    File.Delete(file);
                }
                catch (IOException)
                {
                    // In use by a running conversion (or not ours to delete): left alone.
                }
                catch (UnauthorizedAccessException)
                {
                }
            }
        }

        internal static void TryDelete(string file)
        {
            try
            {
                File.Delete(file);
            }
            catch (IOException)
            {
            }
            catch (UnauthorizedAccessException)
            {
            }
        }

        /// <summary>An existing file is replaced only when overwriting, and never while another process has it open for writing.</summary>
        private void CheckReplaceable(string finalPath)
        {
            if (!File.Exists(finalPath))
            {
                if (Directory.Exists(finalPath))
                {
                    throw new ImageIOException(finalPath, "is a folder");
                }

                return;
            }

            if (!Overwrite)
            {
                throw ImageIOException.OutputExists(finalPath);
            }

            // Opening for writing takes the writer's lock: refused while a VM (or any writer) holds it.
            HostFile.Open(finalPath, HostAccess.ReadWrite).Dispose();
        }

        private static void CloseAll(List<FileStream> handles)
        {
            foreach (var handle in handles)
            {
                handle.Dispose();
            }

            handles.Clear();
        }

        private static FileStream OpenForFlush(string path)
        {
            try
            {
                // Windows renames an open file only when the handle shares delete; Unix takes the lock with None.
                return new FileStream(path, FileMode.Open, FileAccess.ReadWrite, s_isWindows ? FileShare.Delete : FileShare.None, 1, FileOptions.None);
            }
            catch (IOException e)
            {
                throw new ImageIOException(path, "the partial output could not be reopened to flush it: " + e.Message, e);
            }
        }

        private static void FlushDurably(FileStream handle, string path)
        {
            try
            {
                handle.Flush(true);
            }
            catch (IOException e)
            {
                throw new ImageIOException(path, "flushing the partial output to the device failed: " + e.Message, e);
            }
        }

        private void MoveIntoPlace(string temporary, string finalPath)
        {
            try
            {
                if (File.Exists(finalPath))
                {
                    if (!Overwrite)
                    {
                        throw ImageIOException.OutputExists(finalPath);
                    }

                    // One atomic rename over the old file (rename(2) on Unix, ReplaceFile on Windows).
                    File.Replace(temporary, finalPath, null, true);
                }
                else
                {
                    File.Move(temporary, finalPath);
                }
            }
            catch (IOException e) when (!(e is FileNotFoundException) && File.Exists(finalPath) && !Overwrite)
            {
                throw ImageIOException.OutputExists(finalPath, e);
            }
            catch (IOException e)
            {
                throw new ImageIOException(finalPath, "the finished output could not be renamed into place: " + e.Message, e);
            }
            catch (UnauthorizedAccessException e)
            {
                throw new ImageIOException(finalPath, "access denied", e);
            }
        }

        private static void Delete(string path)
        {
            try
            {
                File.Delete(path);
            }
            catch (IOException e)
            {
                throw new ImageIOException(path, "the file to be replaced could not be deleted: " + e.Message, e);
            }
            catch (UnauthorizedAccessException e)
            {
                throw new ImageIOException(path, "access denied", e);
            }
        }

        /// <summary>Makes the renames in <paramref name="folder"/> durable (Unix: fsync of the directory; Windows has no such call).</summary>
        private static void FlushFolder(string folder)
        {
            if (s_isWindows)
            {
                return;
            }

            try
            {
                int fd = NativeUnix.open(folder, NativeUnix.O_RDONLY);
                if (fd < 0)
                {
                    return;
                }

                NativeUnix.fsync(fd);
                NativeUnix.close(fd);
            }
            catch (Exception e) when (e is DllNotFoundException || e is EntryPointNotFoundException)
            {
            }
        }

        private static class NativeUnix
        {
            public const int O_RDONLY = 0;

            [DllImport("libc", SetLastError = true)]
            public static extern int open(string path, int flags);

            [DllImport("libc", SetLastError = true)]
            public static extern int fsync(int fd);

            [DllImport("libc", SetLastError = true)]
            public static extern int close(int fd);
        }
    }
}
