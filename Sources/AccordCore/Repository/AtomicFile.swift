import AccordRuntime
/// Writes a whole file so that a crash leaves either nothing or the complete
/// file: a temporary name in `tmpDirectory`, fsync, rename, fsync of the
/// target directory. Durable on return.
public enum AtomicFile {
    public static func write(_ bytes: [UInt8], to path: String, tmpDirectory: String, mode: UInt32 = 0o600) throws {
        try bytes.withUnsafeBytes { try write($0, to: path, tmpDirectory: tmpDirectory, mode: mode) }
    }

    /// `write` of bytes in place. `beforeRename` runs after the fsync, before
    /// the name appears (a test throws there to play a crash).
    public static func write(_ bytes: UnsafeRawBufferPointer, to path: String, tmpDirectory: String, mode: UInt32 = 0o600,
                             beforeRename: (() throws -> Void)? = nil) throws {
        let tmp = tmpDirectory + "/" + hexString(Sys.randomBytes(8)) + ".tmp"
        let fd = try Sys.open(tmp, Sys.O_WRONLY | Sys.O_CREAT | Sys.O_EXCL, mode: mode)
        var isOpen = true   // closed once only: another thread may reuse the number
        do {
            try Sys.writeAll(fd, bytes, path: tmp)
            try Sys.fsync(fd, path: tmp)
            Sys.close(fd)
            isOpen = false
            try beforeRename?()
            try Sys.rename(tmp, path)
            try Sys.fsyncDirectory(parent(of: path))
        } catch {
            if isOpen { Sys.close(fd) }
            try? Sys.unlink(tmp)
            throw error
        }
    }

    /// Like `write`, but never replaces an existing file: the final step is
    /// `link`, which fails with EEXIST if another process created it first.
    /// Returns false in that case (the other file is left as it is).
    public static func create(_ bytes: [UInt8], at path: String, tmpDirectory: String, mode: UInt32 = 0o600) throws -> Bool {
        let tmp = tmpDirectory + "/" + hexString(Sys.randomBytes(8)) + ".tmp"
        let fd = try Sys.open(tmp, Sys.O_WRONLY | Sys.O_CREAT | Sys.O_EXCL, mode: mode)
        defer { try? Sys.unlink(tmp) }
        do {
            try Sys.writeAll(fd, bytes, path: tmp)
            try Sys.fsync(fd, path: tmp)
            Sys.close(fd)
        } catch { Sys.close(fd); throw error }
        do { try Sys.link(existing: Array(tmp.utf8), new: Array(path.utf8)) } catch let e as SystemError where e.errno == 17 /* EEXIST */ {
            return false
        }
        try Sys.fsyncDirectory(parent(of: path))
        return true
    }

    /// Reads a whole (small) file.
    public static func read(_ path: String) throws -> [UInt8] {
        let fd = try Sys.open(path, Sys.O_RDONLY)
        defer { Sys.close(fd) }
        let st = try Sys.fstat(fd, path: path)
        var out = [UInt8](repeating: 0, count: Int(st.size))
        let n = try out.withUnsafeMutableBytes { try Sys.preadFully(fd, $0.baseAddress!, $0.count, 0, path: path) }
        if n < out.count { out.removeLast(out.count - n) }
        return out
    }

    static func parent(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }
}
