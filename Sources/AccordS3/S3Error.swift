/// What went wrong talking to an object store, each case saying what to do.
/// A missing object is not here: it is `BackendError.notFound`, as on every backend.
public enum S3Error: Error, CustomStringConvertible, Equatable {
    /// The repository address does not parse (the text, why).
    case invalidLocation(String, String)
    /// No credentials in the environment or the profile file (where looked).
    case noCredentials(String)
    /// The instance metadata service, asked for credentials, gave none (why).
    case instanceMetadata(String)
    /// The credentials file is unreadable or malformed (path, why).
    case badCredentialsFile(String, String)
    /// 403 (or 400 AccessDenied): the key, its secret or its rights. Bucket, endpoint, S3 error code, server message.
    case accessDenied(bucket: String, endpoint: String, code: String, message: String)
    /// A DELETE answered 403: credentials that may write but not delete (a DR copy's). Bucket, endpoint, key, S3 error code.
    case deleteDenied(bucket: String, endpoint: String, key: String, code: String)
    /// The bucket does not exist on that endpoint.
    case noSuchBucket(bucket: String, endpoint: String)
    /// The server's clock and ours differ too much for a signature to be accepted.
    case clockSkew(endpoint: String, serverDate: String, detail: String)
    /// Any other HTTP error after retries (method, key, status, code, message).
    case http(method: String, key: String, status: Int, code: String, message: String)
    /// The connection failed after retries (what, libcurl's message).
    case transport(String, String)
    /// A response larger than we accept for its kind (what, limit).
    case responseTooLarge(String, Int)
    /// A response that does not parse or contradicts itself (what, why).
    case badResponse(String, String)
    /// An object's bytes do not hash to its content name (kind, name, key, the hash of what came).
    case contentMismatch(String, String, key: String, got: String)

    public var description: String {
        switch self {
        case .invalidLocation(let t, let why):
            return "\"\(S3Error.printable(t))\" is not an S3 repository address: \(why)"
        case .noCredentials(let looked):
            return "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE with a profile in the credentials file (looked in \(looked))"
        case .instanceMetadata(let why):
            return "no S3 credentials from the instance metadata service ($ACCORD_S3_CREDENTIALS=instance-metadata): \(why)"
        case .badCredentialsFile(let p, let why): return "cannot use the S3 credentials file \(p): \(why)"
        case .accessDenied(let b, let e, let code, let m):
            return "access to bucket \(b) at \(e) denied (\(code)\(m.isEmpty ? "" : ": " + S3Error.printable(m))): check the access key and secret (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or the profile) and the key's rights on the bucket"
        case .deleteDenied(let b, let e, let k, let code):
            return "deleting \(k) in bucket \(b) at \(e) was denied (\(code)): these credentials may not delete (as a DR copy's should not); "
                + "forget, prune and unlock need credentials that may (s3:DeleteObject)"
        case .noSuchBucket(let b, let e): return "bucket \(b) does not exist at \(e): create it first (accord never creates buckets), or check the address"
        case .clockSkew(let e, let d, let detail):
            return "the clock of this machine and of \(e) (Date: \(S3Error.printable(d))) differ too much for signed requests (\(detail)): fix the time (NTP) here or on the server"
        case .http(let m, let k, let s, let c, let msg):
            return "\(m) \(k) failed: HTTP \(s)\(c.isEmpty ? "" : " " + c)\(msg.isEmpty ? "" : ": " + S3Error.printable(msg))"
        case .transport(let what, let m): return "\(what): \(m)"
        case .responseTooLarge(let what, let limit): return "\(what): the response is over \(limit) bytes, more than such a response may be; refused"
        case .badResponse(let what, let why): return "\(what): unexpected response: \(why)"
        case .contentMismatch(let kind, let name, let key, let got):
            return "\(kind) \(name) (\(key)) is damaged: its bytes hash to \(got); run accord check"
        }
    }

    /// Text from a server or a user, at most 200 bytes, control bytes as "?".
    static func printable(_ s: String) -> String {
        let cut = String(decoding: s.utf8.prefix(200), as: UTF8.self)
        // C0, DEL and C1 (U+0080-U+009F: some terminals take U+009B as CSI) as "?".
        return String(String.UnicodeScalarView(cut.unicodeScalars.map { $0.value < 0x20 || (0x7f...0x9f).contains($0.value) ? "?" : $0 }))
    }
}
