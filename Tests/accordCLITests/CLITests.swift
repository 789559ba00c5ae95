import Foundation
import XCTest
import AccordTestSupport
import AccordCore
import AccordRuntime

/// The command line as a user meets it: bad input gets a clear message and a
/// non-zero exit (1 for errors, 64 for usage), and locks protect the repository.
final class CLITests: AccordTestCase {
    func makeSmallTree() throws -> String {
        let root = scratch.sub("src")
        try TreeBuilder.mkdir(Array(root.utf8))
        try TreeBuilder.write(Array((root + "/a.txt").utf8), Array("hello".utf8))
        return root
    }

    // MARK: Bad input

    func testBackupOfMissingPathFailsAndWritesNoSnapshot() throws {
        let missing = scratch.sub("does-not-exist")
        let r = try accord("backup", "-d", repo, missing)
        XCTAssertEqual(r.status, 1, "\(r)")
        XCTAssertTrue(r.stderr.contains(missing) && r.stderr.contains("does not exist"), "unclear error:\n\(r)")
        XCTAssertEqual(snapshotFiles(), [], "a failed backup wrote a snapshot")
    }

    func testBackupOfMissingPathAmongGoodOnesWritesNoSnapshot() throws {
        let root = try makeSmallTree()
        let missing = scratch.sub("gone")
        let r = try accord("backup", "-d", repo, root, missing)
        XCTAssertEqual(r.status, 1, "\(r)")
        XCTAssertTrue(r.stderr.contains(missing), "\(r)")
        XCTAssertEqual(snapshotFiles(), [])
    }

    /// A backup refused before it reads anything (missing or nested sources)
    /// must exit 1 every time: its worker threads must not outlive it. Six at
    /// once, so thread start-up is slow as on a busy host.
    func testRefusedBackupExitsCleanlyEveryTime() throws {
        let root = try makeSmallTree()
        try accordOK("init", "-d", repo)
        let refusals: [[String]] = [[root, scratch.sub("gone")], [root, root + "/a.txt"]]
        for round in 0..<8 {
            let started = try (0..<6).map { i in
                try AccordCLI.start(["backup", "-d", repo, "-q"] + refusals[i % 2], scratch: scratch)
            }
            let results = started.map { AccordCLI.finish($0) }
            if let (i, r) = results.enumerated().first(where: { $0.element.signaled || $0.element.status != 1 }) {
                return XCTFail("round \(round): accord backup \(refusals[i % 2].joined(separator: " ")) must exit 1:\n\(r)")
            }
        }
        XCTAssertEqual(snapshotFiles(), [])
    }

    func testRepositoryPathThatIsARegularFileIsRejected() throws {
        let root = try makeSmallTree()
        let file = scratch.sub("not-a-dir")
        try TreeBuilder.write(Array(file.utf8), Array("x".utf8))
        for args in [["backup", "-d", file, root], ["snapshots", "list", "-d", file], ["check", "-d", file],
                     ["restore", "-d", file, "latest", "--target", scratch.sub("t")]] {
            let r = try AccordCLI.run(args, scratch: scratch)
            XCTAssertEqual(r.status, 1, "accord \(args.joined(separator: " ")):\n\(r)")
            XCTAssertTrue(r.stderr.contains(file) && r.stderr.contains("not a directory"), "accord \(args[0]): unclear error:\n\(r)")
        }
        XCTAssertEqual(try TreeBuilder.read(Array(file.utf8)), Array("x".utf8), "the file given as repository was changed")
    }

    func testCommandsOnMissingRepositoryFailWithoutCreatingIt() throws {
        for args in [["snapshots", "list", "-d", repo], ["check", "-d", repo], ["ls", "-d", repo, "latest"],
                     ["restore", "-d", repo, "latest", "--target", scratch.sub("t")]] {
            let r = try AccordCLI.run(args, scratch: scratch)
            XCTAssertEqual(r.status, 1, "accord \(args.joined(separator: " ")):\n\(r)")
            XCTAssertTrue(r.stderr.contains("not an Accord repository"), "accord \(args[0]): unclear error:\n\(r)")
        }
        XCTAssertNil(try? Sys.lstat(repo), "a read-only command created a repository")
    }

    func testRestoreOfUnknownSnapshotFailsNamingIt() throws {
        let root = try makeSmallTree()
        _ = try backup(root)
        let target = scratch.sub("restored")
        for spec in ["deadbeef", "not-an-id", "0000000000000000000000000000000000000000000000000000000000000000"] {
            let r = try accord("restore", "-d", repo, spec, "--target", target)
            XCTAssertEqual(r.status, 1, "\(spec):\n\(r)")
            XCTAssertTrue(r.stderr.contains("no snapshot \(spec)"), "\(spec): unclear error:\n\(r)")
        }
        XCTAssertNil(try? Sys.lstat(Array(target.utf8)), "restore of an unknown snapshot created the target")
        let ls = try accord("ls", "-d", repo, "deadbeef")
        XCTAssertEqual(ls.status, 1, "\(ls)")
    }

    func testRestoreWithoutTargetIsRejected() throws {
        let root = try makeSmallTree()
        _ = try backup(root)
        let r = try accord("restore", "-d", repo, "latest")
        XCTAssertEqual(r.status, 64, "\(r)")
        XCTAssertTrue(r.stderr.contains("--target"), "\(r)")
        let slash = try accord("restore", "-d", repo, "latest", "--target", "/")
        XCTAssertEqual(slash.status, 64, "--target / must need --in-place:\n\(slash)")
    }

    func testWrongFlagsAreRejectedWithUsage() throws {
        let root = try makeSmallTree()
        try accordOK("init", "-d", repo)
        let cases: [([String], String)] = [
            (["backup", "-d", repo, "--frobnicate", root], "--frobnicate"),
            (["backup", "-d", repo, "--compression", "ultra", root], "ultra"),
            (["backup", "-d", repo, "--threads", "0", root], "--threads"),
            (["backup", "-d", repo], "PATH"),
            (["backup", "-d", repo, "--command", "no-equals-sign"], "NAME=COMMAND"),
            (["backup", "-d", repo, "--dump-files", "*.dump", "--no-dump-files", root], "--no-dump-files"),
            (["backup", "-d", repo, "--dump-files", "", root], "--dump-files"),
            (["restore", "-d", repo, "--plan", "ae5", "--wait-timeout", "0"], "--wait-timeout"),
            (["restore", "-d", repo, "latest", "--target", scratch.sub("t"), "--threads", "0"], "--threads"),
            (["check", "-d", repo, "--read-data-subset", "200%"], "200%"),
            (["restore", "-d", repo, "latest", "--target"], "--target"),
            (["frobnicate"], "frobnicate"),
        ]
        for (args, mention) in cases {
            let r = try AccordCLI.run(args, scratch: scratch)
            XCTAssertFalse(r.signaled, "\(r)")
            XCTAssertNotEqual(r.status, 0, "accord \(args.joined(separator: " ")) was accepted:\n\(r)")
            XCTAssertNotEqual(r.status, 3, "accord \(args.joined(separator: " ")):\n\(r)")
            XCTAssertTrue(r.stderr.contains(mention), "accord \(args.joined(separator: " ")): the error does not mention \(mention):\n\(r)")
        }
        XCTAssertEqual(snapshotFiles(), [])
    }

    func testInitRefusesExistingRepository() throws {
        try accordOK("init", "-d", repo)
        let config = try TreeBuilder.read(Array((repo + "/config").utf8))
        let r = try accord("init", "-d", repo)
        XCTAssertEqual(r.status, 1, "\(r)")
        XCTAssertTrue(r.stderr.contains("already"), "\(r)")
        XCTAssertEqual(try TreeBuilder.read(Array((repo + "/config").utf8)), config, "a second init rewrote the config")
    }

    func testRepositoryIsPrivate() throws {
        let root = try makeSmallTree()
        _ = try backup(root)
        XCTAssertEqual(try Sys.lstat(repo).permissions, 0o700)
        XCTAssertEqual(try Sys.lstat(repo + "/config").permissions, 0o600)
        for p in packFiles() { XCTAssertEqual(try Sys.lstat(p).permissions, 0o600, p) }
    }

    func testFailingCommandSourceFailsBackupWithoutSnapshot() throws {
        let r = try accord("backup", "-d", repo, "--command", "/db/dump.sql=echo partial; echo oops >&2; exit 7")
        XCTAssertEqual(r.status, 1, "\(r)")
        XCTAssertTrue(r.stderr.contains("exit status 7") && r.stderr.contains("/db/dump.sql"), "\(r)")
        XCTAssertTrue(r.stderr.contains("oops"), "the command's stderr is not shown:\n\(r)")
        XCTAssertEqual(snapshotFiles(), [])
    }

    func testCommandSourceRoundTripsThroughDump() throws {
        try accordOK("backup", "-d", repo, "--command", "/db/dump.sql=seq 1 100000")
        let r = try accordOK("dump", "-d", repo, "latest", "/db/dump.sql")
        XCTAssertEqual(r.stdout, (1...100_000).map(String.init).joined(separator: "\n") + "\n")
    }

    /// A dump command is a child: it never sees the passphrase source nor the
    /// S3 credentials (which can delete every backup); the password command,
    /// which may fetch the passphrase from a cloud secret store, keeps the latter.
    func testChildrenNeverSeeThePassphraseSourceOrTheBucketCredentials() throws {
        let file = try useEncryption()
        let secrets = ["AWS_ACCESS_KEY_ID": "AKIAACCORDCHILDTEST", "AWS_SECRET_ACCESS_KEY": "child-must-not-see-this-secret",
                       "AWS_SESSION_TOKEN": "child-must-not-see-this-token"]
        accordEnvironment.merge(secrets) { $1 }
        try accordOK("backup", "-d", repo, "--command", "/env.txt=env")
        let seen = try accordOK("dump", "-d", repo, "latest", "/env.txt").stdout
        XCTAssertTrue(seen.contains("PATH="), "the child's environment was captured: \(seen.prefix(200))")
        for (k, v) in secrets { XCTAssertFalse(seen.contains(k) || seen.contains(v), "a dump command inherited \(k)") }
        XCTAssertFalse(seen.contains("ACCORD_PASSWORD_FILE") || seen.contains(file), "a dump command inherited the passphrase file")

        let marker = scratch.sub("password-command-env")
        accordEnvironment["ACCORD_PASSWORD_FILE"] = nil
        accordEnvironment["ACCORD_PASSWORD_COMMAND"] = "env > \(marker); cat \(file)"
        try accordOK("snapshots", "list", "-d", repo)
        let commandSaw = String(decoding: try Files.read(marker), as: UTF8.self)
        XCTAssertTrue(commandSaw.contains("AWS_SECRET_ACCESS_KEY=child-must-not-see-this-secret"), "the password command lost the cloud credentials")
        XCTAssertFalse(commandSaw.contains("ACCORD_PASSWORD_COMMAND"), "the password command saw its own variable")
    }

    /// --keep-* values that would overflow a sum are a valid request, not a crash.
    func testForgetWithHugeKeepValuesRunsInsteadOfTrapping() throws {
        _ = try backup(try makeSmallTree())
        let r = try AccordCLI.run(["forget", "-d", repo, "--keep-last", "9223372036854775807", "--keep-daily", "1", "--dry-run"], scratch: scratch)
        XCTAssertFalse(r.signaled, "\(r)")
        XCTAssertEqual(r.status, 0, "\(r)")
        XCTAssertEqual(snapshotFiles().count, 1)
    }

    /// `*.sql` files in a tree are cut with the dump profile (~256 KiB
    /// chunks, recorded with its level); other files, or all with
    /// --no-dump-files, with the tree profile (~1 MiB).
    func testSQLFilesInTreesGetTheDumpProfileUnlessTurnedOff() throws {
        var rng = SeededRandom(seed: 9)
        let text = (0..<400_000).map { i in "\(i)\t\(rng.below(1000))\t\(rng.below(100_000))\tsome row text\n" }.joined()
        func blobsAdded(_ name: String, _ extra: [String]) throws -> (blobs: Int, sources: [[String: Any]]) {
            let root = scratch.sub("src-" + name.replacingOccurrences(of: ".", with: "-") + "\(extra.count)")
            try TreeBuilder.mkdir(Array(root.utf8))
            try TreeBuilder.write(Array((root + "/" + name).utf8), Array(text.utf8))
            let r = scratch.sub("repo-" + root.split(separator: "/").last!)
            let b = try AccordCLI.run(["backup", "-d", r, "-q", root] + extra, scratch: scratch)
            XCTAssertEqual(b.status, 0, "\(b)")
            let list = try accordOK("snapshots", "list", "-d", r, "--json")
            let snaps = try XCTUnwrap((try JSONSerialization.jsonObject(with: Data(list.stdout.utf8))) as? [[String: Any]])
            let summary = try XCTUnwrap(snaps.last?["summary"] as? [String: Any])
            return ((summary["addedBlobs"] as? NSNumber)?.intValue ?? -1, snaps.last?["sources"] as? [[String: Any]] ?? [])
        }
        XCTAssertGreaterThan(text.utf8.count, 10_000_000)
        let sql = try blobsAdded("dump.sql", [])
        let txt = try blobsAdded("dump.txt", [])
        let off = try blobsAdded("dump.sql", ["--no-dump-files"])
        let custom = try blobsAdded("dump.txt", ["--dump-files", "*.txt"])
        XCTAssertGreaterThan(sql.blobs, 30, "a .sql file should be cut into ~256 KiB chunks")
        XCTAssertLessThan(txt.blobs, 20, "a .txt file should be cut into ~1 MiB chunks")
        XCTAssertLessThan(off.blobs, 20, "--no-dump-files should cut .sql with the tree profile")
        XCTAssertGreaterThan(custom.blobs, 30, "--dump-files '*.txt' should cut .txt into ~256 KiB chunks")
        let dumpProfile = try XCTUnwrap(sql.sources.first?["dumpProfile"] as? [String: Any], "\(sql.sources)")
        XCTAssertEqual(dumpProfile["avg"] as? Int, 262_144)
        XCTAssertNil(dumpProfile["level"], "a tree's .sql files are deflated at the repository's level (no second pass at 6)")
        XCTAssertNil((sql.sources.first?["profile"] as? [String: Any])?["level"], "the tree profile has no level")
        XCTAssertEqual(sql.sources.first?["dumpFiles"] as? [String], ["*.sql"], "the snapshot should record the globs")
        XCTAssertNil(off.sources.first?["dumpFiles"], "--no-dump-files should record no globs")
    }

    // MARK: Locks

    /// `, "machineID": "…"` with this machine's id (FORMAT.md, "Locks"): the lock is judged by this machine's processes.
    var machineIDField: String { LockInfo.localMachineID.map { ", \"machineID\": \"" + $0 + "\"" } ?? "" }

    func writeLock(name: String, exclusive: Bool, pid: Int32, command: String, time: Timestamp = .now()) throws {
        let json = """
        {"command": "\(command)", "exclusive": \(exclusive), "host": "\(Sys.hostname)", "pid": \(pid), \
        "time": "\(time.rfc3339)", "username": "root"\(machineIDField)}
        """
        try TreeBuilder.write(Array((repo + "/locks/" + name).utf8), Array(json.utf8), mode: 0o600)
    }

    /// The pid of a process that has exited.
    func deadPID() throws -> Int32 {
        let child = try startProcess("/bin/true", [])
        _ = child.finish()
        XCTAssertFalse(Sys.processExists(child.pid))
        return child.pid
    }

    func testStaleLockIsReportedAndUnlockRemovesIt() throws {
        let root = try makeSmallTree()
        try accordOK("init", "-d", repo)
        let pid = try deadPID()
        try writeLock(name: "stale-lock", exclusive: true, pid: pid, command: "prune")

        let b = try accord("backup", "-d", repo, root)
        XCTAssertEqual(b.status, 0, "a stale lock must not block a backup:\n\(b)")
        XCTAssertTrue(b.stderr.contains("stale") && b.stderr.contains("pid \(pid)"), "the stale lock is not reported:\n\(b)")

        let u = try accordOK("unlock", "-d", repo)
        XCTAssertTrue(u.stdout.contains("pid \(pid)"), "unlock does not say what it removed:\n\(u)")
        XCTAssertNil(try? Sys.lstat(repo + "/locks/stale-lock"), "unlock left the stale lock")
        XCTAssertEqual(try Sys.listDirectory(repo + "/locks"), [], "locks left behind")
    }

    func testUnlockKeepsLiveLocks() throws {
        try accordOK("init", "-d", repo)
        try writeLock(name: "live-lock", exclusive: false, pid: getpid(), command: "backup")
        try accordOK("unlock", "-d", repo)
        XCTAssertNotNil(try? Sys.lstat(repo + "/locks/live-lock"), "unlock removed a live lock")
        try accordOK("unlock", "-d", repo, "--all")
        XCTAssertNil(try? Sys.lstat(repo + "/locks/live-lock"), "unlock --all kept a lock")
    }

    func testLiveExclusiveLockMakesBackupFailNamingTheHolder() throws {
        let root = try makeSmallTree()
        try accordOK("init", "-d", repo)
        let pid = getpid()   // this test process: alive, on this host
        try writeLock(name: "prune-lock", exclusive: true, pid: pid, command: "prune")

        let r = try accord("backup", "-d", repo, root)
        XCTAssertEqual(r.status, 1, "backup ran despite a live exclusive lock:\n\(r)")
        XCTAssertTrue(r.stderr.contains("pid \(pid)") && r.stderr.contains("prune"), "the error does not name the holder:\n\(r)")
        XCTAssertEqual(snapshotFiles(), [])
        XCTAssertEqual(try Sys.listDirectory(repo + "/locks"), ["prune-lock"], "the failed backup left its own lock")
    }

    func testLockOlderThanHalfAnHourIsStaleEvenIfItsProcessLives() throws {
        let root = try makeSmallTree()
        try accordOK("init", "-d", repo)
        let old = Timestamp(seconds: Timestamp.now().seconds - 3 * 3600, nanoseconds: 0)
        try writeLock(name: "old-lock", exclusive: true, pid: getpid(), command: "prune", time: old)
        let r = try accord("backup", "-d", repo, root)
        XCTAssertEqual(r.status, 0, "\(r)")
        XCTAssertTrue(r.stderr.contains("stale"), "\(r)")
    }
}
