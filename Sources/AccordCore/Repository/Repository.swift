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
    /// Where the objects are (today's files; an object store next).
    public let backend: LocalBackend
    public let index = MasterIndex()
    /// Index files loaded (names), to tell which packs are indexed.
    public internal(set) var indexFiles: [IndexID] = []
    /// Has `loadIndex` run (`prepareForWriting` loads it only once)?
    public internal(set) var isIndexLoaded = false

    init(layout: RepositoryLayout, config: RepositoryConfig) {
        self.layout = layout
        self.config = config
        backend = LocalBackend(layout: layout)
        gear = GearTable(seed: config.seed)
    }

    // MARK: Opening

    /// Creates a new repository at `path` (directory 0700, files 0600).
    @discardableResult
    public static func initialize(at path: String, compression: CompressionLevel = .default) throws -> Repository {
        try initialize(at: path, config: RepositoryConfig.new(compression: compression))
    }

    /// Creates a repository with a given config (a sync destination takes its
    /// source's, so both cut and name chunks alike). The config must be valid.
    public static func initialize(at path: String, config: RepositoryConfig) throws -> Repository {
        let layout = RepositoryLayout(root: path)
        try config.validate(repository: path, configPath: layout.configPath)
        if let st = try? Sys.stat(Array(path.utf8)) {
            guard st.isDirectory else { throw RepositoryError.notADirectory(path) }
            if (try? Sys.lstat(layout.configPath)) != nil { throw RepositoryError.alreadyInitialized(path) }
        }
        try Sys.mkdirs(Array(layout.root.utf8), mode: 0o700)
        try Sys.chmod(Array(layout.root.utf8), mode: 0o700)
        for d in layout.subdirectories { try Sys.mkdir(d, mode: 0o700) }
        guard try AtomicFile.create(try encodeJSON(config), at: layout.configPath, tmpDirectory: layout.tmpDirectory) else {
            // Another accord initialized it at the same moment: theirs stands.
            throw RepositoryError.alreadyInitialized(path)
        }
        return Repository(layout: layout, config: config)
    }

    /// Opens an existing repository (or creates it when `create` is set and
    /// the path holds none). Loads the config; the index is loaded by the doors
    /// that need it (`openSnapshot`, `prepareForWriting`: RepositoryOpening.swift).
    public static func open(at path: String, create: Bool = false) throws -> Repository {
        let layout = RepositoryLayout(root: path)
        let st: FileStatus
        do { st = try Sys.stat(Array(path.utf8)) } catch let e as SystemError where e.isNotFound {
            if create { return try initializeOrOpen(at: path) }
            throw RepositoryError.notARepository(path)
        }
        guard st.isDirectory else { throw RepositoryError.notADirectory(path) }
        let bytes: [UInt8]
        do { bytes = try AtomicFile.read(layout.configPath) } catch let e as SystemError where e.isNotFound {
            if create, (try? Sys.listDirectory(path))?.filter({ !$0.hasPrefix(".") && $0 != "restore" }).isEmpty ?? false {
                return try initializeOrOpen(at: path)
            }
            throw RepositoryError.notARepository(path)
        }
        let config = try RepositoryConfig.decode(bytes, repository: path, configPath: layout.configPath)
        for d in layout.subdirectories { try Sys.mkdir(d, mode: 0o700) }
        return Repository(layout: layout, config: config)
    }

    /// First use by a backup: create, or open what a concurrent first backup created.
    static func initializeOrOpen(at path: String) throws -> Repository {
        do { return try initialize(at: path) } catch RepositoryError.alreadyInitialized {
            return try open(at: path)
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
        return try Snapshot.decode(bytes, name: path)
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
        let bytes = try s.encode()
        let id = SnapshotID(hashing: bytes)
        try bytes.withUnsafeBytes { try backend.write(.snapshot, id.hex, $0) }
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
    public func manifestReader(_ s: Snapshot, id: SnapshotID? = nil) -> ManifestReader {
        ManifestReader(blobs: s.manifestIDs, snapshot: id) { [unowned self] id in try self.readBlob(id) }
    }
}
