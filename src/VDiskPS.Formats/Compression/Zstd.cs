using System;
using System.IO;
using System.Runtime.InteropServices;

namespace VDiskPS.Formats.Compression
{
    /// <summary>
    /// Zstandard through the native libzstd (there is no managed implementation to depend on).
    /// The library is looked up per platform: libzstd.so.1 (Linux), libzstd.dylib (macOS),
    /// libzstd.dll (Windows, first from the x64/x86 folder next to this assembly, since Windows
    /// PowerShell 5.1 does not search the assembly's folder). Decompression is streaming and bounded
    /// by the output buffer, so frames without a content size (as QEMU writes them) decode and a
    /// hostile frame cannot expand past it.
    /// </summary>
    public static class Zstd
    {
        /// <summary>QEMU's qcow2 zstd level (ZSTD_CLEVEL_DEFAULT).</summary>
        public const int DefaultLevel = 3;

        private static readonly object s_loadGate = new object();
        private static NativeApi s_api;
        private static string s_loadError;

        /// <summary>True when the native library can be used.</summary>
        public static bool IsAvailable
        {
            get
            {
                lock (s_loadGate)
                {
                    return TryLoad() != null;
                }
            }
        }

        /// <summary>Compresses <paramref name="input"/> into one zstd frame.</summary>
        public static unsafe byte[] Compress(ReadOnlySpan<byte> input, int level = DefaultLevel)
        {
            NativeApi api = Api();
            UIntPtr bound = api.CompressBound((UIntPtr)input.Length);
            byte[] output = new byte[(int)bound.ToUInt64()];
            UIntPtr written;
            fixed (byte* src = input)
            fixed (byte* dst = output)
            {
                written = api.Compress(dst, bound, src, (UIntPtr)input.Length, level);
            }

            ThrowIfError(api, written, "compression");
            Array.Resize(ref output, (int)written.ToUInt64());
            return output;
        }

        /// <summary>
        /// Decompresses the first frame of <paramref name="input"/> into <paramref name="output"/>,
        /// stopping when the output is full (bytes after the frame are ignored). Returns the bytes produced.
        /// Throws <see cref="InvalidDataException"/> on a malformed frame.
        /// </summary>
        public static unsafe int Decompress(ReadOnlySpan<byte> input, Span<byte> output)
        {
            NativeApi api = Api();
            IntPtr stream = api.CreateDStream();
            if (stream == IntPtr.Zero)
            {
                throw new OutOfMemoryException("ZSTD_createDStream failed");
            }

            try
            {
                ThrowIfError(api, api.InitDStream(stream), "decompression");
                fixed (byte* src = input)
                fixed (byte* dst = output)
                {
                    var inBuffer = new ZstdInBuffer { Source = src, Size = (UIntPtr)input.Length, Position = UIntPtr.Zero };
                    var outBuffer = new ZstdOutBuffer { Destination = dst, Size = (UIntPtr)output.Length, Position = UIntPtr.Zero };
                    while (outBuffer.Position.ToUInt64() < outBuffer.Size.ToUInt64())
                    {
                        ulong inBefore = inBuffer.Position.ToUInt64();
                        ulong outBefore = outBuffer.Position.ToUInt64();
                        UIntPtr result = api.DecompressStream(stream, &outBuffer, &inBuffer);
                        ThrowIfError(api, result, "decompression");
                        if (result == UIntPtr.Zero)
                        {
                            // The frame is complete.
                            break;
                        }

                        if (inBuffer.Position.ToUInt64() == inBefore && outBuffer.Position.ToUInt64() == outBefore)
                        {
                            throw new InvalidDataException("the zstd frame is truncated");
                        }
                    }

                    return (int)outBuffer.Position.ToUInt64();
                }
            }
            finally
            {
                api.FreeDStream(stream);
            }
        }

        private static NativeApi Api()
        {
            lock (s_loadGate)
            {
                return TryLoad() ?? throw new ImageNotSupportedException(null, "compression type", null,
                    "zstd compression needs the native libzstd library (libzstd.so.1 / libzstd.dylib / libzstd.dll), which was not found: "
                    + "install libzstd1 (Debian/Ubuntu), libzstd (Fedora, Homebrew), or place libzstd.dll in the x64/x86 folder beside VDiskPS.Formats.dll"
                    + (s_loadError != null ? " (" + s_loadError + ")" : string.Empty));
            }
        }

        private static void ThrowIfError(NativeApi api, UIntPtr code, string what)
        {
            if (api.IsError(code) != 0)
            {
                string name = Marshal.PtrToStringAnsi(api.GetErrorName(code)) ?? "unknown error";
                throw new InvalidDataException($"zstd {what} failed: {name}");
            }
        }

        private static NativeApi TryLoad()
        {
            if (s_api != null || s_loadError != null)
            {
                return s_api;
            }

            try
            {
                NativeApi api;
                if (RuntimeInformation.IsOSPlatform(OSPlatform.Windows))
                {
                    PreloadWindowsLibrary();
                    api = WindowsApi.Create();
                }
                else if (RuntimeInformation.IsOSPlatform(OSPlatform.OSX))
                {
                    api = MacApi.Create();
                }
                else
                {
                    api = LinuxApi.Create();
                }

                // Calls one entry point so that a missing library fails here, not mid-operation.
                api.CompressBound((UIntPtr)1);
                s_api = api;
            }
            catch (Exception e) when (e is DllNotFoundException || e is EntryPointNotFoundException || e is BadImageFormatException)
            {
                s_loadError = e.Message;
            }

            return s_api;
        }

        private static void PreloadWindowsLibrary()
        {
            string folder = Path.GetDirectoryName(typeof(Zstd).Assembly.Location) ?? string.Empty;
            string arch = IntPtr.Size == 8 ? "x64" : "x86";
            foreach (string candidate in new[] { Path.Combine(folder, arch, "libzstd.dll"), Path.Combine(folder, "libzstd.dll") })
            {
                if (File.Exists(candidate) && WindowsLoader.LoadLibraryW(candidate) != IntPtr.Zero)
                {
                    return;
                }
            }
        }

        [StructLayout(LayoutKind.Sequential)]
        private unsafe struct ZstdInBuffer
        {
            public byte* Source;
            public UIntPtr Size;
            public UIntPtr Position;
        }

        [StructLayout(LayoutKind.Sequential)]
        private unsafe struct ZstdOutBuffer
        {
            public byte* Destination;
            public UIntPtr Size;
            public UIntPtr Position;
        }

        /// <summary>The entry points, bound to one platform's library name.</summary>
        private abstract unsafe class NativeApi
        {
            public abstract UIntPtr Compress(byte* dst, UIntPtr capacity, byte* src, UIntPtr size, int level);

            public abstract UIntPtr CompressBound(UIntPtr size);

            public abstract uint IsError(UIntPtr code);

            public abstract IntPtr GetErrorName(UIntPtr code);

            public abstract IntPtr CreateDStream();

            public abstract UIntPtr InitDStream(IntPtr stream);

            public abstract UIntPtr DecompressStream(IntPtr stream, ZstdOutBuffer* output, ZstdInBuffer* input);

            public abstract UIntPtr FreeDStream(IntPtr stream);
        }

        private sealed unsafe class LinuxApi : NativeApi
        {
            private const string Library = "libzstd.so.1";

            public static NativeApi Create() => new LinuxApi();

            public override UIntPtr Compress(byte* dst, UIntPtr capacity, byte* src, UIntPtr size, int level) => ZSTD_compress(dst, capacity, src, size, level);

            public override UIntPtr CompressBound(UIntPtr size) => ZSTD_compressBound(size);

            public override uint IsError(UIntPtr code) => ZSTD_isError(code);

            public override IntPtr GetErrorName(UIntPtr code) => ZSTD_getErrorName(code);

            public override IntPtr CreateDStream() => ZSTD_createDStream();

            public override UIntPtr InitDStream(IntPtr stream) => ZSTD_initDStream(stream);

            public override UIntPtr DecompressStream(IntPtr stream, ZstdOutBuffer* output, ZstdInBuffer* input) => ZSTD_decompressStream(stream, output, input);

            public override UIntPtr FreeDStream(IntPtr stream) => ZSTD_freeDStream(stream);

            [DllImport(Library)]
            private static extern UIntPtr ZSTD_compress(byte* dst, UIntPtr dstCapacity, byte* src, UIntPtr srcSize, int compressionLevel);

            [DllImport(Library)]
            private static extern UIntPtr ZSTD_compressBound(UIntPtr srcSize);

            [DllImport(Library)]
            private static extern uint ZSTD_isError(UIntPtr code);

            [DllImport(Library)]
            private static extern IntPtr ZSTD_getErrorName(UIntPtr code);

            [DllImport(Library)]
            private static extern IntPtr ZSTD_createDStream();

            [DllImport(Library)]
            private static extern UIntPtr ZSTD_initDStream(IntPtr stream);

            [DllImport(Library)]
            private static extern UIntPtr ZSTD_decompressStream(IntPtr stream, ZstdOutBuffer* output, ZstdInBuffer* input);

            [DllImport(Library)]
            private static extern UIntPtr ZSTD_freeDStream(IntPtr stream);
        }

        private sealed unsafe class MacApi : NativeApi
        {
            private const string Library = "libzstd.dylib";

            public static NativeApi Create() => new MacApi();

            public override UIntPtr Compress(byte* dst, UIntPtr capacity, byte* src, UIntPtr size, int level) => ZSTD_compress(dst, capacity, src, size, level);

            public override UIntPtr CompressBound(UIntPtr size) => ZSTD_compressBound(size);

            public override uint IsError(UIntPtr code) => ZSTD_isError(code);

            public override IntPtr GetErrorName(UIntPtr code) => ZSTD_getErrorName(code);

            public override IntPtr CreateDStream() => ZSTD_createDStream();

            public override UIntPtr InitDStream(IntPtr stream) => ZSTD_initDStream(stream);

            public override UIntPtr DecompressStream(IntPtr stream, ZstdOutBuffer* output, ZstdInBuffer* input) => ZSTD_decompressStream(stream, output, input);

            public override UIntPtr FreeDStream(IntPtr stream) => ZSTD_freeDStream(stream);

            [DllImport(Library)]
            private static extern UIntPtr ZSTD_compress(byte* dst, UIntPtr dstCapacity, byte* src, UIntPtr srcSize, int compressionLevel);

            [DllImport(Library)]
            private static extern UIntPtr ZSTD_compressBound(UIntPtr srcSize);

            [DllImport(Library)]
            private static extern uint ZSTD_isError(UIntPtr code);

            [DllImport(Library)]
            private static extern IntPtr ZSTD_getErrorName(UIntPtr code);

            [DllImport(Library)]
            private static extern IntPtr ZSTD_createDStream();

            [DllImport(Library)]
            private static extern UIntPtr ZSTD_initDStream(IntPtr stream);

            [DllImport(Library)]
            private static extern UIntPtr ZSTD_decompressStream(IntPtr stream, ZstdOutBuffer* output, ZstdInBuffer* input);

            [DllImport(Library)]
            private static extern UIntPtr ZSTD_freeDStream(IntPtr stream);
        }

        private sealed unsafe class WindowsApi : NativeApi
        {
            private const string Library = "libzstd.dll";

            public static NativeApi Create() => new WindowsApi();

            public override UIntPtr Compress(byte* dst, UIntPtr capacity, byte* src, UIntPtr size, int level) => ZSTD_compress(dst, capacity, src, size, level);

            public override UIntPtr CompressBound(UIntPtr size) => ZSTD_compressBound(size);

            public override uint IsError(UIntPtr code) => ZSTD_isError(code);

            public override IntPtr GetErrorName(UIntPtr code) => ZSTD_getErrorName(code);

            public override IntPtr CreateDStream() => ZSTD_createDStream();

            public override UIntPtr InitDStream(IntPtr stream) => ZSTD_initDStream(stream);

            public override UIntPtr DecompressStream(IntPtr stream, ZstdOutBuffer* output, ZstdInBuffer* input) => ZSTD_decompressStream(stream, output, input);

            public override UIntPtr FreeDStream(IntPtr stream) => ZSTD_freeDStream(stream);

            [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
            private static extern UIntPtr ZSTD_compress(byte* dst, UIntPtr dstCapacity, byte* src, UIntPtr srcSize, int compressionLevel);

            [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
            private static extern UIntPtr ZSTD_compressBound(UIntPtr srcSize);

            [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
            private static extern uint ZSTD_isError(UIntPtr code);

            [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
            private static extern IntPtr ZSTD_getErrorName(UIntPtr code);

            [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
            private static extern IntPtr ZSTD_createDStream();

            [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
            private static extern UIntPtr ZSTD_initDStream(IntPtr stream);

            [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
            private static extern UIntPtr ZSTD_decompressStream(IntPtr stream, ZstdOutBuffer* output, ZstdInBuffer* input);

            [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
            private static extern UIntPtr ZSTD_freeDStream(IntPtr stream);
        }

        private static class WindowsLoader
        {
            [DllImport("kernel32", CharSet = CharSet.Unicode, SetLastError = true)]
            public static extern IntPtr LoadLibraryW(string path);
        }
    }
}
