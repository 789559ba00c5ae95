// The process and its surroundings: ids, host, clocks, randomness, the
// terminal, stdout/stderr, the environment and malloc tuning. Our own
// wrappers: swift-system has no counterpart for these (getrandom, mallopt,
// fnmatch, gethostname, getpwuid).
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CAccordSys

extension Sys {

    /// True when a process with this pid exists on this host.
    public static func processExists(_ pid: Int32) -> Bool {
        if Glibc.kill(pid, 0) == 0 { return true }
        return Glibc.errno == EPERM
    }

    public static var hostname: String {
        var buffer = [CChar](repeating: 0, count: 256)
        Glibc.gethostname(&buffer, 255)
        let name = buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
        return String(decoding: name, as: UTF8.self)
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

    /// Gives the freed pages of every malloc arena back to the kernel
    /// (`malloc_trim`): after a large buffer is dropped where `tuneMalloc`'s
    /// thresholds would keep it resident.
    public static func trimMalloc() { _ = CAccordSys.malloc_trim(0) }

    public static func umask(_ mask: UInt32) { _ = Glibc.umask(mode_t(mask)) }

    public static func environment(_ name: String) -> String? {
        guard let v = Glibc.getenv(name) else { return nil }
        return String(cString: v)
    }
}
