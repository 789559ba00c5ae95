import Foundation
import AccordRuntime
#if canImport(Glibc)
import Glibc
#endif

/// `<repo>/locks/<random>`: who holds the repository and how (FORMAT.md, "Locks").
/// Backup, restore, check and sync take shared locks; prune, forget, repair
/// and a plan restore take an exclusive one.
public struct LockInfo: Codable, Sendable {
    public var exclusive: Bool
    public var host: String
    public var pid: Int32
    public var username: String
    public var command: String
    /// Refreshed every `refreshInterval` while held.
    public var time: Timestamp
    /// When `pid` started, in clock ticks after boot (field 22 of `/proc/PID/stat`),
    /// if known: a live process with another start time reuses the pid.
    public var processStart: UInt64?
    /// `/proc/sys/kernel/random/boot_id` when the lock was taken, if known:
    /// after a reboot every lock of this host is stale.
    public var bootID: String?
    /// `/etc/machine-id` of the machine that took it, if it has one: the
    /// machine's identity (host names repeat: cloned VMs, containers, pods).
    /// Only a lock with ours is judged by this machine's boot and processes.
    public var machineID: String?
    /// True when its holder released it but could not delete it (a lock object
    /// on credentials that may not delete): stale at once, for every host.
    public var released: Bool?

    public init(exclusive: Bool, host: String, pid: Int32, username: String, command: String, time: Timestamp,
                processStart: UInt64? = nil, bootID: String? = nil, machineID: String? = nil, released: Bool? = nil) {
        self.exclusive = exclusive; self.host = host; self.pid = pid; self.username = username
        self.command = command; self.time = time; self.processStart = processStart; self.bootID = bootID
        self.machineID = machineID; self.released = released
    }

    /// A lock for this process, taken now.
    static func ours(exclusive: Bool, command: String) -> LockInfo {
        LockInfo(exclusive: exclusive, host: Sys.hostname, pid: Sys.processID, username: Sys.userName, command: command,
                 time: .now(), processStart: LockProcess.startTime(Sys.processID), bootID: LockProcess.bootID,
                 machineID: LockProcess.machineID)
    }

    /// A lock not refreshed for this long is stale even if its host cannot be
    /// checked; one dated this far in the future is stale too (a clock that far
    /// ahead breaks the rule that hosts sharing a repository agree on the time).
    public static let staleAfterSeconds: Int64 = 30 * 60
    public static let refreshInterval: Double = 5 * 60
    /// Larger lock files are not read (and count as unreadable).
    public static let maxFileSize = 64 << 10

    /// Why the lock is stale (FORMAT.md, "Locks"), or nil while it is live:
    /// not refreshed in time, dated in the future, or, taken on this machine
    /// (its `machineID` is ours: a host name alone proves nothing), a process
    /// that is gone, a pid now used by another process, or a boot since.
    public func staleReason(now: Timestamp = .now()) -> String? {
        if released == true { return "released by its accord, which could not delete it" }
        let age = now.seconds - time.seconds
        if age > Self.staleAfterSeconds { return "not refreshed for \(age / 60) minutes" }
        if -age > Self.staleAfterSeconds { return "dated \(time.short) UTC, \(-age / 60) minutes in the future" }
        if isThisMachine {
            if let b = bootID, let current = LockProcess.bootID, b != current { return "taken before this host last booted" }
            if !Sys.processExists(pid) { return "its process \(pid) is gone" }
            if let s = processStart, let current = LockProcess.startTime(pid), s != current {
                return "pid \(pid) now belongs to another process"
            }
        }
        return nil
    }

    /// This machine's `/etc/machine-id`, as a lock records it (nil without one).
    public static var localMachineID: String? { LockProcess.machineID }

    /// Taken on this machine: same host name and same `/etc/machine-id`. A
    /// lock without a machine id (older writers, or a machine without the
    /// file) is never judged by this machine's processes, only by age.
    var isThisMachine: Bool {
        guard let m = machineID, let ours = LockProcess.machineID else { return false }
        return m == ours && host == Sys.hostname
    }

    /// Stale beyond doubt: released (by any machine), or taken on this
    /// machine and its process is gone (or its pid reused, or a boot since).
    /// Not a lock stale only by age, whose process may yet refresh it.
    public var isOrphanedHere: Bool {
        if released == true { return true }
        guard isThisMachine else { return false }
        if let b = bootID, let current = LockProcess.bootID, b != current { return true }
        if !Sys.processExists(pid) { return true }
        if let s = processStart, let current = LockProcess.startTime(pid), s != current { return true }
        return false
    }

    /// Stale: see `staleReason`.
    public func isStale(now: Timestamp = .now()) -> Bool { staleReason(now: now) != nil }

    /// What makes a decoded lock meaningless (it is then treated as unreadable), or nil.
    func problem() -> String? {
        if pid <= 0 { return "pid \(pid) is not a process id" }
        if host.isEmpty { return "host is empty" }
        return nil
    }

    public var summary: String {
        "\(exclusive ? "exclusive" : "shared") lock by `\(command)` (pid \(pid) on \(host), user \(username), since \(time.short) UTC)"
    }
}

/// This host's process facts a lock records (Linux `/proc`; nil elsewhere or when unreadable).
enum LockProcess {
    /// Field 22 (`starttime`) of `/proc/PID/stat`. The second field, the command
    /// name, may hold spaces and parentheses: fields are counted after the last ')'.
    static func startTime(_ pid: Int32) -> UInt64? {
        guard pid > 0, let bytes = readSmallFile("/proc/\(pid)/stat", limit: 4096),
              let close = bytes.lastIndex(of: UInt8(ascii: ")")) else { return nil }
        // After ')': state is field 3, so field 22 is the 20th one.
        let fields = bytes[(close + 1)...].split(separator: UInt8(ascii: " "))
        guard fields.count >= 20 else { return nil }
        return UInt64(String(decoding: fields[fields.startIndex + 19], as: UTF8.self))
    }

    /// `/etc/machine-id` (32 lowercase hex digits), or nil when missing or
    /// not in that form: then no lock is judged by this machine's processes.
    static let machineID: String? = {
        guard let b = readSmallFile("/etc/machine-id", limit: 128) else { return nil }
        let s = String(decoding: b, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return isMachineID(s) ? s : nil
    }()

    static func isMachineID(_ s: String) -> Bool {
        s.utf8.count == 32 && s.utf8.allSatisfy { (48...57).contains($0) || (97...102).contains($0) }
    }

    static let bootID: String? = {
        guard let b = readSmallFile("/proc/sys/kernel/random/boot_id", limit: 128) else { return nil }
        let s = String(decoding: b, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return s.isEmpty ? nil : s
    }()

    /// Reads at most `limit` bytes of a regular file, not following a symlink;
    /// nil if it cannot be read, is larger or is not a regular file. A caller's
    /// `lstat` proves nothing about what is opened: an entry swapped for a FIFO
    /// in between would block `open` (and `read`) until a writer came, so the
    /// open never blocks (`O_NONBLOCK`) and the descriptor itself must be a
    /// regular file.
    static func readSmallFile(_ path: String, limit: Int) -> [UInt8]? {
        guard let fd = try? Sys.open(path, Sys.O_RDONLY | Sys.O_NOFOLLOW | O_NONBLOCK | Sys.O_CLOEXEC) else { return nil }
        defer { Sys.close(fd) }
        guard let st = try? Sys.fstat(fd, path: path), st.isRegular else { return nil }
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = (try? buffer.withUnsafeMutableBytes { try Sys.read(fd, $0.baseAddress!, $0.count, path: path) }) ?? -1
            if n < 0 { return nil }
            if n == 0 { return out }
            out += buffer[0..<n]
            if out.count > limit { return nil }
        }
    }
}

/// A held lock. Release it with `release()`; a background thread refreshes
/// it (`LockRefresher`).
public final class RepositoryLock: Sendable {
    public let path: String
    let layout: RepositoryLayout
    let info: LockInfo
    private let refresher: LockRefresher

    init(path: String, layout: RepositoryLayout, info: LockInfo) {
        self.path = path; self.layout = layout; self.info = info
        refresher = LockRefresher(info: info, what: "lock file \(path)") { bytes in
            try AtomicFile.write(bytes, to: path, tmpDirectory: layout.tmpDirectory)
        }
    }

    /// All locks in the repository, with their file names. `info` is nil when
    /// the file cannot be read, is not lock JSON or holds meaningless values;
    /// `problem` then says why.
    public static func list(_ layout: RepositoryLayout) throws -> [(name: String, info: LockInfo?, problem: String?)] {
        try Sys.listDirectory(layout.lockDirectory).filter { !$0.hasSuffix(".tmp") }.compactMap { name in
            let path = layout.lockPath(name)
            // A lock released since the listing is gone, not unusable.
            let st: FileStatus
            do { st = try Sys.lstat(path) } catch let e as SystemError where e.isNotFound { return nil } catch {
                return (name, nil, "it cannot be examined: \(error)")
            }
            guard st.isRegular else { return (name, nil, "it is not a regular file") }
            guard st.size <= UInt64(LockInfo.maxFileSize) else { return (name, nil, "it holds \(st.size) bytes, more than a lock file's \(LockInfo.maxFileSize)") }
            guard let bytes = LockProcess.readSmallFile(path, limit: LockInfo.maxFileSize) else {
                if (try? Sys.lstat(path)) == nil { return nil }
                return (name, nil, "it cannot be read")
            }
            guard let info = try? JSONDecoder().decode(LockInfo.self, from: Data(bytes)) else { return (name, nil, "it is not lock JSON") }
            if let p = info.problem() { return (name, nil, p) }
            return (name, info, nil)
        }
    }

    /// Takes a lock. Conflicting live locks make it throw `.locked` naming the
    /// holder; stale locks are reported through `warn` and ignored. A lock file
    /// that cannot be used (`list`) might be anyone's, an exclusive one
    /// included: it blocks an exclusive lock, naming the file, until it is
    /// removed (`accord unlock` removes it); a shared lock reports it and goes on.
    public static func acquire(_ layout: RepositoryLayout, exclusive: Bool, command: String,
                               warn: (String) -> Void = { _ in }) throws -> RepositoryLock {
        let info = LockInfo.ours(exclusive: exclusive, command: command)
        let name = hexString(Sys.randomBytes(16))
        let path = layout.lockPath(name)
        try AtomicFile.write(try Repository.encodeJSON(info), to: path, tmpDirectory: layout.tmpDirectory)
        let lock = RepositoryLock(path: path, layout: layout, info: info)
        let root = layout.root
        let others: [(name: String, info: LockInfo?, problem: String?)]
        do { others = try list(layout) } catch { try? Sys.unlink(path); throw error }
        for other in others where other.name != name {
            guard let o = other.info else {
                let what = "lock file \(layout.lockPath(other.name)) is unreadable (\(other.problem ?? "it cannot be read"))"
                let fix = "if no accord is running on the repository, remove it with `accord unlock -d \(root)`"
                // It might be anyone's lock, an exclusive one included: nothing that deletes may run beside it.
                // A shared lock goes on (a restore must work on a damaged repository; a genuine lock is never unreadable).
                guard !exclusive else {
                    try? Sys.unlink(path)
                    throw RepositoryError.locked("\(what), so it is unknown who holds repository \(root): \(fix)")
                }
                warn("\(what); ignored by this shared lock, but it blocks prune, forget and other exclusive commands: \(fix)")
                continue
            }
            if let why = o.staleReason() {
                warn("ignoring stale \(o.summary): \(why); remove it with `accord unlock -d \(root)`")
                continue
            }
            if exclusive || o.exclusive {
                try? Sys.unlink(path)
                throw RepositoryError.locked("repository \(root) is held by a \(o.summary); wait for it to finish, "
                                             + "or, if that accord is no longer running, remove its lock with `accord unlock --all -d \(root)`")
            }
        }
        lock.startRefreshing()
        return lock
    }

    /// `acquire`, but while a live process holds a conflicting lock it tries
    /// again, with backoff (0.5 s doubling to 15 s), until `retryFor` seconds
    /// have passed; then the last `.locked` is thrown. `waiting` hears whom it
    /// waits for (once per holder). An unreadable lock file blocking an
    /// exclusive lock is not waited for: time does not remove it, `accord
    /// unlock` does. A stale lock is reported once, not on every try.
    public static func acquire(_ layout: RepositoryLayout, exclusive: Bool, command: String, retryFor: Double,
                               waiting: (String) -> Void, warn: (String) -> Void = { _ in }) throws -> RepositoryLock {
        let deadline = Sys.monotonicSeconds() + max(0, retryFor)
        var pause = 0.5, warned = Set<String>(), announced = Set<String>()
        func warnOnce(_ m: String) { if warned.insert(m).inserted { warn(m) } }
        while true {
            do { return try acquire(layout, exclusive: exclusive, command: command, warn: warnOnce) } catch RepositoryError.locked(let why) {
                let left = deadline - Sys.monotonicSeconds()
                guard left > 0 else { throw RepositoryError.locked(retryFor > 0 ? "\(why) (waited \(Int(retryFor.rounded())) s, --retry-lock)" : why) }
                let locks = (try? list(layout)) ?? []
                if exclusive, locks.contains(where: { $0.info == nil }) { throw RepositoryError.locked(why) }
                let holders = locks.compactMap { $0.info }.filter { ($0.exclusive || exclusive) && !$0.isStale() }
                for h in holders where announced.insert(h.summary).inserted {
                    waiting("repository \(layout.root) is held: \(h.summary); waiting up to \(Int(left.rounded(.up))) s more for it (--retry-lock)")
                }
                Thread.sleep(forTimeInterval: min(pause, left))
                pause = min(pause * 2, 15)
            }
        }
    }

    private func startRefreshing() { refresher.start() }

    /// Removes the lock file, after a refresh in flight (none follows).
    public func release() {
        refresher.release { try? Sys.unlink(path) }
    }

    /// Removes stale and unusable locks (or all, with `all`). Returns what was
    /// removed, the live locks left, and the entries it would not remove with
    /// what to do about each. A lock released meanwhile is skipped. A directory
    /// among the locks is removed when empty; its contents never are (they are
    /// no lock, and might be anything): a non-empty one is left, named, for
    /// the user to look at and remove by hand.
    public static func removeLocks(_ layout: RepositoryLayout, all: Bool) throws -> (removed: [String], live: [String], left: [String]) {
        var removed: [String] = [], live: [String] = [], left: [String] = []
        for l in try list(layout) {
            let why: String? = l.info.map { $0.staleReason() } ?? (l.problem ?? "unreadable")
            guard all || why != nil else { live.append(l.info!.summary); continue }
            let path = layout.lockPath(l.name)
            var what = l.info?.summary ?? "unreadable lock file \(l.name)"
            do { try Sys.unlink(path) } catch let e as SystemError where e.isNotFound { continue } catch {
                // unlink refuses a directory (EISDIR on Linux, EPERM elsewhere); rmdir removes only an empty one.
                guard let st = try? Sys.lstat(path), st.isDirectory else { throw error }
                do { try Sys.rmdir(Array(path.utf8)) } catch let e as SystemError where e.isNotFound { continue } catch let e as SystemError
                    where e.errno == ENOTEMPTY || e.errno == EEXIST {
                    left.append("\(path) is a directory that is not empty, not a lock file; unlock does not remove what a directory holds: "
                                + "look at it and, if no accord is running on the repository, remove it by hand (rm -r \(path))")
                    continue
                }
                what = "empty directory \(l.name) in the lock directory"
            }
            removed.append(why.map { "\(what) (\($0))" } ?? "\(what) (live)")
        }
        return (removed, live, left)
    }
}
