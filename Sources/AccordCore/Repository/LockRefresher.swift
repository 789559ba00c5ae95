import Foundation
import AccordRuntime
#if canImport(Glibc)
import Glibc
#endif

/// Keeps a held lock fresh (`RepositoryLock`, `ObjectLock`): rewrites it with
/// a new `time` every `interval` seconds on its own thread. A rewrite that
/// fails is tried again every `interval / 5`; when none has succeeded for
/// `3 × interval` (15 minutes, half of `LockInfo.staleAfterSeconds`), the
/// process is stopped (`lost`), before any other accord may judge the lock
/// stale and run prune beside a command that still writes (restic does the
/// same). A rewrite and `release` never overlap: a rewrite runs under the
/// same lock that `release` takes, so one in flight finishes before the
/// lock is removed, and none starts after (it would re-create the lock).
///
/// `@unchecked Sendable`: `released`, `removed` and `info` are read and written under `state`.
final class LockRefresher: @unchecked Sendable {
    private let state = NSCondition()
    private var released = false
    private var removed = false
    private var info: LockInfo
    private let interval: Double
    private let what: String
    private let write: @Sendable ([UInt8]) throws -> Void
    /// Called (on the refresh thread) when the lock could not be refreshed in
    /// time, with the message to show; by default it writes it to stderr and
    /// ends the process at once (`_exit(1)`: what is written so far is what a
    /// crash leaves, which every command tolerates).
    private let lost: @Sendable (String) -> Void

    /// `what` names the lock in messages; `write` stores the lock's new bytes.
    init(info: LockInfo, what: String, interval: Double = LockRefresher.interval,
         lost: @escaping @Sendable (String) -> Void = LockRefresher.stopProcess, write: @escaping @Sendable ([UInt8]) throws -> Void) {
        self.info = info; self.what = what; self.interval = interval; self.lost = lost; self.write = write
    }

    /// `LockInfo.refreshInterval`, or `$ACCORD_LOCK_REFRESH_SECONDS` when it is
    /// a number from 0.1 to that (tests: a lock whose refresh fails is then
    /// stopped within seconds). It can only be shortened: other hosts judge
    /// staleness by `LockInfo.staleAfterSeconds`.
    static var interval: Double {
        guard let s = Sys.environment(intervalVariable), let v = Double(s), v >= 0.1, v <= LockInfo.refreshInterval else {
            return LockInfo.refreshInterval
        }
        return v
    }
    static let intervalVariable = "ACCORD_LOCK_REFRESH_SECONDS"

    @Sendable static func stopProcess(_ message: String) {
        Sys.writeStderr("Error: \(message)\n")
        _exit(1)
    }

    func start() {
        let t = Thread { [self] in run() }
        t.start()
    }

    private func run() {
        let start = Sys.monotonicSeconds()
        var lastSuccess = start, next = start + interval
        var lastError = ""
        state.lock()
        defer { state.unlock() }
        while !released {
            let wait = next - Sys.monotonicSeconds()
            if wait > 0 { _ = state.wait(until: Date(timeIntervalSinceNow: wait)); continue }
            info.time = .now()
            do {
                try write(try Repository.encodeJSON(info))
                lastSuccess = Sys.monotonicSeconds()
                next = lastSuccess + interval
            } catch {
                lastError = "\(error)"
                let now = Sys.monotonicSeconds()
                if now - lastSuccess >= 3 * interval {
                    released = true
                    state.unlock()
                    lost("\(what) could not be refreshed for \(Int(now - lastSuccess)) s (last error: \(lastError)); "
                         + "stopping `\(info.command)` now, before other accord processes judge its lock stale and prune beside it: "
                         + "run it again once the repository can be written")
                    state.lock()
                    return
                }
                next = now + interval / 5
            }
        }
    }

    /// Stops refreshing, waiting for a rewrite in flight, then runs `remove`
    /// (which deletes the lock) under the same lock: no rewrite follows it.
    func release(_ remove: () -> Void) {
        state.lock()
        defer { state.unlock() }
        released = true
        state.signal()
        if !removed { removed = true; remove() }
    }
}
