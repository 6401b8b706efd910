using System;
using System.Buffers;
using System.Collections.Generic;
using System.IO;
using System.Threading;
using VDiskPS;

namespace VDiskPS.Formats
{
    /// <summary>Options of Copy-VDiskData (qemu-img dd).</summary>
    public sealed class DdOptions : EngineOptions
    {
        /// <summary>The input image's format; null to probe.</summary>
        public DiskFormat? SourceFormat { get; set; }

        /// <summary>The output image's format (created, or opened with <see cref="NoCreate"/>; null probes an existing one).</summary>
        public DiskFormat? DestinationFormat { get; set; }

        /// <summary>Bytes per block (dd bs=); qemu-img's default is 512.</summary>
        public long BlockSize { get; set; } = 512;

        /// <summary>Blocks to copy (dd count=), or null for everything after <see cref="Skip"/>.</summary>
        public long? Count { get; set; }

        /// <summary>Input blocks to skip before copying (dd skip=).</summary>
        public long Skip { get; set; }

        /// <summary>Create options of a new output (its size is the copied length).</summary>
        public CreateRequest Target { get; set; } = new CreateRequest();

        /// <summary>Write into an existing output from its start instead of creating one.</summary>
        public bool NoCreate { get; set; }

        /// <summary>When set, unreadable input ranges are written as zeros and recorded here instead of failing the copy (dd_rescue).</summary>
        public SalvageLog Salvage { get; set; }
    }

    /// <summary>
    /// qemu-img dd: copies <c>Count</c> blocks of <c>BlockSize</c> bytes starting at block <c>Skip</c>
    /// of the input (through its chain) to the start of the output. Count counts blocks after Skip, as
    /// dd(1) does (qemu-img 7.2 instead stops at block Count counted from the start of the input).
    /// A new output is as long as the copied data, and stays sparse where the input reads as zeros.
    /// A failed or cancelled copy deletes the output it created.
    /// </summary>
    public static class DdOperation
    {
        public static VDiskInfo Run(string sourcePath, string destinationPath, DdOptions options = null, IProgress<OperationProgress> progress = null, CancellationToken cancel = default)
        {
            options = options ?? new DdOptions();
            FormatRegistry registry = options.Registry ?? FormatRegistry.Default;
            if (options.BlockSize <= 0 || options.BlockSize > int.MaxValue)
            {
                throw new ImageOptionException(null, "bs", $"the block size must be between 1 and {int.MaxValue} bytes");
            }

            if (options.Skip < 0 || options.Count < 0)
            {
                throw new ImageOptionException(null, "count", "skip and count must not be negative");
            }

            if (ImageChain.PathComparer.Equals(Transports.GetFullLocation(sourcePath), Transports.GetFullLocation(destinationPath)))
            {
                throw new ImageOptionException(destinationPath, "of", "the output is the input image itself");
            }

            using (var source = ImageChain.Open(sourcePath, options.OpenChain(options.SourceFormat)))
            {
                long start = options.Skip > source.Size / options.BlockSize ? source.Size : options.Skip * options.BlockSize;
                long length = source.Size - start;
                if (options.Count.HasValue && options.Count.Value <= length / options.BlockSize)
                {
                    length = Math.Min(length, options.Count.Value * options.BlockSize);
                }

                ImageLayer target = null;
                IReadOnlyList<string> created = Array.Empty<string>();
                try
                {
                    if (options.NoCreate)
                    {
                        target = registry.Open(destinationPath, options.DestinationFormat, new OpenOptions { Writable = true });
                        if (target.Size < length)
                        {
                            throw new ImageOptionException(target.Path, "size", $"the output ({target.Size} bytes) is smaller than the {length} bytes to copy");
                        }
                    }
                    else
                    {
                        DiskFormat format = options.DestinationFormat ?? registry.PlainDataFormat;
                        CreateRequest request = options.Target ?? new CreateRequest();
                        request.Size = length;
                        target = registry.GetCreatable(format, destinationPath).Create(destinationPath, request);
                        created = target.HostFiles;
                    }

                    Copy(source, start, length, target, options, progress, cancel);
                    target.Flush();
                    VDiskInfo info = ImageInspector.Describe(target);
                    target.Dispose();
                    target = null;
                    return info;
                }
                catch
                {
                    target?.Dispose();
                    OperationSupport.DeleteFiles(created);
                    throw;
                }
            }
        }

        /// <summary>Writes a buffer of whole blocks, coalescing neighbours; all-zero blocks stay unwritten in a new output.</summary>
        private static void WriteBlocks(ImageLayer target, long offset, ReadOnlySpan<byte> data, int blockSize, bool mustWriteZeros)
        {
            int runStart = 0;
            bool runIsZero = false;
            for (int block = 0; ; block = Math.Min(block + blockSize, data.Length))
            {
                bool atEnd = block >= data.Length;
                bool isZero = !atEnd && ZeroDetector.IsZero(data.Slice(block, Math.Min(blockSize, data.Length - block)));
                if (block > runStart && (atEnd || isZero != runIsZero))
                {
                    if (!runIsZero)
                    {
                        target.Write(offset + runStart, data.Slice(runStart, block - runStart));
                    }
                    else if (mustWriteZeros)
                    {
                        target.WriteZeroes(offset + runStart, block - runStart);
                    }

                    runStart = block;
                }

                if (atEnd)
                {
                    return;
                }

                runIsZero = isZero;
            }
        }

        private static void Copy(ImageChain source, long start, long length, ImageLayer target, DdOptions options, IProgress<OperationProgress> progress, CancellationToken cancel)
        {
            bool mustWriteZeros = options.NoCreate;
            int blockSize = (int)options.BlockSize;
            // Whole granules per buffer, so each is judged zero or not as a unit; a block larger than
            // the buffer is judged in buffer-sized pieces, which leaves the same content.
            int granule = Math.Min(blockSize, OperationSupport.IoBufferSize);
            int bufferSize = (int)OperationSupport.AlignDown(OperationSupport.IoBufferSize, granule);
            byte[] buffer = ArrayPool<byte>.Shared.Rent(bufferSize);
            try
            {
                for (long done = 0; done < length;)
                {
                    cancel.ThrowIfCancellationRequested();
                    int n = OperationSupport.ChunkLength(done, length, bufferSize);
                    long inputOffset = start + done;
                    if (OperationSupport.KnownZero(source, inputOffset, n))
                    {
                        if (mustWriteZeros)
                        {
                            target.WriteZeroes(done, n);
                        }
                    }
                    else
                    {
                        if (options.Salvage != null)
                        {
                            options.Salvage.Read(source, inputOffset, buffer.AsSpan(0, n));
                        }
                        else
                        {
                            source.Read(inputOffset, buffer.AsSpan(0, n));
                        }

                        WriteBlocks(target, done, buffer.AsSpan(0, n), granule, mustWriteZeros);
                    }

                    done += n;
                    OperationSupport.Report(progress, "Copying", done, length);
                }

                OperationSupport.Report(progress, "Copying", length, length);
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(buffer);
            }
        }
    }
}
