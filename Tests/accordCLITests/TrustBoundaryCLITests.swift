import Foundation
import XCTest
import AccordTestSupport
@testable import AccordCore
import AccordRuntime
#if canImport(Glibc)
import Glibc
#endif

/// Issue 13, item 4, as a user (or an attacker) meets it on the command line:
/// a repository inside its own source, bad `--command` names, names that
/// carry control bytes, lock files that are unusable, reused or dated in the
/// future, config values out of range, and snapshots dated in the future.
final class TrustBoundaryCLITests: AccordTestCase {
    // MARK: Helpers

    /// Runs accord with stdout captured as raw bytes (names need not be UTF-8).
    func accordRaw(_ args: [String]) throws -> (status: Int32, signaled: Bool, stdout: [UInt8], stderr: String) {
        let r = try accord(args)
        return (r.status, r.signaled, r.stdoutBytes, r.stderr)
    }

    func lockNames() -> [String] { ((try? Sys.listDirectory(repo + "/locks")) ?? []).sorted() }

    /// Writes a lock file as FORMAT.md ("Locks") describes it.
    func writeLock(_ name: String, exclusive: Bool, host: String = Sys.hostname, pid: Int32, command: String,
                   time: Timestamp = .now(), processStart: UInt64? = nil) throws {
        var object: [String: Any] = ["exclusive": exclusive, "host": host, "pid": Int(pid), "username": "root",
                                     "command": command, "time": time.rfc3339]
        if let s = processStart { object["processStart"] = s }
        // This machine's id: the lock is judged by this machine's processes (FORMAT.md, "Locks").
        if host == Sys.hostname, let m = LockInfo.localMachineID { object["machineID"] = m }
        let bytes = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
        try Files.write(repo + "/locks/" + name, Array(bytes) + [0x0a], mode: 0o600)
    }

    func startSleeper() throws -> RunningCommand { try startProcess("/bin/sleep", ["120"]) }

    /// Field 22 of /proc/PID/stat, parsed after the last ')'.
    func startTime(_ pid: Int32) throws -> UInt64 {
        let stat = try String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)
        let fields = stat[stat.index(after: stat.lastIndex(of: ")")!)...].split(separator: " ")
        return try XCTUnwrap(UInt64(fields[19]))
    }

    func smallTree() throws -> SourceTree {
        var rng = SeededRandom(seed: 0x7B13)
        return try SourceTree(root: scratch.sub("src"), rng: &rng, randomFiles: 1, randomSize: 20_000, textFiles: 1, textSize: 5_000, smallFiles: 2)
    }

    // MARK: b. A repository inside a source

    func testARepositoryInsideASourceIsLeftOutAndDoesNotGrowByItself() throws {
        var rng = SeededRandom(seed: 0x7B01)
        let root = scratch.sub("tree")
        _ = try SourceTree(root: root + "/data", rng: &rng, randomFiles: 2, randomSize: 200_000, textFiles: 1, textSize: 20_000, smallFiles: 2)
        let inside = root + "/backups/repo"
        try accordOK("init", "-d", inside)

        let first = try accord("backup", "-d", inside, "--json", root)
        XCTAssertTrue(first.ok, "\(first)")
        let j1 = try decodeBackup(first)
        let second = try accord("backup", "-d", inside, root)
        XCTAssertTrue(second.ok, "\(second)")
        XCTAssertTrue(second.stdout.contains("note: the repository \(inside) lies inside a source as \(inside)"), "no note about the repository:\n\(second)")
        let j2 = try decodeBackup(try accordOK("backup", "-d", inside, "--json", root))

        let ls = try accordOK("ls", "-d", inside, "latest")
        XCTAssertFalse(ls.stdout.contains("/backups/repo"), "the repository was backed up into itself:\n\(ls.stdout)")
        XCTAssertTrue(ls.stdout.contains(root + "/backups\n"), "the directory holding the repository is still backed up:\n\(ls.stdout)")
        XCTAssertTrue(ls.stdout.contains(root + "/data/"), "\(ls.stdout)")
        // Before the fix the second run stored the first run's packs (~400 KB of random data) again.
        XCTAssertGreaterThan(j1.summary.addedBytes, 300_000)
        XCTAssertLessThan(j2.summary.addedBytes, 4096, "an unchanged tree holding the repository still adds data every run")
    }

    // MARK: c. --command names

    func testBadCommandNamesAreRejectedBeforeAnythingIsWritten() throws {
        let fresh = scratch.sub("never-created")
        for name in ["/x/../..", "/", "relative/dump.sql", "/a/./b", "/a//b", "/db/", "", "/a/.."] {
            let r = try accord("backup", "-d", fresh, "--command", "\(name)=echo hi")
            XCTAssertFalse(r.ok || r.signaled, "--command \(name.debugDescription) was accepted:\n\(r)")
            XCTAssertTrue(r.stderr.contains("--command name \(name.debugDescription) is not allowed"), "the error does not name \(name.debugDescription):\n\(r)")
            XCTAssertFalse(Files.exists(fresh), "a refused --command \(name.debugDescription) created the repository")
        }
        // A good name still works, and restores where it says.
        try initRepository()
        try accordOK("backup", "-d", repo, "--command", "/db/dump.sql=echo hello")
        let ls = try accordOK("ls", "-d", repo, "latest")
        XCTAssertEqual(ls.stdout, "/\n/db\n/db/dump.sql\n")
    }

    // MARK: d. ls escapes names, or prints them raw with -0

    func testLsEscapesControlBytesAndInvalidUTF8AndDashZeroPrintsRawNames() throws {
        let dir = scratch.sub("names")
        try Files.mkdir(dir)
        let names: [[UInt8]] = [Array("fake\nroot:x:0:0".utf8), Array("bell\u{1b}[31mred".utf8), Array("back\\slash".utf8),
                                Array("bad".utf8) + [0xff, 0xfe], Array("tab\there".utf8), Array("c1\u{9b}x".utf8), Array("plain".utf8)]
        for n in names {
            let p = Array(dir.utf8) + [0x2f] + n
            let fd = try Sys.open(p, Sys.O_WRONLY | Sys.O_CREAT | Sys.O_TRUNC, mode: 0o644)
            defer { Sys.close(fd) }
            try Sys.writeAll(fd, n + [0x0a], path: "test file")
        }
        try initRepository()
        try accordOK("backup", "-d", repo, dir)

        let r = try accordRaw(["ls", "-d", repo, "latest"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let text = try XCTUnwrap(String(validating: r.stdout, as: UTF8.self), "ls printed bytes that are not UTF-8")
        XCTAssertFalse(r.stdout.contains(0x1b), "an escape sequence reached the terminal")
        XCTAssertFalse(text.unicodeScalars.contains { $0.value == 0x9b }, "a C1 control reached the terminal")
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).dropLast()
        // "/", each directory down to `dir`, `dir` itself, then the names: one line each.
        let ancestors = dir.split(separator: "/").count + 1
        XCTAssertEqual(lines.count, ancestors + names.count, "a name made extra lines:\n\(text)")
        for expected in ["fake\\nroot:x:0:0", "bell\\x1b[31mred", "back\\\\slash", "bad\\xff\\xfe", "tab\\there", "c1\\u{9b}x", "/plain"] {
            XCTAssertTrue(lines.contains { $0.hasSuffix(expected) }, "no line ends with \(expected):\n\(text)")
        }
        XCTAssertFalse(lines.contains { $0 == "root:x:0:0" }, "a newline in a name printed a fake line")
        let long = try accordRaw(["ls", "-d", repo, "-l", "latest"])
        XCTAssertFalse(long.stdout.contains(0x1b) || long.stdout.contains(0x0d), "ls -l printed raw control bytes")

        let raw = try accordRaw(["ls", "-d", repo, "-0", "latest"])
        XCTAssertEqual(raw.status, 0, raw.stderr)
        XCTAssertEqual(raw.stdout.last, 0, "ls -0 output does not end with NUL")
        let printed = raw.stdout.split(separator: 0, omittingEmptySubsequences: false).dropLast().map(Array.init)
        for n in names { XCTAssertTrue(printed.contains(Array(dir.utf8) + [0x2f] + n), "ls -0 does not print \(n) raw") }
        XCTAssertEqual(printed.count, lines.count, "ls -0 and ls list different entries")

        let help = try accordOK("ls", "--help")
        XCTAssertTrue(help.stdout.contains("\\x1b") && help.stdout.contains("-0"), "ls --help does not document the escaping:\n\(help.stdout)")
        let both = try accord("ls", "-d", repo, "-0", "-l", "latest")
        XCTAssertEqual(both.status, 64, "\(both)")
    }

    /// Warnings and errors quote repository bytes (here a lock's `command` and
    /// `host`): they are escaped as names are, on both paths to the terminal.
    func testWarningsAndErrorsQuotingRepositoryBytesAreEscaped() throws {
        let tree = try smallTree()
        try initRepository()
        let name = "d0000000000000000000000000000001"
        let hostile = "prune\n\u{1b}[2Jfake line"
        try writeLock(name, exclusive: true, host: "elsewhere\u{1b}]0;title\u{7}", pid: 1, command: hostile)
        let refused = try accordRaw(["backup", "-d", repo, tree.root])
        XCTAssertEqual(refused.status, 1, refused.stderr)
        XCTAssertTrue(refused.stderr.contains("`prune\\n\\x1b[2Jfake line`") && refused.stderr.contains("elsewhere\\x1b]0;title\\x07"),
                      "the error does not quote the lock escaped:\n\(refused.stderr)")
        XCTAssertFalse(refused.stderr.contains("\u{1b}") || refused.stderr.contains("\u{7}"), "control bytes reached the terminal:\n\(refused.stderr)")
        XCTAssertFalse(refused.stderr.split(separator: "\n").contains { $0.hasPrefix("\u{1b}") || $0.hasPrefix("[2J") })

        try writeLock(name, exclusive: true, host: "elsewhere", pid: 1, command: hostile, time: Timestamp(seconds: Timestamp.now().seconds - 7200, nanoseconds: 0))
        let warned = try accordRaw(["backup", "-d", repo, tree.root])
        XCTAssertEqual(warned.status, 0, warned.stderr)
        XCTAssertTrue(warned.stderr.contains("ignoring stale exclusive lock by `prune\\n\\x1b[2Jfake line`"), warned.stderr)
        XCTAssertFalse(warned.stderr.contains("\u{1b}") || warned.stderr.contains("\nfake line"), warned.stderr)
    }

    // MARK: e. Locks

    func testAnUnreadableLockFileBlocksExclusiveLocksNamingTheFile() throws {
        let tree = try smallTree()
        try initRepository()
        let bad = repo + "/locks/" + String(repeating: "e", count: 32)
        for content in [Array("garbage".utf8), Array(#"{"exclusive":false,"host":"h","pid":0,"username":"u","command":"c","time":"2026-01-01T00:00:00Z"}"#.utf8)] {
            try Files.write(bad, content, mode: 0o600)
            for cmd in [["prune", "-d", repo], ["forget", "-d", repo, "--keep-last", "1"], ["repair", "index", "-d", repo]] {
                let r = try accord(cmd)
                XCTAssertFalse(r.ok || r.signaled, "`accord \(cmd[0])` ran beside an unreadable lock file:\n\(r)")
                XCTAssertTrue(r.stderr.contains("lock file \(bad) is unreadable"), "the error does not name the file:\n\(r)")
                XCTAssertTrue(r.stderr.contains("accord unlock -d \(repo)"), "the error does not say what to do:\n\(r)")
            }
            XCTAssertEqual(lockNames(), [String(repeating: "e", count: 32)], "a refused command left its lock")
            // A shared lock goes on, saying what blocks the exclusive ones.
            let b = try accord("backup", "-d", repo, tree.root)
            XCTAssertTrue(b.ok, "\(b)")
            XCTAssertTrue(b.stderr.contains("lock file \(bad) is unreadable") && b.stderr.contains("blocks prune"), "\(b)")
            let u = try accordOK("unlock", "-d", repo)
            XCTAssertTrue(u.stdout.contains("removed unreadable lock file"), "\(u)")
            XCTAssertEqual(lockNames(), [])
        }
        // Hostile shapes: a FIFO (a naive reader would hang), a huge file, a directory.
        let shapes: [(String, () throws -> Void)] = [
            ("not a regular file", { XCTAssertEqual(mkfifo(bad, 0o600), 0) }),
            ("more than a lock file's", { try Files.write(bad, [UInt8](repeating: 0x20, count: 200_000) + Array("{}".utf8), mode: 0o600) }),
            ("not a regular file", { try Files.mkdir(bad) }),
        ]
        for (why, make) in shapes {
            try make()
            let r = try accord("prune", "-d", repo)
            XCTAssertFalse(r.ok || r.signaled, "prune ran beside a hostile lock entry:\n\(r)")
            XCTAssertTrue(r.stderr.contains("lock file \(bad) is unreadable") && r.stderr.contains(why), "\(r)")
            // `accord unlock`, as the message says, removes each of them (the directory is empty).
            let u = try accordOK("unlock", "-d", repo)
            XCTAssertTrue(u.stdout.contains("removed "), "\(u)")
            XCTAssertEqual(lockNames(), [], "`accord unlock` left a hostile lock entry (\(why))")
        }
        try accordOK("prune", "-d", repo)

        // A directory that holds something: unlock removes none of it, names
        // it and says to remove it by hand; an unreadable lock beside it still goes.
        let other = String(repeating: "f", count: 32)
        try Files.mkdir(bad)
        try Files.write(bad + "/kept", Array("not a lock".utf8), mode: 0o600)
        try Files.write(repo + "/locks/" + other, Array("garbage".utf8), mode: 0o600)
        let u = try accord("unlock", "-d", repo)
        XCTAssertEqual(u.status, 1, "unlock did not fail on a directory it cannot remove:\n\(u)")
        XCTAssertTrue(u.stderr.contains("\(bad) is a directory that is not empty") && u.stderr.contains("remove it by hand (rm -r \(bad))"),
                      "unlock does not say what to do about the directory:\n\(u)")
        XCTAssertTrue(u.stdout.contains("removed unreadable lock file \(other)"), "\(u)")
        XCTAssertEqual(try Files.read(bad + "/kept"), Array("not a lock".utf8), "unlock removed what the directory holds")
        XCTAssertEqual(lockNames(), [String(repeating: "e", count: 32)])
        let p = try accord("prune", "-d", repo)
        XCTAssertFalse(p.ok || p.signaled, "prune ran beside a directory among the locks:\n\(p)")
        try FileManager.default.removeItem(atPath: bad)
        try accordOK("prune", "-d", repo)
    }

    /// The race `list`'s lstat cannot close: a lock entry swapped for a FIFO
    /// after the lstat. Reading it must fail at once, never wait for a writer.
    /// A reader that blocks is released by opening the FIFO for writing, so
    /// a regression fails here instead of hanging the suite.
    func testReadingALockEntryThatIsAFIFONeverBlocks() throws {
        let fifo = scratch.sub("fifo")
        XCTAssertEqual(mkfifo(fifo, 0o600), 0)
        let done = DispatchSemaphore(value: 0)
        let result = LockedBox<[UInt8]??>(nil)
        Thread.detachNewThread {
            result.value = .some(LockProcess.readSmallFile(fifo, limit: LockInfo.maxFileSize))
            done.signal()
        }
        if done.wait(timeout: .now() + 20) == .timedOut {
            XCTFail("reading a lock entry that is a FIFO blocked (it waited for a writer)")
            let w = open(fifo, O_WRONLY | O_NONBLOCK | O_CLOEXEC)   // there is a reader: this opens, and closing it gives it EOF
            if w >= 0 { close(w) }
            _ = done.wait(timeout: .now() + 20)
            return
        }
        XCTAssertTrue(result.value != nil, "the reader did not finish")
        XCTAssertNil(result.value.flatMap { $0 }, "a FIFO was read as a lock file")
        // The same function still reads a regular file.
        let file = scratch.sub("lock")
        try Files.write(file, Array("{}".utf8), mode: 0o600)
        XCTAssertEqual(LockProcess.readSmallFile(file, limit: LockInfo.maxFileSize), Array("{}".utf8))
    }

    func testALockWhosePidWasReusedIsStaleAndTheLiveOneIsNot() throws {
        let tree = try smallTree()
        try initRepository()
        let sleeper = try startSleeper()
        defer { _ = sleeper.finish(timeout: 0) }
        let pid = sleeper.pid
        let name = "a0000000000000000000000000000001"

        // The process that took the lock is this very one: live.
        try writeLock(name, exclusive: true, pid: pid, command: "prune", processStart: try startTime(pid))
        let refused = try accord("backup", "-d", repo, tree.root)
        XCTAssertFalse(refused.ok || refused.signaled, "backup ran beside a live exclusive lock:\n\(refused)")
        XCTAssertTrue(refused.stderr.contains("exclusive lock by `prune` (pid \(pid)"), "\(refused)")
        XCTAssertTrue(refused.stderr.contains("accord unlock --all -d \(repo)"), "the hint does not name the flag that removes a live lock:\n\(refused)")
        let kept = try accordOK("unlock", "-d", repo)
        XCTAssertTrue(kept.stdout.contains("kept live") && kept.stdout.contains("accord unlock --all"), "\(kept)")
        XCTAssertEqual(lockNames(), [name], "unlock without --all removed a live lock")

        // Same pid, another start time: the pid now belongs to another process.
        try writeLock(name, exclusive: true, pid: pid, command: "prune", processStart: try startTime(pid) + 12345)
        let r = try accord("backup", "-d", repo, tree.root)
        XCTAssertTrue(r.ok, "backup refused a lock whose pid was reused:\n\(r)")
        XCTAssertTrue(r.stderr.contains("ignoring stale exclusive lock") && r.stderr.contains("now belongs to another process"), "\(r)")
        try writeLock(name, exclusive: true, pid: pid, command: "prune", processStart: try startTime(pid) + 12345)
        let u = try accordOK("unlock", "-d", repo)
        XCTAssertTrue(u.stdout.contains("removed exclusive lock by `prune`"), "\(u)")
        XCTAssertEqual(lockNames(), [])
    }

    func testALockDatedInTheFutureGoesStaleAndUnlockAllRemovesALiveOne() throws {
        let tree = try smallTree()
        try initRepository()
        let now = Timestamp.now()
        let name = "b0000000000000000000000000000001"
        // Another host, 10 minutes ahead: within the allowed skew, live.
        try writeLock(name, exclusive: true, host: "elsewhere", pid: 1, command: "prune", time: Timestamp(seconds: now.seconds + 600, nanoseconds: 0))
        let refused = try accord("backup", "-d", repo, tree.root)
        XCTAssertFalse(refused.ok || refused.signaled, "\(refused)")
        XCTAssertTrue(refused.stderr.contains("accord unlock --all -d \(repo)"), "\(refused)")
        let u = try accordOK("unlock", "--all", "-d", repo)
        XCTAssertTrue(u.stdout.contains("removed exclusive lock by `prune`"), "\(u)")
        XCTAssertEqual(lockNames(), [], "unlock --all left a lock")

        // Dated in 2099: stale, not eternal.
        try writeLock(name, exclusive: true, host: "elsewhere", pid: 1, command: "prune", time: Timestamp(rfc3339: "2099-01-01T00:00:00Z")!)
        let r = try accord("backup", "-d", repo, tree.root)
        XCTAssertTrue(r.ok, "a lock dated 2099 blocks the repository:\n\(r)")
        XCTAssertTrue(r.stderr.contains("in the future"), "\(r)")
        try accordOK("unlock", "-d", repo)
        XCTAssertEqual(lockNames(), [])

        let both = try accord("unlock", "-d", repo, "--all", "--stale")
        XCTAssertEqual(both.status, 64, "\(both)")
    }

    // MARK: f. Config values

    func testOutOfRangeConfigValuesAreRefusedNamingTheFieldAndNeverTrap() throws {
        let tree = try smallTree()
        try initRepository()
        let configPath = repo + "/config"
        let good = try JSONDecoder().decode(RepositoryConfig.self, from: Data(try Files.read(configPath)))
        func text(level: String = "1", packSize: String = "16777216", seed: String? = nil, id: String? = nil,
                  algorithm: String = "\"zlib\"", created: String = "\"2026-11-27T09:23:13.823496663Z\"") -> String {
            """
            {"chunkerSeed": "\(seed ?? good.chunkerSeed)", "compression": {"algorithm": \(algorithm), "level": \(level)},
             "created": \(created), "id": "\(id ?? good.id)", "packSize": \(packSize), "version": 2}
            """
        }
        // The template itself is a valid config.
        try Files.write(configPath, Array(text().utf8), mode: 0o600)
        try accordOK("backup", "-d", repo, tree.root)

        let cases: [(String, String)] = [
            (text(level: "5e9"), "compression.level"), (text(level: "-1"), "compression.level"), (text(level: "10"), "compression.level"),
            (text(level: "1e30"), "compression.level"), (text(level: "1.5"), "compression.level"), (text(level: "\"max\""), "compression.level"),
            (text(packSize: "-5"), "packSize"), (text(packSize: "1000000000000"), "packSize"), (text(packSize: "0"), "packSize"),
            (text(seed: "zzzzzzzzzzzzzzzz"), "chunkerSeed"), (text(seed: "+123456789abcdef"), "chunkerSeed"),
            (text(id: "abc"), "id"), (text(algorithm: "\"lz4\""), "compression.algorithm"), (text(created: "\"yesterday\""), "created"),
        ]
        for (config, field) in cases {
            try Files.write(configPath, Array(config.utf8), mode: 0o600)
            for cmd in [["backup", "-d", repo, tree.root], ["check", "-d", repo]] {
                let r = try accord(cmd)
                XCTAssertFalse(r.signaled, "`accord \(cmd[0])` trapped on \(config):\n\(r)")
                XCTAssertEqual(r.status, 1, "`accord \(cmd[0])` did not refuse \(config):\n\(r)")
                XCTAssertTrue(r.stderr.contains("field `\(field)`"), "`accord \(cmd[0])` does not name \(field):\n\(r)")
                XCTAssertTrue(r.stderr.contains(configPath), "\(r)")
            }
        }
        XCTAssertEqual(snapshotNames().count, 1, "a backup ran on an invalid config")
        // unlock touches only locks/: it still works, so a bad config never strands a lock.
        try writeLock("c0000000000000000000000000000001", exclusive: true, host: "elsewhere", pid: 1, command: "prune")
        let u = try accordOK("unlock", "--all", "-d", repo)
        XCTAssertTrue(u.stdout.contains("removed exclusive lock by `prune`"), "\(u)")
        XCTAssertEqual(lockNames(), [])
    }

    // MARK: g. Snapshots dated in the future

    /// Stores a copy of `snapshot` dated `time` (a forged or wrong-clock snapshot of the same data).
    func forge(_ snapshot: String, time: Timestamp) throws -> String {
        let r = try Repository.open(at: repo)
        var s = try r.loadSnapshot(try XCTUnwrap(SnapshotID(hex: snapshot)))
        s.time = time
        return try r.saveSnapshot(s).hex
    }

    func testAFutureSnapshotTakesNoKeepSlotAndLatestSkipsItSayingSo() throws {
        var rng = SeededRandom(seed: 0x7B07)
        let tree = try SourceTree(root: scratch.sub("src"), rng: &rng, randomFiles: 1, randomSize: 10_000, textFiles: 1, textSize: 2_000, smallFiles: 1)
        try initRepository()
        let older = try backup([tree.root])
        try tree.rewriteRandomFiles(1, rng: &rng)
        let newest = try backup([tree.root])
        let future = try forge(older.id, time: Timestamp(rfc3339: "2099-06-01T00:00:00Z")!)

        let ls = try accord("ls", "-d", repo, "latest")
        XCTAssertTrue(ls.ok, "\(ls)")
        XCTAssertTrue(ls.stderr.contains("skipping snapshot \(future.prefix(8))") && ls.stderr.contains("in the future"), "latest skipped nothing, or silently:\n\(ls)")
        let restoreTarget = scratch.sub("r")
        let restore = try accord("restore", "-d", repo, "latest", "--target", restoreTarget, "--json")
        XCTAssertTrue(restore.ok, "\(restore)")
        XCTAssertTrue(restore.stdout.contains(newest.id), "latest did not pick the newest genuine snapshot:\n\(restore)")

        let list = try accordOK("snapshots", "list", "-d", repo)
        XCTAssertTrue(list.stderr.contains("snapshot \(future.prefix(8)) is dated 2099-06-01"), "snapshots list does not flag the suspect one:\n\(list)")
        XCTAssertFalse(list.stderr.contains(newest.id.prefix(8)), "\(list)")
        let f = try accordOK("forget", "-d", repo, "--keep-daily", "1")
        XCTAssertTrue(f.stdout.contains("keep   \(future.prefix(8))") && f.stdout.contains("suspect"), "\(f)")
        XCTAssertTrue(f.stderr.contains("snapshot \(future.prefix(8)) is dated"), "the suspect snapshot is not named in a warning:\n\(f)")
        XCTAssertEqual(snapshotNames(), [newest.id, future].sorted(), "the future snapshot pushed the newest genuine one out")
        // By id it can be forgotten; then latest needs no warning.
        try accordOK("forget", "-d", repo, future)
        let after = try accordOK("ls", "-d", repo, "latest")
        XCTAssertFalse(after.stderr.contains("skipping"), "\(after)")
    }
}
