import Foundation
import AccordCore
#if canImport(Glibc)
import Glibc
#endif

/// Runs code in a forked child so that a crash (a Swift trap, a segfault),
/// a hang or a runaway allocation ends the child, not the test run. Before
/// each input the child copies it into memory shared with the parent, so
/// the parent can name the input that crashed or hung.
///
/// The child has a time limit, an address-space limit (`RLIMIT_AS`, so a
/// huge allocation fails instead of swapping) and no core dumps; it must
/// not use XCTest (it reports through the shared page and its exit status).
final class IsolatedRun {
    struct Outcome: CustomStringConvertible {
        var exitStatus: Int32?
        var signal: Int32?
        var timedOut = false
        var iterations = 0
        var lastTarget = 0
        var lastInput: [UInt8] = []
        var counters: [Int] = []
        var maxRSSKiB = 0
        var crashed: Bool { signal != nil || timedOut || (exitStatus ?? 0) != 0 }
        var description: String {
            if timedOut { return "hung (killed after the time limit) on target \(lastTarget), input of \(lastInput.count) bytes" }
            if let s = signal { return "crashed with signal \(s) (\(String(cString: strsignal(s)))) on target \(lastTarget), input of \(lastInput.count) bytes" }
            if let e = exitStatus, e != 0 { return "exited with status \(e) on target \(lastTarget)" }
            return "ok: \(iterations) inputs, max RSS \(maxRSSKiB / 1024) MiB"
        }
    }

    static let capacity = 8 << 20
    private static let headerSize = 4096
    let shared: UnsafeMutableRawPointer

    private init(shared: UnsafeMutableRawPointer) { self.shared = shared }

    // Layout of the shared block: [0] iterations, [8] last input length, [16] last target,
    // [24] max RSS (KiB), [64 + 8k] counter k (k < 64), [4096 …] the last input.
    private func word(_ offset: Int) -> UnsafeMutablePointer<Int> {
        (shared + offset).assumingMemoryBound(to: Int.self)
    }

    /// Called by the child before decoding `input` with `target`.
    func willDecode(target: Int, _ input: [UInt8]) {
        let n = min(input.count, Self.capacity - Self.headerSize)
        input.withUnsafeBytes { (shared + Self.headerSize).copyMemory(from: $0.baseAddress ?? UnsafeRawPointer(shared), byteCount: n) }
        word(8).pointee = n
        word(16).pointee = target
        word(0).pointee += 1
    }

    /// A counter the parent reads back (e.g. inputs accepted, rejected).
    func count(_ k: Int, by n: Int = 1) { word(64 + 8 * k).pointee += n }

    /// Forks; the child runs `body` and exits 0. Waits at most `timeout` seconds.
    static func run(timeout: Double, addressSpaceHeadroom: Int = 3 << 30, _ body: (IsolatedRun) -> Void) -> Outcome {
        let size = capacity
        guard let mem = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0), mem != MAP_FAILED else {
            fatalError("mmap of the shared page failed")
        }
        defer { munmap(mem, size) }
        memset(mem, 0, headerSize)
        let run = IsolatedRun(shared: mem)
        fflush(nil)   // every output stream, stdout and stderr included (Swift 6 refuses the C globals `stdout`/`stderr`)
        let pid = fork()
        if pid == 0 {
            for s in [SIGILL, SIGTRAP, SIGSEGV, SIGBUS, SIGABRT, SIGFPE] { signal(s, SIG_DFL) }
            var noCore = rlimit(rlim_cur: 0, rlim_max: 0)
            setrlimit(__rlimit_resource_t(RLIMIT_CORE.rawValue), &noCore)
            var limit = rlimit(rlim_cur: rlim_t(currentAddressSpace() + addressSpaceHeadroom), rlim_max: rlim_t(currentAddressSpace() + addressSpaceHeadroom))
            setrlimit(__rlimit_resource_t(RLIMIT_AS.rawValue), &limit)
            body(run)
            var usage = rusage()
            getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
            run.word(24).pointee = usage.ru_maxrss
            _exit(0)
        }
        guard pid > 0 else { fatalError("fork failed: \(String(cString: strerror(errno)))") }
        var outcome = Outcome()
        let deadline = Date().addingTimeInterval(timeout)
        var status: Int32 = 0
        while true {
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid { break }
            if Date() > deadline {
                kill(pid, SIGKILL)
                waitpid(pid, &status, 0)
                outcome.timedOut = true
                break
            }
            usleep(5000)
        }
        if !outcome.timedOut {
            let sig = status & 0x7f
            if sig == 0 { outcome.exitStatus = (status >> 8) & 0xff } else { outcome.signal = sig }
        }
        outcome.iterations = run.word(0).pointee
        outcome.lastTarget = run.word(16).pointee
        let n = run.word(8).pointee
        outcome.lastInput = Array(UnsafeRawBufferPointer(start: mem + headerSize, count: max(0, min(n, capacity - headerSize))))
        outcome.counters = (0..<64).map { run.word(64 + 8 * $0).pointee }
        outcome.maxRSSKiB = run.word(24).pointee
        return outcome
    }

    private static func currentAddressSpace() -> Int {
        guard let statm = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8),
              let pages = Int(statm.split(separator: " ").first ?? "") else { return 8 << 30 }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }
}
