using System;
using System.Buffers;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;

namespace VDiskPS.Formats
{
    /// <summary>Options of a conversion (qemu-img convert).</summary>
    public sealed class ConvertOptions : EngineOptions
    {
        public DiskFormat? SourceFormat { get; set; }

        /// <summary>Convert the disk as it was in this internal snapshot (id or name).</summary>
        public string Snapshot { get; set; }

        /// <summary>The output's format; null: the plain-data format (raw).</summary>
        public DiskFormat? TargetFormat { get; set; }

        /// <summary>Create options of the target (size is taken from the source).</summary>
        public CreateRequest Target { get; set; } = new CreateRequest();

        /// <summary>Write compressed clusters (formats that support it).</summary>
        public bool Compress { get; set; }

        /// <summary>Runs of zeros at least this long (and aligned to it) stay unallocated; 0 writes every byte.</summary>
        public long SparseSize { get; set; } = 4096;

        /// <summary>Virtual size of a new output; null takes the source's. Smaller than the source is refused.</summary>
        public long? TargetSize { get; set; }

        /// <summary>
        /// Write into an existing destination of the same size instead of creating it. Where the format
        /// has a "do not use" flag (qcow2 v3: the corrupt bit) it is set until the end, and stays set
        /// when the conversion fails or is interrupted.
        /// </summary>
        public bool NoCreate { get; set; }

        /// <summary>The existing destination reads as zeros already, so zero runs need not be written.</summary>
        public bool TargetIsZero { get; set; }

        /// <summary>
        /// Parallel readers/compressors; twice as many chunks are in flight (one being worked on, one waiting
        /// to be written, per worker). A source over a network transport keeps at least as many reads in
        /// flight as its transport asks (NBD: 8, as qemu-img convert), since those wait rather than work.
        /// </summary>
        public int ThrottleLimit { get; set; } = Environment.ProcessorCount;

        /// <summary>
        /// The most reads in flight at once, when the caller limits them (an explicit -ThrottleLimit):
        /// then a network source keeps no more than this either. Null lets the engine choose
        /// (<see cref="ThrottleLimit"/>, or more for a network source).
        /// </summary>
        public int? ReadsInFlight { get; set; }

        /// <summary>
        /// Make the output durable before returning (fsync). Off by default, as qemu-img convert's
        /// "unsafe" cache mode: a new output is rewritten from scratch after a failure anyway.
        /// Always on with <see cref="DeleteSource"/>, which must not delete the only durable copy.
        /// </summary>
        public bool FlushToDisk { get; set; }

        /// <summary>Bytes read per work item: the engine's choice; tests shrink it to get many items from a small image.</summary>
        internal int ChunkSize { get; set; } = DefaultChunkSize;

        /// <summary>2 MiB: large enough that per-item overhead vanishes, small enough that 2 x ThrottleLimit items stay a few MiB.</summary>
        internal const int DefaultChunkSize = 2 << 20;

        /// <summary>
        /// After a complete conversion, compare the output with the source and, only when they read the
        /// same, delete the source image's files (its backing files stay). A mismatch keeps the source
        /// and fails the conversion.
        /// </summary>
        public bool DeleteSource { get; set; }

        /// <summary>
        /// Runs once every byte is copied and before the output is committed; what it throws abandons the
        /// output (an archive member checked against its manifest as it was read).
        /// </summary>
        public Action VerifySource { get; set; }

        /// <summary>
        /// A fixed VHD, VHDX or VDI source gives a fixed VHD, VHDX or VDI output unless a type, subformat or
        /// preallocation was asked for (Convert-VHD keeps the type; qemu-img convert makes the target's default).
        /// </summary>
        public bool KeepSourceType { get; set; }

        /// <summary>
        /// When set, the copy goes on past ranges of the source that cannot be read (I/O errors), writes
        /// zeros there and records them here (qemu-img convert --salvage).
        /// </summary>
        public SalvageLog Salvage { get; set; }
    }

    /// <summary>
    /// Copies an image chain into a new (or existing) image: walks block status in large runs, skips
    /// zero and unallocated runs, reads and compresses data in parallel, writes in order through the
    /// target format. With a parent on the target, writes only what differs from that parent.
    /// A failed or cancelled conversion deletes what it created.
    /// </summary>
    public static class ConvertOperation
    {
        // Work buffers are larger than ArrayPool.Shared keeps; a pool of our own bounds what is held.
        private static readonly ArrayPool<byte> s_buffers = ArrayPool<byte>.Create(16 << 20, 64);

        public static void Run(string sourcePath, string destinationPath, ConvertOptions options, IProgress<OperationProgress> progress = null, CancellationToken cancel = default)
        {
            options = options ?? new ConvertOptions();
            string source = Transports.GetFullLocation(sourcePath);
            string destination = Transports.GetFullLocation(destinationPath);
            if (string.Equals(source, destination, StringComparison.OrdinalIgnoreCase) && ImageChain.PathComparer.Equals(source, destination))
            {
                throw new ImageOptionException(destination, "destination", "the destination is the source image itself");
            }

            if (options.DeleteSource && Transports.IsRemote(source))
            {
                throw new ImageOptionException(source, "delete source", "a remote source cannot be deleted");
            }

            if (options.DeleteSource && options.Salvage != null)
            {
                throw new ImageOptionException(source, "delete source", "a salvaged copy does not equal its source, so the source cannot be deleted after it");
            }

            if (options.DeleteSource && (!string.IsNullOrEmpty(options.Snapshot) || options.ShareWithWriters))
            {
                throw new ImageOptionException(source, "delete source", "the source cannot be deleted after converting a snapshot of it or while another process writes it");
            }

            FormatRegistry registry = options.Registry ?? FormatRegistry.Default;
            IReadOnlyList<string> sourceFiles = null;
            using (var chain = ImageChain.Open(source, options.OpenChain(options.SourceFormat)))
            {
                ImageLayer sourceTop = chain.Top;
                ImageChain snapshotView = null;
                if (!string.IsNullOrEmpty(options.Snapshot))
                {
                    snapshotView = chain.WithTop(Capability.Require<ISnapshotLayer>(sourceTop, "internal snapshots").OpenSnapshot(options.Snapshot));
                }

                try
                {
                    IReadOnlyList<string> createdFiles = Copy(snapshotView ?? chain, destination, options, progress, cancel);
                    if (options.DeleteSource)
                    {
                        try
                        {
                            VerifyOutput(chain, destination, options, progress, cancel);
                        }
                        catch
                        {
                            // An output that cannot be shown to equal the source is not kept either.
                            OperationSupport.DeleteFiles(createdFiles);
                            throw;
                        }

                        sourceFiles = sourceTop.HostFiles;
                    }
                }
                finally
                {
                    // The snapshot view's lower layers belong to the source chain; close only the view.
                    snapshotView?.Top.Dispose();
                }
            }

            if (sourceFiles != null)
            {
                foreach (string file in sourceFiles)
                {
                    try
                    {
                        File.Delete(file);
                    }
                    catch (Exception e) when (e is IOException || e is UnauthorizedAccessException)
                    {
                        throw new ImageIOException(file, "the conversion is complete and verified, but the source file could not be deleted: " + e.Message, e);
                    }
                }
            }
        }

        /// <summary>
        /// Converts a chain the caller opened (a disk inside an archive) into a new or existing image at
        /// <paramref name="destinationPath"/>. The chain stays the caller's. A snapshot or deleting the
        /// source needs the source's own files, so both are refused.
        /// </summary>
        public static void Run(ImageChain source, string destinationPath, ConvertOptions options, IProgress<OperationProgress> progress = null, CancellationToken cancel = default)
        {
            options = options ?? new ConvertOptions();
            if (options.DeleteSource || !string.IsNullOrEmpty(options.Snapshot))
            {
                throw new ImageOptionException(source.Top.Path, options.DeleteSource ? "delete source" : "snapshot", "a disk inside an archive cannot be deleted, nor converted from an internal snapshot");
            }

            Copy(source, Transports.GetFullLocation(destinationPath), options, progress, cancel);
        }

        /// <summary>
        /// Copies <paramref name="source"/> into <paramref name="target"/>, a new empty layer the caller
        /// created and keeps (compressed when <see cref="ConvertOptions.Compress"/>), as a conversion does.
        /// </summary>
        public static void CopyInto(ImageChain source, ImageLayer target, ConvertOptions options, IProgress<OperationProgress> progress = null, CancellationToken cancel = default)
        {
            ICompressedWriteLayer compressor = options.Compress ? Capability.Require<ICompressedWriteLayer>(target, "compressed writes") : null;
            new ChunkCopier(source, target, null, options, compressor, progress, cancel).Run();
            source.CheckUnchanged();
        }

        /// <summary>Compares the finished output (with its own backing chain) against the source; throws when they differ.</summary>
        private static void VerifyOutput(ImageChain source, string destination, ConvertOptions options, IProgress<OperationProgress> progress, CancellationToken cancel)
        {
            var open = options.OpenChain(options.TargetFormat);
            using (var output = ImageChain.Open(destination, open))
            {
                VDiskComparison comparison = CompareOperation.Compare(source, output, false, progress, cancel);
                if (!comparison.Identical)
                {
                    throw new ImageIOException(destination, $"the output does not read the same as the source ({comparison.Reason}); the source was kept");
                }
            }
        }

        /// <summary>Whether a fixed source's type carries over: both ends have fixed images and nothing else was asked.</summary>
        private static bool KeepsFixed(FormatRegistry registry, ImageLayer source, DiskFormat targetFormat, CreateRequest request)
        {
            return registry.Get(source.Format).HasAllocationTypes && registry.Get(targetFormat).HasAllocationTypes && source.DiskType == DiskType.Fixed
                && request.Type == null && request.Backing == null && request.Subformat == null && request.Preallocation == null
                && !request.Options.Contains("subformat") && !request.Options.Contains("static") && !request.Options.Contains("preallocation");
        }

        /// <summary>
        /// Copies the chain into the destination; returns the files it created (none with NoCreate). A new
        /// output is written under temporary names and renamed into place only when complete and flushed.
        /// </summary>
        private static IReadOnlyList<string> Copy(ImageChain source, string destination, ConvertOptions options, IProgress<OperationProgress> progress, CancellationToken cancel)
        {
            CreateRequest request = options.Target ?? new CreateRequest();
            FormatRegistry registry = options.Registry ?? FormatRegistry.Default;
            DiskFormat targetFormat = options.TargetFormat ?? registry.PlainDataFormat;
            ImageChain targetParent = null;
            ImageLayer target = null;
            StagedOutput staging = null;
            IIncompleteMarkerLayer marker = null;
            try
            {
                if (request.Backing != null)
                {
                    targetParent = ImageChain.Open(request.Backing.Resolve(destination), options.OpenChain(request.Backing.Format));
                    request.BackingLayer = targetParent.Top;
                    if (request.Backing.Format == null)
                    {
                        // Creating an overlay records the backing format.
                        request.Backing = new BackingReference(request.Backing.RecordedPath, targetParent.Top.Format);
                    }
                }

                if (options.NoCreate)
                {
                    target = registry.Open(destination, options.TargetFormat, new OpenOptions { Writable = true });
                    if (target.Size < source.Size)
                    {
                        throw new ImageOptionException(destination, "size", $"the existing destination ({target.Size} bytes) is smaller than the source ({source.Size} bytes)");
                    }

                    // Rewritten in place, it cannot be renamed into place: where the format has a "do not
                    // use" flag, it stays set until the last write is flushed, and after any failure.
                    marker = (target as IIncompleteMarkerLayer)?.MarkIncomplete() == true ? (IIncompleteMarkerLayer)target : null;
                }
                else
                {
                    long size = options.TargetSize ?? source.Size;
                    if (size < source.Size)
                    {
                        throw new ImageOptionException(destination, "size", $"the requested size ({size} bytes) is smaller than the source ({source.Size} bytes)");
                    }

                    request.Size = size;
                    if (options.KeepSourceType && KeepsFixed(registry, source.Top, targetFormat, request))
                    {
                        request.Type = DiskType.Fixed;
                    }

                    request.SyncOnFlush = options.FlushToDisk || options.DeleteSource;
                    staging = new StagedOutput(destination, request.Overwrite);
                    request.Staging = staging;
                    target = registry.GetCreatable(targetFormat, destination).Create(destination, request);
                }

                ImageChain.Stack(target, targetParent);

                ICompressedWriteLayer compressor = null;
                if (options.Compress)
                {
                    compressor = Capability.Require<ICompressedWriteLayer>(target, "compressed writes");
                }

                var copier = new ChunkCopier(source, target, targetParent, options, compressor, progress, cancel);
                copier.Run();
                source.CheckUnchanged();
                options.VerifySource?.Invoke();
                target.Flush();
                marker?.ClearIncomplete();
                target.Dispose();
                target = null;
                if (staging == null)
                {
                    return Array.Empty<string>();
                }

                staging.Commit();
                return staging.FinalFiles;
            }
            catch (Exception e)
            {
                ImageException reported = OperationSupport.AbandonOutput(target, staging, destination, e);
                if (reported != null)
                {
                    throw reported;
                }

                throw;
            }
            finally
            {
                targetParent?.Dispose();
                if (staging != null)
                {
                    request.Staging = null;
                }
            }
        }

        /// <summary>One conversion's pipeline: producer of work items, parallel readers, in-order writer.</summary>
        private sealed class ChunkCopier
        {
            // Holes up to this long are read through from a network source rather than costing a round trip each.
            private const long ShortGap = 64 * 1024;

            private readonly ImageChain _source;
            private readonly ImageLayer _target;
            private readonly ImageChain _targetParent;
            private readonly ConvertOptions _options;
            private readonly ICompressedWriteLayer _compressor;
            private readonly IProgress<OperationProgress> _progress;
            private readonly CancellationToken _cancel;
            private readonly long _size;
            private readonly int _chunk;
            private readonly int _granule;
            private readonly bool _mustWriteZeros;
            private readonly bool _writeInWorkers;
            private readonly SemaphoreSlim _workers;
            private readonly int _inFlight;
            private readonly bool _remote;

            /// <summary>How far apart the items in flight may be over a streamed source (a fraction of the window it keeps, see <see cref="ImageLayer.IsStreamed"/>).</summary>
            private const int StreamedInFlightBytes = 8 << 20;

            public ChunkCopier(ImageChain source, ImageLayer target, ImageChain targetParent, ConvertOptions options, ICompressedWriteLayer compressor, IProgress<OperationProgress> progress, CancellationToken cancel)
            {
                _source = source;
                _target = target;
                _targetParent = targetParent;
                _options = options;
                _compressor = compressor;
                _progress = progress;
                _cancel = cancel;
                _size = source.Size;
                int unit = compressor?.CompressionUnit ?? 0;
                _granule = unit > 0 ? unit : (int)(options.SparseSize > 0 ? Math.Min(options.SparseSize, 1 << 20) : 4096);
                if (targetParent != null)
                {
                    _granule = Math.Max(_granule, target.ClusterSize);
                }

                int chunk = Math.Max(options.ChunkSize, _granule);
                _chunk = chunk / _granule * _granule;
                _mustWriteZeros = options.NoCreate && !options.TargetIsZero;

                // Targets that take concurrent writes (raw) are written by the readers themselves.
                _writeInWorkers = target is IConcurrentWriteLayer && compressor == null && targetParent == null;
                // A network source's reads mostly wait: they get their own, larger limit (the copy's
                // threads), and the work on what they read keeps the workers' limit. Local reads are work
                // like any other and share the workers' limit.
                int workers = Math.Max(1, options.ThrottleLimit);
                _workers = new SemaphoreSlim(workers);
                int remoteReads = Transports.ReadsInFlight(SourceFiles(source));
                _remote = remoteReads > 0;
                _inFlight = Math.Max(1, options.ReadsInFlight ?? Math.Max(workers, remoteReads));
            }

            public void Run()
            {
                var pending = new Queue<Task<Chunk>>();
                int capacity = 2 * _inFlight;
                if (_source.Layers.Any(l => l.IsStreamed))
                {
                    // A stream keeps only a window behind its position: the items in flight stay well inside it.
                    capacity = Math.Max(1, Math.Min(capacity, StreamedInFlightBytes / _chunk));
                }
                long done = 0;
                var workers = new CopyWorkers(_inFlight);
                try
                {
                    foreach (var item in WorkItems())
                    {
                        _cancel.ThrowIfCancellationRequested();
                        while (pending.Count >= capacity)
                        {
                            done = Commit(pending.Dequeue(), done);
                        }

                        var work = item;
                        pending.Enqueue(workers.Run(() => Process(work)));
                    }

                    while (pending.Count > 0)
                    {
                        _cancel.ThrowIfCancellationRequested();
                        done = Commit(pending.Dequeue(), done);
                    }

                    // A streamed source is read on to its end: what follows the last byte copied is checked too.
                    _source.ReadStreamsToEnd();
                    _progress?.Report(new OperationProgress("Copying", _size, _size));
                }
                finally
                {
                    // Let in-flight readers finish before the caller closes the images under them.
                    foreach (var task in pending)
                    {
                        try
                        {
                            task.Wait();
                            task.Result.Release();
                        }
                        catch (AggregateException)
                        {
                        }
                    }

                    workers.Dispose();
                }
            }

            private IEnumerable<WorkItem> WorkItems()
            {
                // Items start on granule boundaries so that every granule (compression unit, target
                // cluster, sparse unit) is judged whole.
                bool skippable = _targetParent == null && !_mustWriteZeros && _options.SparseSize > 0;
                long offset = 0;
                while (offset < _size)
                {
                    long chunkEnd = Math.Min(_size, offset + _chunk);
                    BlockStatus status = _source.GetBlockStatus(offset, (skippable ? _size : chunkEnd) - offset);
                    long runEnd = offset + status.Length;
                    if (status.Kind != ExtentKind.Data)
                    {
                        long alignedEnd = runEnd >= _size ? _size : runEnd / _granule * _granule;
                        if (alignedEnd > offset)
                        {
                            if (skippable)
                            {
                                // Nothing to write: a fresh target already reads as zeros here.
                                offset = alignedEnd;
                                continue;
                            }

                            long zeroEnd = Math.Min(alignedEnd, chunkEnd);
                            yield return new WorkItem(offset, (int)(zeroEnd - offset), true);
                            offset = zeroEnd;
                            continue;
                        }
                    }

                    long end = Math.Min(chunkEnd, (runEnd + _granule - 1) / _granule * _granule);
                    end = Math.Max(end, Math.Min(_size, offset + _granule));
                    if (skippable && _remote)
                    {
                        end = ReadThroughShortGaps(end, chunkEnd);
                    }

                    yield return new WorkItem(offset, (int)(end - offset), false);
                    offset = end;
                }
            }

            private static IEnumerable<string> SourceFiles(ImageChain source)
            {
                foreach (ImageLayer layer in source.Layers)
                {
                    foreach (string file in layer.HostFiles)
                    {
                        yield return file;
                    }
                }
            }

            /// <summary>
            /// Over a network a read costs a round trip, so one read takes the data runs that follow within
            /// the chunk when the holes between them are short; the zeros read are not written (the
            /// granules are judged as usual), so the output stays as sparse.
            /// </summary>
            private long ReadThroughShortGaps(long end, long chunkEnd)
            {
                while (end < chunkEnd)
                {
                    BlockStatus next = _source.GetBlockStatus(end, chunkEnd - end);
                    if (next.Kind != ExtentKind.Data && next.Length > ShortGap)
                    {
                        break;
                    }

                    end = Math.Min(chunkEnd, (end + next.Length + _granule - 1) / _granule * _granule);
                }

                return end;
            }

            /// <summary>Reads on one of the copy's threads, then works on what it read under the workers' limit.</summary>
            private Chunk Process(WorkItem item)
            {
                Chunk chunk = ReadOne(item);
                try
                {
                    _workers.Wait(_cancel);
                    try
                    {
                        WorkOn(chunk);
                    }
                    finally
                    {
                        _workers.Release();
                    }

                    return chunk;
                }
                catch
                {
                    chunk.Release();
                    throw;
                }
            }

            private Chunk ReadOne(WorkItem item)
            {
                _cancel.ThrowIfCancellationRequested();
                byte[] buffer = s_buffers.Rent(item.Length);
                var chunk = new Chunk(item, buffer);
                try
                {
                    if (item.KnownZero)
                    {
                        Array.Clear(buffer, 0, item.Length);
                    }
                    else if (_options.Salvage != null)
                    {
                        _options.Salvage.Read(_source, item.Offset, buffer.AsSpan(0, item.Length));
                    }
                    else
                    {
                        _source.Read(item.Offset, buffer.AsSpan(0, item.Length));
                    }

                    return chunk;
                }
                catch
                {
                    chunk.Release();
                    throw;
                }
            }

            private void WorkOn(Chunk chunk)
            {
                _cancel.ThrowIfCancellationRequested();
                WorkItem item = chunk.Item;
                byte[] buffer = chunk.Buffer;
                if (_targetParent != null)
                {
                    chunk.ParentBuffer = s_buffers.Rent(item.Length);
                    _targetParent.Top.Read(item.Offset, chunk.ParentBuffer.AsSpan(0, item.Length));
                }

                if (_compressor != null)
                {
                    chunk.Compressed = new byte[(item.Length + _granule - 1) / _granule][];
                    for (int g = 0; g * _granule < item.Length; g++)
                    {
                        int start = g * _granule;
                        var unit = buffer.AsSpan(start, Math.Min(_granule, item.Length - start));
                        if (_options.SparseSize > 0 && ZeroDetector.IsZero(unit) && _targetParent == null)
                        {
                            continue;
                        }

                        if (chunk.ParentBuffer != null && unit.SequenceEqual(chunk.ParentBuffer.AsSpan(start, unit.Length)))
                        {
                            continue;
                        }

                        chunk.Compressed[g] = _compressor.Compress(unit);
                    }
                }

                if (_writeInWorkers)
                {
                    Write(chunk);
                    chunk.Written = true;
                }
            }

            private long Commit(Task<Chunk> task, long done)
            {
                Chunk chunk;
                try
                {
                    chunk = task.GetAwaiter().GetResult();
                }
                catch (OperationCanceledException)
                {
                    throw;
                }

                try
                {
                    if (!chunk.Written)
                    {
                        Write(chunk);
                    }
                }
                finally
                {
                    chunk.Release();
                }

                done = chunk.Item.Offset + chunk.Item.Length;
                _progress?.Report(new OperationProgress("Copying", done, _size));
                return done;
            }

            private void Write(Chunk chunk)
            {
                int length = chunk.Item.Length;
                if (_options.SparseSize == 0 && _targetParent == null && _compressor == null)
                {
                    _target.Write(chunk.Item.Offset, chunk.Buffer.AsSpan(0, length));
                    return;
                }

                // Walk granules, coalescing neighbours that need the same action.
                int runStart = 0;
                GranuleAction runAction = GranuleAction.Skip;
                for (int start = 0; start < length; start += _granule)
                {
                    int n = Math.Min(_granule, length - start);
                    GranuleAction action = Classify(chunk, start, n);
                    if (action == GranuleAction.Compressed)
                    {
                        Flush(chunk, runStart, start, runAction);
                        _compressor.WriteCompressed(chunk.Item.Offset + start, chunk.Compressed[start / _granule]);
                        runStart = start + n;
                        runAction = GranuleAction.Skip;
                        continue;
                    }

                    if (action != runAction)
                    {
                        Flush(chunk, runStart, start, runAction);
                        runStart = start;
                        runAction = action;
                    }
                }

                Flush(chunk, runStart, length, runAction);
            }

            private GranuleAction Classify(Chunk chunk, int start, int n)
            {
                var data = chunk.Buffer.AsSpan(start, n);
                if (chunk.ParentBuffer != null)
                {
                    if (data.SequenceEqual(chunk.ParentBuffer.AsSpan(start, n)))
                    {
                        return GranuleAction.Skip;
                    }

                    if (ZeroDetector.IsZero(data))
                    {
                        return GranuleAction.Zero;
                    }
                }
                else if (_options.SparseSize > 0 && (chunk.Item.KnownZero || ZeroDetector.IsZero(data)))
                {
                    return _mustWriteZeros ? GranuleAction.Zero : GranuleAction.Skip;
                }

                if (chunk.Compressed != null && chunk.Compressed[start / _granule] != null)
                {
                    return GranuleAction.Compressed;
                }

                return GranuleAction.Data;
            }

            private void Flush(Chunk chunk, int from, int to, GranuleAction action)
            {
                to = Math.Min(to, chunk.Item.Length);
                if (to <= from)
                {
                    return;
                }

                long offset = chunk.Item.Offset + from;
                switch (action)
                {
                    case GranuleAction.Data:
                        _target.Write(offset, chunk.Buffer.AsSpan(from, to - from));
                        break;
                    case GranuleAction.Zero:
                        _target.WriteZeroes(offset, to - from);
                        break;
                }
            }
        }

        private enum GranuleAction
        {
            Skip,
            Data,
            Zero,
            Compressed,
        }

        private readonly struct WorkItem
        {
            public WorkItem(long offset, int length, bool knownZero)
            {
                Offset = offset;
                Length = length;
                KnownZero = knownZero;
            }

            public long Offset { get; }

            public int Length { get; }

            public bool KnownZero { get; }
        }

        private sealed class Chunk
        {
            public Chunk(WorkItem item, byte[] buffer)
            {
                Item = item;
                Buffer = buffer;
            }

            public WorkItem Item { get; }

            public byte[] Buffer { get; private set; }

            public byte[] ParentBuffer { get; set; }

            public byte[][] Compressed { get; set; }

            /// <summary>Already written by the worker that read it.</summary>
            public bool Written { get; set; }

            public void Release()
            {
                if (Buffer != null)
                {
                    s_buffers.Return(Buffer);
                    Buffer = null;
                }

                if (ParentBuffer != null)
                {
                    s_buffers.Return(ParentBuffer);
                    ParentBuffer = null;
                }
            }
        }
    }
}
