// The one scratch directory, tree builder and tree comparer of the test
// targets: directories made and removed over raw (byte) paths through `Sys`,
// trees built with raw names, and a listing that compares two trees
// attribute by attribute, as much of them as a suite's restore reproduces
// (`TreeListOptions`).
import Foundation
import AccordRuntime
import XCTest
import AccordCore
#if canImport(Glibc)
import Glibc
#endif

// MARK: Paths

extension Array where Element == UInt8 {
    /// `self + "/" + name`.
    public func appending(_ name: String) -> RawPath { self + [0x2f] + Array(name.utf8) }
    public func appending(raw name: RawPath) -> RawPath { self + [0x2f] + name }
    public var string: String { String(decoding: self, as: UTF8.self) }
}

/// A directory under /tmp, mode 0755 whatever the umask (the ssh test users
/// and `setpriv` children reach files in it), removed by `remove()` also when
/// it holds mode-000 directories or names that are not UTF-8. The path stays
/// short: pg-start.sh puts a unix socket below it, and sun_path holds 107 bytes.
public final class ScratchDirectory {
    public let path: String
    public var raw: RawPath { Array(path.utf8) }

    public init(_ label: String) throws {
        path = "/tmp/accord-\(label)-" + hexString(Sys.randomBytes(5))
        try Sys.mkdir(path, mode: 0o755)
        try Sys.chmod(raw, mode: 0o755)
    }

    public func sub(_ name: String) -> String { path + "/" + name }

    public func remove() { removeTree(raw) }
}

/// `rm -rf` over raw paths (directories made writable first).
public func removeTree(_ path: RawPath) {
    guard let st = try? Sys.lstat(path) else { return }
    if st.isDirectory {
        try? Sys.chmod(path, mode: 0o700)
        for name in (try? Sys.listDirectory(path)) ?? [] { removeTree(path.appending(raw: name)) }
        try? Sys.rmdir(path)
    } else {
        try? Sys.unlink(path)
    }
}

// MARK: Building trees

public enum TreeBuilder {
    public static func mkdir(_ path: RawPath, mode: UInt32 = 0o755) throws {
        try Sys.mkdir(path, mode: 0o755)
        try Sys.chmod(path, mode: mode)
    }

    public static func write(_ path: RawPath, _ bytes: [UInt8], mode: UInt32 = 0o644) throws {
        let fd = try Sys.open(path, Sys.O_WRONLY | Sys.O_CREAT | Sys.O_TRUNC, mode: 0o600)
        defer { Sys.close(fd) }
        try Sys.writeAll(fd, bytes, path: path.string)
        try Sys.fchmod(fd, mode: mode, path: path.string)
    }

    /// A file of `size` bytes that is all hole except `pieces` (offset, bytes).
    public static func writeSparse(_ path: RawPath, size: Int64, pieces: [(Int64, [UInt8])]) throws {
        let fd = try Sys.open(path, Sys.O_WRONLY | Sys.O_CREAT | Sys.O_TRUNC, mode: 0o644)
        defer { Sys.close(fd) }
        try Sys.ftruncate(fd, size, path: path.string)
        for (offset, bytes) in pieces {
            try bytes.withUnsafeBytes { try Sys.pwriteAll(fd, $0, offset, path: path.string) }
        }
    }

    public static func read(_ path: RawPath) throws -> [UInt8] {
        let fd = try Sys.open(path, Sys.O_RDONLY)
        defer { Sys.close(fd) }
        let size = Int(try Sys.fstat(fd, path: path.string).size)
        var out = [UInt8](repeating: 0, count: size)
        let n = try out.withUnsafeMutableBytes { try Sys.preadFully(fd, $0.baseAddress!, size, 0, path: path.string) }
        if n < size { out.removeLast(size - n) }
        return out
    }

    /// SHA-256 of a file's content, streamed (a raw digest: a whole file is no repository object).
    public static func hash(_ path: RawPath) throws -> ID {
        let fd = try Sys.open(path, Sys.O_RDONLY)
        defer { Sys.close(fd) }
        let hasher = SHA256Hasher()
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let n = try buffer.withUnsafeMutableBytes { try Sys.read(fd, $0.baseAddress!, $0.count, path: path.string) }
            if n == 0 { return hasher.finalize() }
            buffer.withUnsafeBytes { hasher.update(data: UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
        }
    }

    public static func mkfifo(_ path: RawPath) throws {
        var c = path; c.append(0)
        let r = c.withUnsafeBufferPointer { $0.withMemoryRebound(to: CChar.self) { Glibc.mkfifo($0.baseAddress!, 0o644) } }
        if r != 0 { throw SystemError(errno: errno, operation: "mkfifo", path: path.string) }
    }

    /// Binds a unix socket at `path` and closes it: the socket file stays.
    public static func makeSocket(_ path: String) throws {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw SystemError(errno: errno, operation: "socket", path: path) }
        defer { close(fd) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else {
            throw SystemError(errno: ENAMETOOLONG, operation: "bind", path: path)
        }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
            raw[bytes.count] = 0
        }
        let r = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        if r != 0 { throw SystemError(errno: errno, operation: "bind", path: path) }
    }
}

// MARK: Comparing trees

/// Everything a restore must reproduce about one path.
public struct NodeInfo: Equatable, CustomStringConvertible {
    public var type: String
    public var permissions: UInt32
    public var uid: UInt32
    public var gid: UInt32
    public var size: UInt64
    public var mtimeSec: Int64
    public var mtimeNsec: Int64
    public var linkTarget: RawPath?
    public var contentID: ID?
    /// Regular files: the link count, and the first path (tree order) of the
    /// same inode, so two trees agree on which names share an inode.
    public var nlink: UInt64?
    public var hardlinkGroup: RawPath?
    /// Only `user.*` attributes (security.* ones depend on the host).
    public var userXattrs: [String]

    public var description: String {
        var s = "\(type) \(String(permissions, radix: 8)) \(uid):\(gid) size \(size) mtime \(mtimeSec).\(mtimeNsec)"
        if let t = linkTarget { s += " -> \(t.string)" }
        if let c = contentID { s += " content \(c.short)" }
        if let n = nlink { s += " nlink \(n)" }
        if let g = hardlinkGroup { s += " same inode as \(g.string)" }
        if !userXattrs.isEmpty { s += " xattrs \(userXattrs)" }
        return s
    }
}


/// What a listing records. A suite compares what its restores reproduce:
/// everything (the engine's round trips), or less where the suite never
/// asserted more (the options keep each suite's assertions as they were).
public struct TreeListOptions: Sendable {
    /// uid and gid.
    public var ownership = true
    /// `user.*` extended attributes.
    public var extendedAttributes = true
    /// Regular files' link count and which names share an inode.
    public var hardLinks = true
    /// Directories' mtimes (a restore that recreates directories changes their parents').
    public var directoryMtimes = true
    /// Nanoseconds of mtimes (else seconds only).
    public var mtimeNanoseconds = true
    /// Permissions, owner and mtime of symlinks and special files (else their type and target only).
    public var linkAndSpecialMetadata = true
    /// The root itself is listed (under the key "").
    public var includeRoot = true

    public init() {}

    /// Every attribute a restore reproduces.
    public static let everything = TreeListOptions()
    /// Type, permissions, size, content, mtimes to the nanosecond; symlinks by target only (the fault suite).
    public static let modesTimesAndContent: TreeListOptions = {
        var o = TreeListOptions()
        o.ownership = false; o.extendedAttributes = false; o.hardLinks = false; o.linkAndSpecialMetadata = false
        return o
    }()
    /// As `modesTimesAndContent`, but mtimes to the second, directories' not compared, symlinks' compared (the sync suite).
    public static let fileSeconds: TreeListOptions = {
        var o = modesTimesAndContent
        o.mtimeNanoseconds = false; o.directoryMtimes = false; o.linkAndSpecialMetadata = true
        return o
    }()
    /// As `modesTimesAndContent`, without the root and directories' mtimes (the plan suite's storage trees).
    public static let storage: TreeListOptions = {
        var o = modesTimesAndContent
        o.directoryMtimes = false; o.includeRoot = false
        return o
    }()
}

/// A tree's listing: relative raw path ("" is the root itself) → what it is.
public typealias TreeListing = [RawPath: NodeInfo]

public func listTree(_ root: String, _ options: TreeListOptions = .everything) throws -> TreeListing {
    try listTree(Array(root.utf8), options)
}

/// Lists a tree: relative raw path ("" is the root itself) → what it is.
public func listTree(_ root: RawPath, _ options: TreeListOptions = .everything) throws -> TreeListing {
    var out: TreeListing = [:]
    var inodes: [UInt64: [RawPath]] = [:]
    func visit(_ rel: RawPath) throws {
        let path = rel.isEmpty ? root : root + [0x2f] + rel
        let st = try Sys.lstat(path)
        var info = NodeInfo(type: "other", permissions: st.permissions, uid: st.uid, gid: st.gid, size: 0,
                            mtimeSec: st.mtimeSec, mtimeNsec: st.mtimeNsec, userXattrs: [])
        if options.extendedAttributes {
            info.userXattrs = ((try? Sys.listXattrs(path)) ?? [])
                .filter { $0.name.starts(with: Array("user.".utf8)) }
                .map { $0.name.string + "=" + hexString($0.value) }
        }
        if st.isDirectory {
            info.type = "directory"
            if !options.directoryMtimes { (info.mtimeSec, info.mtimeNsec) = (0, 0) }
            if !rel.isEmpty || options.includeRoot { out[rel] = mask(info, options) }
            for name in try Sys.listDirectory(path) { try visit(rel.isEmpty ? name : rel + [0x2f] + name) }
            return
        } else if st.isSymlink {
            info.type = "symlink"
            info.linkTarget = try Sys.readlink(path)
        } else if st.isRegular {
            info.type = "file"
            info.size = st.size
            info.contentID = try TreeBuilder.hash(path)
            info.nlink = st.nlink
            if st.nlink > 1 { inodes[st.inode, default: []].append(rel) }
        }
        if !st.isRegular && !options.linkAndSpecialMetadata {
            (info.permissions, info.mtimeSec, info.mtimeNsec, info.uid, info.gid) = (0, 0, 0, 0, 0)
        }
        out[rel] = mask(info, options)
    }
    try visit([])
    if options.hardLinks {
        for (_, names) in inodes {
            let first = names.min(by: ManifestEntry.treeOrder)!
            for n in names { out[n]!.hardlinkGroup = first }
        }
    }
    return out
}

/// Clears what `options` leaves out.
private func mask(_ info: NodeInfo, _ options: TreeListOptions) -> NodeInfo {
    var i = info
    if !options.ownership { (i.uid, i.gid) = (0, 0) }
    if !options.hardLinks { i.nlink = nil }
    if !options.mtimeNanoseconds { i.mtimeNsec = 0 }
    return i
}

/// Fails once per path that differs (at most 20 paths), naming it and both descriptions.
public func assertSameTree(_ expected: TreeListing, _ actual: TreeListing, _ what: String = "the restored tree",
                           file: StaticString = #filePath, line: UInt = #line) {
    var failures = 0
    for key in Set(expected.keys).union(actual.keys).sorted(by: ManifestEntry.treeOrder) {
        let name = key.isEmpty ? "(root)" : key.string.debugDescription
        let problem: String
        switch (expected[key], actual[key]) {
        case let (e?, a?) where e != a: problem = "\(name) differs:\n  source:   \(e)\n  restored: \(a)"
        case (_?, nil): problem = "\(name) is missing"
        case (nil, _?): problem = "\(name) is there but not in the source"
        default: continue
        }
        failures += 1
        if failures <= 20 { XCTFail("\(what): \(problem)", file: file, line: line) }
    }
    if failures > 20 { XCTFail("\(what): \(failures) paths differ in all", file: file, line: line) }
}
