import Foundation
import AccordRuntime

/// The one door to a repository: everything that reads or writes its
/// objects goes through here (or through `backend`, which this owns). It
/// holds the config, the index, the pack descriptor cache (in `backend`),
/// blob lookup and decoding (`readVerified`, the one home of delta-base
/// resolution), pack assembly (`makePackAssembler`), commit (`writeIndex`,
/// then `saveSnapshot`) and the walk of a snapshot's blobs
/// (`referencedBlobs`). Pack and blob reads live in `Store/RepositoryBlobs.swift`.
///
/// Thread safety: `readBlob`/`readVerified` may be called from many threads
/// at once (the backend caches pack descriptors under its lock and reads
/// with `pread`); everything else is called from one thread.
/// `@unchecked Sendable` for that reason: `index`, `indexFiles` and `isIndexLoaded` change
/// only on the owning thread, before reader threads start or after they are
/// joined (`BlobSink` adds its index file after joining its compressors).
public final class Repository: @unchecked Sendable {
    public let layout: RepositoryLayout
    public let config: RepositoryConfig
    public let gear: GearTable
    /// Where the objects are: files (`LocalBackend`) or an object store
    /// (AccordS3's `S3Backend`, made by the command layer).
    public let backend: any Backend
    /// The same backend when it is local, else nil: the hot paths call it
    /// directly (pack reads by cached descriptor, `readPack`; packs renamed
    /// into place, `makePackAssembler`), with no existential dispatch and no
    /// copy through memory. Everything else goes through `backend`.
    public let local: LocalBackend?
    public let index = MasterIndex()
    /// Index files loaded (names), to tell which packs are indexed.
    public internal(set) var indexFiles: [IndexID] = []
    /// Has `loadIndex` run (`prepareForWriting` loads it only once)?
    public internal(set) var isIndexLoaded = false
    /// May tree blobs come from the backend's local cache (`BlobCache`)?
    /// `check` says no: it verifies what the bucket holds, not what this
    /// machine (or, for a DR copy with the same id, another repository) cached.
    public var usesBlobCache = true

    /// The keys of an encrypted repository (format version 3) opened with its
    /// key; nil for a plain one, and for an encrypted one opened without its
    /// key (`accord serve`, `check --without-key`), which can then move and
    /// verify stored bytes but not read a blob or a snapshot.
    public let crypto: RepositoryCrypto?
    /// The key file that opened it, when encrypted.
    public let usedKey: KeyID?
    /// Set while this process's new repository on an object store has no
    /// snapshot yet (`initialize(backend:)`): its config may still be replaced
    /// by a racer's, so the first commit checks it (`checkCreation`).
    var creation: Creation?

    /// `backend` nil: the local directory `layout` names.
    init(layout: RepositoryLayout, config: RepositoryConfig, crypto: RepositoryCrypto? = nil, usedKey: KeyID? = nil, backend: (any Backend)? = nil) {
        self.layout = layout
        self.config = config
        self.crypto = crypto
        self.usedKey = usedKey
        let b = backend ?? LocalBackend(layout: layout)
        self.backend = b
        local = b as? LocalBackend
        gear = crypto.map { GearTable(words: $0.gearWords) } ?? GearTable(seed: config.seed)
    }

    /// A blob's id: SHA-256 of its bytes, or in an encrypted repository their
    /// HMAC under the id key (so ids do not reveal known content).
    @inline(__always)
    public func blobID(of data: UnsafeRawBufferPointer) -> BlobID {
        if let crypto { return crypto.blobID(data) }
        return BlobID(hashing: data)
    }

    // MARK: Opening

    /// Creates a new repository at `path` (directory 0700, files 0600).
    /// With `key`, the repository is encrypted (format version 3) and `key`'s
    /// passphrase wraps its new master key in its first key file.
    @discardableResult
    public static func initialize(at path: String, compression: CompressionLevel = .default, key: KeySource? = nil) throws -> Repository {
        try initialize(at: path, config: RepositoryConfig.new(compression: compression, encrypted: key != nil), key: key)
    }

    /// Creates a repository with a given config (a sync destination takes its
    /// source's, so both cut and name chunks alike). The config must be valid.
    /// An encrypted config without a `mac` is a new repository: `key` gives
    /// the passphrase of its first key file. One with a `mac` is a copy
    /// (`accord serve`): created without the key; its key files arrive by sync.
    public static func initialize(at path: String, config given: RepositoryConfig, key: KeySource? = nil) throws -> Repository {
        let layout = RepositoryLayout(root: path)
        var config = given
        let (crypto, firstKey) = try makeFirstKey(&config, key: key, repository: path)
        try config.validate(repository: path, configPath: layout.configPath)
        if let st = try? Sys.stat(Array(path.utf8)) {
            guard st.isDirectory else { throw RepositoryError.notADirectory(path) }
            if (try? Sys.lstat(layout.configPath)) != nil { throw RepositoryError.alreadyInitialized(path) }
        }
        try Sys.mkdirs(Array(layout.root.utf8), mode: 0o700)
        try Sys.chmod(Array(layout.root.utf8), mode: 0o700)
        for d in layout.subdirectories { try Sys.mkdir(d, mode: 0o700) }
        let backend = LocalBackend(layout: layout)
        if let k = firstKey {
            // The key file before the config: a config names an encrypted
            // repository only once a key opens it.
            try Sys.mkdir(layout.keyDirectory, mode: 0o700)
            try k.bytes.withUnsafeBytes { try backend.write(.key, k.id.hex, $0) }
        }
        guard try AtomicFile.create(try encodeJSON(config), at: layout.configPath, tmpDirectory: layout.tmpDirectory) else {
            // Another accord initialized it at the same moment: theirs stands.
            if let k = firstKey { try? backend.delete(.key, k.id.hex) }
            throw RepositoryError.alreadyInitialized(path)
        }
        if config.isEncrypted { try Sys.mkdir(layout.keyDirectory, mode: 0o700) }
        return Repository(layout: layout, config: config, crypto: crypto, usedKey: firstKey?.id)
    }

    /// Opens an existing repository (or creates it when `create` is set and
    /// the path holds none). Loads the config; the index is loaded by the doors
    /// that need it (`openSnapshot`, `prepareForWriting`: RepositoryOpening.swift).
    ///
    /// An encrypted repository is opened with `key` (its passphrase unwraps a
    /// key file; the config's MAC is then checked), or, with `withoutKey`,
    /// without it: stored bytes can then be moved and verified, not read. A
    /// plain repository is refused when `key` is explicit (configured, not a
    /// prompt): a config replaced by a plain one must not downgrade a client
    /// that expects encryption. When `create` makes a new repository, it is
    /// encrypted if `encryptNew` (with `key`).
    public static func open(at path: String, create: Bool = false, key: KeySource? = nil, withoutKey: Bool = false,
                            encryptNew: Bool = false) throws -> Repository {
        let layout = RepositoryLayout(root: path)
        let st: FileStatus
        do { st = try Sys.stat(Array(path.utf8)) } catch let e as SystemError where e.isNotFound {
            if create { return try initializeOrOpen(at: path, key: key, encrypt: encryptNew) }
            throw RepositoryError.notARepository(path)
        }
        guard st.isDirectory else { throw RepositoryError.notADirectory(path) }
        let bytes: [UInt8]
        do { bytes = try AtomicFile.read(layout.configPath) } catch let e as SystemError where e.isNotFound {
            if create, (try? Sys.listDirectory(path))?.filter({ !$0.hasPrefix(".") && $0 != "restore" }).isEmpty ?? false {
                return try initializeOrOpen(at: path, key: key, encrypt: encryptNew)
            }
            throw RepositoryError.notARepository(path)
        }
        let config = try RepositoryConfig.decode(bytes, repository: path, configPath: layout.configPath)
        for d in layout.subdirectories { try Sys.mkdir(d, mode: 0o700) }
        return try opened(layout: layout, config: config, backend: LocalBackend(layout: layout), key: key, withoutKey: withoutKey)
    }

    /// A new encrypted config (no `mac` yet) gets its master key, its MAC and
    /// its first key file (wrapped under `key`'s passphrase); else nothing.
    static func makeFirstKey(_ config: inout RepositoryConfig, key: KeySource?, repository path: String) throws
        -> (RepositoryCrypto?, (id: KeyID, bytes: [UInt8])?) {
        guard config.isEncrypted && config.mac == nil else { return (nil, nil) }
        guard let key else { throw KeyError.noPassphrase(path) }
        let passphrase = try key.passphrase()
        let master = Crypto.randomBytes(RepositoryCrypto.masterKeySize)
        let c = RepositoryCrypto(master: master, repositoryID: ID(hex: config.id)?.bytes ?? [])
        config.mac = c.configMAC(config)
        let bytes = try KeyFile.create(master: master, passphrase: passphrase, repository: config.id).encode()
        return (c, (KeyID(hashing: bytes), bytes))
    }

    /// The end of every open: a plain config is refused to an explicit key
    /// (and beside key files); an encrypted one is unlocked, unless `withoutKey`.
    static func opened(layout: RepositoryLayout, config: RepositoryConfig, backend: any Backend, key: KeySource?, withoutKey: Bool) throws -> Repository {
        let path = layout.root
        guard config.isEncrypted else {
            if let key, key.explicit { throw KeyError.plainRepository(path, source: key.description) }
            // A plain repository never has key files: a plain config beside them was put there.
            if let keys = try? backend.list(.key), !keys.isEmpty {
                throw KeyError.plainRepository(path, source: "keys/ holds \(keys.count) key file(s), which only an encrypted repository has")
            }
            return Repository(layout: layout, config: config, backend: backend)
        }
        if withoutKey { return Repository(layout: layout, config: config, backend: backend) }
        guard let key else { throw KeyError.noPassphrase(path) }
        let (crypto, used) = try unlock(backend: backend, layout: layout, config: config, key: key)
        return Repository(layout: layout, config: config, crypto: crypto, usedKey: used, backend: backend)
    }

    /// First use by a backup: create, or open what a concurrent first backup created.
    static func initializeOrOpen(at path: String, key: KeySource?, encrypt: Bool) throws -> Repository {
        do { return try initialize(at: path, compression: .default, key: encrypt ? key : nil) } catch RepositoryError.alreadyInitialized {
            return try open(at: path, key: key)
        }
    }

    static func encodeJSON<T: Encodable>(_ v: T) throws -> [UInt8] {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return Array(try e.encode(v)) + [0x0a]
    }

    // MARK: Snapshots

    public func listSnapshotIDs() throws -> [SnapshotID] {
        try backend.list(.snapshot).compactMap(SnapshotID.init(hex:))
    }

    public func loadSnapshot(_ id: SnapshotID) throws -> Snapshot {
        let path = layout.snapshotPath(id)
        let bytes: [UInt8]
        do { bytes = try backend.read(.snapshot, id.hex) } catch BackendError.notFound {
            throw SystemError(errno: ENOENT, operation: "open", path: path)
        }
        guard SnapshotID(hashing: bytes) == id else {
            throw RepositoryError.snapshotCorrupt(path, reason: "content does not match its name")
        }
        guard config.isEncrypted else { return try Snapshot.decode(bytes, name: path) }
        guard let crypto else { throw RepositoryError.snapshotCorrupt(path, reason: "the repository is encrypted and was opened without its key") }
        let opened: (time: Int64, json: [UInt8])
        do { opened = try crypto.openSnapshot(bytes) } catch {
            throw RepositoryError.snapshotCorrupt(path, reason: "it does not open under this repository's key (\(error)): it was changed, or belongs to another repository")
        }
        let s = try Snapshot.decode(opened.json, name: path)
        guard s.time.seconds == opened.time else {
            throw RepositoryError.snapshotCorrupt(path, reason: "its sealed time \(s.time.seconds) differs from its header's \(opened.time)")
        }
        return s
    }

    /// All readable snapshots, oldest first; unreadable ones are reported through `onError`.
    public func snapshots(onError: (SnapshotID, Error) -> Void = { _, _ in }) throws -> [(id: SnapshotID, snapshot: Snapshot)] {
        var out: [(SnapshotID, Snapshot)] = []
        for id in try listSnapshotIDs() {
            do { out.append((id, try loadSnapshot(id))) } catch { onError(id, error) }
        }
        return out.sorted { $0.1.time < $1.1.time }
    }

    /// Writes a snapshot: the commit point of a backup. Durable on return.
    @discardableResult
    public func saveSnapshot(_ s: Snapshot) throws -> SnapshotID {
        var bytes = try s.encode()
        if config.isEncrypted {
            guard let crypto else { throw KeyError.noPassphrase(layout.root) }
            bytes = try crypto.sealSnapshot(json: bytes, time: s.time.seconds)
        }
        let id = SnapshotID(hashing: bytes)
        try checkCreation()
        try bytes.withUnsafeBytes { try backend.write(.snapshot, id.hex, $0) }
        if creation != nil {
            try checkCreation(written: id)
            creation = nil
        }
        return id
    }

    /// Removes a snapshot (forget); its blobs stay until prune. Durable on return.
    public func deleteSnapshot(_ id: SnapshotID) throws { try backend.delete(.snapshot, id.hex) }

    /// A snapshot dated more than this far ahead of the local clock is suspect
    /// (a wrong clock, or a hostile snapshot made to look newest): `latest`
    /// skips it and `forget` keeps it without letting it take a keep slot.
    public static let futureSkewSeconds: Int64 = 24 * 3600

    /// Is `s` dated more than `futureSkewSeconds` after `now`?
    public static func isDatedInFuture(_ s: Snapshot, now: Timestamp = .now()) -> Bool {
        s.time.seconds > now.seconds &+ futureSkewSeconds
    }

    /// The newest readable snapshot that `matches`, skipping (and naming through
    /// `warn`) those dated in the future. Throws if a snapshot is unreadable: it
    /// might be the newest. Nil when none matches.
    public func latestSnapshot(matching: (Snapshot) -> Bool = { _ in true }, now: Timestamp = .now(),
                               warn: (String) -> Void) throws -> (id: SnapshotID, snapshot: Snapshot)? {
        var unreadable: [(SnapshotID, Error)] = []
        let all = try snapshots { unreadable.append(($0, $1)) }
        if let (id, e) = unreadable.first {
            throw RepositoryError.snapshotCorrupt(layout.snapshotPath(id), reason: "\(e); `latest` cannot be determined while a snapshot is unreadable: give a snapshot id")
        }
        for item in all.reversed() where matching(item.snapshot) {
            if Self.isDatedInFuture(item.snapshot, now: now) {
                warn("skipping snapshot \(item.id.short) for `latest`: it is dated \(item.snapshot.time.short) UTC, in the future; "
                     + "give its id to use it, or `accord forget \(item.id.short)` if it is not genuine")
                continue
            }
            return item
        }
        return nil
    }

    /// Resolves an id, a unique id prefix, or `latest` (the newest snapshot not
    /// dated in the future; those skipped are named through `warn`).
    public func resolveSnapshot(_ spec: String, warn: (String) -> Void = { Sys.writeStderr("warning: \($0)\n") }) throws -> SnapshotID {
        if spec == "latest" {
            guard let last = try latestSnapshot(warn: warn) else { throw RepositoryError.snapshotNotFound("latest", repository: layout.root) }
            return last.id
        }
        let lower = spec.lowercased()
        guard !lower.isEmpty, lower.allSatisfy({ $0.isHexDigit }) else { throw RepositoryError.snapshotNotFound(spec, repository: layout.root) }
        let matches = try listSnapshotIDs().filter { $0.hex.hasPrefix(lower) }
        if matches.count == 1 { return matches[0] }
        if matches.isEmpty { throw RepositoryError.snapshotNotFound(spec, repository: layout.root) }
        throw RepositoryError.snapshotAmbiguous(spec, matches: matches.count)
    }

    /// Streams a snapshot's manifest entries, each checked against the
    /// validity rules (`ManifestReader`); `id`, when given, is named in errors.
    /// On a bucket, the manifest's pieces not cached yet are fetched first, a
    /// pack's run of them in one request (`prefetchTreeBlobs`).
    public func manifestReader(_ s: Snapshot, id: SnapshotID? = nil) -> ManifestReader {
        prefetchTreeBlobs(s.manifestIDs)
        return ManifestReader(blobs: s.manifestIDs, snapshot: id) { [unowned self] id in try self.readBlob(id) }
    }
}
