using System;
using System.Collections.Generic;
using System.IO;

namespace VDiskPS.Formats
{
    /// <summary>How to open an image and its backing files.</summary>
    public sealed class ChainOptions : EngineOptions
    {
        /// <summary>The top image's format; null to probe. An explicit format is never second-guessed.</summary>
        public DiskFormat? Format { get; set; }

        /// <summary>Open the top layer for writing (its backing files stay read-only).</summary>
        public bool Writable { get; set; }

        /// <summary>Which layers (by depth) besides the top are opened writable, for commit.</summary>
        public int WritableDepth { get; set; }

        /// <summary>Open only the top layer, ignoring its parent (qemu's backing=null).</summary>
        public bool NoBacking { get; set; }

        /// <summary>Let a backing file whose format was probed (not recorded) name a further backing file.</summary>
        public bool AllowProbedBackingChain { get; set; }

        public bool AllowExternalPaths { get; set; } = true;

        /// <summary>Allow VMDK extent files outside the descriptor's directory.</summary>
        public bool AllowExternalExtents { get; set; }

        /// <summary>Chains deeper than this are refused (loops are caught before, by path).</summary>
        public int MaxDepth { get; set; } = 256;
    }

    /// <summary>
    /// An image and its backing files, opened and linked so that reads of the top fall through.
    /// Disposing the chain closes every layer.
    /// </summary>
    public sealed class ImageChain : IDisposable
    {
        private readonly List<ImageLayer> _layers;
        private readonly List<KeyValuePair<string, long>> _lengthsAtOpen = new List<KeyValuePair<string, long>>();

        private ImageChain(List<ImageLayer> layers)
        {
            _layers = layers;
            foreach (ImageLayer layer in layers)
            {
                foreach (string file in layer.HostFiles)
                {
                    long length = LengthOf(file);
                    if (length >= 0)
                    {
                        _lengthsAtOpen.Add(new KeyValuePair<string, long>(file, length));
                    }
                }
            }
        }

        /// <summary>Top first, then its parent, down to the base.</summary>
        public IReadOnlyList<ImageLayer> Layers => _layers;

        public ImageLayer Top => _layers[0];

        public long Size => Top.Size;

        public static ImageChain Open(string path, ChainOptions options = null)
        {
            options = options ?? new ChainOptions();
            var layers = new List<ImageLayer>();
            var seen = new HashSet<string>(PathComparer);
            try
            {
                string current = Transports.GetFullLocation(path);
                DiskFormat? format = options.Format;
                bool formatWasProbed = format == null;
                bool namerRecordsFormats = true;
                string namedBy = null;
                while (true)
                {
                    if (!seen.Add(current))
                    {
                        throw new ImageChainException(namedBy, "backing file", $"the backing chain loops: '{current}' appears twice");
                    }

                    if (layers.Count > options.MaxDepth)
                    {
                        throw new ImageChainException(namedBy, "backing file", $"the backing chain is deeper than {options.MaxDepth} layers");
                    }

                    if (namedBy != null && !Transports.Exists(current))
                    {
                        throw new ImageChainException(namedBy, "backing file", $"the backing file '{current}' does not exist");
                    }

                    int depth = layers.Count;
                    var open = new OpenOptions
                    {
                        Writable = depth == 0 ? options.Writable : depth <= options.WritableDepth,
                        ShareWithWriters = options.ShareWithWriters,
                        AllowExternalPaths = options.AllowExternalPaths,
                        AllowExternalExtents = options.AllowExternalExtents,
                        IgnoreParentMismatch = options.IgnoreParentMismatch,
                    };
                    ImageLayer layer = options.Registry.Open(current, format, open);
                    if (layers.Count > 0)
                    {
                        layers[layers.Count - 1].LinkParent(layer);
                    }

                    layers.Add(layer);
                    if (options.NoBacking)
                    {
                        break;
                    }

                    BackingReference backing = layer.Backing;
                    if (backing == null)
                    {
                        break;
                    }

                    // A child whose format has no place for its parent's format but marks a raw parent "do not
                    // probe" (QED) leaves probing as the only way, as in qemu.
                    if (formatWasProbed && depth > 0 && !options.AllowProbedBackingChain && namerRecordsFormats)
                    {
                        throw new ImageChainException(layer.Path, "backing format",
                            $"this backing file's format was probed, not recorded, and it names a further backing file ('{backing.RecordedPath}'); the image that names it must record its format")
                        {
                            Kind = ImageErrorKind.BackingFormatNotRecorded,
                        };
                    }

                    namedBy = layer.Path;
                    namerRecordsFormats = options.Registry.Find(layer.Format)?.RecordsBackingFormat != false;
                    format = backing.Format;
                    formatWasProbed = format == null;
                    current = backing.ResolveExisting(layer.Path);
                }

                return new ImageChain(layers);
            }
            catch
            {
                foreach (var layer in layers)
                {
                    layer.Dispose();
                }

                throw;
            }
        }

        /// <summary>
        /// Puts <paramref name="top"/> (a layer just created or reopened) over <paramref name="below"/>: what
        /// <paramref name="top"/> lacks reads from below's top; null leaves it with no parent. The chain stays
        /// the owner of its layers.
        /// </summary>
        public static void Stack(ImageLayer top, ImageChain below) => Stack(top, below?.Top);

        /// <summary>Puts <paramref name="top"/> over the layer <paramref name="below"/> (a layer of an open chain, or null), as a commit relinks an overlay to its new base.</summary>
        public static void Stack(ImageLayer top, ImageLayer below) => top.LinkParent(below);

        /// <summary>Links <paramref name="layers"/> (top first) into a chain that owns them.</summary>
        public static ImageChain FromLayers(IReadOnlyList<ImageLayer> layers)
        {
            var list = new List<ImageLayer>(layers);
            for (int i = 0; i + 1 < list.Count; i++)
            {
                list[i].LinkParent(list[i + 1]);
            }

            return new ImageChain(list);
        }

        /// <summary>
        /// A view of this chain with <paramref name="top"/> (a snapshot view of the top layer) in place of the
        /// top. The lower layers stay this chain's: dispose only <paramref name="top"/>, never the view.
        /// </summary>
        public ImageChain WithTop(ImageLayer top)
        {
            var layers = new List<ImageLayer> { top };
            for (int i = 1; i < _layers.Count; i++)
            {
                layers.Add(_layers[i]);
            }

            return FromLayers(layers);
        }

        /// <summary>
        /// The status of the run at <paramref name="offset"/> as the chain answers it: the first layer
        /// (from the top) that has the run allocated, at its depth. A run unallocated in every layer is
        /// Unallocated at the depth of the last layer asked.
        /// </summary>
        public BlockStatus GetBlockStatus(long offset, long maxLength, int fromDepth = 0)
        {
            maxLength = Math.Min(maxLength, Size - offset);
            for (int depth = fromDepth; ; depth++)
            {
                ImageLayer layer = _layers[depth];
                BlockStatus status = layer.GetBlockStatus(offset, maxLength);
                if (status.Kind != ExtentKind.Unallocated || depth + 1 >= _layers.Count)
                {
                    return status.WithDepth(depth);
                }

                ImageLayer parent = _layers[depth + 1];
                if (offset >= parent.Size)
                {
                    // Past the parent's end the run reads as zeros.
                    return status.WithDepth(depth);
                }

                maxLength = Math.Min(status.Length, parent.Size - offset);
            }
        }

        public void Read(long offset, Span<byte> buffer) => Top.Read(offset, buffer);

        /// <summary>Reads each streamed layer on to the end of its stream (<see cref="ImageLayer.ReadToEnd"/>): a copy is complete only then.</summary>
        public void ReadStreamsToEnd()
        {
            foreach (ImageLayer layer in _layers)
            {
                layer.ReadToEnd();
            }
        }

        /// <summary>
        /// Throws when a file of the chain has another length than when the chain was opened: what was
        /// read from it may mix old and new content (a raw image's size is its file's length). A file
        /// deleted meanwhile was still read whole through the open handle.
        /// </summary>
        public void CheckUnchanged()
        {
            foreach (KeyValuePair<string, long> file in _lengthsAtOpen)
            {
                long now = LengthOf(file.Key);
                if (now >= 0 && now != file.Value)
                {
                    throw new ImageCorruptException(file.Key, "file length", Math.Min(now, file.Value), $"the file was {file.Value} bytes long when opened and is now {now} bytes: it changed while it was being read");
                }
            }
        }

        public void Dispose()
        {
            foreach (var layer in _layers)
            {
                layer.Dispose();
            }
        }

        private static long LengthOf(string file)
        {
            try
            {
                var info = new FileInfo(file);
                return info.Exists ? info.Length : -1;
            }
            catch (Exception e) when (e is ArgumentException || e is NotSupportedException || e is IOException || e is UnauthorizedAccessException)
            {
                // Not a local file (a transport's address) or not reachable: nothing to compare.
                return -1;
            }
        }

        internal static readonly StringComparer PathComparer =
            System.Runtime.InteropServices.RuntimeInformation.IsOSPlatform(System.Runtime.InteropServices.OSPlatform.Windows)
                ? StringComparer.OrdinalIgnoreCase
                : StringComparer.Ordinal;
    }
}
