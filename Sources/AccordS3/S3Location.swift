#if canImport(Glibc)
import Glibc
#endif
/// How a request names the bucket (restic's `s3.bucket-lookup`, the same three words).
public enum S3BucketLookup: String, Sendable, CaseIterable {
    /// `dns` for an Amazon S3 endpoint (`s3.amazonaws.com`, `s3.REGION.amazonaws.com`,
    /// `s3-REGION.amazonaws.com`, no port) when the bucket allows it; `path` for any other
    /// host (MinIO, Ceph RGW, rclone and most private clusters answer path style), for an
    /// IP address and for an explicit port.
    case auto
    /// Path style: `HOST[:PORT]/BUCKET/KEY`.
    case path
    /// Virtual-hosted style: `BUCKET.HOST[:PORT]/KEY` (the name must resolve, e.g. a wildcard DNS record).
    case dns

    /// The words, for messages and `--help`.
    public static let words = allCases.map(\.rawValue).joined(separator: "|")
}

/// Where an S3 repository lives: `s3:http(s)://HOST[:PORT]/BUCKET[/PREFIX]`.
/// Everything is checked here, before any request: the host, bucket and
/// prefix end up in URLs and signed paths, so only characters that need no
/// escaping get through (no userinfo, query, fragment, `..` or empty segments).
public struct S3Location: Sendable, Equatable, CustomStringConvertible {
    /// "http" or "https".
    public let scheme: String
    /// A DNS name, an IPv4 address, or an IPv6 address in brackets.
    public let host: String
    public let port: Int?
    public let bucket: String
    /// Key prefix of the repository's objects, without leading or trailing "/"; "" for the bucket's root.
    public let prefix: String
    /// Virtual-hosted style (`BUCKET.HOST/KEY`) instead of path style (`HOST/BUCKET/KEY`).
    public let virtualHosted: Bool

    /// `text` with any user information (`user:secret@`) before the host replaced by `***`.
    public static func redacted(_ text: String) -> String {
        guard let schemeEnd = text.range(of: "://") else { return text }
        let after = text[schemeEnd.upperBound...]
        let authorityEnd = after.firstIndex(of: "/") ?? after.endIndex
        guard let at = after[..<authorityEnd].lastIndex(of: "@") else { return text }
        return String(text[..<schemeEnd.upperBound]) + "***" + after[at...]
    }

    /// `bucketLookup` picks path or virtual-hosted style (`S3BucketLookup`).
    public init(parsing text: String, bucketLookup: S3BucketLookup = .auto) throws {
        func bad(_ why: String) -> S3Error { .invalidLocation(Self.redacted(text), why) }
        guard text.utf8.count <= 2048 else { throw bad("longer than 2048 bytes") }
        guard text.hasPrefix("s3:") else { throw bad("does not start with s3:") }
        let rest = text.dropFirst(3)
        let schemeEnd: String.Index
        if rest.hasPrefix("https://") { scheme = "https"; schemeEnd = rest.index(rest.startIndex, offsetBy: 8) }
        else if rest.hasPrefix("http://") { scheme = "http"; schemeEnd = rest.index(rest.startIndex, offsetBy: 7) }
        else { throw bad("expected s3:https://HOST[:PORT]/BUCKET[/PREFIX] (or s3:http:// for a loopback server)") }
        let afterScheme = rest[schemeEnd...]
        let authorityEnd = afterScheme.firstIndex(of: "/") ?? afterScheme.endIndex
        if let at = afterScheme[..<authorityEnd].lastIndex(of: "@") {
            // user:secret@host: refused, and the secret is not repeated in the message.
            let redacted = "s3:\(scheme)://***@" + afterScheme[afterScheme.index(after: at)...]
            throw S3Error.invalidLocation(redacted, "credentials never go in the address: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) in the environment")
        }
        guard let slash = afterScheme.firstIndex(of: "/") else { throw bad("no bucket after the host") }
        let authority = afterScheme[..<slash]
        var path = afterScheme[afterScheme.index(after: slash)...]
        while path.hasSuffix("/") { path = path.dropLast() }
        // Host and port.
        var hostPart = Substring(authority), portPart: Substring? = nil
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { throw bad("an IPv6 host without its closing ]") }
            hostPart = authority[...close]
            let after = authority[authority.index(after: close)...]
            if !after.isEmpty { guard after.hasPrefix(":") else { throw bad("text after the IPv6 host") }; portPart = after.dropFirst() }
            guard hostPart.dropFirst().dropLast().utf8.allSatisfy({ Self.isHex($0) || $0 == 0x3a || $0 == 0x2e }), hostPart.count > 2 else {
                throw bad("not an IPv6 address: \(hostPart)")
            }
        } else {
            if let colon = authority.firstIndex(of: ":") { hostPart = authority[..<colon]; portPart = authority[authority.index(after: colon)...] }
            guard (1...253).contains(hostPart.utf8.count), hostPart.utf8.allSatisfy({ Self.isAlnum($0) || $0 == 0x2e || $0 == 0x2d }),
                  hostPart.first != ".", hostPart.first != "-" else {
                throw bad("the host must be a DNS name or an IP address (letters, digits, . and -; no user@)")
            }
        }
        host = String(hostPart).lowercased()
        if let p = portPart {
            guard let n = Int(p), (1...65535).contains(n), p.utf8.allSatisfy({ (48...57).contains($0) }) else { throw bad("the port must be 1-65535") }
            port = n
        } else { port = nil }
        // Bucket and prefix.
        let segments = path.split(separator: "/", omittingEmptySubsequences: false)
        guard let b = segments.first, !b.isEmpty else { throw bad("no bucket after the host") }
        guard (3...63).contains(b.utf8.count), b.utf8.allSatisfy({ Self.isLowerAlnum($0) || $0 == 0x2e || $0 == 0x2d }),
              Self.isLowerAlnum(b.utf8.first!), Self.isLowerAlnum(b.utf8.last!) else {
            throw bad("bucket \"\(b)\" is not a valid name (3-63 of a-z 0-9 . -, starting and ending with a letter or digit)")
        }
        bucket = String(b)
        let prefixSegments = segments.dropFirst()
        for s in prefixSegments {
            guard !s.isEmpty, s != ".", s != "..", s.utf8.count <= 255,
                  s.utf8.allSatisfy({ Self.isAlnum($0) || $0 == 0x2e || $0 == 0x5f || $0 == 0x2d }) else {
                throw bad("prefix segment \"\(s)\" is not allowed (1-255 of A-Z a-z 0-9 . _ -, not . or .., no //)")
            }
        }
        prefix = prefixSegments.joined(separator: "/")
        guard prefix.utf8.count <= 512 else { throw bad("prefix longer than 512 bytes") }
        let isIP = host.hasPrefix("[") || host.split(separator: ".").allSatisfy { !$0.isEmpty && $0.utf8.allSatisfy { (48...57).contains($0) } }
        switch bucketLookup {
        case .path: virtualHosted = false
        case .dns:
            guard !isIP else { throw bad("the host \(host) is an IP address, so the bucket cannot be its subdomain (bucket lookup dns): use path") }
            guard !bucket.contains(".") || scheme == "http" else {
                throw bad("a bucket with dots cannot be virtual-hosted over https (the certificate does not cover it): use bucket lookup path")
            }
            virtualHosted = true
        case .auto:
            virtualHosted = port == nil && !bucket.contains(".") && Self.isAmazonS3(host)
        }
    }

    /// An Amazon S3 endpoint: `s3.amazonaws.com`, `s3.REGION.amazonaws.com`,
    /// `s3-REGION.amazonaws.com` (and the same under `amazonaws.com.cn`).
    static func isAmazonS3(_ host: String) -> Bool {
        guard let first = host.split(separator: ".").first, first == "s3" || first.hasPrefix("s3-") else { return false }
        return host.hasSuffix(".amazonaws.com") || host.hasSuffix(".amazonaws.com.cn")
    }

    private static func isHex(_ c: UInt8) -> Bool { (48...57).contains(c) || (97...102).contains(c) || (65...70).contains(c) }
    private static func isLowerAlnum(_ c: UInt8) -> Bool { (48...57).contains(c) || (97...122).contains(c) }
    private static func isAlnum(_ c: UInt8) -> Bool { isLowerAlnum(c) || (65...90).contains(c) }

    private var hostPort: String { port.map { "\(host):\($0)" } ?? host }

    /// The repository as the user wrote it (normalised).
    /// Does the host name this machine (127.0.0.0/8, ::1, localhost)? Only
    /// there is plain `http` as safe as `https`.
    public var isLoopback: Bool { Self.isLoopbackHost(host) }

    /// `localhost`, or an IPv4 or IPv6 address (as `inet_pton` reads it: no
    /// octal or short forms) in 127.0.0.0/8, ::1 or ::ffff:127.0.0.0/104.
    static func isLoopbackHost(_ host: String) -> Bool {
        let h = (host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host).lowercased()
        if h == "localhost" || h == "localhost." { return true }
        var v4 = in_addr()
        if inet_pton(AF_INET, h, &v4) == 1 { return UInt32(bigEndian: v4.s_addr) >> 24 == 127 }
        var v6 = in6_addr()
        guard inet_pton(AF_INET6, h, &v6) == 1 else { return false }
        let b = withUnsafeBytes(of: &v6) { Array($0) }
        if b[0..<15].allSatisfy({ $0 == 0 }) && b[15] == 1 { return true }
        return b[0..<10].allSatisfy { $0 == 0 } && b[10] == 0xff && b[11] == 0xff && b[12] == 127
    }

    public var description: String {
        "s3:\(scheme)://\(hostPort)/\(bucket)" + (prefix.isEmpty ? "" : "/" + prefix)
    }

    /// The endpoint, for messages.
    public var endpoint: String { "\(scheme)://\(hostPort)" }

    /// How requests name the bucket, for messages: "path style" or "virtual-hosted style".
    public var style: String { virtualHosted ? "virtual-hosted style (BUCKET.HOST)" : "path style (HOST/BUCKET)" }

    /// The key of `relative` (a path of the local layout) under the prefix.
    public func key(_ relative: String) -> String { prefix.isEmpty ? relative : prefix + "/" + relative }

    /// The URL of `key` (already made of unescaped-safe characters) or of the
    /// bucket itself (`key` empty), with a canonical query string (sorted,
    /// encoded) so that every SigV4 signer computes the same canonical request.
    @_spi(Testing) public func url(key: String, query: [(String, String)] = []) -> String {
        var u = virtualHosted ? "\(scheme)://\(bucket).\(hostPort)/\(key)" : "\(scheme)://\(hostPort)/\(bucket)/\(key)"
        if !query.isEmpty {
            u += "?" + query.sorted { $0.0 < $1.0 }.map { Self.encode($0.0) + "=" + Self.encode($0.1) }.joined(separator: "&")
        }
        return u
    }

    /// RFC 3986 percent-encoding of everything but the unreserved characters (SigV4's UriEncode).
    static func encode(_ s: String) -> String {
        var out = ""
        out.reserveCapacity(s.utf8.count)
        for c in s.utf8 {
            if isAlnum(c) || c == 0x2d || c == 0x2e || c == 0x5f || c == 0x7e { out.unicodeScalars.append(Unicode.Scalar(c)) }
            else { out += "%" + String(c >> 4, radix: 16, uppercase: true) + String(c & 15, radix: 16, uppercase: true) }
        }
        return out
    }
}
