import AccordCore
import Foundation

/// A repository's objects as keys in an S3 bucket, under the layout of a
/// local repository (FORMAT.md, "Repository layout"): `PREFIX/config`,
/// `PREFIX/keys/<id>`, `PREFIX/data/XX/<id>`, `PREFIX/index/<id>`,
/// `PREFIX/snapshots/<id>`, `PREFIX/locks/<name>`.
///
/// The `Backend` contract on an object store: a PUT makes an object appear
/// only complete (S3 never shows a partial upload; we send whole objects,
/// never multipart), and is durable when it returns 200; its payload's
/// SHA-256 travels signed in `x-amz-content-sha256`, so a server that checks
/// it refuses a damaged upload. Whole reads of content-named kinds are
/// checked against their name here (rclone does not check the header, and
/// a disk can rot), and any whole read against the `x-amz-content-sha256` a
/// server returns with it (rclone does), so a damaged object never passes as good. Listings are
/// paged and may lag a write (the contract allows it).
public final class S3Backend: Backend, Sendable {
    public let s3: S3Location
    let client: S3Client
    /// Keys per listing page (ListObjectsV2 `max-keys`; S3's own limit is 1000).
    let pageSize: Int
    /// A cap below every kind's `largestObject` (tests use a small one); `limit(_:)` is what applies.
    let maxObjectSize: Int
    /// Most keys one listing may walk through (every page's keys, valid names or not).
    let maxListedKeys: Int
    /// Largest listing page or error document accepted.
    public static let maxListPage = 8 << 20
    /// The default `maxListedKeys`: ten million keys (160 TB of 16 MiB packs) in about 10,000 pages.
    public static let defaultMaxListedKeys = 10_000_000

    /// The largest object of `kind` a HEAD may announce or a GET bring
    /// (`ObjectKind.largestObject`): checked on the bytes as they arrive, so
    /// a server that lies in a HEAD or sends more than it said gets no further.
    func limit(_ kind: ObjectKind) -> Int { Int(min(kind.largestObject, Int64(maxObjectSize))) }

    public var location: String { s3.description }

    /// - Parameters:
    ///   - caFile: PEM file of the CAs to trust instead of the system's (a private cluster); TLS is always verified.
    ///   - environment: where credentials and region come from (`S3Credentials.fromEnvironment`), never argv.
    public init(_ s3: S3Location, environment: [String: String] = ProcessInfo.processInfo.environment, caFile: String? = nil,
                retry: S3RetryPolicy = S3RetryPolicy(), pageSize: Int = 1000, maxObjectSize: Int = .max,
                maxListedKeys: Int = S3Backend.defaultMaxListedKeys) throws {
        let creds = try S3CredentialSource.from(environment)
        client = try S3Client(location: s3, credentials: creds, region: S3Credentials.region(environment), caFile: caFile, retry: retry)
        self.s3 = s3; self.pageSize = max(1, min(pageSize, 1000)); self.maxObjectSize = maxObjectSize
        self.maxListedKeys = maxListedKeys
    }

    /// The key of a validated name (the local layout's path under the prefix).
    func key(_ kind: ObjectKind, _ name: String) -> String { s3.key(Self.directory(kind) + name) }

    /// The folder of a kind in the local layout, "" for config; packs add `XX/` themselves.
    static func directory(_ kind: ObjectKind) -> String {
        switch kind {
        case .config, .marker: return ""
        case .key: return "keys/"
        case .pack: return "data/"
        case .index: return "index/"
        case .snapshot: return "snapshots/"
        case .lock: return "locks/"
        }
    }

    public func describe(_ kind: ObjectKind, _ name: String) -> String {
        (try? kind.validate(name)).map { "\(s3.endpoint)/\(s3.bucket)/\(key(kind, kind == .pack ? String(name.prefix(2)) + "/" + name : name))" }
            ?? "\(kind) \(name.debugDescription) in \(location)"
    }

    private func objectKey(_ kind: ObjectKind, _ name: String) throws -> String {
        try kind.validate(name)
        return key(kind, kind == .pack ? String(name.prefix(2)) + "/" + name : name)
    }

    /// Requests sent (each attempt counts) and how many were retries: for tests and benchmarks.
    public var statistics: (requests: Int, retries: Int) { client.statistics }
    /// The same, summed over every S3 backend of this process.
    public static var processStatistics: (requests: Int, retries: Int) { S3Client.processStatistics }

    /// Cuts the next PUT's connection after `bytes` bytes of its body (a crash mid-upload).
    @_spi(Testing) public func interruptNextUpload(afterBytes bytes: Int) { client.interruptNextUpload(afterBytes: bytes) }

    // MARK: Backend

    public func list(_ kind: ObjectKind) throws -> [String] {
        if kind == .config || kind == .marker {   // one name each, at the prefix's top: no listing
            let name = kind == .config ? "config" : "restore"
            do { _ = try size(kind, name); return [name] } catch BackendError.notFound { return [] }
        }
        let prefix = s3.key(Self.directory(kind))
        var names: [String] = [], token: String? = nil, seen: Set<String> = [], keys = 0
        repeat {
            var q = [("list-type", "2"), ("prefix", prefix), ("max-keys", String(pageSize))]
            if let token { q.append(("continuation-token", token)) }
            let r = try client.perform("GET", key: "", query: q, body: .collect(limit: Self.maxListPage))
            guard r.status == 200 else { throw httpError("GET (list)", prefix, r) }
            let page = try S3ListPage(r.bytes, what: "listing \(prefix) in bucket \(s3.bucket)")
            keys += page.keys.count
            guard keys <= maxListedKeys else {
                throw S3Error.badResponse("listing \(prefix) in bucket \(s3.bucket)", "more than \(maxListedKeys) keys, more than a repository holds; refused")
            }
            for k in page.keys where k.hasPrefix(prefix) {
                let rel = k.dropFirst(prefix.utf8.count)
                let name: Substring
                if kind == .pack {   // XX/<id> with XX the id's first two digits
                    guard rel.utf8.count == 67, let slash = rel.firstIndex(of: "/") else { continue }
                    name = rel[rel.index(after: slash)...]
                    guard rel[..<slash] == name.prefix(2) else { continue }
                } else { name = rel }
                if (try? kind.validate(String(name))) != nil { names.append(String(name)) }
            }
            guard !page.truncated || page.next != token else { throw S3Error.badResponse("listing \(prefix)", "the continuation token did not move") }
            // A token already followed would loop (A, B, A, …): the listing is refused, not walked again.
            if page.truncated, let next = page.next, !seen.insert(next).inserted {
                throw S3Error.badResponse("listing \(prefix)", "the continuation token \"\(S3Error.printable(next))\" came back after \(seen.count) pages: the listing loops")
            }
            token = page.truncated ? page.next : nil
        } while token != nil
        return names
    }

    /// Refuses a Content-Length above the kind's `limit` (nothing sizes memory
    /// by a hostile HEAD), except a lock's, told as it is: a lock too large is
    /// for `ObjectLock` to call unusable (`unlock` removes it), not an error of
    /// every command that lists the locks; and the restore marker's, which is
    /// never read (only its existence counts). Small objects (config, keys,
    /// locks) are read with one bounded GET (`read(_:_:upTo:)`), never sized first.
    public func size(_ kind: ObjectKind, _ name: String) throws -> Int64 {
        let (k, n) = try head(kind, name)
        guard kind == .lock || kind == .marker || n <= Int64(limit(kind)) else {
            throw S3Error.badResponse("HEAD \(k)", "Content-Length \(n) is more than a \(kind.rawValue) object can be (\(limit(kind)) bytes)")
        }
        return n
    }

    /// The key and the Content-Length of a HEAD, any size.
    private func head(_ kind: ObjectKind, _ name: String) throws -> (String, Int64) {
        let k = try objectKey(kind, name)
        let r = try client.perform("HEAD", key: k)
        if r.status == 404 { try throwMissing(kind, name) }
        guard r.status == 200 else { throw httpError("HEAD", k, r) }
        guard let n = r.headers["content-length"].flatMap({ Int64($0) }), n >= 0 else {
            throw S3Error.badResponse("HEAD \(k)", "no Content-Length")
        }
        return (k, n)
    }

    public func read(_ kind: ObjectKind, _ name: String) throws -> [UInt8] {
        let k = try objectKey(kind, name)
        let r: S3Client.Response
        do { r = try client.perform("GET", key: k, body: .collect(limit: limit(kind))) } catch S3Error.responseTooLarge(_, let l) {
            throw S3Error.responseTooLarge("GET \(k) (a \(kind.rawValue) object)", l)
        }
        if r.status == 404 { try throwMissing(kind, name, r) }
        guard r.status == 200 else { throw httpError("GET", k, r) }
        if let cl = r.headers["content-length"].flatMap({ Int($0) }), cl != r.bytes.count {
            throw S3Error.badResponse("GET \(k)", "\(r.bytes.count) bytes came, Content-Length said \(cl)")
        }
        // The server's SHA-256 of the object (rclone sends the one signed at upload), where it
        // gives one; AWS does not. A value equal to the empty payload's is our request's echoed.
        let stated = r.headers["x-amz-content-sha256"].flatMap { $0.utf8.count == 64 && ($0 != S3Client.emptyHash || r.bytes.isEmpty) ? $0.lowercased() : nil }
        if kind.isContentNamed || stated != nil {
            let got = SHA256Hasher.hash(r.bytes).hex
            if kind.isContentNamed && got != name { throw S3Error.contentMismatch(kind.rawValue, name, key: k, got: got) }
            if let stated, stated != got { throw S3Error.contentMismatch(kind.rawValue, name, key: k, got: got + ", the server's x-amz-content-sha256 says " + stated) }
        }
        return r.bytes
    }

    public func read(_ kind: ObjectKind, _ name: String, at offset: Int64, into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        let k = try objectKey(kind, name)
        guard offset >= 0 else { throw S3Error.badResponse("GET \(k)", "a negative offset \(offset) asked for") }
        if buffer.isEmpty { return 0 }
        let (end, overflow) = offset.addingReportingOverflow(Int64(buffer.count) - 1)
        let range = "Range: bytes=\(offset)-\(overflow ? Int64.max : end)"
        let r = try client.perform("GET", key: k, headers: [range], body: .range(buffer, offset: offset))
        switch r.status {
        case 200, 206: return r.filled
        case 416: return 0   // the range starts at or past the end
        case 404: try throwMissing(kind, name, r)
        default: throw httpError("GET", k, r)
        }
    }

    /// The config is written once, when the repository is created: its PUT
    /// asks the server not to replace one already there (`If-None-Match: *`;
    /// AWS and MinIO honour it, many servers ignore it, and nothing relies on
    /// it: `Repository.initialize(backend:)` reads the config back). A refusal
    /// (412, or 409 for a conditional write racing another) is `alreadyExists`;
    /// a server that does not implement the header (501) gets the plain PUT.
    public func write(_ kind: ObjectKind, _ name: String, _ bytes: UnsafeRawBufferPointer) throws {
        let k = try objectKey(kind, name)
        let plain = ["Content-Type: application/octet-stream"]
        if kind == .config {
            let r = try client.perform("PUT", key: k, headers: plain + ["If-None-Match: *"], upload: bytes)
            if r.status == 200 { return }
            if r.status == 412 || r.status == 409 { throw BackendError.alreadyExists(kind, name, location: location) }
            guard r.status == 501 else { throw httpError("PUT", k, r) }
        }
        let r = try client.perform("PUT", key: k, headers: plain, upload: bytes)
        guard r.status == 200 else { throw httpError("PUT", k, r) }
    }

    /// S3's DELETE answers 204 whether or not the key existed; the contract wants
    /// `notFound` for a missing object, so a HEAD comes first. (Two deletes racing
    /// both succeed; nothing relies on that being refused.)
    public func delete(_ kind: ObjectKind, _ name: String) throws {
        let (k, _) = try head(kind, name)   // an object too large to read can still be deleted
        let r = try client.perform("DELETE", key: k)
        guard r.status == 204 || r.status == 200 else {
            if r.status == 404 { try throwMissing(kind, name, r) }
            throw httpError("DELETE", k, r)
        }
    }

    // MARK: Errors

    /// A 404: a missing key is `notFound`; a HEAD's 404 has no body to tell a
    /// missing bucket apart, so the bucket is asked about then (only on this path).
    private func throwMissing(_ kind: ObjectKind, _ name: String, _ r: S3Client.Response? = nil) throws -> Never {
        if let r, S3ErrorDocument(r.bytes).code == "NoSuchBucket" { throw S3Error.noSuchBucket(bucket: s3.bucket, endpoint: s3.endpoint) }
        if r == nil || r!.bytes.isEmpty {
            let b = try client.perform("HEAD", key: "")
            if b.status == 404 { throw S3Error.noSuchBucket(bucket: s3.bucket, endpoint: s3.endpoint) }
        }
        throw BackendError.notFound(kind, name, location: location)
    }

    private func httpError(_ method: String, _ key: String, _ r: S3Client.Response) -> S3Error {
        let e = S3ErrorDocument(r.bytes)
        return .http(method: method, key: "\(s3.bucket)/\(key)", status: r.status, code: e.code, message: e.message)
    }
}
