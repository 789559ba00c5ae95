import Foundation
import AccordRuntime

/// A repository on a local filesystem: config, packs, index, snapshots, locks.
///
/// Thread safety: `readBlob` may be called from many threads at once (pack
/// descriptors are cached under a lock and read with `pread`); everything
/// else is called from one thread.
public final class Repository: @unchecked Sendable {
    public let layout: RepositoryLayout
    public let config: RepositoryConfig
    public let gear: GearTable
    public let index = MasterIndex()
    /// Index files loaded (names), to tell which packs are indexed.
    public private(set) var indexFiles: [ID] = []

    private let fdLock = NSLock()
    /// Open pack descriptors and how many reads use each right now: only
    /// unused ones are closed when the cache is full (others are mid-pread).
    private var packFDs: [PackID: (fd: Int32, users: Int)] = [:]
    private static let maxCachedPackFDs = 256

    init(layout: RepositoryLayout, config: RepositoryConfig) {
        self.layout = layout
        self.config = config
        gear = GearTable(seed: config.seed)
    }

    deinit { for f in packFDs.values { Sys.close(f.fd) } }

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
    /// the path holds none). Loads the config; call `loadIndex()` next.
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

    // MARK: Index

    /// Names of the index files present.
    public func listIndexFiles() throws -> [ID] {
        try Sys.listDirectory(layout.indexDirectory).compactMap(ID.init(hex:))
    }

    /// Reads and verifies one index file.
    public func readIndexFile(_ id: ID) throws -> IndexFile {
        let path = layout.indexPath(id)
        let bytes = try AtomicFile.read(path)
        guard bytes.withUnsafeBytes({ SHA256Hasher.hash($0) }) == id else {
            throw RepositoryError.indexCorrupt(path, reason: "content does not match its name (truncated or altered)")
        }
        do { return try bytes.withUnsafeBytes { try IndexFile.decode($0) } } catch {
            throw RepositoryError.indexCorrupt(path, reason: "\(error)")
        }
    }

    /// Loads every index file into `index`. A corrupt file throws (run `repair index`).
    /// Entries of packs missing on disk are left out, so a copy of the same blob in
    /// another pack is used instead (and a backup stores a lost blob again).
    /// Files are read a window at a time (`IndexLoader`), into an index sized
    /// once from the files' sizes.
    public func loadIndex() throws {
        let present = Set(try listPacks())
        let files = try listIndexFiles()
        var records = 0
        for id in files { records += Int((try? Sys.stat(Array(layout.indexPath(id).utf8)).size) ?? 0) / IndexFile.blobRecordSize }
        index.reserve(records)
        let loader = IndexLoader(index: index, present: present)
        for id in files {
            try loader.load(layout.indexPath(id), id: id)
            indexFiles.append(id)
        }
        index.seal()
    }

    /// Writes an index file for these packs; durable on return.
    @discardableResult
    public func writeIndex(_ file: IndexFile) throws -> ID {
        let bytes = file.encode()
        let id = bytes.withUnsafeBytes { SHA256Hasher.hash($0) }
        try AtomicFile.write(bytes, to: layout.indexPath(id), tmpDirectory: layout.tmpDirectory)
        indexFiles.append(id)
        return id
    }

    /// Every pack file present under data/, by id.
    public func listPacks() throws -> [PackID] {
        var out: [PackID] = []
        for sub in try Sys.listDirectory(layout.dataDirectory) where sub.count == 2 {
            for name in try Sys.listDirectory(layout.dataDirectory + "/" + sub) {
                if let id = ID(hex: name) { out.append(id) }
            }
        }
        return out
    }

    /// Packs written by a backup that died before its index was written are
    /// complete and valid: index them now so their blobs are reused. Returns
    /// how many packs were adopted. Unreadable packs are left for `check`.
    @discardableResult
    public func adoptUnindexedPacks() throws -> Int {
        var adopted: [IndexFile.Pack] = []
        for id in try listPacks() where !index.containsPack(id) {
            guard let entries = try? PackReader.readHeader(path: layout.packPath(id)) else { continue }
            adopted.append(.init(id: id, blobs: entries))
        }
        if adopted.isEmpty { return 0 }
        let file = IndexFile(packs: adopted)
        try writeIndex(file)
        index.add(file)
        index.seal()
        return adopted.count
    }

    // MARK: Blobs

    /// Runs `body` with an open descriptor of the pack, kept open meanwhile.
    private func withPackFD<T>(_ id: PackID, blob: BlobID, _ body: (Int32) throws -> T) throws -> T {
        let fd: Int32 = try fdLock.withLock {
            if let f = packFDs[id] { packFDs[id] = (f.fd, f.users + 1); return f.fd }
            if packFDs.count >= Self.maxCachedPackFDs {
                for (pack, f) in packFDs where f.users == 0 { Sys.close(f.fd); packFDs[pack] = nil }
            }
            let fd: Int32
            do { fd = try Sys.open(layout.packPath(id), Sys.O_RDONLY) } catch let e as SystemError where e.isNotFound {
                throw RepositoryError.packMissing(id, blob: blob)
            }
            packFDs[id] = (fd, 1)
            return fd
        }
        defer {
            fdLock.withLock {
                if let f = packFDs[id] { packFDs[id] = (f.fd, f.users - 1) }
            }
        }
        return try body(fd)
    }

    /// Reads a blob's stored bytes (still compressed).
    public func readStored(_ id: BlobID, location l: BlobLocation, into buffer: inout [UInt8]) throws {
        let pack = index.pack(of: l)
        buffer.resizeForOverwrite(Int(l.storedLength))
        let n = try withPackFD(pack, blob: id) { fd in
            try buffer.withUnsafeMutableBytes { try Sys.preadFully(fd, $0.baseAddress!, $0.count, Int64(l.offset), path: layout.packPath(pack)) }
        }
        guard n == Int(l.storedLength) else {
            throw BlobError.inPack(id, pack: pack, offset: l.offset, underlying: PackError.truncatedPack(size: Int(l.offset) + n))
        }
    }

    /// Reads, inflates and verifies a blob.
    public func readBlob(_ id: BlobID, inflater: Inflater, scratch: inout [UInt8], into output: inout [UInt8]) throws {
        guard let l = index.lookup(id) else { throw BlobError.notInIndex(id) }
        try readStored(id, location: l, into: &scratch)
        do {
            try scratch.withUnsafeBytes {
                try BlobDecoder.decode(stored: $0, id: id, compression: l.compression, rawLength: Int(l.rawLength),
                                       inflater: inflater, into: &output, base: { try self.readBase($0, inflater: inflater) })
            }
        } catch {
            throw BlobError.inPack(id, pack: index.pack(of: l), offset: l.offset, underlying: error)
        }
    }

    /// Reads a delta blob's base: a blob stored whole (never itself a delta), verified.
    /// Readers that decode many blobs pass their own `inflater` (it is idle while
    /// a delta's base is read).
    public func readBase(_ id: BlobID, inflater: Inflater?) throws -> [UInt8] {
        guard let l = index.lookup(id) else { throw BlobError.notInIndex(id) }
        guard l.compression != .delta else { throw DeltaError.baseIsDelta(id) }
        var scratch: [UInt8] = [], out: [UInt8] = []
        try readBlob(id, inflater: inflater ?? Inflater(), scratch: &scratch, into: &out)
        return out
    }

    /// `readBase` as a `BlobDecoder.BaseReader`.
    public func readBase(_ id: BlobID) throws -> [UInt8] { try readBase(id, inflater: nil) }

    /// The base a blob stored as a delta names (reads its first 32 stored bytes).
    public func deltaBase(of id: BlobID, location l: BlobLocation) throws -> BlobID {
        let pack = index.pack(of: l)
        let base = try withPackFD(pack, blob: id) { try PackReader.readDeltaBase(fd: $0, offset: l.offset, path: layout.packPath(pack)) }
        guard let base, l.storedLength > 32 else {
            throw BlobError.inPack(id, pack: pack, offset: l.offset, underlying: PackError.truncatedPack(size: Int(l.offset)))
        }
        return base
    }

    /// Convenience for small blobs (manifests).
    public func readBlob(_ id: BlobID) throws -> [UInt8] {
        var scratch: [UInt8] = [], out: [UInt8] = []
        try readBlob(id, inflater: Inflater(), scratch: &scratch, into: &out)
        return out
    }

    // MARK: Snapshots

    public func listSnapshotIDs() throws -> [SnapshotID] {
        try Sys.listDirectory(layout.snapshotDirectory).compactMap(ID.init(hex:))
    }

    public func loadSnapshot(_ id: SnapshotID) throws -> Snapshot {
        let path = layout.snapshotPath(id)
        let bytes = try AtomicFile.read(path)
        guard SHA256Hasher.hash(bytes) == id else {
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
        let id = SHA256Hasher.hash(bytes)
        try AtomicFile.write(bytes, to: layout.snapshotPath(id), tmpDirectory: layout.tmpDirectory)
        return id
    }

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
