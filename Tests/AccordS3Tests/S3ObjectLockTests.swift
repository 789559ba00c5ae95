import AccordCore
import AccordRuntime
import AccordTestSupport
@_spi(Testing) import AccordS3
import Foundation
import XCTest

/// Locks as objects on the real S3 server (`ObjectLock`): racing takers never
/// both hold an exclusive lock, and what is left behind is named and handled.
final class S3ObjectLockTests: XCTestCase {
    override class func setUp() { super.setUp(); S3Servers.start(self) }
    override class func tearDown() { S3Servers.stop(self); super.tearDown() }

    func backend() throws -> S3Backend {
        let server = try S3Servers.server(Self.self)
        return try S3Backend(try server.location(prefix: freshPrefix()), environment: server.clientEnvironment)
    }

    /// Six threads take an exclusive lock at the same moment (waiting for it,
    /// as --retry-lock does), each holding it for a while: all get it in turn,
    /// never two at once, and every lock object is gone afterwards (a taker
    /// that backed off withdrew its own).
    func testRacingExclusiveTakersNeverBothHold() throws {
        let b = try backend()
        let holders = LockedBox(0), most = LockedBox(0), won = LockedBox(0)
        let group = DispatchGroup()
        for _ in 0..<6 {
            group.enter()
            Thread {
                defer { group.leave() }
                guard let lock = try? ObjectLock.acquire(b, exclusive: true, command: "race", retryFor: 120, waiting: { _ in }) else { return }
                won.withLock { $0 += 1 }
                let now = holders.withLock { $0 += 1; return $0 }
                most.withLock { $0 = max($0, now) }
                Thread.sleep(forTimeInterval: 0.2)
                holders.withLock { $0 -= 1 }
                lock.release()
            }.start()
        }
        group.wait()
        XCTAssertEqual(won.withLock { $0 }, 6, "every taker got the lock in the end")
        XCTAssertEqual(most.withLock { $0 }, 1, "never two exclusive holders at once")
        XCTAssertEqual(try b.list(.lock), [], "every taker removed its lock object")
        // With nobody racing, it is taken.
        let lock = try ObjectLock.acquire(b, exclusive: true, command: "alone")
        XCTAssertEqual(try b.list(.lock), [lock.name])
        XCTAssertThrowsError(try ObjectLock.acquire(b, exclusive: false, command: "shared")) { e in
            XCTAssertTrue("\(e)".contains("exclusive lock by `alone`"), "\(e)")
        }
        lock.release()
        XCTAssertEqual(try b.list(.lock), [])
    }

    /// A reader's lock (`restore`) with its second look deferred: `acquire`
    /// returns before the look, which still runs a settle pause later and
    /// finds an exclusive lock a racer wrote after `acquire` returned (one
    /// whose own first look missed ours); another reader's lock is no
    /// conflict; each reader's lock object goes with its release.
    func testAReadersDeferredSecondLookFindsARacerThatCameAfterAcquire() throws {
        let b = try backend()
        let quiet = try ObjectLock.acquire(b, command: "restore", deferringSecondLook: true, settle: 2)
        let other = try ObjectLock.acquire(b, command: "restore", deferringSecondLook: true, settle: 0)
        XCTAssertNil(quiet.secondLookConflict().map { "\($0)" }, "a shared lock of another reader is no conflict")
        XCTAssertNil(other.secondLookConflict().map { "\($0)" })
        other.release()
        quiet.release()
        XCTAssertEqual(try b.list(.lock), [], "both readers removed their lock objects")

        let reader = try ObjectLock.acquire(b, command: "restore", deferringSecondLook: true, settle: 2)
        let racer = LockInfo(exclusive: true, host: "elsewhere", pid: 1, username: "u", command: "prune", time: Timestamp.now())
        try put(racer, as: "racer", into: b)
        let conflict = try XCTUnwrap(reader.secondLookConflict(), "the look ran after acquire returned: it must see the racer")
        XCTAssertTrue("\(conflict)".contains("exclusive lock by `prune`"), "\(conflict)")
        XCTAssertTrue(reader.secondLookConflict() != nil, "asking again gives the same answer")
        reader.release()
        XCTAssertEqual(try b.list(.lock), ["racer"], "the reader removed its own lock object only")
        // With the racer's lock in place, the reader's first look refuses at once.
        XCTAssertThrowsError(try ObjectLock.acquire(b, command: "restore", deferringSecondLook: true)) { e in
            XCTAssertTrue("\(e)".contains("exclusive lock by `prune`"), "\(e)")
        }
        XCTAssertEqual(try b.list(.lock), ["racer"], "a refused reader writes no lock object")
        try b.delete(.lock, "racer")
    }

    /// A reader's lock released while its look still waits: `release` waits
    /// for the look, then deletes the object. Over a leftover of this host
    /// marked released (a DR bucket whose credentials may not delete), the
    /// reader takes the lock the usual way: it takes the leftover over
    /// rather than writing a second object.
    func testAReadersLockReleasedEarlyAndOverALeftover() throws {
        let b = try backend()
        let early = try ObjectLock.acquire(b, command: "restore", deferringSecondLook: true, settle: 1)
        early.release()
        XCTAssertEqual(try b.list(.lock), [], "released once its look was done")
        XCTAssertNil(early.secondLookConflict().map { "\($0)" })

        let info = LockInfo(exclusive: false, host: Sys.hostname, pid: 1, username: "u", command: "restore",
                            time: .now(), processStart: 1, machineID: LockInfo.localMachineID, released: true)
        try Array(try JSONEncoder().encode(info)).withUnsafeBytes { try b.write(.lock, "leftover", $0) }
        let reader = try ObjectLock.acquire(b, command: "restore", deferringSecondLook: true)
        XCTAssertEqual(reader.name, "leftover", "taken over")
        XCTAssertEqual(try b.list(.lock), ["leftover"], "no second object")
        reader.release()
        XCTAssertEqual(try b.list(.lock), [])
    }

    /// A lock object that is not lock JSON, or too large, blocks an exclusive
    /// lock (naming it), lets a shared one go on with a warning, and is
    /// removed by `removeLocks`; an old one is stale.
    func testUnreadableAndStaleLockObjects() throws {
        let b = try backend()
        try Array("not json".utf8).withUnsafeBytes { try b.write(.lock, "garbage", $0) }
        XCTAssertThrowsError(try ObjectLock.acquire(b, exclusive: true, command: "prune")) { e in
            XCTAssertTrue("\(e)".contains("is unreadable (it is not lock JSON)") && "\(e)".contains("accord unlock"), "\(e)")
        }
        var warnings: [String] = []
        let shared = try ObjectLock.acquire(b, exclusive: false, command: "backup") { warnings.append($0) }
        XCTAssertTrue(warnings.contains { $0.contains("garbage") }, "\(warnings)")
        shared.release()
        let old = LockInfo(exclusive: true, host: "elsewhere", pid: 1, username: "u", command: "prune",
                           time: Timestamp(seconds: Timestamp.now().seconds - 2 * LockInfo.staleAfterSeconds, nanoseconds: 0))
        try Array(try JSONEncoder().encode(old)).withUnsafeBytes { try b.write(.lock, "old", $0) }
        try [UInt8](repeating: 0x20, count: LockInfo.maxFileSize + 1).withUnsafeBytes { try b.write(.lock, "huge", $0) }
        let listed = try ObjectLock.list(b)
        XCTAssertTrue(listed.contains { $0.name == "huge" && $0.problem?.contains("more than a lock's") == true }, "\(listed)")
        let (removed, live) = try ObjectLock.removeLocks(b, all: false)
        XCTAssertEqual(removed.count, 3, "\(removed)")
        XCTAssertEqual(live, [])
        XCTAssertEqual(try b.list(.lock), [])
    }

    /// A lock object of this host whose process is gone (what a release
    /// without the right to delete leaves) is taken over, not warned about,
    /// and not added to; takers racing for it never share it: one wins it,
    /// the others start again under names of their own.
    func testALeftoverOfThisHostIsTakenOverByOneTakerOnly() throws {
        let b = try backend()
        let gone = Process()
        gone.executableURL = URL(fileURLWithPath: "/bin/true")
        try gone.run()
        gone.waitUntilExit()
        func leave(_ name: String, host: String = Sys.hostname, released: Bool? = nil) throws {
            let info = LockInfo(exclusive: false, host: host, pid: gone.processIdentifier, username: "u", command: "sync (destination)",
                                time: .now(), processStart: 1, machineID: LockInfo.localMachineID, released: released)
            try Array(try JSONEncoder().encode(info)).withUnsafeBytes { try b.write(.lock, name, $0) }
        }
        try leave("leftover")
        var warnings: [String] = []
        let lock = try ObjectLock.acquire(b, exclusive: false, command: "sync (destination)") { warnings.append($0) }
        XCTAssertEqual(lock.name, "leftover")
        XCTAssertEqual(try b.list(.lock), ["leftover"], "taken over: no second object")
        XCTAssertEqual(warnings, [], "the leftover it takes over is not warned about")
        XCTAssertThrowsError(try ObjectLock.acquire(b, exclusive: true, command: "prune"), "it is a live lock now") { e in
            XCTAssertTrue("\(e)".contains("shared lock by `sync (destination)`"), "\(e)")
        }
        XCTAssertEqual(try b.list(.lock), ["leftover"], "the refused exclusive taker wrote nothing")
        lock.release()
        XCTAssertNil(lock.releaseFailure)
        XCTAssertEqual(try b.list(.lock), [])

        // An exclusive lock never takes one over: it warns and writes its own.
        try leave("leftover")
        warnings = []
        let exclusive = try ObjectLock.acquire(b, exclusive: true, command: "prune") { warnings.append($0) }
        XCTAssertNotEqual(exclusive.name, "leftover")
        XCTAssertTrue(warnings.contains { $0.contains("ignoring stale") }, "\(warnings)")
        exclusive.release()
        try b.delete(.lock, "leftover")

        // One of another host is not ours to judge by process: live until it is old, never taken over...
        try leave("elsewhere", host: "another-host.invalid")
        let shared = try ObjectLock.acquire(b, exclusive: false, command: "backup")
        XCTAssertNotEqual(shared.name, "elsewhere")
        XCTAssertThrowsError(try ObjectLock.acquire(b, exclusive: true, command: "prune"), "a live lock of another host holds off prune")
        shared.release()
        // ...unless its accord marked it released (it could not delete it): stale for all, and taken over.
        try leave("elsewhere", host: "another-host.invalid", released: true)
        let over = try ObjectLock.acquire(b, exclusive: false, command: "backup")
        XCTAssertEqual(over.name, "elsewhere")
        over.release()
        XCTAssertEqual(try b.list(.lock), [])

        try leave("leftover")
        let names = LockedBox<[String]>([]), group = DispatchGroup()
        for _ in 0..<4 {
            group.enter()
            Thread {
                defer { group.leave() }
                if let l = try? ObjectLock.acquire(b, exclusive: false, command: "restore") { names.withLock { $0.append(l.name) } }
            }.start()
        }
        group.wait()
        let taken = names.withLock { $0 }
        XCTAssertEqual(taken.count, 4, "every shared taker got a lock")
        XCTAssertEqual(Set(taken).count, 4, "no two takers share an object: \(taken)")
        XCTAssertEqual(Set(try b.list(.lock)), Set(taken), "the leftover is one of them, or was overwritten by one that then moved on")
    }

    /// A pid that belonged to a process that has exited (and was reaped).
    func deadPID() throws -> Int32 {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/true")
        try p.run()
        p.waitUntilExit()
        return p.processIdentifier
    }

    func put(_ info: LockInfo, as name: String, into b: S3Backend) throws {
        try Array(try JSONEncoder().encode(info)).withUnsafeBytes { try b.write(.lock, name, $0) }
    }

    /// Review 23 M2: a host name is no machine identity (cloned VMs, pods). A
    /// fresh lock with our host name but another machine's id (or none: an
    /// older writer) is judged by age alone, so it holds off an exclusive
    /// lock though its pid is not running here and its boot id is not ours;
    /// with our machine id the same dead pid makes it stale.
    func testALockWithOurHostNameFromAnotherMachineIsNotJudgedByOurProcesses() throws {
        let b = try backend()
        let dead = try deadPID()
        let twin = LockInfo(exclusive: false, host: Sys.hostname, pid: dead, username: "u", command: "backup", time: .now(),
                            processStart: 1, bootID: "00000000-0000-4000-8000-000000000000", machineID: "0123456789abcdef0123456789abcdef")
        var older = twin
        older.machineID = nil
        for (name, info) in [("twin", twin), ("older", older)] {
            try put(info, as: name, into: b)
            XCTAssertNil(info.staleReason(), "\(name)")
            XCTAssertThrowsError(try ObjectLock.acquire(b, exclusive: true, command: "prune"), name) { e in
                XCTAssertTrue("\(e)".contains("shared lock by `backup` (pid \(dead) on \(Sys.hostname)"), "\(e)")
            }
            XCTAssertEqual(try b.list(.lock), [name], "the refused taker withdrew its lock")
            try b.delete(.lock, name)
        }
        let ours = try XCTUnwrap(LockInfo.localMachineID, "this machine has an /etc/machine-id")
        var here = twin
        here.machineID = ours
        try put(here, as: "here", into: b)
        var warnings: [String] = []
        let lock = try ObjectLock.acquire(b, exclusive: true, command: "prune") { warnings.append($0) }
        XCTAssertTrue(warnings.contains { $0.contains("ignoring stale") }, "\(warnings)")
        XCTAssertEqual(lock.info.machineID, ours, "a lock records this machine's id")
        lock.release()
        try b.delete(.lock, "here")
    }

    /// Review 23 W8: `release` while a refresh PUT is in flight (held by the
    /// proxy until a moment after `release` was called) must not leave the
    /// lock re-created by that PUT: release waits for it, then deletes.
    func testReleaseDuringARefreshLeavesNoLock() throws {
        let server = try S3Servers.server(Self.self)
        let p = try FaultProxy(upstreamPort: Int(server.port)!)
        defer { p.stop() }
        let location = try S3Location(parsing: "s3:http://127.0.0.1:\(p.port)/\(server.bucket)/\(freshPrefix())")
        let b = try S3Backend(location, environment: server.clientEnvironment)
        let lockPut: @Sendable (String) -> Bool = { $0.hasPrefix("PUT ") && $0.contains("/locks/") }
        let releasedAt = LockedBox<Date?>(nil)
        p.hold(occurrence: 2, of: lockPut) { releasedAt.withLock { $0 }.map { Date().timeIntervalSince($0) > 0.5 } ?? false }
        setenv("ACCORD_LOCK_REFRESH_SECONDS", "0.2", 1)
        defer { unsetenv("ACCORD_LOCK_REFRESH_SECONDS") }
        let lock = try ObjectLock.acquire(b, exclusive: true, command: "prune")
        let deadline = Date().addingTimeInterval(20)
        while p.arrived(lockPut) < 2 && Date() < deadline { usleep(5_000) }
        XCTAssertEqual(p.arrived(lockPut), 2, "the refresh PUT is in flight")
        releasedAt.withLock { $0 = Date() }
        lock.release()
        Thread.sleep(forTimeInterval: 1)
        XCTAssertEqual(p.answered(lockPut), 2, "the held refresh was answered, and none followed the release")
        XCTAssertEqual(try b.list(.lock), [], "a refresh that landed after the delete re-created the lock")
    }

    /// A backend through a fault proxy in front of the server, retrying
    /// little (each injected failure costs two requests).
    func proxiedBackend() throws -> (FaultProxy, S3Backend) {
        let server = try S3Servers.server(Self.self)
        let p = try FaultProxy(upstreamPort: Int(server.port)!)
        let location = try S3Location(parsing: "s3:http://127.0.0.1:\(p.port)/\(server.bucket)/\(freshPrefix())")
        return (p, try S3Backend(location, environment: server.clientEnvironment, retry: S3RetryPolicy(attempts: 2, baseDelay: 0.01, maxDelay: 0.02)))
    }

    /// Every listing answers 500 while `failing` holds. A listing is a GET of
    /// the bucket's own path (the proxy sees no query).
    static func failListings(_ p: FaultProxy, while failing: @escaping @Sendable () -> Bool) {
        p.refuse(from: 1, of: { $0.hasPrefix("GET ") && $0.hasSuffix("/") && failing() },
                 with: .answer(500, headers: ["Content-Type: application/xml"], body: S3FaultTests.errorXML("InternalError")))
    }

    /// `SecondLookGate`, what `accord restore` on a bucket passes before it
    /// first replaces anything in its target: it throws the exclusive lock a
    /// racer wrote after the reader's first look (and then has nothing left
    /// to say at the end); another reader is no conflict; a look that found
    /// a conflict but was never asked (a restore into a fresh target) is said
    /// at the end.
    func testTheGateThrowsARacersLockAndSaysAnUnmetOneAtTheEnd() throws {
        let b = try backend()
        let peer = try ObjectLock.acquire(b, command: "restore", deferringSecondLook: true, settle: 0)
        let calm = try ObjectLock.acquire(b, command: "restore", deferringSecondLook: true, settle: 0.5)
        let calmGate = SecondLookGate(calm, root: "s3:test", command: "restore")
        XCTAssertNoThrow(try calmGate.settled(), "another reader's lock is no conflict")
        XCTAssertNil(calmGate.unmetWarning())
        calm.release(); peer.release()

        let racer = LockInfo(exclusive: true, host: "elsewhere", pid: 1, username: "u", command: "prune", time: Timestamp.now())
        for asked in [true, false] {
            let reader = try ObjectLock.acquire(b, command: "restore", deferringSecondLook: true, settle: 1)
            try put(racer, as: "racer", into: b)
            let gate = SecondLookGate(reader, root: "s3:test", command: "restore")
            if asked {
                XCTAssertThrowsError(try gate.settled()) { e in XCTAssertTrue("\(e)".contains("exclusive lock by `prune`"), "\(e)") }
                XCTAssertThrowsError(try gate.settled(), "asked again, the same answer")
                XCTAssertNil(gate.unmetWarning(), "the conflict was met: nothing more to say at the end")
            } else {
                let said = try XCTUnwrap(gate.unmetWarning(), "never asked: the conflict is said at the end")
                XCTAssertTrue(said.contains("exclusive lock by `prune`") && said.contains("replaced nothing"), said)
            }
            reader.release()
            try b.delete(.lock, "racer")
        }
        XCTAssertEqual(try b.list(.lock), [])
    }

    /// The second look could not list the locks (the store failing): the gate
    /// looks once more, now. If that lists, the reader goes on; if it fails
    /// too, the gate refuses (nothing in the target is replaced unchecked),
    /// naming both failures.
    func testTheGateLooksAgainWhenTheSecondLookCouldNotList() throws {
        let (p, b) = try proxiedBackend()
        defer { p.stop() }
        let failing = LockedBox(false)
        Self.failListings(p, while: { failing.value })
        for recovers in [true, false] {
            let reader = try ObjectLock.acquire(b, command: "restore", deferringSecondLook: true, settle: 0.5)
            failing.value = true
            let first = try XCTUnwrap(reader.secondLookConflict(), "the second look's listing failed")
            if case RepositoryError.locked = first { XCTFail("a failed listing is no lock: \(first)") }
            failing.value = !recovers
            let gate = SecondLookGate(reader, root: "s3:test", command: "restore")
            if recovers {
                XCTAssertNoThrow(try gate.settled(), "the look taken at the gate listed the locks: no conflict")
                XCTAssertNil(gate.unmetWarning(), "met at the gate")
            } else {
                XCTAssertThrowsError(try gate.settled()) { e in
                    XCTAssertTrue("\(e)".contains("could not be listed") && "\(e)".contains("nothing there was replaced"), "\(e)")
                }
                XCTAssertNil(gate.unmetWarning(), "said by the gate's error, not again at the end")
            }
            failing.value = false
            reader.release()
        }
        XCTAssertEqual(try b.list(.lock), [])
    }

    /// A reader that could not write its lock object (read-only credentials,
    /// or the store failing) still looks at the locks before a restore first
    /// replaces anything (`Repository.lookAtOtherLocks`): nothing there, it
    /// goes on; a live exclusive lock, or locks it cannot list, and it refuses.
    func testAReaderWithoutALockStillLooksBeforeReplacing() throws {
        let (p, b) = try proxiedBackend()
        defer { p.stop() }
        let repository = try Repository.initialize(backend: b, config: RepositoryConfig.new(encrypted: false))
        XCTAssertNoThrow(try repository.lookAtOtherLocks(), "no locks: nothing to stop for")
        let shared = try ObjectLock.acquire(b, exclusive: false, command: "backup")
        XCTAssertNoThrow(try repository.lookAtOtherLocks(), "a shared lock is no conflict for a reader")
        shared.release()
        let racer = LockInfo(exclusive: true, host: "elsewhere", pid: 1, username: "u", command: "prune", time: Timestamp.now())
        try put(racer, as: "racer", into: b)
        XCTAssertThrowsError(try repository.lookAtOtherLocks()) { e in XCTAssertTrue("\(e)".contains("exclusive lock by `prune`"), "\(e)") }
        try b.delete(.lock, "racer")
        Self.failListings(p, while: { true })
        XCTAssertThrowsError(try repository.lookAtOtherLocks(), "locks that cannot be listed are no all-clear")
    }
}
