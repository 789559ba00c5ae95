// The one seam between Accord and the C library. Every system call Accord makes
// passes through here: EINTR is retried inside, failures become `SystemError`
// naming the call and the path. Glibc is imported nowhere else in the core.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CAccordSys

/// A failed system call: which call, on which path, and the errno it returned.
public struct SystemError: Error, CustomStringConvertible, Equatable {
    public var errno: Int32
    public var operation: String
    public var path: String

    public init(errno: Int32, operation: String, path: String) {
        self.errno = errno
        self.operation = operation
        self.path = path
    }

    public var description: String {
        let reason = String(cString: strerror(errno))
        return path.isEmpty ? "\(operation): \(reason)" : "\(operation) \(path): \(reason)"
    }

    public var isNotFound: Bool { errno == ENOENT }
    public var isPermission: Bool { errno == EACCES || errno == EPERM }
    public var isNoSpace: Bool { errno == ENOSPC || errno == EDQUOT }
}

/// Paths on Linux are bytes. `RawPath` keeps them as bytes so names that are
/// not UTF-8 survive a backup and restore unchanged.
public typealias RawPath = [UInt8]

extension Array where Element == UInt8 {
    /// A printable rendering of a raw path (invalid UTF-8 is shown as U+FFFD);
    /// for messages only, never for system calls.
    public var displayPath: String { String(decoding: self, as: UTF8.self) }
}

@inline(__always)
func withCPath<R>(_ path: RawPath, _ body: (UnsafePointer<CChar>) throws -> R) rethrows -> R {
    var buffer = path
    buffer.append(0)
    return try buffer.withUnsafeBufferPointer { p in
        try p.withMemoryRebound(to: CChar.self) { try body($0.baseAddress!) }
    }
}

/// The stat fields Accord records.
public struct FileStatus: Equatable, Sendable {
    public var mode: UInt32        // st_mode: type and permission bits
    public var uid: UInt32
    public var gid: UInt32
    public var size: UInt64
    public var inode: UInt64
    public var device: UInt64
    public var nlink: UInt64
    public var mtimeSec: Int64
    public var mtimeNsec: Int64
    public var ctimeSec: Int64
    public var ctimeNsec: Int64
    public var blocks: Int64

    init(_ s: stat) {
        mode = UInt32(s.st_mode)
        uid = UInt32(s.st_uid)
        gid = UInt32(s.st_gid)
        size = UInt64(max(0, s.st_size))
        inode = UInt64(s.st_ino)
        device = UInt64(s.st_dev)
        nlink = UInt64(s.st_nlink)
        mtimeSec = Int64(s.st_mtim.tv_sec)
        mtimeNsec = Int64(s.st_mtim.tv_nsec)
        ctimeSec = Int64(s.st_ctim.tv_sec)
        ctimeNsec = Int64(s.st_ctim.tv_nsec)
        blocks = Int64(s.st_blocks)
    }

    public var fileType: UInt32 { mode & UInt32(S_IFMT) }
    public var isRegular: Bool { fileType == UInt32(S_IFREG) }
    public var isDirectory: Bool { fileType == UInt32(S_IFDIR) }
    public var isSymlink: Bool { fileType == UInt32(S_IFLNK) }
    public var permissions: UInt32 { mode & 0o7777 }
}

/// Thin wrappers over the C calls. Each throws `SystemError`; EINTR is retried.
public enum Sys {
    public static let O_RDONLY = Glibc.O_RDONLY
    public static let O_WRONLY = Glibc.O_WRONLY
    public static let O_RDWR = Glibc.O_RDWR
    public static let O_CREAT = Glibc.O_CREAT
    public static let O_EXCL = Glibc.O_EXCL
    public static let O_TRUNC = Glibc.O_TRUNC
    public static let O_APPEND = Glibc.O_APPEND
    public static let O_NOFOLLOW = Glibc.O_NOFOLLOW
    public static let O_DIRECTORY = Glibc.O_DIRECTORY
    public static let O_CLOEXEC = Glibc.O_CLOEXEC

    @inline(__always)
    static func fail(_ op: String, _ path: String) -> SystemError {
        SystemError(errno: Glibc.errno, operation: op, path: path)
    }

    /// The corresponding C function is `open`.
    public static func open(_ path: RawPath, _ flags: Int32, mode: UInt32 = 0o600) throws -> Int32 {
        while true {
            let fd = withCPath(path) { Glibc.open($0, flags | O_CLOEXEC, mode_t(mode)) }
            if fd >= 0 { return fd }
            if Glibc.errno == EINTR { continue }
            throw fail("open", path.displayPath)
        }
    }

    public static func open(_ path: String, _ flags: Int32, mode: UInt32 = 0o600) throws -> Int32 {
        try open(Array(path.utf8), flags, mode: mode)
    }

    /// The corresponding C function is `close`. Errors on close are ignored for
    /// read-only descriptors; writers call `fsync` first and check that.
    public static func close(_ fd: Int32) {
        _ = Glibc.close(fd)
    }

    /// Reads up to `count` bytes at `offset`. The corresponding C function is `pread`.
    public static func pread(_ fd: Int32, _ buffer: UnsafeMutableRawPointer, _ count: Int, _ offset: Int64, path: String = "") throws -> Int {
        while true {
            let n = Glibc.pread(fd, buffer, count, off_t(offset))
            if n >= 0 { return n }
            if Glibc.errno == EINTR { continue }
            throw fail("read", path)
        }
    }

    /// Reads exactly `count` bytes at `offset`, or throws (a short file is `EIO`-like: `.truncated`).
    public static func preadFully(_ fd: Int32, _ buffer: UnsafeMutableRawPointer, _ count: Int, _ offset: Int64, path: String = "") throws -> Int {
        var done = 0
        while done < count {
            let n = try pread(fd, buffer + done, count - done, offset + Int64(done), path: path)
            if n == 0 { break }
            done += n
        }
        return done
    }

    /// The corresponding C function is `read`.
    public static func read(_ fd: Int32, _ buffer: UnsafeMutableRawPointer, _ count: Int, path: String = "") throws -> Int {
        while true {
            let n = Glibc.read(fd, buffer, count)
            if n >= 0 { return n }
            if Glibc.errno == EINTR { continue }
            throw fail("read", path)
        }
    }

    /// Writes all bytes (looping over short writes). The corresponding C function is `write`.
    public static func writeAll(_ fd: Int32, _ buffer: UnsafeRawBufferPointer, path: String = "") throws {
        var done = 0
        while done < buffer.count {
            let n = Glibc.write(fd, buffer.baseAddress! + done, buffer.count - done)
            if n < 0 {
                if Glibc.errno == EINTR { continue }
                throw fail("write", path)
            }
            done += n
        }
    }

    public static func writeAll(_ fd: Int32, _ bytes: [UInt8], path: String = "") throws {
        try bytes.withUnsafeBytes { try writeAll(fd, $0, path: path) }
    }

    /// Writes all bytes at `offset`. The corresponding C function is `pwrite`.
    public static func pwriteAll(_ fd: Int32, _ buffer: UnsafeRawBufferPointer, _ offset: Int64, path: String = "") throws {
        var done = 0
        while done < buffer.count {
            let n = Glibc.pwrite(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset + Int64(done)))
            if n < 0 {
                if Glibc.errno == EINTR { continue }
                throw fail("write", path)
            }
            done += n
        }
    }

    /// The corresponding C function is `fsync`.
    public static func fsync(_ fd: Int32, path: String = "") throws {
        while Glibc.fsync(fd) != 0 {
            if Glibc.errno == EINTR { continue }
            // Some filesystems (e.g. pipes, special files) do not support fsync.
            if Glibc.errno == EINVAL || Glibc.errno == EROFS { return }
            throw fail("fsync", path)
        }
    }

    /// Flushes a directory so a rename or create in it is durable.
    public static func fsyncDirectory(_ path: String) throws {
        let fd = try open(path, O_RDONLY | O_DIRECTORY)
        defer { close(fd) }
        try fsync(fd, path: path)
    }

    /// The corresponding C function is `ftruncate`.
    public static func ftruncate(_ fd: Int32, _ size: Int64, path: String = "") throws {
        while Glibc.ftruncate(fd, off_t(size)) != 0 {
            if Glibc.errno == EINTR { continue }
            throw fail("truncate", path)
        }
    }

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

    /// Lists a directory's entry names (without "." and ".."), as bytes.
    public static func listDirectory(_ path: RawPath) throws -> [RawPath] {
        guard let dir = withCPath(path, { Glibc.opendir($0) }) else { throw fail("open directory", path.displayPath) }
        defer { Glibc.closedir(dir) }
        return try readNames(dir, path: path)
    }

    /// Lists the entry names of an open directory (`openDirectory`); `fd` stays open.
    public static func listDirectory(fd: Int32, path: RawPath) throws -> [RawPath] {
        let copy = Glibc.fcntl(fd, F_DUPFD_CLOEXEC, 0)   // not inherited by a command started meanwhile
        guard copy >= 0, let dir = Glibc.fdopendir(copy) else {
            let e = fail("read directory", path.displayPath)
            if copy >= 0 { _ = Glibc.close(copy) }
            throw e
        }
        defer { Glibc.closedir(dir) }
        return try readNames(dir, path: path)
    }

    private static func readNames(_ dir: OpaquePointer, path: RawPath) throws -> [RawPath] {
        var names: [RawPath] = []
        while true {
            Glibc.errno = 0
            guard let ent = Glibc.readdir(dir) else {
                if Glibc.errno != 0 { throw fail("read directory", path.displayPath) }
                break
            }
            let name: RawPath = withUnsafeBytes(of: ent.pointee.d_name) { raw in
                let len = strnlen(raw.baseAddress!.assumingMemoryBound(to: CChar.self), raw.count)
                return Array(raw[0..<len])
            }
            if name == [0x2e] || name == [0x2e, 0x2e] { continue }
            names.append(name)
        }
        return names
    }

    public static func listDirectory(_ path: String) throws -> [String] {
        try listDirectory(Array(path.utf8)).map { String(decoding: $0, as: UTF8.self) }
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

    /// True when a process with this pid exists on this host.
    public static func processExists(_ pid: Int32) -> Bool {
        if Glibc.kill(pid, 0) == 0 { return true }
        return Glibc.errno == EPERM
    }

    public static var hostname: String {
        var buffer = [CChar](repeating: 0, count: 256)
        Glibc.gethostname(&buffer, 255)
        return String(cString: buffer)
    }

    public static var userName: String {
        if let pw = Glibc.getpwuid(Glibc.geteuid()) { return String(cString: pw.pointee.pw_name) }
        return String(Glibc.geteuid())
    }

    public static var isRoot: Bool { Glibc.geteuid() == 0 }

    public static func currentDirectory() -> RawPath {
        var buffer = [CChar](repeating: 0, count: 4096)
        guard Glibc.getcwd(&buffer, 4096) != nil else { return [0x2f] }
        return buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
    }

    /// Waits until `fd` is readable or `seconds` pass. The corresponding C function is `poll`.
    public static func waitReadable(_ fd: Int32, seconds: Double) -> Bool { wait(fd, for: Int16(POLLIN), seconds: seconds) }

    /// Waits until `fd` can take more bytes (or has failed: the write then says
    /// why); false after `seconds` without room. The corresponding C function is `poll`.
    public static func waitWritable(_ fd: Int32, seconds: Double) -> Bool { wait(fd, for: Int16(POLLOUT), seconds: seconds) }

    /// `poll` on one descriptor until one of `events` (or an error) or the
    /// deadline; EINTR resumes with the time left.
    private static func wait(_ fd: Int32, for events: Int16, seconds: Double) -> Bool {
        var p = pollfd(fd: fd, events: events, revents: 0)
        let deadline = monotonicSeconds() + seconds
        while true {
            let left = Int32(max(0, (deadline - monotonicSeconds()) * 1000))
            let r = Glibc.poll(&p, 1, left)
            if r > 0 { return true }
            if r == 0 { return false }
            if Glibc.errno != EINTR { return true }
        }
    }

    public static func isTerminal(_ fd: Int32) -> Bool { Glibc.isatty(fd) == 1 }

    /// Wall clock in nanoseconds since the epoch.
    public static func now() -> (sec: Int64, nsec: Int64) {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return (Int64(ts.tv_sec), Int64(ts.tv_nsec))
    }

    /// Monotonic seconds, for rates and timeouts.
    public static func monotonicSeconds() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    /// Fills a buffer from the kernel's random source.
    public static func randomBytes(_ count: Int) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let n = bytes.withUnsafeMutableBytes { CAccordSys.getrandom($0.baseAddress! + done, count - done, 0) }
            if n <= 0 { continue }
            done += n
        }
        return bytes
    }

    public static func writeStderr(_ s: String) {
        var s = s
        s.withUTF8 { buf in
            var done = 0
            while done < buf.count {
                let n = Glibc.write(2, buf.baseAddress! + done, buf.count - done)
                if n <= 0 { if Glibc.errno == EINTR { continue }; return }
                done += n
            }
        }
    }

    public static func writeStdout(_ bytes: UnsafeRawBufferPointer) throws {
        try writeAll(1, bytes, path: "standard output")
    }

    /// Shell-style pattern match. The corresponding C function is `fnmatch`.
    public static func fnmatch(_ pattern: String, _ name: RawPath, pathname: Bool = false) -> Bool {
        withCPath(name) { Glibc.fnmatch(pattern, $0, pathname ? FNM_PATHNAME : 0) == 0 }
    }

    /// Keeps large buffers (chunks up to 8 MiB) on the heap instead of fresh
    /// mmap'd pages, which the kernel must zero on every allocation.
    public static func tuneMalloc() {
        _ = CAccordSys.mallopt(M_MMAP_THRESHOLD, 64 << 20)
        _ = CAccordSys.mallopt(M_TRIM_THRESHOLD, 128 << 20)
        // One arena per thread keeps each thread's freed chunk buffers apart:
        // two arenas cut peak RSS by ~30 MiB on a backup, at no measured cost.
        _ = CAccordSys.mallopt(M_ARENA_MAX, 2)
    }

    public static func umask(_ mask: UInt32) { _ = Glibc.umask(mode_t(mask)) }

    public static func environment(_ name: String) -> String? {
        guard let v = Glibc.getenv(name) else { return nil }
        return String(cString: v)
    }
}

/// A mutex with two condition variables (pthread), for queues whose
/// producers and consumers wait on different conditions.
public final class Monitor: @unchecked Sendable {
    public static let notEmpty = 0
    public static let notFull = 1
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let conds = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 2)

    public init() {
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(conds, nil)
        pthread_cond_init(conds + 1, nil)
    }

    deinit {
        pthread_cond_destroy(conds); pthread_cond_destroy(conds + 1); pthread_mutex_destroy(mutex)
        conds.deallocate(); mutex.deallocate()
    }

    public func lock() { pthread_mutex_lock(mutex) }
    public func unlock() { pthread_mutex_unlock(mutex) }
    public func wait(_ c: Int) { pthread_cond_wait(conds + c, mutex) }
    public func signal(_ c: Int) { pthread_cond_signal(conds + c) }
    public func broadcast(_ c: Int) { pthread_cond_broadcast(conds + c) }
}
