/// What a repository is stored as: named objects of a few kinds, each
/// written whole and read whole or by range. `LocalBackend` keeps them as
/// files (FORMAT.md, "Repository layout"); an object store can keep them as keys.
///
/// Contract every backend keeps (`BackendConformanceTests` in AccordTestSupport checks it):
/// - Atomicity: an object appears under its name only complete. A write that
///   fails or is interrupted (crash, lost connection) leaves no object under
///   its name, or the previous one untouched; never a partial one.
/// - Durability: when `write` returns, the object survives a crash or power
///   loss (files: fsync of the data, rename, fsync of the directory).
///   `delete` is durable on return too.
/// - Listing may lag: on an object store an object just written may be
///   missing from `list` for a while (it is readable by name); callers never
///   conclude from a listing that a just-written object is absent.
/// - Names are validated before any I/O (`ObjectKind.validate`): a name
///   from a repository or a socket never reaches a path or a key unchecked.
/// - A missing object throws `BackendError.notFound`, naming kind, name and
///   where it was looked for.
/// - Sizes: a backend that does not trust its store's sizes (an object store)
///   may refuse to read an object larger than its kind's `largestObject`.
/// - Thread safety: every method may be called from many threads at once.
public protocol Backend: AnyObject, Sendable {
    /// A place to name in messages (a directory, a URL).
    var location: String { get }
    /// Where object `name` of `kind` is, for messages only (a file path, a key).
    func describe(_ kind: ObjectKind, _ name: String) -> String
    /// The names of every object of `kind`, in no particular order. Entries
    /// that are not valid names of that kind (temporary files) are left out.
    func list(_ kind: ObjectKind) throws -> [String]
    /// The object's size in bytes.
    func size(_ kind: ObjectKind, _ name: String) throws -> Int64
    /// The whole object.
    func read(_ kind: ObjectKind, _ name: String) throws -> [UInt8]
    /// Reads up to `buffer.count` bytes at `offset`; returns how many were
    /// read (fewer only at the object's end; 0 at or past it).
    func read(_ kind: ObjectKind, _ name: String, at offset: Int64, into buffer: UnsafeMutableRawBufferPointer) throws -> Int
    /// Writes the object whole, replacing one of that name. Durable on return.
    /// The config is the exception: written once, when the repository is
    /// created, a backend may refuse to replace it (`alreadyExists`; S3Backend
    /// asks the server with `If-None-Match: *`).
    func write(_ kind: ObjectKind, _ name: String, _ bytes: UnsafeRawBufferPointer) throws
    /// Removes the object. Durable on return. Missing: `notFound`.
    func delete(_ kind: ObjectKind, _ name: String) throws
    /// Removes what interrupted writes left older than `age` seconds (prune):
    /// `LocalBackend`'s temporary files; an object store has none (a PUT is whole).
    func removeTemporaryFiles(olderThan age: Int64)
}

extension Backend {
    public func removeTemporaryFiles(olderThan age: Int64) {}

    /// A small object whole, in one read of at most `limit + 1` bytes and no
    /// size asked first, so the bound holds on the bytes that come, whatever a
    /// server's HEAD or a sparse file would say. `limit + 1` bytes back means
    /// the object is larger than `limit`: the caller refuses it, naming it.
    public func read(_ kind: ObjectKind, _ name: String, upTo limit: Int) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: limit + 1)
        let n = try bytes.withUnsafeMutableBytes { try read(kind, name, at: 0, into: $0) }
        bytes.removeSubrange(n...)
        return bytes
    }
}

/// The kinds of object in a repository.
public enum ObjectKind: String, Sendable, CaseIterable {
    /// The repository's parameters; its one name is `config`.
    case config
    /// Key material (reserved for encryption); content-named.
    case key
    /// Pack files (`data/XX/<id>`); content-named.
    case pack
    /// Index files; content-named.
    case index
    /// Snapshot files; content-named.
    case snapshot
    /// Lock files; free names of safe characters.
    case lock
    /// The plans' `restore` marker (FORMAT.md): empty; its one name is `restore`.
    case marker

    /// Kinds whose names are the SHA-256 of their content, in lowercase hex.
    public var isContentNamed: Bool { self == .key || self == .pack || self == .index || self == .snapshot }

    /// The largest object of this kind a reader accepts from a store it does
    /// not trust for sizes (an object store's HEAD and GET; FORMAT.md, "In a
    /// bucket"): a config 1 MiB, a key or lock file 64 KiB, a snapshot 16 MiB
    /// (the sync protocol's bound too), an index file 4 GiB (93 million blob
    /// entries), a pack the largest `packSize` (1 GiB) plus what a pack may
    /// pass it by: its last blob (`maxStoredLength`), its header
    /// (`maxHeaderLength`) and trailer.
    public var largestObject: Int64 {
        switch self {
        case .config: return Repository.maxConfigObject
        case .key: return Int64(KeyFile.maxFileSize)
        case .lock: return Int64(LockInfo.maxFileSize)
        case .marker: return 1 << 10
        case .snapshot: return Int64(Snapshot.maxFileSize)
        case .index: return Int64(IndexFile.maxFileSize)
        case .pack:
            return Int64(RepositoryConfig.packSizes.upperBound) + Int64(PackFormat.maxStoredLength) + Int64(PackFormat.maxHeaderLength) + Int64(PackFormat.trailerSize)
        }
    }

    /// Refuses a name that is not one of this kind: content-named kinds take
    /// 64 lowercase hex digits, `config` only "config", `lock` 1–128 of
    /// `[A-Za-z0-9._-]` not starting with a dot (so no `..`, `/` or NUL).
    public func validate(_ name: String) throws {
        let u = name.utf8
        let ok: Bool
        switch self {
        case .config: ok = name == "config"
        case .marker: ok = name == "restore"
        case .key, .pack, .index, .snapshot:
            ok = u.count == 64 && u.allSatisfy { (48...57).contains($0) || (97...102).contains($0) }
        case .lock:
            ok = (1...128).contains(u.count) && u.first != 0x2e && u.allSatisfy {
                (48...57).contains($0) || (65...90).contains($0) || (97...122).contains($0) || $0 == 0x2e || $0 == 0x5f || $0 == 0x2d
            }
        }
        guard ok else { throw BackendError.invalidName(self, name) }
    }
}

public enum BackendError: Error, CustomStringConvertible, Equatable {
    case invalidName(ObjectKind, String)
    case notFound(ObjectKind, String, location: String)
    /// A write that asked not to replace an object (only the config's, on a
    /// server that honours `If-None-Match`) met one already there.
    case alreadyExists(ObjectKind, String, location: String)

    public var description: String {
        switch self {
        case .invalidName(let k, let n):
            let shown = String(decoding: n.utf8.prefix(80).map { $0 < 0x20 || $0 == 0x7f ? UInt8(ascii: "?") : $0 }, as: UTF8.self)
            return "\"\(shown)\" is not a valid \(k.rawValue) name"
                + (k.isContentNamed ? " (64 lowercase hex digits)" : k == .config ? " (only \"config\")" : " (1-128 of A-Z a-z 0-9 . _ -, not starting with a dot)")
        case .notFound(let k, let n, let location): return "\(k.rawValue) \(n) is missing from \(location)"
        case .alreadyExists(let k, let n, let location): return "\(k.rawValue) \(n) already exists in \(location)"
        }
    }
}
