import AccordRuntime
import Foundation

/// A local cache in front of a remote backend (an object store), so a
/// no-change backup reads its index files and snapshots from disk instead of
/// the bucket: `DIRECTORY/index/<name>` and `DIRECTORY/snapshots/<name>`
/// (the command layer uses `$XDG_CACHE_HOME/accord/<repository id>`).
///
/// Only content-named kinds whose objects never change under a name (index,
/// snapshot) are cached; packs are too big, and config, keys and locks are
/// always asked of the bucket. Nothing in the cache is trusted: a file is
/// hashed the first time this process uses it, and one whose SHA-256 is not
/// its name (torn, corrupted, foreign) is deleted and fetched again. An
/// object fetched or written whose bytes do not hash to its name is passed
/// on but never stored. Deleting the directory at any time only costs
/// requests: every cache error falls back to the inner backend. Listing a
/// kind deletes the cached files of objects the bucket no longer lists (the
/// next read of one just written, if the listing lagged, fetches it again).
/// Directories are 0700, files 0600, written under a temporary name and
/// renamed (no fsync: a lost file is refetched).
///
/// `@unchecked Sendable`: `verified` and `config` are read and written only
/// under `lock`; the rest is immutable.
public final class CachedBackend: Backend, @unchecked Sendable {
    public let inner: any Backend
    public let directory: String
    /// Largest object kept in the cache (larger ones are read from `inner`).
    public static let maxCachedObject: Int64 = 1 << 30
    private let lock = NSLock()
    /// Cache files hashed by this process ("index/<name>"), trusted until deleted.
    private var verified: Set<String> = []
    /// The config object as read once (a command reads it twice: for the
    /// cache's directory, then to open the repository).
    private var config: [UInt8]?

    /// Creates `directory` and its kind folders (0700, made so if they were
    /// not). `config`, if given, is the config object's bytes just read from `inner`.
    public init(inner: any Backend, directory: String, config: [UInt8]? = nil) throws {
        self.inner = inner
        self.directory = directory
        self.config = config
        try Sys.mkdirs(Array(directory.utf8), mode: 0o700)
        for sub in [directory, directory + "/index", directory + "/snapshots"] {
            _ = try Sys.mkdir(sub, mode: 0o700)
            let st = try Sys.lstat(sub)
            guard st.mode & 0o170000 == 0o040000 else {
                throw SystemError(errno: ENOTDIR, operation: "use as the cache directory", path: sub)
            }
            if st.mode & 0o7777 != 0o700 { try Sys.chmod(Array(sub.utf8), mode: 0o700) }
        }
    }

    public var location: String { inner.location }
    public func describe(_ kind: ObjectKind, _ name: String) -> String { inner.describe(kind, name) }
    public func removeTemporaryFiles(olderThan age: Int64) { inner.removeTemporaryFiles(olderThan: age) }

    static func isCached(_ kind: ObjectKind) -> Bool { kind == .index || kind == .snapshot }

    private func path(_ kind: ObjectKind, _ name: String) -> String {
        directory + (kind == .index ? "/index/" : "/snapshots/") + name
    }

    public func list(_ kind: ObjectKind) throws -> [String] {
        let names = try inner.list(kind)
        guard Self.isCached(kind) else { return names }
        let listed = Set(names), folder = directory + (kind == .index ? "/index" : "/snapshots")
        for entry in (try? Sys.listDirectory(folder)) ?? [] where !listed.contains(entry) {
            // Another process's temporary file is left alone until it is an hour old.
            if entry.hasPrefix(".tmp-"), let st = try? Sys.lstat(folder + "/" + entry), Int64(Date().timeIntervalSince1970) - st.mtimeSec < 3600 { continue }
            forget(kind, entry)
        }
        return names
    }

    public func size(_ kind: ObjectKind, _ name: String) throws -> Int64 {
        if kind == .config, let c = lock.withLock({ config }) { return Int64(c.count) }
        guard Self.isCached(kind) else { return try inner.size(kind, name) }
        try kind.validate(name)
        if let fd = openVerified(kind, name) {
            defer { Sys.close(fd) }
            if let st = try? Sys.fstat(fd) { return Int64(st.size) }
        }
        return Int64(try fetch(kind, name).count)
    }

    public func read(_ kind: ObjectKind, _ name: String) throws -> [UInt8] {
        if kind == .config {
            if let c = lock.withLock({ config }) { return c }
            let c = try inner.read(kind, name)
            lock.withLock { config = c }
            return c
        }
        guard Self.isCached(kind) else { return try inner.read(kind, name) }
        try kind.validate(name)
        if let fd = openVerified(kind, name) {
            defer { Sys.close(fd) }
            if let st = try? Sys.fstat(fd) {
                if st.size == 0 { return [] }
                var bytes = [UInt8](repeating: 0, count: Int(st.size))
                let n = (try? bytes.withUnsafeMutableBytes { try Sys.preadFully(fd, $0.baseAddress!, $0.count, 0) }) ?? -1
                if n == bytes.count { return bytes }
            }
        }
        return try fetch(kind, name)
    }

    public func read(_ kind: ObjectKind, _ name: String, at offset: Int64, into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        guard Self.isCached(kind), offset >= 0, buffer.count > 0 else { return try inner.read(kind, name, at: offset, into: buffer) }
        try kind.validate(name)
        if let fd = openVerified(kind, name) {
            defer { Sys.close(fd) }
            if let n = try? Sys.preadFully(fd, buffer.baseAddress!, buffer.count, offset) { return n }
        }
        let bytes = try fetch(kind, name)
        guard offset < Int64(bytes.count) else { return 0 }
        let n = min(buffer.count, bytes.count - Int(offset))
        bytes.withUnsafeBytes { buffer.baseAddress!.copyMemory(from: $0.baseAddress! + Int(offset), byteCount: n) }
        return n
    }

    public func write(_ kind: ObjectKind, _ name: String, _ bytes: UnsafeRawBufferPointer) throws {
        if kind == .config { lock.withLock { config = nil } }
        try inner.write(kind, name, bytes)
        if Self.isCached(kind), SHA256Hasher.hash(bytes).hex == name { store(kind, name, bytes) }
    }

    public func delete(_ kind: ObjectKind, _ name: String) throws {
        if kind == .config { lock.withLock { config = nil } }
        try inner.delete(kind, name)
        if Self.isCached(kind) { forget(kind, name) }
    }

    /// The object from `inner`, stored in the cache when its bytes hash to its name.
    private func fetch(_ kind: ObjectKind, _ name: String) throws -> [UInt8] {
        let bytes = try inner.read(kind, name)
        bytes.withUnsafeBytes { b in
            if SHA256Hasher.hash(b).hex == name { store(kind, name, b) }
        }
        return bytes
    }

    /// Writes the cache file under a temporary name and renames it; any failure
    /// (disk full, directory deleted) leaves no file and is not an error.
    private func store(_ kind: ObjectKind, _ name: String, _ bytes: UnsafeRawBufferPointer) {
        guard Int64(bytes.count) <= Self.maxCachedObject else { return }
        let final = path(kind, name)
        let tmp = directory + (kind == .index ? "/index/" : "/snapshots/") + ".tmp-" + Sys.randomBytes(8).map { String(format: "%02x", $0) }.joined()
        guard let fd = try? Sys.open(tmp, Sys.O_WRONLY | Sys.O_CREAT | Sys.O_EXCL | Sys.O_NOFOLLOW, mode: 0o600) else { return }
        let written = (try? Sys.writeAll(fd, bytes)) != nil
        Sys.close(fd)
        if written, (try? Sys.rename(tmp, final)) != nil {
            _ = lock.withLock { verified.insert(kind.rawValue + "/" + name) }
        } else {
            try? Sys.unlink(tmp)
        }
    }

    /// Deletes a cache file (missing is fine) and forgets it was verified.
    private func forget(_ kind: ObjectKind, _ name: String) {
        _ = lock.withLock { verified.remove(kind.rawValue + "/" + name) }
        try? Sys.unlink(path(kind, name))
    }

    /// An open descriptor of the cache file, hashed first unless this process
    /// already did; nil if there is none or it was not what its name says
    /// (then it is deleted). Not a regular file, or too big: deleted too.
    private func openVerified(_ kind: ObjectKind, _ name: String) -> Int32? {
        guard let fd = try? Sys.open(path(kind, name), Sys.O_RDONLY | Sys.O_NOFOLLOW) else { return nil }
        let key = kind.rawValue + "/" + name
        if lock.withLock({ verified.contains(key) }) { return fd }
        if let st = try? Sys.fstat(fd), st.mode & 0o170000 == 0o100000, Int64(st.size) <= Self.maxCachedObject,
           let digest = Self.hash(fd, size: Int64(st.size)), digest == name {
            _ = lock.withLock { verified.insert(key) }
            return fd
        }
        Sys.close(fd)
        forget(kind, name)
        return nil
    }

    /// SHA-256 of the first `size` bytes of `fd`, in 1 MiB reads; nil if it is shorter.
    static func hash(_ fd: Int32, size: Int64) -> String? {
        let hasher = SHA256Hasher()
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        var offset: Int64 = 0
        while offset < size {
            let want = Int(min(Int64(chunk.count), size - offset))
            guard let n = try? chunk.withUnsafeMutableBytes({ try Sys.preadFully(fd, $0.baseAddress!, want, offset) }), n == want else { return nil }
            chunk.withUnsafeBytes { hasher.update(data: UnsafeRawBufferPointer(rebasing: $0[..<n])) }
            offset += Int64(n)
        }
        return hasher.finalize().hex
    }
}
