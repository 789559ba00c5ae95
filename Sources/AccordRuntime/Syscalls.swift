// The one seam between Accord and the C library. Every system call Accord makes
// passes through here: EINTR is retried inside, failures become `SystemError`
// naming the call and the path. Glibc is imported nowhere else in the core.
// This file: descriptors (open, read, write, sync, truncate, poll); the rest
// of `Sys` is in SyscallsFiles, SyscallsDirectories, SyscallsAt (beneath a
// directory descriptor) and SyscallsProcess; the shared types in SystemError.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

// Why our own wrappers and not swift-system's `FileDescriptor`/`FilePath`/`Errno`:
// every failure must name the call and the path (`SystemError`), which `Errno`
// alone does not carry; paths are raw bytes passed straight to C (a `FilePath`
// would copy each into its own storage, on the backup's per-file stat path);
// and most of what Accord calls (openat2 with RESOLVE_BENEATH, the *at calls,
// xattrs, fsync, poll, utimensat) has no swift-system counterpart.

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
}
