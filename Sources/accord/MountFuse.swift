#if canImport(Glibc)
import Glibc
#endif
import CFuse3
import AccordCore
import AccordRuntime

/// libfuse3, loaded on first use (`accord_fuse3_load`); immutable once loaded.
let fuse3: Result<accord_fuse3_api, CommandFailure> = {
    var api = accord_fuse3_api()
    if let e = accord_fuse3_load(&api) {
        return .failure(CommandFailure("accord mount needs libfuse3 (\(String(cString: e))): install it (Debian: apt-get install fuse3)"))
    }
    return .success(api)
}()

/// The FUSE side of `accord mount`: the high-level operations table, each
/// callback a C function finding the `MountFilesystem` through the context's
/// private data, and the mount/loop/unmount sequence.
enum MountFuse {
    /// Mounts `fs` on `directory` read-only and serves it until it is unmounted
    /// (`fusermount3 -u`) or SIGINT/SIGTERM/SIGHUP arrive (libfuse's handlers),
    /// then unmounts. `announce` runs once the mount is in place.
    static func serve(_ fs: MountFilesystem, on directory: String, allowOther: Bool, announce: () -> Void) throws {
        let api = try fuse3.get()
        var ops = operations()
        // nosuid, nodev: a set-uid file or a device node in a backup must not act as one here.
        let options = "ro,nosuid,nodev,default_permissions,fsname=accord,subtype=accord" + (allowOther ? ",allow_other" : "")
        let argv = ["accord", "-o", options].map { (s: String) -> UnsafeMutablePointer<CChar>? in strdup(s) }
        defer { argv.forEach { free($0) } }
        var cargv: [UnsafeMutablePointer<CChar>?] = argv + [nil]
        try withExtendedLifetime(fs) {
            try cargv.withUnsafeMutableBufferPointer { p in
                var args = fuse_args(argc: Int32(argv.count), argv: p.baseAddress, allocated: 0)
                let f = api.fuse_new(&args, &ops, MemoryLayout<fuse_operations>.size, Unmanaged.passUnretained(fs).toOpaque())
                api.fuse_opt_free_args(&args)
                guard let f else { throw CommandFailure("cannot set up the FUSE filesystem (libfuse's message is above)") }
                defer { api.fuse_destroy(f) }
                guard api.fuse_mount(f, directory) == 0 else {
                    throw CommandFailure("cannot mount on \(directory) (libfuse's message is above): is /dev/fuse there, and are you root or is fusermount3 installed?")
                }
                defer { api.fuse_unmount(f) }
                let session = api.fuse_get_session(f)
                guard api.fuse_set_signal_handlers(session) == 0 else { throw CommandFailure("cannot install the FUSE signal handlers") }
                defer { api.fuse_remove_signal_handlers(session) }
                announce()
                // > 0: the number of the signal that ended the loop, a normal end.
                let r = api.fuse_loop(f)
                if r < 0 { throw CommandFailure("serving \(directory) failed: \(String(cString: strerror(-r)))") }
            }
        }
    }

    /// The filesystem of the calling FUSE callback.
    static func fs() -> MountFilesystem {
        let api = try! fuse3.get()   // callbacks run only after `serve` loaded it
        return Unmanaged<MountFilesystem>.fromOpaque(api.fuse_get_context()!.pointee.private_data).takeUnretainedValue()
    }

    static func bytes(_ s: UnsafePointer<CChar>?) -> RawPath {
        guard let s else { return [] }
        return Array(UnsafeRawBufferPointer(start: s, count: strlen(s)))
    }

    /// Writes `value` as a C string into a FUSE buffer of `size` (truncated to fit, as readlink does).
    static func copyCString(_ value: RawPath, to buf: UnsafeMutablePointer<CChar>?, size: Int) {
        guard let buf, size > 0 else { return }
        let n = min(value.count, size - 1)
        value.withUnsafeBytes { UnsafeMutableRawPointer(buf).copyMemory(from: $0.baseAddress!, byteCount: n) }
        buf[n] = 0
    }

    static func operations() -> fuse_operations {
        var ops = fuse_operations()
        ops.`init` = { _, cfg in
            // Snapshots never change: let the kernel cache names, attributes and pages.
            if let cfg {
                cfg.pointee.kernel_cache = 1
                cfg.pointee.use_ino = 1   // st_ino as `MountFilesystem` sets it: hard links share theirs
                cfg.pointee.entry_timeout = 3600
                cfg.pointee.attr_timeout = 3600
                cfg.pointee.negative_timeout = 3600
            }
            return (try? fuse3.get())?.fuse_get_context()?.pointee.private_data
        }
        addNameOperations(&ops)
        addContentOperations(&ops)
        return ops
    }

    /// Names, attributes, symlinks, directories and extended attributes.
    private static func addNameOperations(_ ops: inout fuse_operations) {
        ops.getattr = { path, st, _ in
            switch MountFuse.fs().resolve(MountFuse.bytes(path)) {
            case .success(let item): st?.pointee = MountFuse.fs().attributes(item); return 0
            case .failure(let e): return -e.code
            }
        }
        ops.readlink = { path, buf, size in
            switch MountFuse.fs().resolve(MountFuse.bytes(path)) {
            case .success(.symlink(let target, _)): MountFuse.copyCString(target, to: buf, size: size); return 0
            case .success(.node(let t, let n)) where t.nodes[n].entry.kind == .symlink:
                MountFuse.copyCString(t.nodes[n].entry.linkTarget, to: buf, size: size); return 0
            case .success: return -EINVAL
            case .failure(let e): return -e.code
            }
        }
        ops.readdir = { path, buf, filler, _, _, _ in
            let names: [RawPath]
            switch MountFuse.fs().resolve(MountFuse.bytes(path)) {
            case .success(.virtualDirectory(let n, _, _)): names = n
            case .success(.node(let t, let n)) where t.nodes[n].entry.kind == .directory: names = t.nodes[n].names
            case .success: return -ENOTDIR
            case .failure(let e): return -e.code
            }
            for name in [[0x2e], [0x2e, 0x2e]] + names {
                let full = (name + [0]).withUnsafeBufferPointer { p in
                    p.withMemoryRebound(to: CChar.self) { filler?(buf, $0.baseAddress, nil, 0, fuse_fill_dir_flags(0)) ?? 1 }
                }
                if full != 0 { break }
            }
            return 0
        }
        addXattrOperations(&ops)
    }

    /// Opening and reading files (`MountFilesystem.open`, `read`).
    private static func addContentOperations(_ ops: inout fuse_operations) {
        ops.open = { path, fi in
            guard let fi else { return -EINVAL }
            guard fi.pointee.flags & O_ACCMODE == O_RDONLY else { return -EROFS }
            switch MountFuse.fs().resolve(MountFuse.bytes(path)).flatMap({ MountFuse.fs().open($0) }) {
            case .success(let h):
                fi.pointee.fh = h
                fi.pointee.keep_cache = 1
                return 0
            case .failure(let e): return -e.code
            }
        }
        ops.read = { _, buf, size, offset, fi in
            guard let fi, let buf else { return -EINVAL }
            switch MountFuse.fs().read(fi.pointee.fh, into: UnsafeMutableRawBufferPointer(start: buf, count: min(size, Int(Int32.max))), at: Int64(offset)) {
            case .success(let n): return Int32(n)
            case .failure(let e): return -e.code
            }
        }
        ops.release = { _, fi in
            if let fi { MountFuse.fs().release(fi.pointee.fh) }
            return 0
        }
    }

    private static func addXattrOperations(_ ops: inout fuse_operations) {
        ops.listxattr = { path, list, size in
            guard case .success(.node(let t, let n)) = MountFuse.fs().resolve(MountFuse.bytes(path)) else { return 0 }
            let all = t.nodes[n].entry.xattrs.reduce(into: RawPath()) { $0 += $1.name + [0] }
            if size == 0 || all.isEmpty { return Int32(clamping: all.count) }
            guard all.count <= size, let list else { return -ERANGE }
            all.withUnsafeBytes { UnsafeMutableRawPointer(list).copyMemory(from: $0.baseAddress!, byteCount: all.count) }
            return Int32(clamping: all.count)
        }
        ops.getxattr = { path, name, value, size in
            guard case .success(.node(let t, let n)) = MountFuse.fs().resolve(MountFuse.bytes(path)) else { return -ENODATA }
            let wanted = MountFuse.bytes(name)
            guard let x = t.nodes[n].entry.xattrs.first(where: { $0.name == wanted }) else { return -ENODATA }
            if size == 0 { return Int32(clamping: x.value.count) }
            guard x.value.count <= size, let value else { return -ERANGE }
            x.value.withUnsafeBytes { if let b = $0.baseAddress { UnsafeMutableRawPointer(value).copyMemory(from: b, byteCount: x.value.count) } }
            return Int32(clamping: x.value.count)
        }
    }
}
