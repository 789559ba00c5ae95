import Foundation
import XCTest
import AccordCore
import AccordRuntime
import AccordTestSupport

/// `--retry-lock DURATION`: a lock held by another live process (here a lock
/// file written for a `sleep` this test started, on this host) makes a command
/// fail at once without it, and wait with it (saying so, and for whom) until
/// the holder lets go: its lock removed, or its process gone. Bad durations
/// are usage errors (exit 64).
final class RetryLockTests: AccordTestCase {
    var src: String { scratch.sub("src") }

    /// A repository holding one snapshot of a small tree.
    func repositoryWithASnapshot() throws {
        try Files.mkdir(src)
        try Files.write(src + "/f", Array("some bytes".utf8))
        _ = try backup(src)
    }

    /// A live process of this host to hold locks; the caller kills and reaps it.
    func holder() throws -> RunningCommand { try startProcess("/bin/sleep", ["300"]) }

    /// `, "machineID": "…"` with this machine's id (FORMAT.md, "Locks"): the lock is judged by this machine's processes.
    var machineIDField: String { LockInfo.localMachineID.map { ", \"machineID\": \"" + $0 + "\"" } ?? "" }

    func writeLock(_ name: String, exclusive: Bool, pid: Int32, command: String) throws {
        let json = """
        {"command": "\(command)", "exclusive": \(exclusive), "host": "\(Sys.hostname)", "pid": \(pid), \
        "time": "\(Timestamp.now().rfc3339)", "username": "root"\(machineIDField)}
        """
        try TreeBuilder.write(Array((repo + "/locks/" + name).utf8), Array(json.utf8), mode: 0o600)
    }

    /// Starts `accord args` and returns it once its stderr says it waits (or it ended); the stderr so far.
    func startWaiting(_ args: [String]) throws -> (RunningCommand, String) {
        let err = scratch.sub("stderr-" + hexString(Sys.randomBytes(4)))
        let child = try startProcess(try AccordBinary.require(), args, stderrPath: err, label: ["accord"] + args)
        let deadline = Date().addingTimeInterval(120)
        var text = ""
        while Date() < deadline {
            text = (try? String(contentsOfFile: err, encoding: .utf8)) ?? ""
            if text.contains("waiting:") || !child.isRunning { break }
            usleep(20_000)
        }
        return (child, text)
    }

    func testBadDurationsAreRefusedAsUsageErrors() throws {
        try repositoryWithASnapshot()
        for bad in ["abc", "25h", "86401s", "-5s", "5x", "1h30", "h", "", "1.5h", String(repeating: "9", count: 40)] {
            for command in [["backup", src], ["check"], ["prune"], ["restore", "latest", "--target", scratch.sub("t")]] {
                let r = try accord(Array(command.prefix(1)) + ["-d", repo, "--retry-lock=\(bad)"] + command.dropFirst())
                XCTAssertEqual(r.status, 64, "--retry-lock=\(bad) was not refused:\n\(r)")
                XCTAssertTrue(r.stderr.contains("--retry-lock"), "the refusal does not name the option:\n\(r)")
            }
        }
        for good in ["0s", "30s", "5m", "1h", "1h30m", "24h", "90"] {
            try accordOK("check", "-d", repo, "--retry-lock", good)
        }
        for args in [["-a", "backup", "-d", repo, "--retry-lock", "abc"], ["forget", "-d", repo, "--keep-last", "1", "--retry-lock", "1d"],
                     ["sync", "-d", repo, "--to", scratch.sub("dr"), "--retry-lock", "5 m"]] {
            XCTAssertEqual(try accord(args).status, 64, "\(args)")
        }
    }

    func testALiveHolderFailsACommandAtOnceAndRetryLockWaitsUntilItsLockIsRemoved() throws {
        try repositoryWithASnapshot()
        let sleeper = try holder()
        defer { sleeper.kill(); _ = sleeper.finish() }
        try writeLock("held", exclusive: true, pid: sleeper.pid, command: "prune")

        let now = try accord("backup", "-d", repo, src)
        XCTAssertEqual(now.status, 1, "a backup ran beside a live exclusive lock:\n\(now)")
        XCTAssertTrue(now.stderr.contains("pid \(sleeper.pid)"), "\(now)")
        XCTAssertFalse(now.stderr.contains("waiting:"), "a backup without --retry-lock waited:\n\(now)")
        XCTAssertEqual(snapshotNames().count, 1)

        let (waiting, said) = try startWaiting(["backup", "-d", repo, "--retry-lock", "2m", "--json", src])
        XCTAssertTrue(waiting.isRunning, "backup --retry-lock did not wait:\n\(waiting.finish())")
        XCTAssertTrue(said.contains("pid \(sleeper.pid)") && said.contains("prune"), "it does not say whom it waits for: \(said)")
        try FileManager.default.removeItem(atPath: repo + "/locks/held")   // the holder releases
        let r = waiting.finish()
        XCTAssertEqual(r.status, 0, "backup --retry-lock failed after the holder released:\n\(r)")
        XCTAssertEqual(snapshotNames().count, 2, "\(r)")
        XCTAssertEqual(try Sys.listDirectory(repo + "/locks"), [], "the backup left its lock")
    }

    func testRestoreAndSyncWaitForAnExclusiveHolderToo() throws {
        try repositoryWithASnapshot()
        let sleeper = try holder()
        defer { sleeper.kill(); _ = sleeper.finish() }
        let target = scratch.sub("target"), dr = scratch.sub("dr")
        for args in [["restore", "-d", repo, "latest", "--target", target], ["sync", "-d", repo, "--to", dr]] {
            try writeLock("held", exclusive: true, pid: sleeper.pid, command: "prune")
            XCTAssertEqual(try accord(args).status, 1, "\(args) ran beside a live exclusive lock")
            let (waiting, said) = try startWaiting(args + ["--retry-lock", "2m"])
            XCTAssertTrue(waiting.isRunning && said.contains("pid \(sleeper.pid)"), "\(args) --retry-lock did not wait: \(said)\n\(waiting.finish())")
            try FileManager.default.removeItem(atPath: repo + "/locks/held")
            let r = waiting.finish()
            XCTAssertEqual(r.status, 0, "\(r)")
        }
        XCTAssertEqual(try String(contentsOfFile: target + src + "/f", encoding: .utf8), "some bytes")
        XCTAssertEqual(snapshotNames(dr), snapshotNames())
    }

    func testRetryLockWaitsUntilTheHolderProcessEnds() throws {
        try repositoryWithASnapshot()
        let sleeper = try holder()
        defer { sleeper.kill(); _ = sleeper.finish() }
        // A shared lock (a backup's) holds off prune's exclusive one.
        try writeLock("backup-lock", exclusive: false, pid: sleeper.pid, command: "backup")
        XCTAssertEqual(try accord("prune", "-d", repo).status, 1)

        let (waiting, said) = try startWaiting(["prune", "-d", repo, "--retry-lock", "2m", "--json"])
        XCTAssertTrue(waiting.isRunning, "prune --retry-lock did not wait:\n\(waiting.finish())")
        XCTAssertTrue(said.contains("pid \(sleeper.pid)"), said)
        sleeper.kill()
        _ = sleeper.finish()   // reaped: the pid is gone, the lock stale
        let r = waiting.finish()
        XCTAssertEqual(r.status, 0, "prune --retry-lock failed after the holder ended:\n\(r)")
        XCTAssertTrue(r.stderr.contains("stale"), "the lock left by the ended holder is not reported stale:\n\(r)")
        XCTAssertEqual(r.stderr.components(separatedBy: "ignoring stale").count - 1, 1, "the stale lock is reported more than once:\n\(r)")
        XCTAssertNotNil(try JSONSerialization.jsonObject(with: Data(r.stdoutBytes)) as? [String: Any], "\(r)")
    }

    func testRetryLockGivesUpAfterItsDurationAndNeverWaitsForAnUnreadableLock() throws {
        try repositoryWithASnapshot()
        let sleeper = try holder()
        defer { sleeper.kill(); _ = sleeper.finish() }
        try writeLock("held", exclusive: true, pid: sleeper.pid, command: "prune")
        let r = try accord("check", "-d", repo, "--retry-lock", "2s")
        XCTAssertEqual(r.status, 1, "check ran beside a live exclusive lock:\n\(r)")
        XCTAssertTrue(r.stderr.contains("waiting:") && r.stderr.contains("pid \(sleeper.pid)"), "\(r)")
        XCTAssertTrue(r.stderr.contains("waited 2 s"), "the failure does not say it waited:\n\(r)")
        try FileManager.default.removeItem(atPath: repo + "/locks/held")

        // Time does not mend an unreadable lock file: `accord unlock` does. It is not waited for.
        try TreeBuilder.write(Array((repo + "/locks/garbage").utf8), Array("not json".utf8), mode: 0o600)
        let p = try accord("prune", "-d", repo, "--retry-lock", "10m")
        XCTAssertEqual(p.status, 1, "prune ran beside an unreadable lock:\n\(p)")
        XCTAssertFalse(p.stderr.contains("waiting:"), "prune waited for an unreadable lock:\n\(p)")
        XCTAssertTrue(p.stderr.contains("accord unlock"), "\(p)")
    }
}
