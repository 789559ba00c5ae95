import Foundation

/// Counters shared by the threads of a backup or restore, and a reporter
/// that prints them to stderr twice a second (on a TTY, or when asked).
// @unchecked Sendable: the counters and `done` are changed and read under `lock`
// (`thread` is set once, by the thread that starts reporting; `verb`, `start`, `enabled` are `let`).
public final class Progress: @unchecked Sendable {
    private let lock = NSLock()
    public private(set) var files = 0
    public private(set) var bytes: UInt64 = 0
    public private(set) var storedBytes: UInt64 = 0
    public private(set) var totalBytes: UInt64 = 0   // set with `setTotals`, under `lock`
    public private(set) var totalFiles = 0
    let verb: String
    let start = Sys.monotonicSeconds()
    private var thread: Thread?
    private var done = false
    private let enabled: Bool

    public init(verb: String, enabled: Bool) {
        self.verb = verb
        self.enabled = enabled
    }

    public func addFile() { lock.lock(); files += 1; lock.unlock() }
    public func addBytes(_ n: Int) { lock.lock(); bytes += UInt64(n); lock.unlock() }
    public func addStored(_ n: Int) { lock.lock(); storedBytes += UInt64(n); lock.unlock() }
    public func setTotals(files: Int, bytes: UInt64) { lock.lock(); totalFiles = files; totalBytes = bytes; lock.unlock() }

    public func startReporting() {
        guard enabled else { return }
        let t = Thread { [weak self] in
            while let self, !self.isDone {
                Thread.sleep(forTimeInterval: 0.5)
                if !self.isDone { Sys.writeStderr("\r\u{1b}[K" + self.line()) }
            }
        }
        thread = t
        t.start()
    }

    var isDone: Bool { lock.lock(); defer { lock.unlock() }; return done }

    public func stop() {
        lock.lock(); let wasDone = done; done = true; lock.unlock()
        if enabled && !wasDone { Sys.writeStderr("\r\u{1b}[K") }
    }

    public func line() -> String {
        lock.lock(); let f = files, b = bytes, tb = totalBytes, tf = totalFiles; lock.unlock()
        let elapsed = max(0.001, Sys.monotonicSeconds() - start)
        let rate = Double(b) / elapsed
        var s = "\(verb): \(f)\(tf > 0 ? "/\(tf)" : "") files, \(formatBytes(b))"
        if tb > 0 {
            s += " of \(formatBytes(tb)) (\(Int(Double(b) * 100 / Double(max(tb, 1))))%)"
        }
        s += ", \(formatBytes(UInt64(rate)))/s"
        if tb > b && rate > 0 {
            let eta = Int(Double(tb - b) / rate)
            s += ", ETA \(eta / 60):\(String(format: "%02d", eta % 60))"
        }
        return s
    }
}

/// "1.5 GiB", "312 KiB", "17 B".
public func formatBytes(_ n: UInt64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"]
    var v = Double(n)
    var i = 0
    while v >= 1024 && i < units.count - 1 { v /= 1024; i += 1 }
    return i == 0 ? "\(n) B" : String(format: v < 10 ? "%.2f" : "%.1f", v) + " " + units[i]
}
