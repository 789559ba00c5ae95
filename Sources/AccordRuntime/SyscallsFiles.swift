// Calls on paths: names, links, owners, modes, times and extended attributes.
// Thin like the rest of the seam (`Syscalls.swift`): failures are `SystemError`
// naming the call and the path.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CAccordSys

extension Sys {
    /// The corresponding C function is `rename`.
    public static func rename(_ from: String, _ to: String) throws {
        if Glibc.rename(from, to) != 0 { throw fail("rename", "\(from) -> \(to)") }
    }

    /// The corresponding C function is `unlink`.
    public static func unlink(_ path: String) throws {
        if Glibc.unlink(path) != 0 { throw fail("remove", path) }
    }

    public static func unlink(_ path: RawPath) throws {
        if withCPath(path, { Glibc.unlink($0) }) != 0 { throw fail("remove", path.displayPath) }
    }

    /// The corresponding C function is `rmdir`.
    public static func rmdir(_ path: RawPath) throws {
        if withCPath(path, { Glibc.rmdir($0) }) != 0 { throw fail("remove directory", path.displayPath) }
    }

    /// The corresponding C function is `mkdir`. Returns false if it already existed.
    @discardableResult
    public static func mkdir(_ path: RawPath, mode: UInt32) throws -> Bool {
        if withCPath(path, { Glibc.mkdir($0, mode_t(mode)) }) == 0 { return true }
        if Glibc.errno == EEXIST { return false }
        throw fail("create directory", path.displayPath)
    }

    @discardableResult
    public static func mkdir(_ path: String, mode: UInt32) throws -> Bool {
        try mkdir(Array(path.utf8), mode: mode)
    }

    /// Creates a directory and its missing parents with `mode`.
    /// One `mkdir` when the parent exists (a restore makes parents first);
    /// the parents are made only when that fails with ENOENT.
    public static func mkdirs(_ path: RawPath, mode: UInt32) throws {
        var end = path.count
        while end > 1 && path[end - 1] == UInt8(ascii: "/") { end -= 1 }
        let dir = end == path.count ? path : Array(path[..<end])
        if withCPath(dir, { Glibc.mkdir($0, mode_t(mode)) }) == 0 { return }
        switch Glibc.errno {
        case EEXIST:
            return   // a directory, or something else that the caller's next step names
        case ENOENT:
            guard let slash = dir.lastIndex(of: UInt8(ascii: "/")), slash > 0 else { break }
            try mkdirs(Array(dir[..<slash]), mode: mode)
            _ = try mkdir(dir, mode: mode)
            return
        default:
            break
        }
        throw fail("create directory", dir.displayPath)
    }

    /// The corresponding C function is `lstat`.
    public static func lstat(_ path: RawPath) throws -> FileStatus {
        var s = Glibc.stat()
        if withCPath(path, { Glibc.lstat($0, &s) }) != 0 { throw fail("stat", path.displayPath) }
        return FileStatus(s)
    }

    public static func lstat(_ path: String) throws -> FileStatus { try lstat(Array(path.utf8)) }

    /// `lstat` of `name` in the open directory `dir`: one path component to
    /// resolve instead of the whole path. `path` names it in errors.
    /// The corresponding C function is `fstatat` with `AT_SYMLINK_NOFOLLOW`.
    public static func lstat(in dir: Int32, _ name: RawPath, path: RawPath) throws -> FileStatus {
        var s = Glibc.stat()
        if withCPath(name, { fstatat(dir, $0, &s, AT_SYMLINK_NOFOLLOW) }) != 0 { throw fail("stat", path.displayPath) }
        return FileStatus(s)
    }

    /// Opens `name` in the open directory `dir` (or `path` itself when `dir` is nil)
    /// as a directory, never following a symlink. The C function is `openat`.
    public static func openDirectory(in dir: Int32?, _ name: RawPath, path: RawPath) throws -> Int32 {
        let flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC
        while true {
            let fd = withCPath(dir == nil ? path : name) { Glibc.openat(dir ?? AT_FDCWD, $0, flags) }
            if fd >= 0 { return fd }
            if Glibc.errno == EINTR { continue }
            throw fail("open directory", path.displayPath)
        }
    }

    /// The corresponding C function is `stat` (follows symlinks).
    public static func stat(_ path: RawPath) throws -> FileStatus {
        var s = Glibc.stat()
        if withCPath(path, { fstatat(AT_FDCWD, $0, &s, 0) }) != 0 { throw fail("stat", path.displayPath) }
        return FileStatus(s)
    }

    /// The corresponding C function is `fstat`.
    public static func fstat(_ fd: Int32, path: String = "") throws -> FileStatus {
        var s = Glibc.stat()
        if Glibc.fstat(fd, &s) != 0 { throw fail("stat", path) }
        return FileStatus(s)
    }

    /// The corresponding C function is `readlink`.
    public static func readlink(_ path: RawPath) throws -> RawPath {
        try readlink(in: AT_FDCWD, path, path: path)
    }

    /// `readlink` of `name` in the open directory `dir` (`path` names it in errors).
    /// The corresponding C function is `readlinkat`.
    public static func readlink(in dir: Int32, _ name: RawPath, path: RawPath) throws -> RawPath {
        var size = 256
        while true {
            var buffer = [UInt8](repeating: 0, count: size)
            let n = withCPath(name) { p in
                buffer.withUnsafeMutableBufferPointer { Glibc.readlinkat(dir, p, UnsafeMutableRawPointer($0.baseAddress!).assumingMemoryBound(to: CChar.self), size) }
            }
            if n < 0 { throw fail("read link", path.displayPath) }
            if n < size { return Array(buffer[0..<n]) }
            size *= 4
        }
    }

    /// The corresponding C function is `symlink`.
    public static func symlink(target: RawPath, at path: RawPath) throws {
        let r = withCPath(target) { t in withCPath(path) { Glibc.symlink(t, $0) } }
        if r != 0 { throw fail("create symlink", path.displayPath) }
    }

    /// The corresponding C function is `link`.
    public static func link(existing: RawPath, new: RawPath) throws {
        let r = withCPath(existing) { e in withCPath(new) { Glibc.link(e, $0) } }
        if r != 0 { throw fail("create hard link", new.displayPath) }
    }

    /// Changes owner without following symlinks. The corresponding C function is `lchown`.
    public static func lchown(_ path: RawPath, uid: UInt32, gid: UInt32) throws {
        if withCPath(path, { Glibc.lchown($0, uid_t(uid), gid_t(gid)) }) != 0 { throw fail("change owner of", path.displayPath) }
    }

    /// The corresponding C function is `chmod`.
    public static func chmod(_ path: RawPath, mode: UInt32) throws {
        if withCPath(path, { Glibc.chmod($0, mode_t(mode)) }) != 0 { throw fail("change mode of", path.displayPath) }
    }

    public static func fchmod(_ fd: Int32, mode: UInt32, path: String = "") throws {
        if Glibc.fchmod(fd, mode_t(mode)) != 0 { throw fail("change mode of", path) }
    }

    public static func fchown(_ fd: Int32, uid: UInt32, gid: UInt32, path: String = "") throws {
        if Glibc.fchown(fd, uid_t(uid), gid_t(gid)) != 0 { throw fail("change owner of", path) }
    }

    /// Sets atime and mtime of an open file (no path lookup).
    /// The corresponding C function is `futimens`.
    public static func setTimes(fd: Int32, mtimeSec: Int64, mtimeNsec: Int64, path: String = "") throws {
        var times = [timespec(tv_sec: Int(mtimeSec), tv_nsec: Int(mtimeNsec)),
                     timespec(tv_sec: Int(mtimeSec), tv_nsec: Int(mtimeNsec))]
        if Glibc.futimens(fd, &times) != 0 { throw fail("set times of", path) }
    }

    /// Sets access and modification time (ns) without following symlinks.
    /// The corresponding C function is `utimensat`.
    public static func setTimes(_ path: RawPath, mtimeSec: Int64, mtimeNsec: Int64) throws {
        var times = [timespec(tv_sec: Int(mtimeSec), tv_nsec: Int(mtimeNsec)),
                     timespec(tv_sec: Int(mtimeSec), tv_nsec: Int(mtimeNsec))]
        let r = withCPath(path) { Glibc.utimensat(AT_FDCWD, $0, &times, AT_SYMLINK_NOFOLLOW) }
        if r != 0 { throw fail("set times of", path.displayPath) }
    }

    /// Extended attributes of a path (not following symlinks). Filesystems without
    /// xattr support yield an empty list.
    public static func listXattrs(_ path: RawPath) throws -> [(name: RawPath, value: RawPath)] {
        let size = withCPath(path) { CAccordSys.llistxattr($0, nil, 0) }
        if size < 0 {
            if Glibc.errno == ENOTSUP || Glibc.errno == ENODATA { return [] }
            throw fail("list xattrs of", path.displayPath)
        }
        if size == 0 { return [] }
        var names = [UInt8](repeating: 0, count: size)
        let n = withCPath(path) { p in names.withUnsafeMutableBytes { CAccordSys.llistxattr(p, $0.baseAddress!.assumingMemoryBound(to: CChar.self), size) } }
        if n < 0 { return [] }
        var result: [(RawPath, RawPath)] = []
        for name in names[0..<n].split(separator: 0) {
            let nameBytes = Array(name)
            let vsize = withCPath(path) { p in withCPath(nameBytes) { CAccordSys.lgetxattr(p, $0, nil, 0) } }
            if vsize < 0 { continue }
            var value = [UInt8](repeating: 0, count: vsize)
            let vn = withCPath(path) { p in withCPath(nameBytes) { nm in value.withUnsafeMutableBytes { CAccordSys.lgetxattr(p, nm, $0.baseAddress, vsize) } } }
            if vn < 0 { continue }
            result.append((nameBytes, Array(value[0..<vn])))
        }
        return result.sorted { $0.0.lexicographicallyPrecedes($1.0) }
    }

    /// Sets one extended attribute (not following symlinks).
    public static func setXattr(_ path: RawPath, name: RawPath, value: RawPath) throws {
        let r = withCPath(path) { p in withCPath(name) { nm in value.withUnsafeBytes { CAccordSys.lsetxattr(p, nm, $0.baseAddress, value.count, 0) } } }
        if r != 0 { throw fail("set xattr on", path.displayPath) }
    }

    public static var processID: Int32 { Glibc.getpid() }
}
