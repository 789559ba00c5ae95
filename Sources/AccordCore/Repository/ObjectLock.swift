import Foundation
import AccordRuntime

/// A held repository lock: a file of a local repository (`RepositoryLock`)
/// or an object on an object store (`ObjectLock`).
public protocol HeldLock: AnyObject, Sendable {
    /// Removes the lock (and stops refreshing it).
    func release()
    /// For a lock taken with its second look deferred (a reader's, see
    /// `ObjectLock.acquire(_:command:deferringSecondLook:settle:warn:)`):
    /// waits for that look and returns the conflict it found, if any.
    func secondLookConflict() -> (any Error)?
    /// Looks at the other locks again, now, as the second look does (for
    /// when that look could not list them): the conflict or failure found.
    func lookAgain() -> (any Error)?
}

extension HeldLock {
    public func secondLookConflict() -> (any Error)? { nil }
    /// By default what the second look found: a lock type that defers its look
    /// and has no way to look again refuses rather than go on unchecked.
    public func lookAgain() -> (any Error)? { secondLookConflict() }
}

extension RepositoryLock: HeldLock {}

/// A lock as an object (`locks/<random>`, the same `LockInfo` JSON as a lock
/// file) on a backend that is not a local directory, taken the way restic
/// takes one: list the others, write our own lock, wait `settleSeconds` and
/// list them again, and if one conflicts withdraw ours (a listing may lag a
/// write, so a lock written by a racer at the same moment shows up on the
/// second look, and both withdraw rather than both proceed). Nothing relies
/// on a conditional write (many servers ignore `If-None-Match`). Staleness is
/// `LockInfo.staleReason`: by age (refreshed every `refreshInterval` while
/// held, by `LockRefresher`) and, for a lock of this machine (host name and
/// machine id), by process.
public final class ObjectLock: HeldLock, Sendable {
    public let name: String
    let backend: any Backend
    /// What the lock object says (as taken; its `time` is refreshed).
    public let info: LockInfo
    private let refresher: LockRefresher
    /// Why `release` could not delete the lock object, once it has tried.
    private let failure = FailureBox()
    /// A reader's second look, running while the reader works (nil: it was
    /// taken before `acquire` returned).
    private let pendingLook: PendingLook?
    /// The pause before the second look at the other locks.
    public static let settleSeconds = 0.3
    /// A leftover is taken over only if our write starts this soon after the listing that found it...
    static let takeOverSeconds = 0.5
    /// ...and then read back this long after our write (a racer's write landing later than this
    /// after its own listing, so a PUT slower than half a second, would go unseen).
    static let takeOverSettleSeconds = 1.0

    init(name: String, backend: any Backend, info: LockInfo, pendingLook: PendingLook? = nil) {
        self.name = name; self.backend = backend; self.info = info; self.pendingLook = pendingLook
        refresher = LockRefresher(info: info, what: "lock \(backend.describe(.lock, name))") { bytes in
            try bytes.withUnsafeBytes { try backend.write(.lock, name, $0) }
        }
    }

    public typealias Listed = (name: String, info: LockInfo?, problem: String?)

    /// Every lock object but `own`, read and decoded (`info` nil with `problem`
    /// saying why when it cannot be used). One deleted since the listing is
    /// left out; one larger than a lock can be is not read.
    public static func list(_ backend: any Backend, except own: String? = nil) throws -> [Listed] {
        try backend.list(.lock).filter { $0 != own }.compactMap { name -> Listed? in
            do { return try read(backend, name) } catch BackendError.notFound { return nil }
        }
    }

    /// One lock object, read and decoded as `list` does.
    static func read(_ backend: any Backend, _ name: String) throws -> Listed {
        let bytes = try backend.read(.lock, name, upTo: LockInfo.maxFileSize)
        guard bytes.count <= LockInfo.maxFileSize else { return (name, nil, "it holds more than a lock's \(LockInfo.maxFileSize) bytes") }
        guard let info = try? JSONDecoder().decode(LockInfo.self, from: Data(bytes)) else { return (name, nil, "it is not lock JSON") }
        if let p = info.problem() { return (name, nil, p) }
        return (name, info, nil)
    }

    /// One try: `.locked` naming the holder when a live lock conflicts (see
    /// `RepositoryLock.acquire` for the rules, which are the same).
    ///
    /// The others are listed first (a conflict fails at once, writing
    /// nothing), then our lock is written, and after `settleSeconds` the
    /// others are listed again: that second look decides (a racer that wrote
    /// at the same moment is seen by at least one of the two, which withdraws).
    /// A shared lock takes over a lock object marked released (one that a
    /// finished accord could not delete, as with a DR bucket's credentials
    /// that may not) or of this machine with its process gone, rather than
    /// write a new one, so such objects do not pile up, one per command. After
    /// the second look it is read back: if another accord took it over at the
    /// same moment we start again under a new name. That catches every racer
    /// whose write lands within `takeOverSettleSeconds` of its listing, which
    /// is why the object is only taken over when the write starts within
    /// `takeOverSeconds` of the listing that found it; exclusive locks never
    /// take one over (a shared lock sharing an object with another would at
    /// worst vanish with the other's release until its next refresh).
    public static func acquire(_ backend: any Backend, exclusive: Bool, command: String, warn: (String) -> Void = { _ in }) throws -> ObjectLock {
        try acquire(backend, exclusive: exclusive, command: command, takeOver: true, warn: warn)
    }

    /// A shared lock whose second look runs on a thread of its own while
    /// the caller works, for commands that only read (`restore`): the settle
    /// pause is off their critical path. This is safe for a reader alone:
    /// every blob it uses is verified against its id, so a prune that raced
    /// it unseen can only make its reads fail, never give it wrong bytes
    /// (readers already go on without any lock where none can be written).
    /// `secondLookConflict` says what that look found. Where the first look
    /// finds a leftover lock object to take over (a DR bucket whose
    /// credentials may not delete), the lock is taken the usual way instead:
    /// a take-over needs its read-back before the lock is used, and a reader
    /// writing a new object each time would pile them up.
    /// `settle`: the pause before that look (tests lengthen it).
    public static func acquire(_ backend: any Backend, command: String, deferringSecondLook: Bool,
                               settle: Double = settleSeconds, warn: (String) -> Void = { _ in }) throws -> ObjectLock {
        guard deferringSecondLook else { return try acquire(backend, exclusive: false, command: command, warn: warn) }
        let info = LockInfo.ours(exclusive: false, command: command)
        if try checkOthers(backend, own: nil, exclusive: false, quietAbout: { $0.isOrphanedHere }, warn: warn) != nil {
            return try acquire(backend, exclusive: false, command: command, warn: warn)
        }
        let name = hexString(Sys.randomBytes(16))
        let bytes = try Repository.encodeJSON(info)
        try bytes.withUnsafeBytes { try backend.write(.lock, name, $0) }
        let pending = PendingLook(after: settle) { try look(backend, own: name, exclusive: false) }
        let lock = ObjectLock(name: name, backend: backend, info: info, pendingLook: pending)
        lock.startRefreshing()
        return lock
    }

    static func acquire(_ backend: any Backend, exclusive: Bool, command: String, takeOver: Bool, warn: (String) -> Void) throws -> ObjectLock {
        let info = LockInfo.ours(exclusive: exclusive, command: command)
        let listed = Sys.monotonicSeconds()
        var orphan = try checkOthers(backend, own: nil, exclusive: exclusive,
                                     quietAbout: takeOver && !exclusive ? { $0.isOrphanedHere } : { _ in false }, warn: warn)
        if orphan != nil, Sys.monotonicSeconds() - listed > takeOverSeconds {
            orphan = nil   // too long since it was seen stale: a new object instead
        }
        let name = orphan ?? hexString(Sys.randomBytes(16))
        let bytes = try Repository.encodeJSON(info)
        try bytes.withUnsafeBytes { try backend.write(.lock, name, $0) }
        do {
            Thread.sleep(forTimeInterval: orphan == nil ? settleSeconds : takeOverSettleSeconds)
            try look(backend, own: name, exclusive: exclusive)
        } catch {
            try? backend.delete(.lock, name)
            throw error
        }
        if orphan != nil, (try? backend.read(.lock, name, upTo: LockInfo.maxFileSize)) != bytes {
            // Another accord took the same object over: it is theirs now, not ours to delete.
            return try acquire(backend, exclusive: exclusive, command: command, takeOver: false, warn: warn)
        }
        let lock = ObjectLock(name: name, backend: backend, info: info)
        lock.startRefreshing()
        return lock
    }

    /// A look after our own lock is written (or instead of one): throws the
    /// conflict, or why the locks could not be listed; says nothing else
    /// (the first look warned about what it found).
    static func look(_ backend: any Backend, own: String?, exclusive: Bool) throws {
        _ = try checkOthers(backend, own: own, exclusive: exclusive, quietAbout: { _ in false }, warn: { _ in })
    }

    /// Throws `.locked` if a lock other than `own` conflicts. Returns the
    /// name of the first stale lock `quietAbout` picks (not warned about: it
    /// is to be taken over), if any.
    static func checkOthers(_ backend: any Backend, own: String?, exclusive: Bool, quietAbout: (LockInfo) -> Bool,
                            warn: (String) -> Void) throws -> String? {
        let root = backend.location
        var picked: String?
        for other in try list(backend, except: own) {
            guard let o = other.info else {
                let what = "lock \(backend.describe(.lock, other.name)) is unreadable (\(other.problem ?? "it cannot be read"))"
                let fix = "if no accord is running on the repository, remove it with `accord unlock -d \(root)`"
                guard !exclusive else { throw RepositoryError.locked("\(what), so it is unknown who holds repository \(root): \(fix)") }
                warn("\(what); ignored by this shared lock, but it blocks prune, forget and other exclusive commands: \(fix)")
                continue
            }
            if let why = o.staleReason() {
                if picked == nil, quietAbout(o) { picked = other.name; continue }
                warn("ignoring stale \(o.summary): \(why); remove it with `accord unlock -d \(root)`")
                continue
            }
            if exclusive || o.exclusive {
                throw RepositoryError.locked("repository \(root) is held by a \(o.summary); wait for it to finish, "
                                             + "or, if that accord is no longer running, remove its lock with `accord unlock --all -d \(root)`")
            }
        }
        return picked
    }

    /// `acquire`, trying again with backoff (0.5 s doubling to 15 s, with
    /// jitter, so two racers that both withdrew do not meet again) while a
    /// live lock conflicts, until `retryFor` seconds have passed.
    public static func acquire(_ backend: any Backend, exclusive: Bool, command: String, retryFor: Double,
                               deferringSecondLook: Bool = false,
                               waiting: (String) -> Void, warn: (String) -> Void = { _ in }) throws -> ObjectLock {
        let deadline = Sys.monotonicSeconds() + max(0, retryFor)
        var pause = 0.5, warned = Set<String>(), announced = Set<String>()
        func warnOnce(_ m: String) { if warned.insert(m).inserted { warn(m) } }
        while true {
            do {
                if deferringSecondLook && !exclusive {
                    return try acquire(backend, command: command, deferringSecondLook: true, warn: warnOnce)
                }
                return try acquire(backend, exclusive: exclusive, command: command, warn: warnOnce)
            } catch RepositoryError.locked(let why) {
                let left = deadline - Sys.monotonicSeconds()
                guard left > 0 else { throw RepositoryError.locked(retryFor > 0 ? "\(why) (waited \(Int(retryFor.rounded())) s, --retry-lock)" : why) }
                let locks = (try? list(backend)) ?? []
                if exclusive, locks.contains(where: { $0.info == nil }) { throw RepositoryError.locked(why) }
                for h in locks.compactMap({ $0.info }) where (h.exclusive || exclusive) && !h.isStale() && announced.insert(h.summary).inserted {
                    waiting("repository \(backend.location) is held: \(h.summary); waiting up to \(Int(left.rounded(.up))) s more for it (--retry-lock)")
                }
                Thread.sleep(forTimeInterval: min(pause * Double.random(in: 0.75...1.25), left))
                pause = min(pause * 2, 15)
            }
        }
    }

    private func startRefreshing() { refresher.start() }

    /// Deletes the lock object, after a refresh in flight (none follows).
    /// When the DELETE is refused (credentials that may not delete, as a DR
    /// bucket's), the object is rewritten marked released instead (a PUT
    /// those credentials may make): stale at once for every host, and taken
    /// over by the next shared lock; `releaseFailure` says why.
    public func release() {
        _ = pendingLook?.wait()   // its listing must not outlive the lock
        refresher.release {
            do { try backend.delete(.lock, name) } catch BackendError.notFound {} catch {
                failure.set(error)
                var gone = info
                gone.released = true
                if let bytes = try? Repository.encodeJSON(gone) { try? bytes.withUnsafeBytes { try backend.write(.lock, name, $0) } }
            }
        }
    }

    /// Why `release` could not delete the lock object, or nil.
    public var releaseFailure: (any Error)? { failure.get() }

    public func secondLookConflict() -> (any Error)? { pendingLook?.wait() }

    public func lookAgain() -> (any Error)? {
        do { try Self.look(backend, own: name, exclusive: info.exclusive) } catch { return error }
        return nil
    }

    /// The second look of `acquire(_:command:deferringSecondLook:settle:warn:)`: on
    /// a thread of its own, `settle` seconds after the lock was written.
    /// `@unchecked Sendable`: `outcome` is read and written under `done`'s lock.
    final class PendingLook: @unchecked Sendable {
        private let done = NSCondition()
        private var finished = false
        private var outcome: (any Error)?

        init(after settle: Double, _ look: @escaping @Sendable () throws -> Void) {
            Thread { [self] in
                Thread.sleep(forTimeInterval: settle)
                var found: (any Error)?
                do { try look() } catch { found = error }
                done.lock(); outcome = found; finished = true; done.broadcast(); done.unlock()
            }.start()
        }

        /// Waits for the look; what it found (a conflict, or why it could not list).
        func wait() -> (any Error)? {
            done.lock(); defer { done.unlock() }
            while !finished { done.wait() }
            return outcome
        }
    }
    /// The lock object, for messages.
    public var object: String { backend.describe(.lock, name) }

    /// `@unchecked Sendable`: `error` is read and written under `lock`.
    private final class FailureBox: @unchecked Sendable {
        private let lock = NSLock()
        private var error: (any Error)?
        func set(_ e: any Error) { lock.withLock { error = e } }
        func get() -> (any Error)? { lock.withLock { error } }
    }

    /// Removes stale and unusable locks (or all, with `all`): what was
    /// removed, and the live locks left (as `RepositoryLock.removeLocks`).
    public static func removeLocks(_ backend: any Backend, all: Bool) throws -> (removed: [String], live: [String]) {
        var removed: [String] = [], live: [String] = []
        for l in try list(backend) {
            let why: String? = l.info.map { $0.staleReason() } ?? (l.problem ?? "unreadable")
            guard all || why != nil else { live.append(l.info?.summary ?? l.name); continue }
            do { try backend.delete(.lock, l.name) } catch BackendError.notFound { continue }
            let what = l.info?.summary ?? "unreadable lock \(l.name)"
            removed.append(why.map { "\(what) (\($0))" } ?? "\(what) (live)")
        }
        return (removed, live)
    }
}

extension Repository {
    /// Takes this repository's lock: a lock file locally (`RepositoryLock`),
    /// a lock object elsewhere (`ObjectLock`); same rules, same messages.
    /// `deferringSecondLook`: a shared lock of a command that only reads
    /// (`restore`) takes its second look on an object store while it works
    /// (`ObjectLock.acquire(_:command:deferringSecondLook:settle:warn:)`; a lock
    /// file has no settle pause).
    public func acquireLock(exclusive: Bool, command: String, retryFor: Double, deferringSecondLook: Bool = false,
                            waiting: (String) -> Void, warn: (String) -> Void = { _ in }) throws -> any HeldLock {
        if local != nil {
            return try RepositoryLock.acquire(layout, exclusive: exclusive, command: command, retryFor: retryFor, waiting: waiting, warn: warn)
        }
        return try ObjectLock.acquire(backend, exclusive: exclusive, command: command, retryFor: retryFor,
                                      deferringSecondLook: deferringSecondLook, waiting: waiting, warn: warn)
    }

    /// For a reader that goes on without a lock object (it could not write
    /// one): throws when a live exclusive lock is there, or when the locks
    /// cannot be listed. A restore calls it before it first replaces anything
    /// in its target. A local repository has nothing to list here.
    public func lookAtOtherLocks() throws {
        guard local == nil else { return }
        try ObjectLock.look(backend, own: nil, exclusive: false)
    }
}
