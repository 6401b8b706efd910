using System;
using System.IO;
using System.Net;
using System.Net.Http;
using System.Net.Http.Headers;
using System.Security.Authentication;
using System.Threading;
using System.Threading.Tasks;

namespace VDiskPS.Formats.Http
{
    /// <summary>
    /// Byte ranges of one HTTP resource: GET with a Range header, answered 206. Transient failures
    /// (5xx, 408, 429, a reset or refused connection, a cut-short body) are retried with backoff;
    /// 4xx are not. Every answer must carry the validators (ETag, Last-Modified) and length of the
    /// first, so a file replaced on the server mid-read is an error, never mixed content.
    /// Messages name the URL and the HTTP status, never the credential.
    /// </summary>
    internal sealed class HttpRangeReader : IDisposable
    {
        // Waits before the 2nd, 3rd and 4th attempt.
        private static readonly int[] s_backoffMilliseconds = { 100, 400, 1600 };

        // How long one attempt (headers and body) may take.
        private static readonly TimeSpan AttemptTimeout = TimeSpan.FromSeconds(100);

        private readonly HttpClient _client;
        private readonly Uri _uri;
        private readonly string _location;
        private readonly bool _hasCredential;
        private readonly CancellationTokenSource _disposed = new CancellationTokenSource();
        private string _etag;
        private DateTimeOffset? _lastModified;
        private HttpResponseMessage _wholeResponse;

        private HttpRangeReader(Uri uri, string location, TransportOptions options, int connections)
        {
            _uri = uri;
            _location = location;
            _hasCredential = options.Credential != null;
            var handler = new HttpClientHandler
            {
                AllowAutoRedirect = true,
                AutomaticDecompression = DecompressionMethods.None,
                MaxConnectionsPerServer = connections,

                // The default proxy: http_proxy/https_proxy/no_proxy on .NET 8 outside Windows, the system's elsewhere.
                UseProxy = true,
            };
            if (options.Credential != null)
            {
                handler.Credentials = options.Credential;
                handler.PreAuthenticate = true;
            }

            if (options.SkipCertificateCheck)
            {
                handler.ServerCertificateCustomValidationCallback = (request, certificate, chain, errors) => true;
            }

            _client = new HttpClient(handler, disposeHandler: true) { Timeout = System.Threading.Timeout.InfiniteTimeSpan };
        }

        /// <summary>The resource's length in bytes, from the first answer's Content-Range (or Content-Length of a whole-file answer).</summary>
        public long Length { get; private set; }

        /// <summary>
        /// The body of the opening answer when the server ignored its range and sent the whole file
        /// (HTTP 200): the only way to the bytes, read front to back, once. Null when ranges work.
        /// </summary>
        public Stream WholeBody { get; private set; }

        /// <summary>
        /// Connects and reads the first <paramref name="firstLength"/> bytes (fewer for a shorter
        /// resource), which also give the length and the validators.
        /// </summary>
        public static HttpRangeReader Open(Uri uri, string location, TransportOptions options, int connections, int firstLength, out byte[] first)
        {
            var reader = new HttpRangeReader(uri, location, options, connections);
            try
            {
                first = reader.Fetch(0, firstLength, null, opening: true, CancellationToken.None).GetAwaiter().GetResult();
                return reader;
            }
            catch
            {
                reader.Dispose();
                throw;
            }
        }

        /// <summary>Reads [offset, offset+count), which must lie inside the resource, into the start of <paramref name="buffer"/>.</summary>
        public Task ReadAsync(long offset, byte[] buffer, int count, CancellationToken cancel) => Fetch(offset, count, buffer, opening: false, cancel);

        public void Dispose()
        {
            _disposed.Cancel();
            WholeBody?.Dispose();
            _wholeResponse?.Dispose();
            _client.Dispose();
        }

        /// <summary>The range, into <paramref name="into"/> when given (then null is returned), else into a new array of its length.</summary>
        private async Task<byte[]> Fetch(long offset, int count, byte[] into, bool opening, CancellationToken cancel)
        {
            using (var linked = CancellationTokenSource.CreateLinkedTokenSource(cancel, _disposed.Token))
            {
                for (int attempt = 0; ; attempt++)
                {
                    ImageException failure;
                    using (var attemptTimeout = CancellationTokenSource.CreateLinkedTokenSource(linked.Token))
                    {
                        // The client's timeout ends at the headers; this one covers the body too.
                        attemptTimeout.CancelAfter(AttemptTimeout);
                        try
                        {
                            return await FetchOnce(offset, count, into, opening, attemptTimeout.Token).ConfigureAwait(false);
                        }
                        catch (TransientException e)
                        {
                            failure = e.Final;
                        }
                        catch (OperationCanceledException e) when (!linked.IsCancellationRequested)
                        {
                            failure = new ImageRemoteException(_location, RemoteFailure.Unreachable, null, $"the server did not answer within {AttemptTimeout.TotalSeconds:0} seconds", e);
                        }
                    }

                    if (attempt >= s_backoffMilliseconds.Length)
                    {
                        throw failure;
                    }

                    await Task.Delay(s_backoffMilliseconds[attempt], linked.Token).ConfigureAwait(false);
                }
            }
        }

        private async Task<byte[]> FetchOnce(long offset, int count, byte[] into, bool opening, CancellationToken cancel)
        {
            using (var request = new HttpRequestMessage(HttpMethod.Get, _uri))
            {
                request.Headers.Range = new RangeHeaderValue(offset, offset + Math.Max(count, 1) - 1);
                HttpResponseMessage response;
                try
                {
                    response = await _client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancel).ConfigureAwait(false);
                }
                catch (HttpRequestException e)
                {
                    throw ConnectionFailure(e);
                }

                bool kept = false;
                try
                {
                    int status = (int)response.StatusCode;
                    if (status == 206)
                    {
                        return await ReadPartial(response, offset, count, into, opening, cancel).ConfigureAwait(false);
                    }

                    if (status == 416 && opening && response.Content.Headers.ContentRange?.Length == 0)
                    {
                        // Even the first byte is past the end: an empty resource ("bytes */0").
                        Length = 0;
                        Remember(response);
                        return Array.Empty<byte>();
                    }

                    if (status == 200 && opening && response.Content.Headers.ContentLength == 0)
                    {
                        // nginx answers a range of an empty file with the (empty) whole file.
                        Length = 0;
                        Remember(response);
                        return Array.Empty<byte>();
                    }

                    if (status == 200 && opening)
                    {
                        // The whole file follows: kept open, to be read front to back by a stream of the formats that can.
                        long? length = response.Content.Headers.ContentLength;
                        if (!length.HasValue)
                        {
                            throw new ImageNotSupportedException(_location, "Content-Length", null, "the server ignores range requests (it answered a range request with the whole file, HTTP 200) and does not give the file's length (no Content-Length), so the image can neither be read by ranges nor streamed; the server must support range requests (Accept-Ranges: bytes)");
                        }

                        Length = length.Value;
                        Remember(response);
                        WholeBody = await response.Content.ReadAsStreamAsync().ConfigureAwait(false);
                        _wholeResponse = response;
                        kept = true;
                        return Array.Empty<byte>();
                    }

                    if (status == 200)
                    {
                        throw new ImageNotSupportedException(_location, "Range", offset, $"the server stopped honouring range requests (it answered the range at offset {offset} with the whole file, HTTP 200)");
                    }

                    throw StatusFailure(response);
                }
                finally
                {
                    if (!kept)
                    {
                        response.Dispose();
                    }
                }
            }
        }

        /// <summary>The refusal of an image that must be read by ranges from a server that ignores them.</summary>
        internal static ImageNotSupportedException RangesIgnored(string location)
            => new ImageNotSupportedException(location, "Range", null, "the server ignores range requests (it answered a range request with the whole file, HTTP 200); an image is read over HTTP by ranges, so the server must support them (Accept-Ranges: bytes); only a raw image or a streamOptimized VMDK can be streamed front to back from such a server");

        private async Task<byte[]> ReadPartial(HttpResponseMessage response, long offset, int count, byte[] into, bool opening, CancellationToken cancel)
        {
            ContentRangeHeaderValue range = response.Content.Headers.ContentRange;
            if (range == null || !range.HasRange || !range.HasLength || range.From != offset || range.To < range.From)
            {
                throw Failed($"the server answered a range request for bytes {offset}- with Content-Range '{range}', not the range asked for");
            }

            if (opening)
            {
                Length = range.Length.Value;
                Remember(response);
            }
            else
            {
                CheckUnchanged(response, range.Length.Value);
            }

            long expected = Math.Min(count, Length - offset);
            if (range.To - range.From + 1 != expected)
            {
                throw Failed($"the server answered a range request for {expected} bytes at offset {offset} with {range.To - range.From + 1} bytes");
            }

            byte[] data = into ?? new byte[expected];
            if (data.Length < expected)
            {
                throw new ArgumentException($"a {data.Length}-byte buffer for a {expected}-byte range", nameof(into));
            }

            int done = 0;
            try
            {
                using (Stream body = await response.Content.ReadAsStreamAsync().ConfigureAwait(false))
                {
                    while (done < expected)
                    {
                        int n = await body.ReadAsync(data, done, (int)expected - done, cancel).ConfigureAwait(false);
                        if (n == 0)
                        {
                            break;
                        }

                        done += n;
                    }
                }
            }
            catch (Exception e) when (e is IOException || e is HttpRequestException)
            {
                throw new TransientException(new ImageRemoteException(_location, RemoteFailure.Failed, 206, $"the response for {expected} bytes at offset {offset} was cut short after {done} bytes ({e.Message})", e));
            }

            if (done != expected)
            {
                throw new TransientException(Failed($"the response for {expected} bytes at offset {offset} was cut short after {done} bytes", 206));
            }

            return into == null ? data : null;
        }

        private void Remember(HttpResponseMessage response)
        {
            _etag = response.Headers.ETag?.ToString();
            _lastModified = response.Content.Headers.LastModified;
        }

        private void CheckUnchanged(HttpResponseMessage response, long length)
        {
            string etag = response.Headers.ETag?.ToString();
            DateTimeOffset? lastModified = response.Content.Headers.LastModified;
            string change =
                length != Length ? $"its length was {Length} bytes, now {length}"
                : _etag != null && etag != _etag ? $"its ETag was {_etag}, now {etag ?? "none"}"
                : _etag == null && _lastModified.HasValue && lastModified != _lastModified ? $"it was last modified {_lastModified:u}, now {lastModified:u}"
                : null;
            if (change != null)
            {
                throw Failed($"the file changed on the server while it was being read ({change}); what was read before is from the older file");
            }
        }

        private Exception StatusFailure(HttpResponseMessage response)
        {
            int status = (int)response.StatusCode;
            string what = $"HTTP {status} ({response.ReasonPhrase})";
            switch (status)
            {
                case 401:
                    return new ImageRemoteException(_location, RemoteFailure.AuthenticationFailed, status, _hasCredential ? $"{what}: the server refused the credential" : $"{what}: the server asks for a credential") { Kind = _hasCredential ? ImageErrorKind.CredentialRefused : ImageErrorKind.CredentialMissing };
                case 403:
                    return new ImageRemoteException(_location, RemoteFailure.AccessDenied, status, $"{what}: the server refuses access");
                case 404:
                case 410:
                    return new ImageRemoteException(_location, RemoteFailure.NotFound, status, $"{what}: no such file on the server");
                case 408:
                case 429:
                    return new TransientException(Failed(what, status));
                default:
                    ImageRemoteException failure = Failed(what, status);
                    return status >= 500 ? new TransientException(failure) : (Exception)failure;
            }
        }

        private Exception ConnectionFailure(HttpRequestException e)
        {
            for (Exception inner = e; inner != null; inner = inner.InnerException)
            {
                if (inner is AuthenticationException || (inner is WebException web && (web.Status == WebExceptionStatus.TrustFailure || web.Status == WebExceptionStatus.SecureChannelFailure)))
                {
                    return new ImageRemoteException(_location, RemoteFailure.CertificateNotTrusted, null, $"the TLS connection failed: {inner.Message}", e) { Kind = ImageErrorKind.CertificateNotTrusted };
                }
            }

            return new TransientException(new ImageRemoteException(_location, RemoteFailure.Unreachable, null, $"cannot connect: {Innermost(e).Message}", e));
        }

        private ImageRemoteException Failed(string message, int? status = null) => new ImageRemoteException(_location, RemoteFailure.Failed, status, message);

        private static Exception Innermost(Exception e)
        {
            while (e.InnerException != null)
            {
                e = e.InnerException;
            }

            return e;
        }

        /// <summary>A failure worth another attempt; <see cref="Final"/> is reported when the attempts run out.</summary>
        private sealed class TransientException : Exception
        {
            public TransientException(ImageException final)
                : base(final.Message, final)
            {
                Final = final;
            }

            public ImageException Final { get; }
        }
    }
}
