import AccordRuntime
import Foundation

/// A local cache in front of a remote backend (an object store), so a
/// no-change backup reads its index files and snapshots from disk instead of
/// the bucket: `DIRECTORY/index/<name>` and `DIRECTORY/snapshots/<name>`
/// (the command layer uses `$XDG_CACHE_HOME/accord/<repository id>-<location hash>`), and
/// the stored bytes of tree blobs (manifest pieces, chunk lists) in
/// `DIRECTORY/blobs/<blob id>` (`BlobCache`), so the parent's manifest is read
/// from disk too.
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
/// The place is trusted no more than the content: the base (`DIRECTORY`'s
/// parent) and `DIRECTORY` must be directories owned by the running user
/// (euid) and writable by no one else, or the cache is refused (`init`
/// throws; the command warns and runs without it). `DIRECTORY` and its kind
/// folders are opened once, never through a symlink, and every later step
/// (open, list, write, rename, delete) is relative to those descriptors, so
/// a folder renamed or swapped for a symlink afterwards redirects nothing.
/// A cache file is opened `O_NOFOLLOW | O_NONBLOCK` and used only if it is a
/// regular file (a FIFO neither hangs nor stays).
///
/// `@unchecked Sendable`: `verified` and `config` are read and written only
/// under `lock`; the rest is immutable (the descriptors are closed in `deinit`).
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
    /// `DIRECTORY/index`, `DIRECTORY/snapshots` and `DIRECTORY/blobs`, open.
    private let indexFD: Int32, snapshotsFD: Int32, blobsFD: Int32

    /// Opens (creating them 0700 if missing) `directory` and its kind folders,
    /// after checking the base and `directory` are the running user's and
    /// writable by no one else. `config`, if given, is the config object's
    /// bytes just read from `inner`.
    public init(inner: any Backend, directory: String, config: [UInt8]? = nil) throws {
        self.inner = inner
        self.directory = directory
        self.config = config
        let slash = directory.utf8.lastIndex(of: UInt8(ascii: "/"))
        let base = slash.map { String(directory[..<$0]) }.flatMap { $0.isEmpty ? "/" : $0 } ?? "."
        let leaf = Array(slash.map { directory.utf8[directory.utf8.index(after: $0)...] } ?? directory.utf8[...])
        guard !leaf.isEmpty, leaf != [0x2e], leaf != [0x2e, 0x2e] else {
            throw SystemError(errno: EINVAL, operation: "use as the cache directory", path: directory)
        }
        try Sys.mkdirs(Array(base.utf8), mode: 0o700)
        let baseFD = try Sys.openDirectory(in: nil, [], path: Array(base.utf8))
        defer { Sys.close(baseFD) }
        try Self.requireOwn(baseFD, base, fixMode: false)
        let dirFD = try Self.openFolder(in: baseFD, leaf, directory)
        defer { Sys.close(dirFD) }
        let index = try Self.openFolder(in: dirFD, Array("index".utf8), directory + "/index")
        let snapshots: Int32
        do { snapshots = try Self.openFolder(in: dirFD, Array("snapshots".utf8), directory + "/snapshots") } catch { Sys.close(index); throw error }
        do { blobsFD = try Self.openFolder(in: dirFD, Array("blobs".utf8), directory + "/blobs") } catch {
            Sys.close(index); Sys.close(snapshots); throw error
        }
        indexFD = index; snapshotsFD = snapshots
    }

    deinit { Sys.close(indexFD); Sys.close(snapshotsFD); Sys.close(blobsFD) }

    /// Folder `name` of `parent` (made 0700 if missing), opened without
    /// following a symlink, owned by us and made 0700.
    private static func openFolder(in parent: Int32, _ name: RawPath, _ path: String) throws -> Int32 {
        try Sys.mkdir(in: parent, name, mode: 0o700, path: path)
        let fd = try Sys.openDirectory(in: parent, name, path: Array(path.utf8))
        do { try requireOwn(fd, path, fixMode: true) } catch { Sys.close(fd); throw error }
        return fd
    }

    /// Refuses a directory another user owns, or (`fixMode` false) one that
    /// others may write; with `fixMode` our own is set to 0700.
    private static func requireOwn(_ fd: Int32, _ path: String, fixMode: Bool) throws {
        let st = try Sys.fstat(fd, path: path)
        guard st.mode & 0o170000 == 0o040000 else {
            throw SystemError(errno: ENOTDIR, operation: "use as the cache directory", path: path)
        }
        guard st.uid == geteuid() else {
            throw CacheRefused(path: path, why: "it is owned by uid \(st.uid), not by this user (uid \(geteuid()))")
        }
        if fixMode {
            if st.mode & 0o7777 != 0o700 { try Sys.fchmod(fd, mode: 0o700, path: path) }
        } else if st.mode & 0o022 != 0 {
            throw CacheRefused(path: path, why: "others may write in it (mode \(String(st.mode & 0o7777, radix: 8)))")
        }
    }

    /// A cache place not safe to use: someone else could redirect what is written or deleted there.
    public struct CacheRefused: Error, CustomStringConvertible {
        public let path: String, why: String
        public var description: String {
            "\(path) is not safe for a cache: \(why); use a directory of this user's that only it can write (\(CachedBackend.variableHint))"
        }
    }

    /// How the command layer lets a user choose the place (for messages).
    static let variableHint = "$ACCORD_CACHE_DIR, $XDG_CACHE_HOME or $HOME/.cache; or --no-cache"

    public var location: String { inner.location }
    public func describe(_ kind: ObjectKind, _ name: String) -> String { inner.describe(kind, name) }
    public func removeTemporaryFiles(olderThan age: Int64) { inner.removeTemporaryFiles(olderThan: age) }

    static func isCached(_ kind: ObjectKind) -> Bool { kind == .index || kind == .snapshot }

    private func path(_ kind: ObjectKind, _ name: String) -> String {
        directory + (kind == .index ? "/index/" : "/snapshots/") + name
    }

    private func folder(_ kind: ObjectKind) -> Int32 { kind == .index ? indexFD : snapshotsFD }

    public func list(_ kind: ObjectKind) throws -> [String] {
        let names = try inner.list(kind)
        guard Self.isCached(kind) else { return names }
        let listed = Set(names), fd = folder(kind), shown = directory + (kind == .index ? "/index/" : "/snapshots/")
        for raw in (try? Sys.listDirectory(fd: fd, path: Array(shown.utf8))) ?? [] {
            let name = String(validating: raw, as: UTF8.self)
            if let name, listed.contains(name) { continue }
            // Another process's temporary file is left alone until it is an hour old.
            if raw.starts(with: Array(".tmp-".utf8)), let st = try? Sys.lstat(in: fd, raw, path: raw), Int64(Date().timeIntervalSince1970) - st.mtimeSec < 3600 { continue }
            if let name { _ = lock.withLock { verified.remove(kind.rawValue + "/" + name) } }
            try? Sys.unlink(in: fd, raw, path: shown + String(decoding: raw, as: UTF8.self))
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
        let bytes: [UInt8]
        if kind == .config, offset >= 0, buffer.count > 0, let c = lock.withLock({ config }) {
            bytes = c   // read once already (`read(_:_:upTo:)` of the config comes here)
        } else {
            guard Self.isCached(kind), offset >= 0, buffer.count > 0 else { return try inner.read(kind, name, at: offset, into: buffer) }
            try kind.validate(name)
            if let fd = openVerified(kind, name) {
                defer { Sys.close(fd) }
                if let n = try? Sys.preadFully(fd, buffer.baseAddress!, buffer.count, offset) { return n }
            }
            bytes = try fetch(kind, name)
        }
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
        let dir = folder(kind)
        let tmp = Array((".tmp-" + hexString(Sys.randomBytes(8))).utf8)
        guard let fd = try? Sys.open(beneath: dir, tmp, Sys.O_WRONLY | Sys.O_CREAT | Sys.O_EXCL | Sys.O_NOFOLLOW, mode: 0o600, path: path(kind, ".tmp")) else { return }
        let written = (try? Sys.writeAll(fd, bytes)) != nil
        Sys.close(fd)
        if written, (try? Sys.rename(in: dir, tmp, to: dir, Array(name.utf8), path: path(kind, name))) != nil {
            _ = lock.withLock { verified.insert(kind.rawValue + "/" + name) }
        } else {
            try? Sys.unlink(in: dir, tmp, path: path(kind, ".tmp"))
        }
    }

    /// Deletes a cache file (missing is fine) and forgets it was verified.
    private func forget(_ kind: ObjectKind, _ name: String) {
        _ = lock.withLock { verified.remove(kind.rawValue + "/" + name) }
        try? Sys.unlink(in: folder(kind), Array(name.utf8), path: path(kind, name))
    }

    /// An open descriptor of the cache file, hashed first unless this process
    /// already did; nil if there is none or it was not what its name says
    /// (then it is deleted). Not a regular file, or too big: deleted too.
    private func openVerified(_ kind: ObjectKind, _ name: String) -> Int32? {
        // O_NONBLOCK: a FIFO put there must not hang the open (it is deleted below).
        guard let fd = try? Sys.open(beneath: folder(kind), Array(name.utf8), Sys.O_RDONLY | Sys.O_NOFOLLOW | O_NONBLOCK, path: path(kind, name)) else { return nil }
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

/// A local store of tree blobs' stored bytes by blob id, beside a remote
/// backend (`CachedBackend`): the repository reads a manifest piece or chunk
/// list from it before asking the backend for a range of its pack
/// (`Repository.readBlob`), and puts there what it read or wrote. Nothing in
/// it is trusted: the bytes are what the pack holds (compressed; sealed in an
/// encrypted repository, so no plaintext reaches the disk), and the reader
/// decodes and verifies them as it would the pack's (the id's hash, the seal);
/// bytes that fail are forgotten and the pack is read instead.
public protocol BlobCache: AnyObject, Sendable {
    /// The stored bytes kept for `id`, if there is a file of exactly `storedLength` bytes.
    func cachedBlob(_ id: BlobID, storedLength: Int) -> [UInt8]?
    /// Keeps `stored` as `id`'s stored bytes (any failure is silent: it only costs a read later).
    func cacheBlob(_ id: BlobID, _ stored: UnsafeRawBufferPointer)
    /// Whether a file for `id` of `storedLength` bytes is there (not read, not verified).
    func hasBlob(_ id: BlobID, storedLength: Int) -> Bool
    /// Drops `id`'s file (it did not verify).
    func forgetBlob(_ id: BlobID)
    /// Drops every file whose blob `keep` rejects (the index no longer has it), and any stray name.
    func retainBlobs(where keep: (BlobID) -> Bool)
}

extension CachedBackend: BlobCache {
    /// Largest stored blob kept (a tree blob is far smaller; a data blob is never offered).
    static let maxCachedBlob = 64 << 20

    private func blobPath(_ name: String) -> String { directory + "/blobs/" + name }

    public func cachedBlob(_ id: BlobID, storedLength: Int) -> [UInt8]? {
        guard storedLength > 0, storedLength <= Self.maxCachedBlob else { return nil }
        let name = id.hex
        // O_NONBLOCK: a FIFO put there must not hang the open.
        guard let fd = try? Sys.open(beneath: blobsFD, Array(name.utf8), Sys.O_RDONLY | Sys.O_NOFOLLOW | O_NONBLOCK, path: blobPath(name)) else { return nil }
        defer { Sys.close(fd) }
        guard let st = try? Sys.fstat(fd), st.mode & 0o170000 == 0o100000, Int(st.size) == storedLength else {
            forgetBlob(id)
            return nil
        }
        var bytes = [UInt8](repeating: 0, count: storedLength)
        let n = (try? bytes.withUnsafeMutableBytes { try Sys.preadFully(fd, $0.baseAddress!, $0.count, 0) }) ?? -1
        return n == storedLength ? bytes : nil
    }

    public func cacheBlob(_ id: BlobID, _ stored: UnsafeRawBufferPointer) {
        guard stored.count > 0, stored.count <= Self.maxCachedBlob else { return }
        let name = Array(id.hex.utf8)
        let tmp = Array((".tmp-" + hexString(Sys.randomBytes(8))).utf8)
        guard let fd = try? Sys.open(beneath: blobsFD, tmp, Sys.O_WRONLY | Sys.O_CREAT | Sys.O_EXCL | Sys.O_NOFOLLOW, mode: 0o600,
                                     path: blobPath(".tmp")) else { return }
        let written = (try? Sys.writeAll(fd, stored)) != nil
        Sys.close(fd)
        if !written || (try? Sys.rename(in: blobsFD, tmp, to: blobsFD, name, path: blobPath(id.hex))) == nil {
            try? Sys.unlink(in: blobsFD, tmp, path: blobPath(".tmp"))
        }
    }

    public func hasBlob(_ id: BlobID, storedLength: Int) -> Bool {
        guard let st = try? Sys.lstat(in: blobsFD, Array(id.hex.utf8), path: Array(blobPath(id.hex).utf8)) else { return false }
        return st.mode & 0o170000 == 0o100000 && Int(st.size) == storedLength
    }

    public func forgetBlob(_ id: BlobID) {
        try? Sys.unlink(in: blobsFD, Array(id.hex.utf8), path: blobPath(id.hex))
    }

    public func retainBlobs(where keep: (BlobID) -> Bool) {
        for raw in (try? Sys.listDirectory(fd: blobsFD, path: Array((directory + "/blobs").utf8))) ?? [] {
            if let name = String(validating: raw, as: UTF8.self), let id = BlobID(hex: name), id.hex == name, keep(id) { continue }
            // Another process's temporary file is left alone until it is an hour old.
            if raw.starts(with: Array(".tmp-".utf8)), let st = try? Sys.lstat(in: blobsFD, raw, path: raw),
               Int64(Date().timeIntervalSince1970) - st.mtimeSec < 3600 { continue }
            try? Sys.unlink(in: blobsFD, raw, path: blobPath(String(decoding: raw, as: UTF8.self)))
        }
    }
}
