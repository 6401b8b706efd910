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

        /// <summary>
        /// What the caller could change to succeed, for the cmdlet layer to word with the switch of the
        /// cmdlet being run: the engine's own message names no cmdlet and no switch.
        /// </summary>
        public ImageErrorKind Kind { get; set; }

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

    /// <summary>The caller's choice that would avoid an <see cref="ImageException"/>, when there is one.</summary>
    public enum ImageErrorKind
    {
        /// <summary>Nothing the caller chose: the file or the host is at fault.</summary>
        Unspecified,

        /// <summary>The output file exists; overwriting it is the caller's choice.</summary>
        OutputExists,

        /// <summary>The new size is smaller than the image; data past it would be lost.</summary>
        ShrinkNotAllowed,

        /// <summary>The output's format cannot be told from its name (no or an unknown extension, a folder).</summary>
        FormatNotNamed,

        /// <summary>The format named contradicts the output's extension, which names another format.</summary>
        FormatContradictsExtension,

        /// <summary>The output would replace the source; an output path must be named.</summary>
        OutputIsSource,

        /// <summary>A differencing image was asked for without a parent.</summary>
        ParentNotNamed,

        /// <summary>A parent format was given without a parent.</summary>
        ParentFormatWithoutParent,

        /// <summary>A fixed image was asked for with a parent (a child of a parent is differencing).</summary>
        FixedWithParent,

        /// <summary>A subformat was given for a format that has none (only VMDK has create types).</summary>
        SubformatNotApplicable,

        /// <summary>No size was given, and no parent or source to take it from.</summary>
        SizeNotNamed,

        /// <summary>No size was given, and the parent is not opened to take it from.</summary>
        SizeNeededUnopenedParent,

        /// <summary>Writing into an existing output was asked for, and the output does not exist.</summary>
        ExistingOutputMissing,

        /// <summary>The promise that the output reads as zeros was given without writing into an existing output.</summary>
        TargetIsZeroWithoutExistingOutput,

        /// <summary>The format must open the parent (a VDI child records its parent's UUID).</summary>
        ParentMustBeOpened,

        /// <summary>A backing file's format was probed, not recorded, and it names a further backing file.</summary>
        BackingFormatNotRecorded,

        /// <summary>The image's metadata is damaged; a check reports what is damaged.</summary>
        DamageNeedsCheck,

        /// <summary>A server asks for a credential and none was given.</summary>
        CredentialMissing,

        /// <summary>A server refused the credential given.</summary>
        CredentialRefused,

        /// <summary>A server's TLS certificate is not trusted.</summary>
        CertificateNotTrusted,

        /// <summary>The image is encrypted and no password was given.</summary>
        PasswordMissing,

        /// <summary>The password given opens none of the image's key slots.</summary>
        PasswordRejected,
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

        /// <summary>A resize to a smaller size that shrinking was not allowed for.</summary>
        public static ImageOptionException ShrinkNotAllowed(string filePath, long size, long newSize)
            => new ImageOptionException(filePath, "size", $"shrinking from {size} to {newSize} bytes discards data") { Kind = ImageErrorKind.ShrinkNotAllowed };

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

        /// <summary>The output exists and overwriting it was not asked for.</summary>
        public static ImageIOException OutputExists(string filePath, Exception inner = null)
            => new ImageIOException(filePath, "the file already exists", inner) { Kind = ImageErrorKind.OutputExists };

        protected ImageIOException(string filePath, long offset, string message, Exception inner)
            : base(filePath, null, offset, message, inner)
        {
        }

        public override string ErrorId => "IOError";
    }

    /// <summary>Why a remote source could not be read.</summary>
    public enum RemoteFailure
    {
        /// <summary>The server has no such resource (HTTP 404, 410).</summary>
        NotFound,

        /// <summary>The server asks for credentials, or refused the ones given (HTTP 401).</summary>
        AuthenticationFailed,

        /// <summary>The server refuses the resource to this client (HTTP 403).</summary>
        AccessDenied,

        /// <summary>The server's TLS certificate is not trusted, or the TLS handshake failed.</summary>
        CertificateNotTrusted,

        /// <summary>No connection: refused, reset, timed out, name not resolved.</summary>
        Unreachable,

        /// <summary>Anything else: another status, a truncated response, content that changed under the read.</summary>
        Failed,
    }

    /// <summary>A remote source (an HTTP URL, ...) failed or refused: the location (without credentials) and the reason, with the server's status where there is one.</summary>
    public class ImageRemoteException : ImageIOException
    {
        public ImageRemoteException(string location, RemoteFailure failure, int? statusCode, string message, Exception inner = null)
            : base(location, message, inner)
        {
            Failure = failure;
            StatusCode = statusCode;
        }

        public RemoteFailure Failure { get; }

        /// <summary>The protocol's status (the HTTP status code), when the server answered.</summary>
        public int? StatusCode { get; }

        public override string ErrorId
        {
            get
            {
                switch (Failure)
                {
                    case RemoteFailure.NotFound:
                        return "PathNotFound";
                    case RemoteFailure.AuthenticationFailed:
                        return "AuthenticationFailed";
                    case RemoteFailure.AccessDenied:
                        return "AccessDenied";
                    case RemoteFailure.CertificateNotTrusted:
                        return "CertificateNotTrusted";
                    case RemoteFailure.Unreachable:
                        return "ConnectionFailed";
                    default:
                        return "RemoteError";
                }
            }
        }
    }

    /// <summary>
    /// Reading one range of the source failed (a bad sector, a server's EIO): the source is still open and
    /// other ranges may read. <see cref="ImageException.Offset"/> and <see cref="Length"/> name the range,
    /// so a salvaging copy can go on past it.
    /// </summary>
    public class ImageReadException : ImageIOException
    {
        public ImageReadException(string filePath, long offset, long length, string message, Exception inner = null)
            : base(filePath, offset, message, inner)
        {
            Length = length;
        }

        /// <summary>The bytes of the failed read, from <see cref="ImageException.Offset"/>.</summary>
        public long Length { get; }
    }

    /// <summary>An encrypted image needs a password that was not given, or the one given opens no key slot.</summary>
    public class ImagePasswordException : ImageException
    {
        public ImagePasswordException(string filePath, bool missing)
            : base(filePath, null, null, missing ? "the image is encrypted; a password is required to open it" : "the password opens none of the image's key slots")
        {
            Missing = missing;
            Kind = missing ? ImageErrorKind.PasswordMissing : ImageErrorKind.PasswordRejected;
        }

        /// <summary>True when no password was given; false when the given one is wrong.</summary>
        public bool Missing { get; }

        public override string ErrorId => Missing ? "PasswordRequired" : "InvalidPassword";
    }
}
