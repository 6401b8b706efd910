using System;
using System.Collections.Generic;
using System.IO;
using System.Management.Automation;
using VDiskPS.Formats;

namespace VDiskPS
{
    /// <summary>The error records the cmdlets write: one id and category per code (VDisk.&lt;Code&gt;).</summary>
    public enum ErrorCode
    {
        CorruptImage,
        FormatMismatch,
        NotSupported,
        InvalidOption,
        BrokenChain,
        ParentIdMismatch,
        ImageInUse,
        PathNotFound,
        AccessDenied,
        FileExists,
        IOError,
        ImageError,
        Cancelled,
        UnexpectedError,
        NotAFile,
        InvalidPath,
        ServerNotFound,
        NotMounted,
        AuthenticationFailed,
        CertificateNotTrusted,
        ConnectionFailed,
        RemoteError,
        PasswordRequired,
        InvalidPassword,
        FormatNotFound,
    }

    /// <summary>
    /// The cmdlet layer's table of error ids and categories, and the wording of the advice an engine
    /// error carries (as <see cref="ImageErrorKind"/>) in the switches of the cmdlet being run.
    /// </summary>
    public static class ErrorMessages
    {
        private static readonly Dictionary<ErrorCode, ErrorCategory> s_categories = new Dictionary<ErrorCode, ErrorCategory>
        {
            [ErrorCode.CorruptImage] = ErrorCategory.InvalidData,
            [ErrorCode.FormatMismatch] = ErrorCategory.InvalidData,
            [ErrorCode.NotSupported] = ErrorCategory.NotImplemented,
            [ErrorCode.InvalidOption] = ErrorCategory.InvalidArgument,
            [ErrorCode.BrokenChain] = ErrorCategory.ObjectNotFound,
            [ErrorCode.ParentIdMismatch] = ErrorCategory.ObjectNotFound,
            [ErrorCode.ImageInUse] = ErrorCategory.ResourceBusy,
            [ErrorCode.PathNotFound] = ErrorCategory.ObjectNotFound,
            [ErrorCode.AccessDenied] = ErrorCategory.PermissionDenied,
            [ErrorCode.FileExists] = ErrorCategory.ResourceExists,
            [ErrorCode.IOError] = ErrorCategory.WriteError,
            [ErrorCode.ImageError] = ErrorCategory.NotSpecified,
            [ErrorCode.Cancelled] = ErrorCategory.OperationStopped,
            [ErrorCode.UnexpectedError] = ErrorCategory.NotSpecified,
            [ErrorCode.NotAFile] = ErrorCategory.InvalidArgument,
            [ErrorCode.InvalidPath] = ErrorCategory.InvalidArgument,
            [ErrorCode.ServerNotFound] = ErrorCategory.ObjectNotFound,
            [ErrorCode.NotMounted] = ErrorCategory.ObjectNotFound,
            [ErrorCode.AuthenticationFailed] = ErrorCategory.PermissionDenied,
            [ErrorCode.CertificateNotTrusted] = ErrorCategory.SecurityError,
            [ErrorCode.ConnectionFailed] = ErrorCategory.ConnectionError,
            [ErrorCode.RemoteError] = ErrorCategory.ReadError,
            [ErrorCode.PasswordRequired] = ErrorCategory.AuthenticationError,
            [ErrorCode.InvalidPassword] = ErrorCategory.AuthenticationError,
            [ErrorCode.FormatNotFound] = ErrorCategory.ObjectNotFound,
        };

        /// <summary>
        /// The advice for each kind of engine error: the parameter that would avoid it (checked against
        /// the running cmdlet, which may name it otherwise) and the sentence, {0} being that switch.
        /// A null parameter names another cmdlet, which always applies.
        /// </summary>
        private static readonly Dictionary<ImageErrorKind, (string Parameter, string Advice)> s_advice = new Dictionary<ImageErrorKind, (string, string)>
        {
            [ImageErrorKind.OutputExists] = ("Force", "Use {0} to overwrite it."),
            [ImageErrorKind.ShrinkNotAllowed] = ("Shrink", "Use {0} to allow it."),
            [ImageErrorKind.FormatNotNamed] = ("Format", "Name the format with {0}."),
            [ImageErrorKind.FormatContradictsExtension] = ("Format", "Leave out {0}, or give the file the format's extension."),
            [ImageErrorKind.OutputIsSource] = ("Destination", "Give {0}."),
            [ImageErrorKind.ParentNotNamed] = ("ParentPath", "Give {0}."),
            [ImageErrorKind.ParentFormatWithoutParent] = ("ParentPath", "Give {0} too."),
            [ImageErrorKind.FixedWithParent] = ("ParentPath", "Leave out -Type Fixed with {0}."),
            [ImageErrorKind.SubformatNotApplicable] = ("Subformat", "Leave out {0}, or write a format that has subformats (Get-VDiskFormat lists them)."),
            [ImageErrorKind.SizeNotNamed] = ("SizeBytes", "Give {0}, or a parent or source image to take the size from."),
            [ImageErrorKind.SizeNeededUnopenedParent] = ("Unsafe", "Give the size, or leave out {0} so the parent is opened."),
            [ImageErrorKind.ExistingOutputMissing] = ("NoCreate", "Leave out {0} to create it."),
            [ImageErrorKind.TargetIsZeroWithoutExistingOutput] = ("NoCreate", "Use -TargetIsZero only with {0}."),
            [ImageErrorKind.ParentMustBeOpened] = ("Unsafe", "Leave out {0}."),
            [ImageErrorKind.BackingFormatNotRecorded] = (null, "Record it with Set-VDisk -ParentFormat on the image that names it."),
            [ImageErrorKind.DamageNeedsCheck] = (null, "Test-VDisk -Detailed reports the damage; Repair-VDisk repairs what it can."),
            [ImageErrorKind.CredentialMissing] = ("Credential", "Give a user name and password with {0}."),
            [ImageErrorKind.CredentialRefused] = ("Credential", "Check the user name and password given to {0}."),
            [ImageErrorKind.PasswordMissing] = ("Password", "Give the password with {0} (a SecureString, for example from Read-Host -AsSecureString)."),
            [ImageErrorKind.PasswordRejected] = ("Password", "Check the password given to {0}."),
            [ImageErrorKind.CertificateNotTrusted] = ("SkipCertificateCheck", "Use {0} to connect without checking the certificate (a self-signed server)."),
        };

        /// <summary>The id (VDisk.&lt;Code&gt;) and category of a code.</summary>
        public static (string ErrorId, ErrorCategory Category) Of(ErrorCode code) => ("VDisk." + code, s_categories[code]);

        /// <summary>An error record of <paramref name="code"/> about <paramref name="target"/> (the file concerned).</summary>
        public static ErrorRecord Record(ErrorCode code, Exception exception, object target)
        {
            var (id, category) = Of(code);
            return new ErrorRecord(exception, id, category, target);
        }

        /// <summary>The code an engine (or host) exception is reported under.</summary>
        public static ErrorCode Classify(Exception exception)
        {
            switch (exception)
            {
                case ImageParentMismatchException _:
                    return ErrorCode.ParentIdMismatch;
                case ImageCorruptException _:
                    return ErrorCode.CorruptImage;
                case ImageFormatMismatchException _:
                    return ErrorCode.FormatMismatch;
                case ImageNotSupportedException _:
                    return ErrorCode.NotSupported;
                case ImageOptionException _:
                    return ErrorCode.InvalidOption;
                case ImageChainException _:
                    return ErrorCode.BrokenChain;
                case ImageLockedException _:
                    return ErrorCode.ImageInUse;
                case ImagePasswordException e:
                    return e.Missing ? ErrorCode.PasswordRequired : ErrorCode.InvalidPassword;
                case ImageRemoteException e:
                    // The engine names the remote failure's id (PathNotFound, AuthenticationFailed, ...); every one is a code here.
                    return (ErrorCode)Enum.Parse(typeof(ErrorCode), e.ErrorId);
                case ImageIOException e when e.Kind == ImageErrorKind.OutputExists:
                    return ErrorCode.FileExists;
                case ImageIOException e when e.InnerException is FileNotFoundException || e.Kind == ImageErrorKind.ExistingOutputMissing || e.Reason.Contains("not found"):
                    return ErrorCode.PathNotFound;
                case ImageIOException e when e.InnerException is UnauthorizedAccessException:
                    return ErrorCode.AccessDenied;
                case ImageIOException _:
                    return ErrorCode.IOError;
                case ImageException _:
                    return ErrorCode.ImageError;
                case OperationCanceledException _:
                    return ErrorCode.Cancelled;
                case UnauthorizedAccessException _:
                    return ErrorCode.AccessDenied;
                case IOException _:
                    return ErrorCode.IOError;
                default:
                    return ErrorCode.UnexpectedError;
            }
        }

        /// <summary>
        /// The advice for an engine error in the words of the running cmdlet: <paramref name="parameterFor"/>
        /// maps the table's parameter to the cmdlet's own (null when the cmdlet has no such switch, and
        /// then there is no advice).
        /// </summary>
        public static string Advice(ImageErrorKind kind, Func<string, string> parameterFor)
        {
            if (!s_advice.TryGetValue(kind, out var entry))
            {
                return null;
            }

            if (entry.Parameter == null)
            {
                return entry.Advice;
            }

            string parameter = parameterFor(entry.Parameter);
            return string.IsNullOrEmpty(parameter) ? null : string.Format(System.Globalization.CultureInfo.InvariantCulture, entry.Advice, "-" + parameter);
        }
    }
}
