import AccordCore
import CCurl
import Foundation
import Synchronization

/// How often and how long a failed request is tried again: 5xx, 429 and
/// SlowDown answers and broken connections, with exponential backoff and
/// full jitter (a random wait up to `base * 2^attempt`, at most `maxDelay`),
/// so many clients hitting one busy server spread out.
public struct S3RetryPolicy: Sendable {
    public var attempts: Int
    public var baseDelay: Double
    public var maxDelay: Double
    public init(attempts: Int = 8, baseDelay: Double = 0.1, maxDelay: Double = 10) {
        self.attempts = max(1, attempts); self.baseDelay = baseDelay; self.maxDelay = maxDelay
    }
}

/// Signed S3 requests through libcurl: SigV4 by libcurl (`CURLOPT_AWS_SIGV4`)
/// with the payload's SHA-256 in `x-amz-content-sha256`, one easy handle per
/// request taken from a pool (each keeps its connections, so requests reuse
/// them), retries by `S3RetryPolicy`, errors turned into `S3Error`.
///
/// `@unchecked Sendable`: the mutable state, `idle`, `counts` and `uploadFault`, is
/// guarded by `poolLock`; a handle is used by one thread at a time (taken from the pool, given back).
final class S3Client: @unchecked Sendable {
    let location: S3Location
    private let credentials: S3CredentialSource
    private let sigv4: String
    private let caFile: String?
    let retry: S3RetryPolicy
    private let poolLock = NSLock()
    private var idle: [UnsafeMutableRawPointer] = []
    private var counts = (requests: 0, retries: 0)
    /// A test seam: the next upload stops after this many bytes (a connection lost mid-PUT).
    private var uploadFault: Int?
    static let maxIdleHandles = 64
    /// libcurl, loaded and initialised once per process.
    private let curl: UnsafeMutablePointer<accord_curl_api>

    init(location: S3Location, credentials: S3CredentialSource, region: String, caFile: String?, retry: S3RetryPolicy) throws {
        guard region.utf8.allSatisfy({ ($0 >= 0x61 && $0 <= 0x7a) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2d }), (1...64).contains(region.utf8.count) else {
            throw S3Error.invalidLocation(location.description, "region \"\(S3Error.printable(region))\" is not a region name (a-z 0-9 -)")
        }
        curl = try CurlLibrary.shared.get().api
        self.location = location; self.credentials = credentials; self.caFile = caFile; self.retry = retry
        sigv4 = "aws:amz:\(region):s3"
    }

    deinit { for h in idle { accord_curl_easy_cleanup(curl, h) } }

    private func take() throws -> UnsafeMutableRawPointer {
        if let h = poolLock.withLock({ idle.popLast() }) { return h }
        guard let h = accord_curl_easy_init(curl) else { throw S3Error.transport("libcurl", "curl_easy_init failed (out of memory?)") }
        return h
    }

    private func give(_ h: UnsafeMutableRawPointer) {
        let keep = poolLock.withLock { idle.count < Self.maxIdleHandles ? { idle.append(h); return true }() : false }
        if !keep { accord_curl_easy_cleanup(curl, h) }
    }

    /// Requests sent (attempts included) and attempts that were retries, since the start.
    var statistics: (requests: Int, retries: Int) { poolLock.withLock { counts } }

    /// Requests and retries of every client in this process: what a command cost,
    /// its probes (is the prefix vacant? which cache?) included.
    static var processStatistics: (requests: Int, retries: Int) { processCounts.withLock { $0 } }
    private static let processCounts = Mutex((requests: 0, retries: 0))

    func interruptNextUpload(afterBytes n: Int) { poolLock.withLock { uploadFault = n } }

    struct Response {
        var status: Int
        var headers: [String: String]
        var bytes: [UInt8]
        var filled: Int
    }

    /// Runs a request, retried by the policy. A non-2xx answer that is not retried
    /// comes back as it is (the caller maps 404 and 416); transport failures,
    /// 403, clock skew and a missing bucket throw here.
    func perform(_ method: String, key: String, query: [(String, String)] = [], headers extra: [String] = [],
                 upload: UnsafeRawBufferPointer? = nil, body: ResponseBody = .none) throws -> Response {
        let digest = upload.map { SHA256Hasher.hash($0) }
        let payloadHash = digest?.hex ?? Self.emptyHash
        // The same hash as an S3 checksum: the server verifies the body end to end, and a
        // bucket with Object Lock default retention accepts the PUT (it needs Content-MD5 or this).
        let checksum = digest.map { ["x-amz-checksum-sha256: " + Data($0.bytes).base64EncodedString()] } ?? []
        let url = location.url(key: key, query: query)
        var attempt = 0
        while true {
            let x = Exchange(body: body, upload: upload)
            poolLock.withLock {
                counts.requests += 1; if attempt > 0 { counts.retries += 1 }
                Self.processCounts.withLock { $0.requests += 1; if attempt > 0 { $0.retries += 1 } }
                if upload != nil { x.abortAfter = uploadFault; uploadFault = nil }
            }
            let code = try once(method, url: url, headers: extra + checksum + ["x-amz-content-sha256: " + payloadHash], x)
            let retryable: Bool
            if code != CURLE_OK && !(x.finishedEarly && code == CURLE_WRITE_ERROR) {
                if let f = x.failure { throw f }
                retryable = Self.retryableCurl.contains(code.rawValue)
                if !retryable || attempt + 1 >= retry.attempts {
                    var m = x.curlMessage.isEmpty ? String(cString: accord_curl_easy_strerror(curl, code)) : x.curlMessage
                    if code == CURLE_PEER_FAILED_VERIFICATION || code == CURLE_SSL_CACERT_BADFILE {
                        m += " (a private CA? pass its certificate with --s3-ca-file or $ACCORD_S3_CA_FILE)"
                    }
                    throw S3Error.transport("\(method) \(location.endpoint)/\(location.bucket)/\(key)" + (attempt > 0 ? " (after \(attempt + 1) attempts)" : ""), m)
                }
            } else if x.isSuccess {
                guard let short = x.shortRange else { return Response(status: x.status, headers: x.headers, bytes: x.bytes, filled: x.filled) }
                retryable = true
                if attempt + 1 >= retry.attempts {
                    throw S3Error.badResponse("\(method) \(location.endpoint)/\(location.bucket)/\(key)" + (attempt > 0 ? " (after \(attempt + 1) attempts)" : ""), short)
                }
            } else {
                let err = S3ErrorDocument(x.bytes)
                try checkFatal(x, err, method: method, key: key)
                retryable = [500, 502, 503, 504, 429].contains(x.status) || ["SlowDown", "InternalError", "RequestTimeout", "ServiceUnavailable"].contains(err.code)
                if !retryable || attempt + 1 >= retry.attempts { return Response(status: x.status, headers: x.headers, bytes: x.bytes, filled: 0) }
            }
            let cap = min(retry.maxDelay, retry.baseDelay * Double(1 << min(attempt, 30)))
            usleep(UInt32(Double.random(in: 0...cap) * 1_000_000))
            attempt += 1
        }
    }

    /// 403, skew and a missing bucket are never retried and never a caller's business.
    private func checkFatal(_ x: Exchange, _ err: S3ErrorDocument, method: String, key: String) throws {
        let date = x.headers["date"] ?? ""
        if err.code == "RequestTimeTooSkewed" { throw S3Error.clockSkew(endpoint: location.endpoint, serverDate: date, detail: err.code) }
        if x.status == 403 || (x.status == 400 && err.code == "AccessDenied") {
            if let server = Self.parseHTTPDate(date), abs(server.timeIntervalSinceNow) > 15 * 60 {
                throw S3Error.clockSkew(endpoint: location.endpoint, serverDate: date, detail: "\(err.code.isEmpty ? "HTTP \(x.status)" : err.code), and the server's time is \(Int(server.timeIntervalSinceNow)) s from ours")
            }
            let code = err.code.isEmpty ? "HTTP \(x.status)" : err.code
            // A signature that does not match is the secret, not the right to delete.
            if method == "DELETE", x.status == 403, err.code != "SignatureDoesNotMatch", err.code != "InvalidAccessKeyId" {
                throw S3Error.deleteDenied(bucket: location.bucket, endpoint: location.endpoint, key: key, code: code)
            }
            throw S3Error.accessDenied(bucket: location.bucket, endpoint: location.endpoint, code: code, message: err.message)
        }
        if err.code == "NoSuchBucket" { throw S3Error.noSuchBucket(bucket: location.bucket, endpoint: location.endpoint) }
        if [301, 307].contains(x.status) || err.code == "PermanentRedirect" || err.code == "AuthorizationHeaderMalformed" {
            // Redirects are never followed (a signed request must not go elsewhere): say where the bucket is, when the server says.
            if let region = x.headers["x-amz-bucket-region"], !region.isEmpty {
                throw S3Error.http(method: "request", key: location.bucket, status: x.status, code: err.code,
                                   message: "the bucket is in region \(S3Error.printable(region)): set AWS_REGION=\(S3Error.printable(region)) or use that region's endpoint")
            }
        }
    }

    /// One attempt on a pooled handle.
    private func once(_ method: String, url: String, headers: [String], _ x: Exchange) throws -> CURLcode {
        let credentials = try self.credentials.current(curl: curl)
        let h = try take()
        defer { give(h) }
        accord_curl_easy_reset(curl, h)   // keeps the handle's open connections
        var list: UnsafeMutablePointer<curl_slist>? = nil
        defer { accord_curl_slist_free_all(curl, list) }
        // No "Expect:" to drop curl's 100-continue: libcurl 7.88 signs that empty header, then does not send it.
        for line in headers + (credentials.sessionToken.map { ["x-amz-security-token: " + $0] } ?? []) {
            guard let l = accord_curl_slist_append(curl, list, line) else { throw S3Error.transport("libcurl", "out of memory") }
            list = l
        }
        let ctx = Unmanaged.passUnretained(x).toOpaque()
        var rc = CURLE_OK
        func set(_ r: CURLcode) { if rc == CURLE_OK { rc = r } }
        set(accord_curl_setopt_ptr(curl, h, CURLOPT_URL, url))
        set(accord_curl_setopt_ptr(curl, h, CURLOPT_PROTOCOLS_STR, "http,https"))
        set(accord_curl_setopt_long(curl, h, CURLOPT_NOSIGNAL, 1))
        set(accord_curl_setopt_long(curl, h, CURLOPT_CONNECTTIMEOUT, 10))
        set(accord_curl_setopt_long(curl, h, CURLOPT_LOW_SPEED_LIMIT, 1))    // a stalled connection fails after a minute
        set(accord_curl_setopt_long(curl, h, CURLOPT_LOW_SPEED_TIME, 60))
        set(accord_curl_setopt_long(curl, h, CURLOPT_TCP_KEEPALIVE, 1))
        set(accord_curl_setopt_ptr(curl, h, CURLOPT_ERRORBUFFER, x.errorBuffer))
        if let caFile { set(accord_curl_setopt_ptr(curl, h, CURLOPT_CAINFO, caFile)) }
        set(accord_curl_setopt_ptr(curl, h, CURLOPT_USERNAME, credentials.accessKeyID))
        set(accord_curl_setopt_ptr(curl, h, CURLOPT_PASSWORD, credentials.secretAccessKey))
        set(accord_curl_setopt_ptr(curl, h, CURLOPT_AWS_SIGV4, sigv4))
        set(accord_curl_setopt_ptr(curl, h, CURLOPT_HTTPHEADER, list))
        set(accord_curl_setopt_write(curl, h, CURLOPT_HEADERFUNCTION, curlHeaderCallback))
        set(accord_curl_setopt_ptr(curl, h, CURLOPT_HEADERDATA, ctx))
        set(accord_curl_setopt_write(curl, h, CURLOPT_WRITEFUNCTION, curlWriteCallback))
        set(accord_curl_setopt_ptr(curl, h, CURLOPT_WRITEDATA, ctx))
        switch method {
        case "GET": break
        case "HEAD": set(accord_curl_setopt_long(curl, h, CURLOPT_NOBODY, 1))
        case "PUT":
            set(accord_curl_setopt_long(curl, h, CURLOPT_UPLOAD, 1))
            set(accord_curl_setopt_off(curl, h, CURLOPT_INFILESIZE_LARGE, curl_off_t(x.upload?.count ?? 0)))
            set(accord_curl_setopt_write(curl, h, CURLOPT_READFUNCTION, curlReadCallback))
            set(accord_curl_setopt_ptr(curl, h, CURLOPT_READDATA, ctx))
        default: set(accord_curl_setopt_ptr(curl, h, CURLOPT_CUSTOMREQUEST, method))
        }
        guard rc == CURLE_OK else { throw S3Error.transport("libcurl set-up of \(method)", String(cString: accord_curl_easy_strerror(curl, rc))) }
        return withExtendedLifetime(x) { accord_curl_easy_perform(curl, h) }
    }

    /// libcurl errors worth another attempt: the connection failed or broke (a reset, a server restarting).
    static let retryableCurl: Set<UInt32> = [
        CURLE_COULDNT_CONNECT, CURLE_PARTIAL_FILE, CURLE_OPERATION_TIMEDOUT, CURLE_GOT_NOTHING,
        CURLE_SEND_ERROR, CURLE_RECV_ERROR, CURLE_SEND_FAIL_REWIND, CURLE_HTTP2, CURLE_HTTP2_STREAM,
    ].reduce(into: []) { $0.insert($1.rawValue) }

    static let emptyHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

    /// An RFC 1123 date ("Wed, 03 Dec 2026 14:48:26 GMT"), as in a `Date` header.
    static func parseHTTPDate(_ s: String) -> Date? {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "GMT")
        f.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        return f.date(from: s)
    }
}
