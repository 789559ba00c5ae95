import AccordRuntime
import CIsal

/// ISA-L (`libisal.so.2`), loaded at run time: Debian ships no `libisal.a`,
/// and linking the shared library made it a hard dependency of every package.
/// So `Deflater` calls igzip through two function pointers looked up once per
/// process (the first `IsalLibrary.shared` runs `load` under the global's
/// swift_once, a pthread_once), and where no ISA-L loads, the levels igzip
/// would write (1-2) go to libdeflate at the same level: the same zlib format,
/// any zlib inflates it, only ~2.5x slower to write (Benchmarks/README.md).
///
/// Looked for beside the binary first, `$ORIGIN/../lib/libisal.so.2` (the
/// conda package bundles it there; under /usr/bin that is /usr/lib), then
/// wherever the dynamic loader finds `libisal.so.2` (Debian's libisal2, which
/// the deb recommends). `ACCORD_NO_ISAL=1` skips it (tests, comparisons).
public struct IsalLibrary: @unchecked Sendable {   // two C function pointers, never written after `load`
    let statelessInit: @convention(c) (UnsafeMutablePointer<isal_zstream>?) -> Void
    let stateless: @convention(c) (UnsafeMutablePointer<isal_zstream>?) -> Int32
    /// The file igzip was loaded from, as the loader names it.
    public let path: String

    /// What this process compresses with: the library, or why there is none.
    public enum Availability: Sendable {
        case loaded(IsalLibrary)
        /// Each place tried and why it failed, or that ACCORD_NO_ISAL said not to.
        case unavailable(String)

        public var library: IsalLibrary? {
            if case .loaded(let l) = self { return l }
            return nil
        }

        /// One line for `accord version`.
        public var description: String {
            switch self {
            case .loaded(let l): return "igzip (ISA-L, \(l.path)) at levels 1-2, libdeflate at 3-9"
            case .unavailable(let why): return "libdeflate at every level (ISA-L not loaded: \(why))"
            }
        }
    }

    /// Loaded on first use, once per process.
    public static let shared: Availability = {
        if let s = Sys.environment("ACCORD_NO_ISAL"), !s.isEmpty, s != "0" {
            return .unavailable("ACCORD_NO_ISAL is set")
        }
        let (names, skipped) = candidates(executable: try? Sys.readlink(Array("/proc/self/exe".utf8)))
        return load(names, skipped: skipped)
    }()

    /// Where to look, first to last: `$ORIGIN/../lib/libisal.so.2` when the
    /// running binary's path is known and that file exists, then the loader's
    /// search. The file beside the binary is trusted no more than the binary:
    /// a regular file owned by root or the binary's owner, writable by neither
    /// group nor others (a root backup must not run code anyone else can
    /// replace); `skipped` says why one that exists is not.
    static func candidates(executable: RawPath?) -> (names: [String], skipped: [String]) {
        guard let exe = executable, let bin = exe.lastIndex(of: UInt8(ascii: "/")),
              let prefix = exe[..<bin].lastIndex(of: UInt8(ascii: "/")) else { return (["libisal.so.2"], []) }
        let libDir = String(decoding: exe[..<prefix], as: UTF8.self) + "/lib"
        let bundled = libDir + "/libisal.so.2"
        // lstat, not stat: a symlink is refused (its target could be anything,
        // and could change between this check and dlopen); so is a lib/ that
        // others may write in, where the checked file could be swapped.
        guard let lib = try? Sys.lstat(Array(bundled.utf8)) else { return (["libisal.so.2"], []) }
        let owner = (try? Sys.stat(exe))?.uid
        func trusted(_ st: FileStatus, _ type: UInt32) -> Bool {
            st.mode & 0o170000 == type && st.mode & 0o022 == 0 && (st.uid == 0 || st.uid == owner)
        }
        guard trusted(lib, 0o100000), let dir = try? Sys.lstat(Array(libDir.utf8)), trusted(dir, 0o040000) else {
            let why = "\(bundled): not used, it and its directory must be a regular file and a directory (no symlinks) owned by root or the binary's owner and writable by them alone"
            return (["libisal.so.2"], [why])
        }
        return ([bundled, "libisal.so.2"], [])
    }

    /// The first of `candidates` that loads and has igzip's functions.
    static func load(_ candidates: [String], skipped: [String] = []) -> Availability {
        var failures = skipped
        for name in candidates {
            var api = accord_isal_api()
            if let error = accord_isal_load(name, &api) {
                failures.append(String(cString: error))
                continue
            }
            guard let statelessInit = api.deflate_stateless_init, let stateless = api.deflate_stateless else {
                failures.append("\(name): dlsym returned NULL")
                continue
            }
            return .loaded(IsalLibrary(statelessInit: statelessInit, stateless: stateless,
                                       path: api.path.map { String(cString: $0) } ?? name))
        }
        return .unavailable(failures.joined(separator: "; "))
    }
}
