using System;
using System.Text;

namespace VDiskPS.Formats
{
    /// <summary>
    /// Base of every error the engine raises on purpose. Carries the file, the field and the
    /// byte offset concerned (each may be absent) so that a user can find the problem.
    /// </summary>
    public class ImageException : Exception
    {
        public ImageException(string filePath, string field, long? offset, string message, Exception inner = null)
            : base(Compose(filePath, field, offset, message), inner)
        {
            FilePath = filePath;
            Field = field;
            Offset = offset;
            Reason = message;
        }

        /// <summary>The image file concerned, when known.</summary>
        public string FilePath { get; }

        /// <summary>The on-disk field or option concerned, when known.</summary>
        public string Field { get; }

        /// <summary>Byte offset in <see cref="FilePath"/> where the field lives, when known.</summary>
        public long? Offset { get; }

        /// <summary>The message without the file/field/offset prefix.</summary>
        public string Reason { get; }

        /// <summary>A stable identifier the cmdlets use for error records (VDisk.&lt;ErrorId&gt;).</summary>
        public virtual string ErrorId => "ImageError";

        private static string Compose(string filePath, string field, long? offset, string message)
        {
            var sb = new StringBuilder();
            if (!string.IsNullOrEmpty(filePath))
            {
                sb.Append(filePath).Append(": ");
            }

            if (!string.IsNullOrEmpty(field))
            {
                sb.Append(field);
                if (offset.HasValue)
                {
                    sb.Append(" at offset ").Append(offset.Value).Append(" (0x").Append(offset.Value.ToString("x")).Append(')');
                }

                sb.Append(": ");
            }
            else if (offset.HasValue)
            {
                sb.Append("at offset ").Append(offset.Value).Append(": ");
            }

            sb.Append(message);
            return sb.ToString();
        }
    }

    /// <summary>The file's structures are invalid: truncated, out of range, bad checksum, loops.</summary>
    public class ImageCorruptException : ImageException
    {
        public ImageCorruptException(string filePath, string field, long? offset, string message, Exception inner = null)
            : base(filePath, field, offset, message, inner)
        {
        }

        public override string ErrorId => "CorruptImage";
    }

    /// <summary>The file is not in the format asked for (wrong magic, unknown version).</summary>
    public class ImageFormatMismatchException : ImageException
    {
        public ImageFormatMismatchException(string filePath, string field, long? offset, string message)
            : base(filePath, field, offset, message)
        {
        }

        public override string ErrorId => "FormatMismatch";
    }

    /// <summary>A format lacks a capability, or an image uses a feature this module does not implement.</summary>
    public class ImageNotSupportedException : ImageException
    {
        public ImageNotSupportedException(string filePath, string field, long? offset, string message)
            : base(filePath, field, offset, message)
        {
        }

        public override string ErrorId => "NotSupported";

        /// <summary>"FORMAT does not support X", the precise form every missing capability uses.</summary>
        public static ImageNotSupportedException Capability(DiskFormat format, string capability, string filePath = null)
            => new ImageNotSupportedException(filePath, null, null, $"{format.ToName()} does not support {capability}");
    }

    /// <summary>A create/open option is unknown, malformed or out of range.</summary>
    public class ImageOptionException : ImageException
    {
        public ImageOptionException(string filePath, string option, string message)
            : base(filePath, option, null, message)
        {
        }

        public override string ErrorId => "InvalidOption";
    }

    /// <summary>A backing chain cannot be opened: missing parent, loop, mismatched parent identity.</summary>
    public class ImageChainException : ImageException
    {
        public ImageChainException(string filePath, string field, string message, Exception inner = null)
            : base(filePath, field, null, message, inner)
        {
        }

        public override string ErrorId => "BrokenChain";
    }

    /// <summary>
    /// The parent found on disk is not the one the child was made from: its identity (VMDK CID, VHD unique
    /// id, VHDX DataWriteGuid) changed since. Opening anyway is the caller's explicit choice.
    /// </summary>
    public sealed class ImageParentMismatchException : ImageChainException
    {
        public ImageParentMismatchException(string filePath, string field, string parentPath, string message)
            : base(filePath, field, message)
        {
            ParentPath = parentPath;
        }

        /// <summary>The parent file whose identity does not match.</summary>
        public string ParentPath { get; }

        public override string ErrorId => "ParentIdMismatch";
    }

    /// <summary>The image is held by another writer (or, for a writer, by anyone).</summary>
    public class ImageLockedException : ImageException
    {
        public ImageLockedException(string filePath, string message, bool writerBlocksReading = false, Exception inner = null)
            : base(filePath, null, null, message, inner)
        {
            WriterBlocksReading = writerBlocksReading;
        }

        /// <summary>A read was refused because another process writes the image; sharing with writers (qemu-img -U) would read it.</summary>
        public bool WriterBlocksReading { get; }

        public override string ErrorId => "ImageInUse";
    }

    /// <summary>A host I/O operation failed (disk full, permission denied, missing file).</summary>
    public class ImageIOException : ImageException
    {
        public ImageIOException(string filePath, string message, Exception inner = null)
            : base(filePath, null, null, message, inner)
        {
        }

        public override string ErrorId => "IOError";
    }

    /// <summary>An encrypted image needs a password that was not given, or the one given opens no key slot.</summary>
    public class ImagePasswordException : ImageException
    {
        public ImagePasswordException(string filePath, bool missing)
            : base(filePath, null, null, missing ? "the image is encrypted; a password is required to open it" : "the password opens none of the image's key slots")
        {
            Missing = missing;
        }

        /// <summary>True when no password was given; false when the given one is wrong.</summary>
        public bool Missing { get; }

        public override string ErrorId => Missing ? "PasswordRequired" : "InvalidPassword";
    }
}
