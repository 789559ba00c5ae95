import AccordRuntime

/// A repository on a backend that is not a local directory (an object store:
/// AccordS3's `S3Backend`, which the command layer makes; AccordCore never
/// imports it). Its `layout` is named after `backend.location` and serves
/// messages only: nothing joins it into a local path (`local` is nil, and
/// every file-only step checks that).
extension Repository {
    /// Largest config object read: a real one is well under a kilobyte.
    static let maxConfigObject: Int64 = 1 << 20

    /// Creates a repository on `backend`: the first key file (if encrypted),
    /// then the config, each written whole. No conditional write is relied on
    /// (many S3 servers ignore `If-None-Match`), so a config already there is
    /// refused before, and the config is read back after: one that differs
    /// is another `init`'s, which stands (ours is withdrawn, its key deleted).
    @discardableResult
    public static func initialize(backend: any Backend, config given: RepositoryConfig, key: KeySource? = nil) throws -> Repository {
        let layout = RepositoryLayout(root: backend.location)
        var config = given
        let (crypto, firstKey) = try makeFirstKey(&config, key: key, repository: layout.root)
        try config.validate(repository: layout.root, configPath: backend.describe(.config, "config"))
        if try !backend.list(.config).isEmpty { throw RepositoryError.alreadyInitialized(layout.root) }
        if let k = firstKey { try k.bytes.withUnsafeBytes { try backend.write(.key, k.id.hex, $0) } }
        let bytes = try encodeJSON(config)
        try bytes.withUnsafeBytes { try backend.write(.config, "config", $0) }
        guard try readConfigObject(backend) == bytes else {
            if let k = firstKey { try? backend.delete(.key, k.id.hex) }
            throw RepositoryError.alreadyInitialized(layout.root)
        }
        return Repository(layout: layout, config: config, crypto: crypto, usedKey: firstKey?.id, backend: backend)
    }

    /// Opens the repository on `backend` as `open(at:)` does a directory:
    /// loads the config (a missing one: `notARepository`), then the key.
    public static func open(backend: any Backend, key: KeySource? = nil, withoutKey: Bool = false) throws -> Repository {
        let layout = RepositoryLayout(root: backend.location)
        let bytes: [UInt8]
        do { bytes = try readConfigObject(backend) } catch BackendError.notFound { throw RepositoryError.notARepository(layout.root) }
        let config = try RepositoryConfig.decode(bytes, repository: layout.root, configPath: backend.describe(.config, "config"))
        return try opened(layout: layout, config: config, backend: backend, key: key, withoutKey: withoutKey)
    }

    /// The config object's bytes, its size checked before it is read.
    static func readConfigObject(_ backend: any Backend) throws -> [UInt8] {
        let size = try backend.size(.config, "config")
        guard size <= maxConfigObject else {
            throw RepositoryError.configCorrupt(backend.describe(.config, "config"), reason: "it holds \(size) bytes, more than a config can (\(maxConfigObject))")
        }
        return try backend.read(.config, "config")
    }

    /// Fails with a clear message when this repository is not a local directory
    /// and `what` needs one (a feature not yet carried to object stores).
    public func requireLocal(_ what: String) throws {
        guard local == nil else { return }
        throw RepositoryError.notLocal(layout.root, what: what)
    }
}
