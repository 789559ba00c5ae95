import Foundation
import AccordRuntime

/// `<repo>/config`: written once by `init`, read by every command
/// (FORMAT.md, "config"). Readers abort on an unknown `version`.
public struct RepositoryConfig: Codable, Equatable, Sendable {
    /// Rejects a config no reader of this version accepts, naming `configPath`,
    /// the field and its value: every field is checked here, once, so no
    /// later use of a value (a compression level, a pack size) can trap.
    public func validate(repository path: String, configPath: String) throws {
        guard RepositoryConfig.readableVersions.contains(version) else {
            throw RepositoryError.unsupportedVersion(version, path: path)
        }
        if let problem = problem() { throw RepositoryError.configCorrupt(configPath, reason: problem) }
    }

    /// Pack sizes a repository may have (FORMAT.md, "config").
    public static let packSizes = (1 << 16)...(1 << 30)
    public static let compressionLevels = 0...9

    /// The first invalid field, as "field `name` is VALUE; it must be …", or nil.
    public func problem() -> String? {
        func lowerHex(_ s: String, _ n: Int) -> Bool { s.utf8.count == n && s.utf8.allSatisfy { ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) } }
        func show(_ s: String) -> String { s.utf8.count > 80 ? "\"\(s.prefix(40))…\" (\(s.utf8.count) bytes)" : "\"\(s)\"" }
        if !Self.readableVersions.contains(version) { return "field `version` is \(version); it must be \(Self.readableVersions.lowerBound)-\(Self.readableVersions.upperBound)" }
        if !lowerHex(id, 64) { return "field `id` is \(show(id)); it must be 64 lowercase hex digits" }
        if !lowerHex(chunkerSeed, 16) { return "field `chunkerSeed` is \(show(chunkerSeed)); it must be 16 lowercase hex digits" }
        if compression.algorithm != "zlib" { return "field `compression.algorithm` is \(show(compression.algorithm)); it must be \"zlib\"" }
        if !Self.compressionLevels.contains(compression.level) {
            return "field `compression.level` is \(compression.level); it must be \(Self.compressionLevels.lowerBound)-\(Self.compressionLevels.upperBound)"
        }
        if !Self.packSizes.contains(packSize) {
            return "field `packSize` is \(packSize): packSize \(packSize) is outside \(Self.packSizes.lowerBound) (64 KiB) ... \(Self.packSizes.upperBound) (1 GiB)"
        }
        if Timestamp(rfc3339: created) == nil { return "field `created` is \(show(created)); it must be an RFC 3339 UTC time like 2026-11-27T09:23:13Z" }
        if version >= 3 {
            if encryption != Self.encryptionAlgorithm { return "field `encryption` is \(encryption.map(show) ?? "missing"); a version 3 config must say \"\(Self.encryptionAlgorithm)\"" }
            if !lowerHex(mac ?? "", 64) { return "field `mac` is \(mac.map(show) ?? "missing"); a version 3 config must carry 64 lowercase hex digits" }
        } else if encryption != nil || mac != nil {
            return "fields `encryption` and `mac` belong to version 3; this config says version \(version)"
        }
        return nil
    }

    /// The integer field whose JSON number is not an integer that fits (1e30,
    /// 1.5), which the decoder reports without naming it; nil if none is.
    static func numberProblem(_ bytes: [UInt8]) -> String? {
        guard let o = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any] else { return nil }
        let fields: [(String, Any?)] = [("version", o["version"]), ("packSize", o["packSize"]),
                                        ("compression.level", (o["compression"] as? [String: Any])?["level"])]
        for case let (name, n as NSNumber) in fields where Int64(exactly: n.doubleValue) == nil || n.doubleValue != n.doubleValue.rounded() {
            return "field `\(name)` is \(n); it must be an integer"
        }
        return nil
    }

    /// Decodes and validates config bytes; a field of the wrong type or out of
    /// range is named in the error.
    public static func decode(_ bytes: [UInt8], repository path: String, configPath: String) throws -> RepositoryConfig {
        let config: RepositoryConfig
        do { config = try JSONDecoder().decode(RepositoryConfig.self, from: Data(bytes)) } catch let e as DecodingError {
            func field(_ c: [CodingKey]) -> String { c.isEmpty ? "the top level" : "field `\(c.map(\.stringValue).joined(separator: "."))`" }
            let reason: String
            switch e {
            case .keyNotFound(let k, let c): reason = "\(field(c.codingPath + [k])) is missing"
            case .typeMismatch(let t, let c): reason = "\(field(c.codingPath)) is not a valid \(t)"
            case .valueNotFound(let t, let c): reason = "\(field(c.codingPath)) is null, not a \(t)"
            case .dataCorrupted(let c):
                reason = !c.codingPath.isEmpty ? "\(field(c.codingPath)) is out of range or malformed" : (numberProblem(bytes) ?? "not valid config JSON")
            @unknown default: reason = "not valid config JSON"
            }
            throw RepositoryError.configCorrupt(configPath, reason: reason)
        } catch {
            throw RepositoryError.configCorrupt(configPath, reason: "not valid config JSON")
        }
        try config.validate(repository: path, configPath: configPath)
        return config
    }

    /// Version 2 added delta blobs (compression 2); new plain repositories get it.
    public static let currentVersion = 2
    /// Version 3 is version 2 encrypted (FORMAT.md, "Encryption"); new encrypted repositories get it.
    public static let encryptedVersion = 3
    /// Versions this accord reads (and writes, each in its own format).
    public static let readableVersions = 1...3
    /// The one sealing algorithm of version 3.
    public static let encryptionAlgorithm = "aes-256-gcm"

    /// Is this an encrypted repository (format version 3)?
    public var isEncrypted: Bool { version >= 3 }

    /// What the config's MAC covers (FORMAT.md, "config"): every field but `mac`, one per line.
    public var canonicalText: String {
        "accord config\nversion=\(version)\nid=\(id)\nchunkerSeed=\(chunkerSeed)\ncompression=\(compression.algorithm):\(compression.level)\n"
            + "packSize=\(packSize)\ncreated=\(created)\nencryption=\(encryption ?? "none")\n"
    }

    /// May blobs be stored as deltas (format version 2 and later)?
    public var allowsDeltaBlobs: Bool { version >= 2 }

    public var version: Int
    /// 64 hex digits, random; identifies the repository (sync refuses a different id).
    public var id: String
    /// 16 hex digits: the seed of the FastCDC gear table.
    public var chunkerSeed: String
    public var compression: Compression
    /// Target pack size in bytes; packs close once they reach it.
    public var packSize: Int
    /// Time of creation, RFC 3339.
    public var created: String
    /// Version 3: the sealing algorithm, "aes-256-gcm"; absent in versions 1-2.
    public var encryption: String?
    /// Version 3: HMAC-SHA256 of `canonicalText` under the config key, hex; absent in versions 1-2.
    public var mac: String?

    public struct Compression: Codable, Equatable, Sendable {
        public var algorithm: String   // "zlib"
        public var level: Int
    }

    /// A new config. An encrypted one (version 3) gets its `encryption` here
    /// and its `mac` when the repository is created with its key; its
    /// `chunkerSeed` is unused (the gear table comes from the key) and written as zeros.
    public static func new(compression: CompressionLevel = .default, encrypted: Bool = false) -> RepositoryConfig {
        RepositoryConfig(version: encrypted ? encryptedVersion : currentVersion, id: hexString(Sys.randomBytes(32)),
                         chunkerSeed: encrypted ? String(repeating: "0", count: 16) : hexString(Sys.randomBytes(8)),
                         compression: Compression(algorithm: "zlib", level: Int(compression.level)),
                         packSize: 16 << 20, created: Timestamp.now().rfc3339,
                         encryption: encrypted ? encryptionAlgorithm : nil, mac: nil)
    }

    public var seed: UInt64 { UInt64(chunkerSeed, radix: 16) ?? 0 }
}
