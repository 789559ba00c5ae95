import Foundation

/// `<repo>/locks/<random>`: who holds the repository and how (FORMAT.md, "Locks").
/// Backup, restore, check and sync take shared locks; prune takes an exclusive one.
public struct LockInfo: Codable, Sendable {
    public var exclusive: Bool
    public var host: String
    public var pid: Int32
    public var username: String
    public var command: String
    /// Refreshed every `refreshInterval` while held.
    public var time: Timestamp

    /// A lock not refreshed for this long is stale even if its host cannot be checked.
    public static let staleAfterSeconds: Int64 = 30 * 60
    public static let refreshInterval: Double = 5 * 60

    /// Stale: its process is gone (same host) or it was not refreshed in time.
    public func isStale(now: Timestamp = .now()) -> Bool {
        if host == Sys.hostname && !Sys.processExists(pid) { return true }
        return now.seconds - time.seconds > Self.staleAfterSeconds
    }

    public var summary: String {
        "\(exclusive ? "exclusive" : "shared") lock by `\(command)` (pid \(pid) on \(host), user \(username), since \(time.short) UTC)"
    }
}

/// A held lock. Release it with `release()`; a background thread refreshes it.
public final class RepositoryLock: @unchecked Sendable {
    public let path: String
    let layout: RepositoryLayout
    var info: LockInfo
    private let stop = NSCondition()
    private var released = false

    init(path: String, layout: RepositoryLayout, info: LockInfo) {
        self.path = path; self.layout = layout; self.info = info
    }

    /// All locks in the repository, with their file names.
    public static func list(_ layout: RepositoryLayout) throws -> [(name: String, info: LockInfo?)] {
        try Sys.listDirectory(layout.lockDirectory).filter { !$0.hasSuffix(".tmp") }.map { name in
            let info = (try? AtomicFile.read(layout.lockPath(name))).flatMap { try? JSONDecoder().decode(LockInfo.self, from: Data($0)) }
            return (name, info)
        }
    }

    /// Takes a lock. Conflicting live locks make it throw `.locked` naming the
    /// holder; stale locks are reported through `warn` and ignored.
    public static func acquire(_ layout: RepositoryLayout, exclusive: Bool, command: String,
                               warn: (String) -> Void = { _ in }) throws -> RepositoryLock {
        let info = LockInfo(exclusive: exclusive, host: Sys.hostname, pid: Sys.processID,
                            username: Sys.userName, command: command, time: .now())
        let name = hexString(Sys.randomBytes(16))
        let path = layout.lockPath(name)
        try AtomicFile.write(try Repository.encodeJSON(info), to: path, tmpDirectory: layout.tmpDirectory)
        let lock = RepositoryLock(path: path, layout: layout, info: info)
        for other in try list(layout) where other.name != name {
            guard let o = other.info else {
                warn("lock file \(layout.lockPath(other.name)) is unreadable; if no accord is running, remove it with `accord unlock`")
                continue
            }
            if o.isStale() {
                warn("ignoring stale \(o.summary): remove it with `accord unlock`")
                continue
            }
            if exclusive || o.exclusive {
                try? Sys.unlink(path)
                throw RepositoryError.locked("repository \(layout.root) is held by a \(o.summary); wait for it to finish, or if it is dead run `accord unlock -d \(layout.root)`")
            }
        }
        lock.startRefreshing()
        return lock
    }

    private func startRefreshing() {
        let t = Thread { [weak self] in
            while let self {
                self.stop.lock()
                if self.released { self.stop.unlock(); return }
                _ = self.stop.wait(until: Date(timeIntervalSinceNow: LockInfo.refreshInterval))
                let done = self.released
                self.stop.unlock()
                if done { return }
                self.info.time = .now()
                if let bytes = try? Repository.encodeJSON(self.info) {
                    try? AtomicFile.write(bytes, to: self.path, tmpDirectory: self.layout.tmpDirectory)
                }
            }
        }
        t.start()
    }

    /// Removes the lock file.
    public func release() {
        stop.lock()
        released = true
        stop.signal()
        stop.unlock()
        try? Sys.unlink(path)
    }

    /// Removes stale locks (or all, with `all`). Returns the summaries removed.
    public static func removeLocks(_ layout: RepositoryLayout, all: Bool) throws -> [String] {
        var removed: [String] = []
        for l in try list(layout) {
            if all || l.info == nil || l.info!.isStale() {
                try Sys.unlink(layout.lockPath(l.name))
                removed.append(l.info?.summary ?? "unreadable lock \(l.name)")
            }
        }
        return removed
    }
}
