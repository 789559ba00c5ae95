// System calls relative to an open directory, for a restore that must never
// leave its target: every path is resolved beneath a directory descriptor
// and no symlink on the way (or at the end) is followed. Same shape as
// `Syscalls.swift`: thin, EINTR retried, failures as `SystemError` naming
// the call and the path (`path` only names it, and is made only for an error;
// the call uses `dir` + `name`).
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CAccordSys

extension Sys {
    /// `fail` with the path made only now: callers name paths by building a
    /// string, which an entry that succeeds (nearly every one) never needs.
    /// errno is read before the string is made (that may allocate).
    static func failAt(_ op: String, _ path: () -> String) -> SystemError {
        let e = Glibc.errno
        return SystemError(errno: e, operation: op, path: path())
    }

    /// `open` for a descriptor usable only as a directory to resolve from (no reads).
    public static let O_PATH: Int32 = 0o10000000

    /// Opens `relative` (a relative path; empty means `dir` itself) beneath the
    /// open directory `dir`, following no symlink in any component, the last
    /// included, and never leaving `dir` (an absolute path or an escaping ".."
    /// fails with `EXDEV`, a symlink with `ELOOP`). `mode` applies with `O_CREAT`.
    /// The corresponding C function is `openat2` with `RESOLVE_BENEATH |
    /// RESOLVE_NO_SYMLINKS`; where the kernel lacks it, `openat` with
    /// `O_NOFOLLOW` one component at a time.
    public static func open(beneath dir: Int32, _ relative: RawPath, _ flags: Int32, mode: UInt32 = 0o600, path: @autoclosure () -> String) throws -> Int32 {
        let fd = withCPath(relative.isEmpty ? [0x2e] : relative) { CAccordSys.accord_open_beneath(dir, $0, flags, mode) }
        if fd >= 0 { return fd }
        throw failAt("open", path)
    }

    /// Makes `open(beneath:)` walk components with `openat(O_NOFOLLOW)` instead
    /// of calling `openat2` (as on a kernel without it). For tests.
    public static var opensBeneathComponentWise: Bool {
        get { CAccordSys.accord_beneath_fallback_get() != 0 }
        set { CAccordSys.accord_beneath_fallback_set(newValue ? 1 : 0) }
    }

    /// Creates directory `name` in the open directory `dir`. Returns false if
    /// something of that name exists (not followed if a symlink).
    /// The corresponding C function is `mkdirat`.
    @discardableResult
    public static func mkdir(in dir: Int32, _ name: RawPath, mode: UInt32, path: @autoclosure () -> String) throws -> Bool {
        if withCPath(name, { Glibc.mkdirat(dir, $0, mode_t(mode)) }) == 0 { return true }
        if Glibc.errno == EEXIST { return false }
        throw failAt("create directory", path)
    }

    /// Removes `name` from the open directory `dir` (a symlink itself, never
    /// what it points to); `directory` removes an empty directory.
    /// The corresponding C function is `unlinkat`.
    public static func unlink(in dir: Int32, _ name: RawPath, directory: Bool = false, path: @autoclosure () -> String) throws {
        if withCPath(name, { Glibc.unlinkat(dir, $0, directory ? AT_REMOVEDIR : 0) }) != 0 {
            throw failAt(directory ? "remove directory" : "remove", path)
        }
    }

    /// Creates symlink `name` in the open directory `dir`, pointing to `target`.
    /// The corresponding C function is `symlinkat`.
    public static func symlink(target: RawPath, in dir: Int32, _ name: RawPath, path: @autoclosure () -> String) throws {
        let r = withCPath(target) { t in withCPath(name) { Glibc.symlinkat(t, dir, $0) } }
        if r != 0 { throw failAt("create symlink", path) }
    }

    /// Makes `newName` in `newDir` a further name of `oldName` in `oldDir`; a
    /// symlink `oldName` is linked itself, never followed.
    /// The corresponding C function is `linkat` with flags 0.
    public static func link(in oldDir: Int32, _ oldName: RawPath, to newDir: Int32, _ newName: RawPath, path: @autoclosure () -> String) throws {
        let r = withCPath(oldName) { o in withCPath(newName) { Glibc.linkat(oldDir, o, newDir, $0, 0) } }
        if r != 0 { throw failAt("create hard link", path) }
    }

    /// Renames `oldName` in `oldDir` to `newName` in `newDir`, replacing an
    /// entry of that name (a symlink is renamed itself, never followed).
    /// The corresponding C function is `renameat`.
    public static func rename(in oldDir: Int32, _ oldName: RawPath, to newDir: Int32, _ newName: RawPath, path: @autoclosure () -> String) throws {
        let r = withCPath(oldName) { o in withCPath(newName) { Glibc.renameat(oldDir, o, newDir, $0) } }
        if r != 0 { throw failAt("rename", path) }
    }

    /// Changes the owner of `name` in `dir` without following a symlink.
    /// The corresponding C function is `fchownat` with `AT_SYMLINK_NOFOLLOW`.
    public static func lchown(in dir: Int32, _ name: RawPath, uid: UInt32, gid: UInt32, path: @autoclosure () -> String) throws {
        if withCPath(name, { Glibc.fchownat(dir, $0, uid_t(uid), gid_t(gid), AT_SYMLINK_NOFOLLOW) }) != 0 {
            throw failAt("change owner of", path)
        }
    }

    /// Sets access and modification time of `name` in `dir` without following
    /// a symlink. The corresponding C function is `utimensat` with `AT_SYMLINK_NOFOLLOW`.
    public static func setTimes(in dir: Int32, _ name: RawPath, mtimeSec: Int64, mtimeNsec: Int64, path: @autoclosure () -> String) throws {
        var times = [timespec(tv_sec: Int(mtimeSec), tv_nsec: Int(mtimeNsec)),
                     timespec(tv_sec: Int(mtimeSec), tv_nsec: Int(mtimeNsec))]
        if withCPath(name, { Glibc.utimensat(dir, $0, &times, AT_SYMLINK_NOFOLLOW) }) != 0 { throw failAt("set times of", path) }
    }

    /// Sets one extended attribute of an open file or directory.
    /// The corresponding C function is `fsetxattr`.
    public static func setXattr(fd: Int32, name: RawPath, value: RawPath, path: @autoclosure () -> String) throws {
        let r = withCPath(name) { nm in value.withUnsafeBytes { CAccordSys.fsetxattr(fd, nm, $0.baseAddress, value.count, 0) } }
        if r != 0 { throw failAt("set xattr on", path) }
    }

    /// Sets one extended attribute of `name` in `dir` without following a
    /// symlink (for symlinks, which cannot be opened for `fsetxattr`): the
    /// directory is reached through its /proc/self/fd link.
    /// The corresponding C function is `lsetxattr`.
    public static func setXattr(in dir: Int32, _ name: RawPath, attribute: RawPath, value: RawPath, path: @autoclosure () -> String) throws {
        let viaProc = Array("/proc/self/fd/\(dir)/".utf8) + name
        let r = withCPath(viaProc) { p in withCPath(attribute) { nm in value.withUnsafeBytes { CAccordSys.lsetxattr(p, nm, $0.baseAddress, value.count, 0) } } }
        if r != 0 { throw failAt("set xattr on", path) }
    }
}
