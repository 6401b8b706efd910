using System;
using System.IO;

namespace VDiskPS.Formats
{
    /// <summary>
    /// Maps engine exceptions to the stable error ids (VDisk.&lt;Reason&gt;) and PowerShell
    /// ErrorCategory names the cmdlets put on their error records.
    /// </summary>
    public static class ErrorClassifier
    {
        public static (string ErrorId, string Category) Classify(Exception exception)
        {
            switch (exception)
            {
                case ImageCorruptException e:
                    return ("VDisk." + e.ErrorId, "InvalidData");
                case ImageFormatMismatchException e:
                    return ("VDisk." + e.ErrorId, "InvalidData");
                case ImageNotSupportedException e:
                    return ("VDisk." + e.ErrorId, "NotImplemented");
                case ImageOptionException e:
                    return ("VDisk." + e.ErrorId, "InvalidArgument");
                case ImageChainException e:
                    return ("VDisk." + e.ErrorId, "ObjectNotFound");
                case ImageLockedException e:
                    return ("VDisk." + e.ErrorId, "ResourceBusy");
                case ImageRemoteException e:
                    return ("VDisk." + e.ErrorId, RemoteCategory(e.Failure));
                case ImageIOException e when e.InnerException is FileNotFoundException || e.Reason.Contains("not found"):
                    return ("VDisk.PathNotFound", "ObjectNotFound");
                case ImageIOException e when e.InnerException is UnauthorizedAccessException:
                    return ("VDisk.AccessDenied", "PermissionDenied");
                case ImageIOException e when e.Reason.Contains("already exists"):
                    return ("VDisk.FileExists", "ResourceExists");
                case ImageIOException e:
                    return ("VDisk." + e.ErrorId, "WriteError");
                case ImageException e:
                    return ("VDisk." + e.ErrorId, "NotSpecified");
                case OperationCanceledException _:
                    return ("VDisk.Cancelled", "OperationStopped");
                case UnauthorizedAccessException _:
                    return ("VDisk.AccessDenied", "PermissionDenied");
                case IOException _:
                    return ("VDisk.IOError", "WriteError");
                default:
                    return ("VDisk.UnexpectedError", "NotSpecified");
            }
        }

        private static string RemoteCategory(RemoteFailure failure)
        {
            switch (failure)
            {
                case RemoteFailure.NotFound:
                    return "ObjectNotFound";
                case RemoteFailure.AuthenticationFailed:
                case RemoteFailure.AccessDenied:
                    return "PermissionDenied";
                case RemoteFailure.CertificateNotTrusted:
                    return "SecurityError";
                case RemoteFailure.Unreachable:
                    return "ConnectionError";
                default:
                    return "ReadError";
            }
        }
    }
}
