// What every call of the syscall seam shares: the error it throws, raw byte
// paths and the stat fields Accord records.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

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
