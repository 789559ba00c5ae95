import AccordCore
import CCurl
import Foundation

/// Where a client's credentials come from: fixed (the environment or a
/// profile, read once) or the EC2 instance metadata service, asked again
/// when what it gave is about to expire.
///
/// The instance metadata service is used only when asked for
/// (`ACCORD_S3_CREDENTIALS=instance-metadata`): it lives at a link-local
/// address that a machine outside a cloud must not be made to reach, and a
/// proxy must never carry it (its answer is a secret).
///
/// `@unchecked Sendable`: the static `cached` is guarded by the static `lock`.
final class S3CredentialSource: @unchecked Sendable {
    enum Kind: Sendable {
        case fixed(S3Credentials)
        /// IMDSv2 at `endpoint` (`http://169.254.169.254` unless a test says otherwise).
        case instanceMetadata(endpoint: String)
    }

    let kind: Kind
    /// What the service gave, by endpoint, for every client of the process
    /// (a command may open several): fetched once while it stays valid.
    private static let lock = NSLock()
    nonisolated(unsafe) private static var cached: [String: (credentials: S3Credentials, expires: Date, next: Date)] = [:]
    /// Credentials are fetched again this long before they expire (the
    /// service has new ones at least five minutes before the old expire)...
    static let refreshMargin: TimeInterval = 10 * 60
    /// ...but not more often than this; until they expire they are used even
    /// when fetching new ones fails.
    /// (A variable for the tests, which cannot wait a minute.)
    nonisolated(unsafe) static var minimumInterval: TimeInterval = 60
    /// Tests only: forgets what the service gave.
    static func forgetCached() { lock.withLock { cached = [:] } }
    /// Largest answer read from the metadata service (its documents are a few hundred bytes).
    static let maxAnswer = 64 << 10

    init(_ kind: Kind) { self.kind = kind }

    /// The environment variable that chooses the source: unset or `environment`
    /// (the environment, then `AWS_PROFILE`'s file), or `instance-metadata`.
    static let variable = "ACCORD_S3_CREDENTIALS"
    /// The metadata service's address, for a test's loopback stand-in only.
    static let endpointVariable = "ACCORD_S3_METADATA_ENDPOINT"
    static let defaultEndpoint = "http://169.254.169.254"

    /// The source the environment asks for.
    static func from(_ env: [String: String]) throws -> S3CredentialSource {
        switch env[variable] ?? "" {
        case "", "environment":
            return S3CredentialSource(.fixed(try S3Credentials.fromEnvironment(env, home: env["HOME"])))
        case "instance-metadata":
            let endpoint = env[endpointVariable].flatMap { $0.isEmpty ? nil : $0 } ?? defaultEndpoint
            // The service's own addresses, or this machine for a test's stand-in: nothing else may be handed the role's secret.
            let host = endpoint.hasPrefix("http://") ? String(endpoint.dropFirst(7)) : ""
            let name = host.hasPrefix("[") ? String(host.prefix { $0 != "]" }) + "]" : String(host.prefix { $0 != ":" })
            let port = host.dropFirst(name.count)
            guard ["169.254.169.254", "[fd00:ec2::254]"].contains(name) || S3Location.isLoopbackHost(name),
                  port.isEmpty || (port.hasPrefix(":") && UInt16(port.dropFirst()) != nil) else {
                throw S3Error.instanceMetadata("$\(endpointVariable) = \(S3Error.printable(endpoint)): it may only name http://169.254.169.254, http://[fd00:ec2::254] or this machine (a test's stand-in)")
            }
            return S3CredentialSource(.instanceMetadata(endpoint: endpoint))
        case let other:
            throw S3Error.noCredentials("$\(variable) = \(S3Error.printable(other)): it must be `environment` (the default) or `instance-metadata`")
        }
    }

    /// Credentials valid for at least `refreshMargin` more (as the service says).
    func current(curl: UnsafeMutablePointer<accord_curl_api>) throws -> S3Credentials {
        switch kind {
        case .fixed(let c): return c
        case .instanceMetadata(let endpoint):
            return try Self.lock.withLock {
                let now = Date()
                let held = Self.cached[endpoint]
                if let c = held, now < c.next { return c.credentials }
                do {
                    let fresh = try Self.fetchRetrying(endpoint, curl: curl)
                    Self.cached[endpoint] = (fresh.credentials, fresh.expires,
                                             max(now + Self.minimumInterval, fresh.expires - Self.refreshMargin))
                    return fresh.credentials
                } catch {
                    // The service is busy or gone for a moment: what it gave last still works until it expires.
                    guard let c = held, c.expires.timeIntervalSinceNow > 30 else { throw error }
                    Self.cached[endpoint]?.next = now + Self.minimumInterval
                    return c.credentials
                }
            }
        }
    }

    /// `fetch`, tried up to three times a second apart when the service
    /// does not answer or answers an error (not when its answer is unusable).
    static func fetchRetrying(_ endpoint: String, curl: UnsafeMutablePointer<accord_curl_api>) throws -> (credentials: S3Credentials, expires: Date) {
        var attempt = 0
        while true {
            do { return try fetch(endpoint, curl: curl) } catch let e as Unanswered {
                attempt += 1
                if attempt >= 3 { throw e.error }
                usleep(UInt32(Double.random(in: 0.5...1.0) * 1_000_000))
            }
        }
    }

    /// A failure worth another try: no answer, or an HTTP error status.
    struct Unanswered: Error { let error: S3Error }

    /// IMDSv2: a session token (PUT), the role's name, then its credentials.
    static func fetch(_ endpoint: String, curl: UnsafeMutablePointer<accord_curl_api>) throws -> (credentials: S3Credentials, expires: Date) {
        let token = try request(curl, "PUT", endpoint + "/latest/api/token", ["X-aws-ec2-metadata-token-ttl-seconds: 21600"])
        let t = String(decoding: token, as: UTF8.self)
        guard !t.isEmpty, t.utf8.count <= 4096, t.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7f }) else {
            throw S3Error.instanceMetadata("at \(endpoint): its session token is empty, too long or not printable")
        }
        let auth = ["X-aws-ec2-metadata-token: " + t]
        let roles = String(decoding: try request(curl, "GET", endpoint + "/latest/meta-data/iam/security-credentials/", auth,
                                                 notFound: "no IAM role is attached to this instance"), as: UTF8.self)
        guard let role = roles.split(whereSeparator: { $0 == "\n" || $0 == "\r" }).first.map(String.init),
              (1...128).contains(role.utf8.count),
              role.utf8.allSatisfy({ b in (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) || "+=,.@_-".utf8.contains(b) }) else {
            throw S3Error.instanceMetadata("at \(endpoint): no IAM role is attached to this instance (or its name is not a role name)")
        }
        let body = try request(curl, "GET", endpoint + "/latest/meta-data/iam/security-credentials/" + role, auth)
        struct Document: Decodable {
            var Code: String?
            var AccessKeyId: String?
            var SecretAccessKey: String?
            var Token: String?
            var Expiration: String?
        }
        guard let doc = try? JSONDecoder().decode(Document.self, from: Data(body)) else {
            throw S3Error.instanceMetadata("at \(endpoint): the credentials of role \(role) are not a JSON document")
        }
        guard doc.Code == nil || doc.Code == "Success", let id = doc.AccessKeyId, let secret = doc.SecretAccessKey else {
            throw S3Error.instanceMetadata("at \(endpoint): role \(role) gave no credentials (Code \(S3Error.printable(doc.Code ?? "missing")))")
        }
        let c = try S3Credentials.checked(S3Credentials(accessKeyID: id, secretAccessKey: secret, sessionToken: doc.Token.flatMap { $0.isEmpty ? nil : $0 }),
                                          "the instance metadata service at \(endpoint)")
        // Without a readable expiry the credentials are kept ten minutes.
        let expires = doc.Expiration.flatMap { ISO8601DateFormatter().date(from: $0) } ?? Date(timeIntervalSinceNow: 10 * 60 + refreshMargin)
        return (c, expires)
    }

    /// One unsigned request to the metadata service: no proxy, short timeouts, no
    /// redirects, an answer of at most `maxAnswer` bytes; anything but 200 is an error.
    private static func request(_ curl: UnsafeMutablePointer<accord_curl_api>, _ method: String, _ url: String, _ headers: [String],
                                notFound: String? = nil) throws -> [UInt8] {
        guard let h = accord_curl_easy_init(curl) else { throw S3Error.transport("libcurl", "curl_easy_init failed (out of memory?)") }
        defer { accord_curl_easy_cleanup(curl, h) }
        var list: UnsafeMutablePointer<curl_slist>? = nil
        defer { accord_curl_slist_free_all(curl, list) }
        for line in headers {
            guard let l = accord_curl_slist_append(curl, list, line) else { throw S3Error.transport("libcurl", "out of memory") }
            list = l
        }
        let x = Exchange(body: .collect(limit: maxAnswer), upload: method == "PUT" ? UnsafeRawBufferPointer(start: nil, count: 0) : nil)
        let ctx = Unmanaged.passUnretained(x).toOpaque()
        var rc = CURLE_OK
        func set(_ r: CURLcode) { if rc == CURLE_OK { rc = r } }
        set(accord_curl_setopt_ptr(curl, h, CURLOPT_URL, url))
        set(accord_curl_setopt_ptr(curl, h, CURLOPT_PROTOCOLS_STR, "http"))
        set(accord_curl_setopt_ptr(curl, h, CURLOPT_NOPROXY, "*"))
        set(accord_curl_setopt_long(curl, h, CURLOPT_NOSIGNAL, 1))
        set(accord_curl_setopt_long(curl, h, CURLOPT_CONNECTTIMEOUT, 2))
        set(accord_curl_setopt_long(curl, h, CURLOPT_TIMEOUT, 10))
        set(accord_curl_setopt_ptr(curl, h, CURLOPT_ERRORBUFFER, x.errorBuffer))
        set(accord_curl_setopt_ptr(curl, h, CURLOPT_HTTPHEADER, list))
        set(accord_curl_setopt_write(curl, h, CURLOPT_HEADERFUNCTION, curlHeaderCallback))
        set(accord_curl_setopt_ptr(curl, h, CURLOPT_HEADERDATA, ctx))
        set(accord_curl_setopt_write(curl, h, CURLOPT_WRITEFUNCTION, curlWriteCallback))
        set(accord_curl_setopt_ptr(curl, h, CURLOPT_WRITEDATA, ctx))
        if method == "PUT" {
            set(accord_curl_setopt_long(curl, h, CURLOPT_UPLOAD, 1))
            set(accord_curl_setopt_off(curl, h, CURLOPT_INFILESIZE_LARGE, 0))
            set(accord_curl_setopt_write(curl, h, CURLOPT_READFUNCTION, curlReadCallback))
            set(accord_curl_setopt_ptr(curl, h, CURLOPT_READDATA, ctx))
        }
        guard rc == CURLE_OK else { throw S3Error.transport("libcurl set-up for instance metadata", String(cString: accord_curl_easy_strerror(curl, rc))) }
        let code = withExtendedLifetime(x) { accord_curl_easy_perform(curl, h) }
        if let f = x.failure { throw S3Error.instanceMetadata("\(method) \(url): \(f)") }
        guard code == CURLE_OK else {
            let m = x.curlMessage.isEmpty ? String(cString: accord_curl_easy_strerror(curl, code)) : x.curlMessage
            throw Unanswered(error: S3Error.instanceMetadata("\(url) did not answer (\(m)): is this a cloud instance with a role attached? ($\(variable)=instance-metadata asks for it)"))
        }
        if x.status == 404, let notFound { throw S3Error.instanceMetadata("\(notFound) (\(method) \(url) answered HTTP 404)") }
        guard x.status == 200 else {
            throw Unanswered(error: S3Error.instanceMetadata("\(method) \(url) answered HTTP \(x.status)"))
        }
        return x.bytes
    }
}
