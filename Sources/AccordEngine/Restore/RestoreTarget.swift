import Foundation
import AccordCore
import AccordRuntime
#if canImport(Glibc)
import Glibc
#endif

/// The directory a restore writes into, held open for the whole restore.
///
/// The target's own path is the admin's choice, so symlinks in it are
/// followed once, when it is opened. Beneath it nothing is: every entry is
/// created, opened, removed and given its metadata relative to this
/// descriptor or to a parent directory opened beneath it
/// (`Sys.open(beneath:)`: no `..` out, no symlink in any component), with
/// `mkdirat`/`symlinkat`/`linkat`/`unlinkat` on the parent and
/// `fchown`/`fchmod`/`futimens`/`fsetxattr` on a descriptor (for a symlink,
/// the `AT_SYMLINK_NOFOLLOW` forms and no mode). A symlink a snapshot made,
/// or one planted in the target beforehand, is therefore never gone
/// through: a path below one fails (`RestoreError.symlinkInPath`), and an
/// entry in its place replaces it. Paths here are relative to the target
/// (empty: the target itself) and canonical (`RestorePath.relative`).
/// Immutable, so the restore threads share it.
final class RestoreTarget: Sendable {
    let fd: Int32
    /// The target as given, for messages.
    let path: RawPath
    /// `RestoreOptions.beforeReplacing`, passed before anything that was in
    /// the target is first removed or replaced.
    let gate: ReplaceGate?

    /// Refuses a target that exists and is not a directory (followed if a symlink).
    static func check(_ path: RawPath) throws {
        do {
            guard try Sys.stat(path).isDirectory else { throw RestoreError.targetNotDirectory(path.displayPath) }
        } catch let e as SystemError where e.isNotFound {
            return
        }
    }

    /// Opens the target, creating it (and missing parents) with mode 0700 if absent.
    init(opening path: RawPath, beforeReplacing: (@Sendable () throws -> Void)? = nil) throws {
        gate = beforeReplacing.map(ReplaceGate.init)
        try Self.check(path)
        if (try? Sys.stat(path)) == nil { try Sys.mkdirs(path, mode: 0o700) }
        do { fd = try Sys.open(path, Sys.O_RDONLY | Sys.O_DIRECTORY) } catch let e as SystemError where e.errno == ENOTDIR {
            throw RestoreError.targetNotDirectory(path.displayPath)
        }
        var p = path
        while p.count > 1 && p.last == 0x2f { p.removeLast() }
        self.path = p
    }

    /// No target: for a `RestoreFileWriter` that only plans (`makeJobs`); every call fails with EBADF.
    init(unopened path: RawPath) {
        fd = -1
        self.path = path
        gate = nil
    }

    deinit { if fd >= 0 { Sys.close(fd) } }

    /// The full path of `relative`, for messages.
    func display(_ relative: RawPath) -> String {
        if relative.isEmpty { return path.displayPath }
        return (path == [0x2f] ? path + relative : path + [0x2f] + relative).displayPath
    }

    /// A clearer error for a refused resolution.
    func explain(_ error: Error, _ relative: RawPath) -> Error {
        guard let e = error as? SystemError else { return error }
        if e.errno == ELOOP { return RestoreError.symlinkInPath(display(relative)) }
        if e.errno == EXDEV { return RestoreError.outsideTarget(display(relative)) }
        return error
    }

    /// Opens an existing file or directory beneath the target.
    func open(_ relative: RawPath, _ flags: Int32) throws -> Int32 {
        do { return try Sys.open(beneath: fd, relative, flags, path: display(relative)) } catch { throw explain(error, relative) }
    }

    /// Creates a new file (replacing whatever was at its path, making missing
    /// parents 0700) and returns its descriptor, open for writing.
    func createFile(_ relative: RawPath) throws -> Int32 {
        // Into a fresh tree the file is new and its directory exists: one
        // call. Otherwise make room first (parents, an old entry) and retry.
        let flags = Sys.O_WRONLY | Sys.O_CREAT | Sys.O_EXCL
        do { return try Sys.open(beneath: fd, relative, flags, mode: 0o600, path: display(relative)) } catch let e as SystemError
            where e.errno == EEXIST || e.errno == ENOENT || e.errno == ELOOP {
            return try inParent(relative, making: true) { dir, name in
                try removeEntry(in: dir, name, relative)
                return try Sys.open(beneath: dir, name, flags, mode: 0o600, path: display(relative))
            }
        } catch {
            throw explain(error, relative)
        }
    }

    /// The directory a thread last created a file in, held open (`O_PATH`,
    /// opened beneath the target like any entry) so that its siblings, which
    /// mostly follow, are created by their name alone: the kernel walks
    /// "name", not "a/b/c/name", from a descriptor that is just as confined.
    /// Owned by one thread; `close` it when done.
    struct Parent {
        fileprivate var path: RawPath = []
        fileprivate var fd: Int32 = -1
        mutating func close() {
            if fd >= 0 { Sys.close(fd) }
            fd = -1
        }
    }

    /// `createFile(relative)`, from `parent`'s directory when the file lies
    /// in it (opened now and kept in `parent` otherwise). Only a new file in
    /// an existing directory goes this way; anything else (a name in use, a
    /// missing directory, a symlink on the way) takes `createFile(relative)`,
    /// which makes room or refuses exactly as without `parent`.
    func createFile(_ relative: RawPath, near parent: inout Parent) throws -> Int32 {
        guard let slash = relative.lastIndex(of: 0x2f) else { return try createFile(relative) }
        if parent.fd < 0 || parent.path.count != slash || !relative.starts(with: parent.path) {
            parent.close()
            let dir = Array(relative[..<slash])
            guard let d = try? Sys.open(beneath: fd, dir, Sys.O_PATH | Sys.O_DIRECTORY, path: "") else { return try createFile(relative) }
            parent = Parent(path: dir, fd: d)
        }
        let flags = Sys.O_WRONLY | Sys.O_CREAT | Sys.O_EXCL
        do { return try Sys.open(beneath: parent.fd, Array(relative[(slash + 1)...]), flags, mode: 0o600, path: display(relative)) } catch let e as SystemError
            where e.errno == EEXIST || e.errno == ENOENT || e.errno == ELOOP {
            parent.close()
            return try createFile(relative)
        } catch {
            throw explain(error, relative)
        }
    }

    /// Makes a directory with `mode` (missing parents too). An existing
    /// directory stays, a file of that name is replaced; a symlink is left
    /// alone and refused (it may be the admin's own, as /opt -> /data/opt:
    /// an in-place restore must not swap it for an empty directory), so
    /// nothing below it is restored. The target itself always exists.
    func makeDirectory(_ relative: RawPath, mode: UInt32) throws {
        if relative.isEmpty { return }
        try inParent(relative, making: true) { dir, name in
            if try Sys.mkdir(in: dir, name, mode: mode, path: display(relative)) { return }
            let st = try Sys.lstat(in: dir, name, path: Array(display(relative).utf8))
            if st.isDirectory { return }
            if st.isSymlink { throw RestoreError.symlinkInPlaceOfDirectory(display(relative)) }
            try gate?.pass()
            try Sys.unlink(in: dir, name, path: display(relative))
            try Sys.mkdir(in: dir, name, mode: mode, path: display(relative))
        }
    }

    /// Creates a symlink (replacing whatever was at its path) and gives it
    /// owner (as root), xattrs and times; a symlink has no mode of its own.
    func makeSymlink(_ relative: RawPath, _ e: ManifestEntry, setOwner: Bool) throws {
        guard !relative.isEmpty else { throw RestoreError.rootNotDirectory(display(relative), kind: "a symlink") }
        func shown() -> String { display(relative) }   // for errors only
        try inParent(relative, making: true) { dir, name in
            do { try Sys.symlink(target: e.linkTarget, in: dir, name, path: shown()) } catch let err as SystemError where err.errno == EEXIST {
                try removeEntry(in: dir, name, relative)
                try Sys.symlink(target: e.linkTarget, in: dir, name, path: shown())
            }
            if setOwner { try Sys.lchown(in: dir, name, uid: e.uid, gid: e.gid, path: shown()) }
            for x in e.xattrs { try? Sys.setXattr(in: dir, name, attribute: x.name, value: x.value, path: shown()) }
            try Sys.setTimes(in: dir, name, mtimeSec: e.mtimeSec, mtimeNsec: e.mtimeNsec, path: shown())
        }
    }

    /// Makes `relative` a further name of the regular file `existing` (both
    /// beneath the target), replacing whatever was at `relative`.
    func makeHardLink(_ relative: RawPath, to existing: RawPath) throws {
        guard !relative.isEmpty else { throw RestoreError.rootNotDirectory(display(relative), kind: "a hard link") }
        func shown() -> String { display(relative) }   // for errors only
        try inParent(existing, making: false) { oldDir, oldName in
            guard try Sys.lstat(in: oldDir, oldName, path: Array(display(existing).utf8)).isRegular else {
                throw RestoreError.hardlinkTargetNotRestored(shown(), target: display(existing))
            }
            try inParent(relative, making: true) { newDir, newName in
                do { try Sys.link(in: oldDir, oldName, to: newDir, newName, path: shown()) } catch let err as SystemError where err.errno == EEXIST {
                    try removeEntry(in: newDir, newName, relative)
                    try Sys.link(in: oldDir, oldName, to: newDir, newName, path: shown())
                }
            }
        }
    }

    /// Removes a file this restore made (a failed one).
    func remove(_ relative: RawPath) throws {
        guard !relative.isEmpty else { return }
        try inParent(relative, making: false) { dir, name in try Sys.unlink(in: dir, name, path: display(relative)) }
    }

    /// Owner (as root), xattrs, mode and times of a directory (the target itself when `relative` is empty).
    func setDirectoryMetadata(_ relative: RawPath, _ e: ManifestEntry, setOwner: Bool) throws {
        let d = try open(relative, Sys.O_RDONLY | Sys.O_DIRECTORY)
        defer { Sys.close(d) }
        do {
            if setOwner { try Sys.fchown(d, uid: e.uid, gid: e.gid) }
            for x in e.xattrs { try? Sys.setXattr(fd: d, name: x.name, value: x.value, path: "") }
            try Sys.fchmod(d, mode: e.mode)
            try Sys.setTimes(fd: d, mtimeSec: e.mtimeSec, mtimeNsec: e.mtimeNsec)
        } catch var error as SystemError {
            error.path = display(relative)   // named only for an error
            throw error
        }
    }

    /// Removes whatever is at `name` in `dir` (an empty directory too); nothing there is fine.
    private func removeEntry(in dir: Int32, _ name: RawPath, _ relative: RawPath) throws {
        if let gate, (try? Sys.lstat(in: dir, name, path: [])) != nil { try gate.pass() }
        do { try Sys.unlink(in: dir, name, path: display(relative)) } catch let e as SystemError {
            if e.isNotFound { return }
            guard e.errno == EISDIR else { throw e }
            try Sys.unlink(in: dir, name, directory: true, path: display(relative))
        }
    }

    /// Calls `body` with the parent directory of `relative` (opened beneath
    /// the target; with `making`, made 0700 where missing) and its last name.
    private func inParent<R>(_ relative: RawPath, making: Bool, _ body: (Int32, RawPath) throws -> R) throws -> R {
        let (parent, name) = RestorePath.split(relative)
        let dir = try openDirectory(parent, making: making)
        defer { if dir != fd { Sys.close(dir) } }
        do { return try body(dir, name) } catch { throw explain(error, relative) }
    }

    /// A descriptor of directory `relative` (the target's own for ""), for resolving from.
    private func openDirectory(_ relative: RawPath, making: Bool) throws -> Int32 {
        if relative.isEmpty { return fd }
        do {
            return try Sys.open(beneath: fd, relative, Sys.O_PATH | Sys.O_DIRECTORY, path: display(relative))
        } catch let e as SystemError where making && e.isNotFound {
            let (parent, name) = RestorePath.split(relative)
            let up = try openDirectory(parent, making: true)
            defer { if up != fd { Sys.close(up) } }
            try Sys.mkdir(in: up, name, mode: 0o700, path: display(relative))
            do { return try Sys.open(beneath: up, name, Sys.O_PATH | Sys.O_DIRECTORY, path: display(relative)) } catch { throw explain(error, relative) }
        } catch {
            throw explain(error, relative)
        }
    }
}

/// Snapshot paths as restore places them.
enum RestorePath {
    /// Whether `p` is absolute and canonical: "/" alone, or "/a/b" with no
    /// empty, "." or ".." component, no NUL and no trailing slash.
    static func isCanonical(_ p: RawPath) -> Bool {
        ManifestEntry.canonicalPathProblem(p) == nil
    }

    /// `p` relative to `root` (both canonical): "" for `root` itself, nil when `p` is not at or below it.
    static func relative(_ p: RawPath, to root: RawPath) -> RawPath? {
        if root == [0x2f] { return Array(p.dropFirst()) }
        guard ManifestEntry.isWithin(p, root) else { return nil }
        return p.count == root.count ? [] : Array(p[(root.count + 1)...])
    }

    /// Parent (relative, "" for the top) and last name of a non-empty relative path.
    static func split(_ relative: RawPath) -> (parent: RawPath, name: RawPath) {
        guard let slash = relative.lastIndex(of: 0x2f) else { return ([], relative) }
        return (Array(relative[..<slash]), Array(relative[(slash + 1)...]))
    }
}

/// `RestoreOptions.beforeReplacing`, run once: the first thread to get here
/// runs it, the others wait for it; a failure is thrown, as
/// `RestoreError.replaceRefused`, to every later caller (and stops the restore).
/// `@unchecked Sendable`: `check` is used under `lock` only, `refused` under
/// `refusedLock` (a lock of its own: `lock` is held while the check runs).
final class ReplaceGate: @unchecked Sendable {
    private let lock = NSLock()
    private var check: (@Sendable () throws -> Void)?
    private let refusedLock = NSLock()
    private var refused: (any Error)?

    init(_ check: @escaping @Sendable () throws -> Void) { self.check = check }

    func pass() throws {
        lock.lock(); defer { lock.unlock() }
        if let refusal { throw refusal }
        guard let c = check else { return }
        do { try c(); check = nil } catch {
            let e = RestoreError.replaceRefused(error)
            refusedLock.withLock { refused = e }
            throw e
        }
    }

    /// The refusal, once the check has failed (never waits for a check in progress).
    var refusal: (any Error)? { refusedLock.withLock { refused } }
}
