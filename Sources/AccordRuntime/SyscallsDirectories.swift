// Reading directories: entry names as raw bytes ("." and ".." left out).
// Why not Foundation's `FileManager`: names need not be UTF-8, and a directory
// already open beneath a restore target must be read through its descriptor.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

extension Sys {
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
}
