import Foundation
import AccordRuntime

/// A repository's objects as files on a local filesystem (FORMAT.md,
/// "Layout"): writes go through `AtomicFile` (temporary file in `tmp/`,
/// fsync, rename, fsync of the directory), so the `Backend` contract holds
/// across crashes. Pack reads are `pread`s on descriptors kept open in a
/// small cache, so a restore or a backup's base reads do not reopen a pack
/// per blob.
///
/// `@unchecked Sendable`: the only mutable state, `packFDs`, `retiring` and
/// `fault` (set by `faultBeforeCommit`), is guarded by `fdLock`.
public final class LocalBackend: Backend, @unchecked Sendable {
    public let layout: RepositoryLayout
    public var location: String { layout.root }

    private let fdLock = NSLock()
    /// Open pack descriptors and how many reads use each right now: only
    /// unused ones are closed when the cache is full (others are mid-pread).
    /// Keyed by id, with the path made once at open: a read per blob builds no string.
    private var packFDs: [PackID: (fd: Int32, users: Int, path: String)] = [:]
    /// Descriptors of deleted packs still in use: closed by their last user, and
    /// out of `packFDs`, so a read after the delete fails as the pack is gone.
    private var retiring: [Int32: Int] = [:]
    static let maxCachedPackFDs = 256
    /// A test seam: runs in `write` after the data is durable in `tmp/`,
    /// before it takes its name; throwing plays a crash at that moment.
    private var fault: ((ObjectKind, String) throws -> Void)?

    public init(layout: RepositoryLayout) { self.layout = layout }

    deinit { for f in packFDs.values { Sys.close(f.fd) }; for fd in retiring.keys { Sys.close(fd) } }

    /// Sets (or clears) the fault `write` runs before an object takes its name.
    @_spi(Testing) public func faultBeforeCommit(_ f: ((ObjectKind, String) throws -> Void)?) { fdLock.withLock { fault = f } }

    /// The file of an object, its name checked first (`ObjectKind.validate`):
    /// no name reaches a path unchecked.
    public func path(_ kind: ObjectKind, _ name: String) throws -> String {
        try kind.validate(name)
        return filePath(kind, name)
    }

    /// The object's file for messages; a name that is not valid is shown
    /// beside the repository, never joined into a path.
    public func describe(_ kind: ObjectKind, _ name: String) -> String {
        (try? path(kind, name)) ?? "\(kind) \(name.debugDescription) in \(location)"
    }

    /// The file of an object whose name the caller has validated.
    private func filePath(_ kind: ObjectKind, _ name: String) -> String {
        switch kind {
        case .config: return layout.configPath
        case .key: return layout.root + "/keys/" + name
        case .pack: return layout.dataDirectory + "/" + String(name.prefix(2)) + "/" + name
        case .index: return layout.indexDirectory + "/" + name
        case .snapshot: return layout.snapshotDirectory + "/" + name
        case .lock: return layout.lockPath(name)
        case .marker: return layout.restoreMarkerPath
        }
    }

    public func list(_ kind: ObjectKind) throws -> [String] {
        switch kind {
        case .config: return (try? Sys.lstat(layout.configPath)) != nil ? ["config"] : []
        case .marker: return (try? Sys.lstat(layout.restoreMarkerPath)) != nil ? ["restore"] : []
        case .pack:
            var out: [String] = []
            for sub in try Sys.listDirectory(layout.dataDirectory) where sub.count == 2 {
                for name in try Sys.listDirectory(layout.dataDirectory + "/" + sub) where name.hasPrefix(sub) && (try? kind.validate(name)) != nil {
                    out.append(name)
                }
            }
            return out
        case .key, .index, .snapshot, .lock:
            let dir = AtomicFile.parent(of: filePath(kind, "x"))
            let names: [String]
            do { names = try Sys.listDirectory(dir) } catch let e as SystemError where e.isNotFound && kind == .key { return [] }
            return names.filter { (try? kind.validate($0)) != nil }
        }
    }

    public func size(_ kind: ObjectKind, _ name: String) throws -> Int64 {
        try kind.validate(name)
        do { return Int64(try Sys.stat(Array(filePath(kind, name).utf8)).size) } catch let e as SystemError where e.isNotFound {
            throw BackendError.notFound(kind, name, location: location)
        }
    }

    public func read(_ kind: ObjectKind, _ name: String) throws -> [UInt8] {
        try kind.validate(name)
        do { return try AtomicFile.read(filePath(kind, name)) } catch let e as SystemError where e.isNotFound {
            throw BackendError.notFound(kind, name, location: location)
        }
    }

    public func read(_ kind: ObjectKind, _ name: String, at offset: Int64, into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        try kind.validate(name)
        guard offset >= 0 else { throw SystemError(errno: EINVAL, operation: "pread", path: filePath(kind, name)) }
        if buffer.isEmpty { return 0 }
        if kind == .pack, let id = PackID(hex: name) {
            return try withPackFD(id) { fd, p in try Sys.preadFully(fd, buffer.baseAddress!, buffer.count, offset, path: p) }
        }
        let p = filePath(kind, name)
        let fd: Int32
        do { fd = try Sys.open(p, Sys.O_RDONLY) } catch let e as SystemError where e.isNotFound {
            throw BackendError.notFound(kind, name, location: location)
        }
        defer { Sys.close(fd) }
        return try Sys.preadFully(fd, buffer.baseAddress!, buffer.count, offset, path: p)
    }

    public func write(_ kind: ObjectKind, _ name: String, _ bytes: UnsafeRawBufferPointer) throws {
        try kind.validate(name)
        let p = filePath(kind, name)
        if kind == .pack || kind == .key {
            let dir = AtomicFile.parent(of: p)
            if try Sys.mkdir(dir, mode: 0o700) { try Sys.fsyncDirectory(AtomicFile.parent(of: dir)) }
        }
        let fault = fdLock.withLock { self.fault }
        try AtomicFile.write(bytes, to: p, tmpDirectory: layout.tmpDirectory, beforeRename: fault.map { f in { try f(kind, name) } })
    }

    public func delete(_ kind: ObjectKind, _ name: String) throws {
        try kind.validate(name)
        let p = filePath(kind, name)
        if kind == .pack, let id = PackID(hex: name) { dropPackFD(id) }
        do { try Sys.unlink(p) } catch let e as SystemError where e.isNotFound {
            throw BackendError.notFound(kind, name, location: location)
        }
        try Sys.fsyncDirectory(AtomicFile.parent(of: p))
    }

    // MARK: Pack descriptors

    /// Runs `body` with an open descriptor of pack `id` and its path, kept open meanwhile.
    func withPackFD<T>(_ id: PackID, _ body: (Int32, String) throws -> T) throws -> T {
        let (fd, p): (Int32, String) = try fdLock.withLock {
            if let f = packFDs[id] { packFDs[id] = (f.fd, f.users + 1, f.path); return (f.fd, f.path) }
            if packFDs.count >= Self.maxCachedPackFDs {
                for (pack, f) in packFDs where f.users == 0 { Sys.close(f.fd); packFDs[pack] = nil }
            }
            let p = layout.packPath(id)
            let fd: Int32
            do { fd = try Sys.open(p, Sys.O_RDONLY) } catch let e as SystemError where e.isNotFound {
                throw BackendError.notFound(.pack, id.hex, location: location)
            }
            packFDs[id] = (fd, 1, p)
            return (fd, p)
        }
        defer {
            fdLock.withLock {
                if let users = retiring[fd] {
                    if users <= 1 { Sys.close(fd); retiring[fd] = nil } else { retiring[fd] = users - 1 }
                } else if let f = packFDs[id], f.fd == fd {
                    packFDs[id] = (f.fd, f.users - 1, f.path)
                }
            }
        }
        return try body(fd, p)
    }

    /// Forgets a cached descriptor of a pack about to be deleted: closed now if
    /// unused, else by its last user (`retiring`).
    private func dropPackFD(_ id: PackID) {
        fdLock.withLock {
            guard let f = packFDs.removeValue(forKey: id) else { return }
            if f.users == 0 { Sys.close(f.fd) } else { retiring[f.fd] = f.users }
        }
    }
}

extension LocalBackend {
    /// Removes temporary files (of interrupted writes) older than `age`
    /// seconds from `tmp/`; younger ones may belong to a write or a lock
    /// being taken right now.
    public func removeTemporaryFiles(olderThan age: Int64) {
        let cutoff = Sys.now().sec - age
        for name in (try? Sys.listDirectory(layout.tmpDirectory)) ?? [] {
            let p = layout.tmpDirectory + "/" + name
            if let st = try? Sys.lstat(p), st.mtimeSec < cutoff { try? Sys.unlink(p) }
        }
    }
}
