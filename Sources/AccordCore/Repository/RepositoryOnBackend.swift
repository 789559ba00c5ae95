import Foundation
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
    /// then the config, each written whole. A config already there is refused
    /// before (listed, and looked at again just before the write); the write
    /// asks the server to refuse it over an existing config (`If-None-Match`,
    /// where the server honours it: many do not, and nothing relies on it).
    /// Then the config is read back, and again after `configSettleSeconds`
    /// (an object store may show a racer's write late): one that differs is
    /// another `init`'s, which stands (ours is withdrawn, its key deleted:
    /// `alreadyInitialized`). A racer's write may still land later than
    /// that, so the repository returned remembers what it wrote
    /// (`creation`): its first commit reads the config again before and
    /// after writing the snapshot and, if it was replaced, removes what it
    /// wrote and fails (`createdConcurrently`) rather than report a snapshot
    /// the repository cannot read.
    @discardableResult
    public static func initialize(backend: any Backend, config given: RepositoryConfig, key: KeySource? = nil) throws -> Repository {
        let layout = RepositoryLayout(root: backend.location)
        var config = given
        let (crypto, firstKey) = try makeFirstKey(&config, key: key, repository: layout.root)
        try config.validate(repository: layout.root, configPath: backend.describe(.config, "config"))
        if try !backend.list(.config).isEmpty { throw RepositoryError.alreadyInitialized(layout.root) }
        if let k = firstKey { try k.bytes.withUnsafeBytes { try backend.write(.key, k.id.hex, $0) } }
        func withdraw() -> RepositoryError {
            if let k = firstKey { try? backend.delete(.key, k.id.hex) }
            return RepositoryError.alreadyInitialized(layout.root)
        }
        // The key file (and a KDF) took time: a racer may have written its config meanwhile.
        if (try? backend.size(.config, "config")) != nil { throw withdraw() }
        let bytes = try encodeJSON(config)
        do { try bytes.withUnsafeBytes { try backend.write(.config, "config", $0) } } catch BackendError.alreadyExists {
            // Refused by a server that honours If-None-Match: someone's config is
            // there (perhaps ours, when a retried PUT met its own first try).
        }
        guard try readConfigObject(backend) == bytes else { throw withdraw() }
        Thread.sleep(forTimeInterval: configSettleSeconds)
        guard try readConfigObject(backend) == bytes else { throw withdraw() }
        let r = Repository(layout: layout, config: config, crypto: crypto, usedKey: firstKey?.id, backend: backend)
        r.creation = Creation(config: bytes, key: firstKey?.id)
        return r
    }

    /// How long a new config stands before it is trusted (a racer's write, or
    /// an object store's lagging view of it, shows up within it in practice).
    static let configSettleSeconds = 1.0

    /// What this process wrote into the repository it created, until its first
    /// snapshot is committed (`Repository.creation`).
    struct Creation {
        /// The config object as written.
        var config: [UInt8]
        /// The first key file, when encrypted.
        var key: KeyID?
        /// Index files written, and the packs they name.
        var indexes: [IndexID] = []
        var packs: [PackID] = []
    }

    /// While this process's new repository has no snapshot (`creation`): reads
    /// the config again and, if another process's replaced it, removes what
    /// this one wrote (the snapshot `written`, index files, packs, key file:
    /// none of it opens under the config that stands) and throws
    /// `createdConcurrently`. A config that cannot be read fails the same way
    /// as any read would, with nothing removed.
    func checkCreation(written: SnapshotID? = nil) throws {
        guard let c = creation else { return }
        let current: [UInt8]
        do { current = try Self.readConfigObject(backend) } catch BackendError.notFound { current = [] }
        guard current != c.config else { return }
        if let s = written { try? backend.delete(.snapshot, s.hex) }
        for i in c.indexes { try? backend.delete(.index, i.hex) }
        for p in Set(c.packs) { try? backend.delete(.pack, p.hex) }
        if let k = c.key { try? backend.delete(.key, k.hex) }
        creation = nil
        throw RepositoryError.createdConcurrently(layout.root)
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

    /// The config object's bytes, refused when larger than a config can be.
    static func readConfigObject(_ backend: any Backend) throws -> [UInt8] {
        let bytes = try backend.read(.config, "config", upTo: Int(maxConfigObject))
        guard bytes.count <= maxConfigObject else {
            throw RepositoryError.configCorrupt(backend.describe(.config, "config"), reason: "it holds more than a config can (\(maxConfigObject) bytes)")
        }
        return bytes
    }
}
