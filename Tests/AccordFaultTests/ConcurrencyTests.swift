import Foundation
import XCTest
import AccordCore
import AccordRuntime
#if canImport(Glibc)
import Glibc
#endif

/// Several processes on one repository (FORMAT.md, "Locks"): backups share,
/// prune excludes, stale locks are recognised and only they are removed.
final class ConcurrencyTests: AccordTestCase {
    /// Writes a lock file as FORMAT.md ("Locks") describes it.
    func writeLock(_ name: String, exclusive: Bool, host: String = Sys.hostname, pid: Int32, command: String,
                   time: Timestamp = .now()) throws {
        var object: [String: Any] = ["exclusive": exclusive, "host": host, "pid": Int(pid), "username": "root",
                                     "command": command, "time": time.rfc3339]
        // This machine's id: the lock is judged by this machine's processes (FORMAT.md, "Locks").
        if host == Sys.hostname, let m = LockInfo.localMachineID { object["machineID"] = m }
        let bytes = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
        try Files.write(repo + "/locks/" + name, Array(bytes) + [0x0a], mode: 0o600)
    }

    /// A process that lives until killed, for a lock held by a live pid.
    func startSleeper() throws -> RunningCommand { try startProcess("/bin/sleep", ["120"]) }

    /// A pid that belonged to a process that has exited (and was reaped).
    func deadPID() throws -> Int32 {
        let p = try startProcess("/bin/true", [])
        _ = p.finish()
        return p.pid
    }

    func testTwoBackupsAtOnceBothSucceedAndBothRestore() throws {
        var rng = SeededRandom(seed: 0xC0C0)
        try initRepository(packSize: 1 << 20)
        let a = try SourceTree(root: scratch.sub("a"), rng: &rng, randomFiles: 6, randomSize: 1_000_000, textFiles: 2, textSize: 1_000_000)
        let b = try SourceTree(root: scratch.sub("b"), rng: &rng, randomFiles: 6, randomSize: 1_000_000, textFiles: 2, textSize: 1_000_000)
        // Some identical content in both, so both backups store the same blobs at the same time.
        for (x, y) in zip(a.randomFiles.prefix(3), b.randomFiles.prefix(3)) { try Files.write(y, try Files.read(x)) }
        let la = try a.listing(), lb = try b.listing()
        for round in 0..<(slowTestsEnabled ? 4 : 1) {
            let ca = try start(["backup", "-d", repo, "--json", a.root]), cb = try start(["backup", "-d", repo, "--json", b.root])
            let ra = ca.finish(), rb = cb.finish()
            XCTAssertTrue(ra.ok, "round \(round), backup A:\n\(ra)")
            XCTAssertTrue(rb.ok, "round \(round), backup B:\n\(rb)")
            guard ra.ok && rb.ok else { return }
            let ja = try decodeBackup(ra), jb = try decodeBackup(rb)
            try assertCheckPasses(nil, readData: true, "after two concurrent backups (round \(round))")
            try assertRestores(ja.id, root: a.root, expected: la, "snapshot A of round \(round)")
            try assertRestores(jb.id, root: b.root, expected: lb, "snapshot B of round \(round)")
        }
    }

    /// Two `accord init` (or two first backups) racing on a new directory
    /// must not both create a repository: the loser's config (id, chunker
    /// seed) would be silently replaced by the winner's.
    func testConcurrentInitOfOneDirectoryCreatesOneRepository() throws {
        var bothSucceeded: [String] = []
        for round in 0..<8 {
            let dir = scratch.sub("race\(round)")
            let c1 = try start(["init", "-d", dir]), c2 = try start(["init", "-d", dir])
            let r1 = c1.finish(), r2 = c2.finish()
            XCTAssertFalse(r1.signaled || r2.signaled)
            if r1.ok && r2.ok { bothSucceeded.append("round \(round): \(r1.stdout.trimmingCharacters(in: .newlines)) / \(r2.stdout.trimmingCharacters(in: .newlines))") }
        }
        XCTAssertEqual(bothSucceeded, [], "two concurrent inits both reported creating a repository (different ids, one config on disk)")
    }

    func testPruneRefusesWhileABackupRunsAndDeletesNothing() throws {
        var rng = SeededRandom(seed: 0xC0C1)
        let tree = try SourceTree(root: scratch.sub("src"), rng: &rng, randomFiles: 4, randomSize: 500_000, textFiles: 2, textSize: 200_000)
        try initRepository(packSize: 1 << 20)
        let old = try backup([tree.root])
        try tree.rewriteRandomFiles(2, rng: &rng)
        let kept = try backup([tree.root])
        try accordOK("forget", "-d", repo, old.id)     // prune would have something to delete
        // A long backup: 10 MB of text to compress at the highest level, on one thread.
        let big = try SourceTree(root: scratch.sub("big"), rng: &rng, randomFiles: 0, randomSize: 0, textFiles: 10, textSize: 1_000_000)
        let packsBefore = packIDs()

        let running = try start(["backup", "-d", repo, "--json", "--threads", "1", "--compression", "max", big.root])
        let deadline = Date().addingTimeInterval(20)
        var holder: LockInfo?
        while running.isRunning, Date() < deadline, holder == nil {
            holder = (try? RepositoryLock.list(RepositoryLayout(root: repo)))?.compactMap(\.info).first { $0.command == "backup" }
            usleep(2000)
        }
        guard let h = holder, running.isRunning else { _ = running.finish(); throw XCTSkip("the backup ended before prune could be started") }
        let prune = try accord("prune", "-d", repo, "--max-unused", "0%")
        let stillRunning = running.isRunning
        let b = running.finish()
        XCTAssertTrue(stillRunning, "test setup: the backup ended before prune finished")
        XCTAssertFalse(prune.ok || prune.signaled, "prune ran while a backup held a shared lock:\n\(prune)")
        XCTAssertTrue(prune.stderr.contains("shared lock by `backup` (pid \(h.pid) on \(h.host)"), "prune's error does not name the holder:\n\(prune)")
        XCTAssertTrue(b.ok, "the backup failed:\n\(b)")
        XCTAssertTrue(packIDs().isSuperset(of: packsBefore), "a pack vanished while prune was refused")
        try assertCheckPasses(nil, "after the refused prune")
        let j = try decodeBackup(b)
        try assertRestores(j.id, root: big.root, expected: try big.listing(), includes: Array(big.textFiles.prefix(2)), "the backup that ran beside prune")
        try assertRestores(kept.id, root: tree.root, expected: try tree.listing(), "the older snapshot")

        // Once the backup is done, prune runs.
        try accordOK("prune", "-d", repo, "--max-unused", "0%")
        try assertCheckPasses(nil, readData: true, "after prune")
    }

    /// Backup and prune started at the same instant, again and again: one
    /// of them may have to give up (naming the other), but nothing is lost.
    func testBackupAndPruneStartedTogetherNeverLoseData() throws {
        var rng = SeededRandom(seed: 0xC0C7)
        let tree = try SourceTree(root: scratch.sub("src"), rng: &rng, randomFiles: 4, randomSize: 300_000, textFiles: 1, textSize: 50_000, smallFiles: 2)
        try initRepository(packSize: 1 << 18)
        var latest = try backup([tree.root]).id
        var listing = try tree.listing()
        var outcomes: [String: Int] = [:]
        var otherFailures: [String] = []
        for round in 0..<(slowTestsEnabled ? 40 : 10) {
            try tree.rewriteRandomFiles(2, rng: &rng)
            let next = try tree.listing()
            try accordOK("forget", "-d", repo, "--keep-last", "1")
            let p = try start(["prune", "-d", repo, "--max-unused", "0%"]), b = try start(["backup", "-d", repo, "--json", tree.root])
            let rp = p.finish(), rb = b.finish()
            outcomes["prune \(rp.ok ? "ran" : "refused"), backup \(rb.ok ? "ran" : "refused")", default: 0] += 1
            for r in [rp, rb] where !r.ok {
                XCTAssertFalse(r.signaled, "round \(round):\n\(r)")
                // A refusal names the other's lock. Another failure is the race that
                // testPruneLeavesOtherProcessesTemporaryFilesAlone pins down (prune emptying tmp/
                // under a lock file being written there); it is reported, and data must still be safe.
                if !r.stderr.contains("is held by a") { otherFailures.append("round \(round), \(r.args[0]): \(r.stderr.trimmingCharacters(in: .whitespacesAndNewlines))") }
            }
            if rb.ok { latest = try decodeBackup(rb).id; listing = next }
            try assertCheckPasses(nil, "round \(round)")
            try assertRestores(latest, root: tree.root, expected: listing, "round \(round): the latest snapshot")
        }
        print("backup and prune started together: \(outcomes.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: "; "))"
              + (otherFailures.isEmpty ? "" : "\n  failures not caused by the other's lock:\n  " + otherFailures.joined(separator: "\n  ")))
    }

    /// Every writer (lock files included) writes into tmp/ and renames from
    /// there (FORMAT.md, "Locks": "write your own lock file atomically,
    /// through tmp/"). A prune that empties tmp/ while another process is
    /// between its write and its rename makes that process fail with
    /// "rename …: No such file or directory" instead of a clear "locked"
    /// refusal. Prune must leave fresh temporary files alone.
    func testPruneLeavesOtherProcessesTemporaryFilesAlone() throws {
        var rng = SeededRandom(seed: 0xC0C8)
        let tree = try SourceTree(root: scratch.sub("src"), rng: &rng, randomFiles: 2, randomSize: 50_000, textFiles: 1, textSize: 10_000, smallFiles: 1)
        try initRepository()
        _ = try backup([tree.root])
        // What another process's lock looks like between AtomicFile's write and rename.
        let inFlight = repo + "/tmp/" + hexString(rng.bytes(8)) + ".tmp"
        try Files.write(inFlight, Array("{\"command\" : \"backup\"}".utf8), mode: 0o600)
        let stale = repo + "/tmp/pack-0000000000000000.tmp"
        try Files.write(stale, [1, 2, 3], mode: 0o600)
        let weekAgo = timespec(tv_sec: Int(Date().timeIntervalSince1970) - 7 * 86400, tv_nsec: 0)
        var times = [weekAgo, weekAgo]
        _ = utimensat(AT_FDCWD, stale, &times, 0)
        try accordOK("prune", "-d", repo)
        XCTAssertTrue(Files.exists(inFlight), "prune deleted a temporary file written a moment ago (another process's lock on its way to locks/)")
        XCTAssertFalse(Files.exists(stale), "prune leaves a week-old temporary pack behind")
    }

    func testBackupRefusesWhileALiveExclusiveLockIsHeldAndProceedsOnceItIsStale() throws {
        var rng = SeededRandom(seed: 0xC0C2)
        let tree = try SourceTree(root: scratch.sub("src"), rng: &rng, randomFiles: 1, randomSize: 10_000, textFiles: 1, textSize: 10_000)
        try initRepository()
        let sleeper = try startSleeper()
        defer { _ = sleeper.finish(timeout: 0) }
        try writeLock("a0000000000000000000000000000001", exclusive: true, pid: sleeper.pid, command: "prune")
        let r = try accord("backup", "-d", repo, tree.root)
        XCTAssertFalse(r.ok || r.signaled, "backup ran beside a live exclusive lock:\n\(r)")
        XCTAssertTrue(r.stderr.contains("exclusive lock by `prune` (pid \(sleeper.pid)"), "the error does not name the holder:\n\(r)")
        XCTAssertTrue(r.stderr.contains("accord unlock"), "the error does not say what to do:\n\(r)")
        XCTAssertEqual(snapshotNames(), [])
        XCTAssertEqual(((try? Sys.listDirectory(repo + "/locks")) ?? []).count, 1, "the refused backup left its own lock")
        for cmd in [["forget", "-d", repo, "--keep-last", "1"], ["prune", "-d", repo], ["repair", "index", "-d", repo], ["check", "-d", repo]] {
            let c = try accord(cmd)
            XCTAssertFalse(c.ok, "`accord \(cmd[0])` ran beside a live exclusive lock:\n\(c)")
        }

        _ = sleeper.finish(timeout: 0)
        let after = try accord("backup", "-d", repo, tree.root)
        XCTAssertTrue(after.ok, "backup refused a stale lock (its process is dead):\n\(after)")
        XCTAssertTrue(after.stderr.contains("ignoring stale exclusive lock"), "the stale lock is not reported:\n\(after)")
    }

    /// Review 23 M2: a lock file with this host's name but another machine's
    /// id (a clone sharing the repository) and a pid not running here is live
    /// while fresh: prune and forget are refused; with this machine's id it is
    /// stale.
    func testALockFromAnotherMachineWithThisHostNameBlocksPrune() throws {
        try initRepository()
        let dead = try deadPID()
        let object: [String: Any] = ["exclusive": false, "host": Sys.hostname, "pid": Int(dead), "username": "root", "command": "backup",
                                     "time": Timestamp.now().rfc3339, "bootID": "00000000-0000-4000-8000-000000000000",
                                     "machineID": "0123456789abcdef0123456789abcdef"]
        let name = "0000000000000000000000000000000c"
        try Files.write(repo + "/locks/" + name, Array(try JSONSerialization.data(withJSONObject: object)), mode: 0o600)
        for cmd in [["prune", "-d", repo], ["forget", "-d", repo, "--keep-last", "1"]] {
            let r = try accord(cmd)
            XCTAssertFalse(r.ok || r.signaled, "`accord \(cmd[0])` ran beside a live lock of another machine:\n\(r)")
            XCTAssertTrue(r.stderr.contains("shared lock by `backup` (pid \(dead) on \(Sys.hostname)"), r.stderr)
        }
        try writeLock(name, exclusive: false, pid: dead, command: "backup")   // this machine's id
        let r = try accordOK("prune", "-d", repo)
        XCTAssertTrue(r.stderr.contains("ignoring stale") && r.stderr.contains("its process \(dead) is gone"), r.stderr)
    }

    func testUnlockRemovesStaleAndUnreadableLocksButNotLiveOnes() throws {
        try initRepository()
        let sleeper = try startSleeper()
        defer { _ = sleeper.finish(timeout: 0) }
        let dead = try deadPID()
        let old = Timestamp(seconds: Timestamp.now().seconds - 3600, nanoseconds: 0)
        try writeLock("00000000000000000000000000000001", exclusive: false, pid: dead, command: "backup")              // dead pid here
        try writeLock("00000000000000000000000000000002", exclusive: true, pid: sleeper.pid, command: "prune") // live
        try writeLock("00000000000000000000000000000003", exclusive: false, host: "elsewhere", pid: 1, command: "sync", time: old) // not refreshed for an hour
        try writeLock("00000000000000000000000000000004", exclusive: false, host: "elsewhere", pid: 1, command: "backup") // fresh, other host: live
        try Files.write(repo + "/locks/00000000000000000000000000000005", Array("garbage".utf8), mode: 0o600)

        let r = try accordOK("unlock", "-d", repo)
        let left = ((try? Sys.listDirectory(repo + "/locks")) ?? []).sorted()
        XCTAssertEqual(left, ["00000000000000000000000000000002", "00000000000000000000000000000004"],
                       "unlock must remove exactly the dead-pid, expired and unreadable locks:\n\(r)")
        XCTAssertTrue(r.stdout.contains("pid \(dead)"), "\(r)")

        let again = try accordOK("unlock", "-d", repo)
        XCTAssertTrue(again.stdout.contains("no stale locks"), "\(again)")
        try accordOK("unlock", "-d", repo, "--all")
        XCTAssertEqual((try? Sys.listDirectory(repo + "/locks")) ?? [], [])
    }

    /// Starts `accord args…`, stops it (SIGSTOP) while it reads an index
    /// file — after it listed index/ — lets a backup commit (index file, then
    /// snapshot), and lets it continue. Returns its result and the committed
    /// backup, or nil if no attempt caught it reading an index file.
    func runWhileABackupCommits(_ args: [String], tree: SourceTree, rng: inout SeededRandom) throws -> (CommandResult, BackupJSON)? {
        let indexDir = repo + "/index/"
        func readsAnIndexFile(_ pid: Int32) -> Bool {
            for fd in (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd")) ?? [] {
                if let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\(fd)"), target.hasPrefix(indexDir) { return true }
            }
            return false
        }
        for _ in 0..<300 {
            let reader = try start(args)
            var stopped = false
            while reader.isRunning && !stopped {
                if readsAnIndexFile(reader.pid) { reader.kill(SIGSTOP); stopped = true }
            }
            guard stopped else { _ = reader.finish(); continue }
            try tree.rewriteRandomFiles(1, rng: &rng)
            let committed = try backup([tree.root])
            reader.kill(SIGCONT)
            return (reader.finish(), committed)
        }
        return nil
    }

    /// Readers load the index, then list snapshots. A backup that commits in
    /// between (index file, then snapshot) leaves them a snapshot whose index
    /// file they did not load. Made deterministic with SIGSTOP (above).
    func testCheckWhileABackupCommitsReportsNoDamage() throws {
        var rng = SeededRandom(seed: 0xC0C3)
        let tree = try SourceTree(root: scratch.sub("src"), rng: &rng, randomFiles: 2, randomSize: 100_000, textFiles: 1, textSize: 10_000, smallFiles: 2)
        try initRepository(packSize: 1 << 16)
        for _ in 0..<20 { try tree.rewriteRandomFiles(1, rng: &rng); try accordOK("backup", "-d", repo, "-q", tree.root) }
        guard let (r, committed) = try runWhileABackupCommits(["check", "-d", repo], tree: tree, rng: &rng) else {
            throw XCTSkip("could not stop check while it was reading index files")
        }
        print("check stopped while reading the index, backup \(committed.id.prefix(8)) committed meanwhile: exit \(r.status) \(r.stderr.split(separator: "\n").first ?? "")")
        XCTAssertTrue(r.ok, "check reported damage in a healthy repository because a backup committed while it ran:\n\(r)")
        try assertCheckPasses(nil, readData: true, "afterwards")
    }

    func testRestoreOfLatestWhileABackupCommitsFindsAllItsBlobs() throws {
        var rng = SeededRandom(seed: 0xC0C5)
        let tree = try SourceTree(root: scratch.sub("src"), rng: &rng, randomFiles: 2, randomSize: 100_000, textFiles: 1, textSize: 10_000, smallFiles: 2)
        try initRepository(packSize: 1 << 16)
        for _ in 0..<20 { try tree.rewriteRandomFiles(1, rng: &rng); try accordOK("backup", "-d", repo, "-q", tree.root) }
        let target = scratch.sub("restored")
        guard let (r, committed) = try runWhileABackupCommits(["restore", "-d", repo, "latest", "--target", target, "-q"], tree: tree, rng: &rng) else {
            throw XCTSkip("could not stop restore while it was reading index files")
        }
        print("restore latest stopped while reading the index, backup \(committed.id.prefix(8)) committed meanwhile: exit \(r.status) \(r.stderr.split(separator: "\n").first ?? "")")
        XCTAssertTrue(r.ok, "restore latest failed because a backup committed while it loaded the index (it saw the new snapshot but not its index file):\n\(r)")
        // `latest` is resolved when the restore starts (before the index is read), so it restores the
        // snapshot that was newest then, not the one committed meanwhile; either way all its blobs are found.
        try assertCheckPasses(nil, readData: true, "after restore while a backup committed")
    }
}
