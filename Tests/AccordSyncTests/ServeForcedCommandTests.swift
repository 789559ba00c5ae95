import Foundation
import XCTest
import AccordCore
#if canImport(Glibc)
import Glibc
#endif

/// The least-privilege set-up of README.md over a real sshd: user accordpinned's
/// key runs only `sudo -n accord serve --repo PINNED` (a forced command with
/// `restrict`), sudo allows exactly that command line and keeps
/// SSH_ORIGINAL_COMMAND, and serve compares the client's --repo with its own.
final class ServeForcedCommandTests: SSHSyncTestCase {
    var pinnedUser: String!
    var pinned: String!

    override func setUpWithError() throws {
        try super.setUpWithError()
        pinnedUser = try XCTUnwrap(ssh.pinnedUser, "sshd-start.sh set up no pinned user (ACCORD_BIN_DIR not passed?)")
        pinned = try XCTUnwrap(ssh.pinnedRepo)
        try? FileManager.default.removeItem(atPath: pinned)
    }

    override func tearDown() {
        if let p = pinned {
            waitForUnlocked(p)
            try? FileManager.default.removeItem(atPath: p)
        }
        super.tearDown()
    }

    func testSyncToThePinnedDirectoryGoesThroughTheForcedCommand() throws {
        try makeTree(source, seed: 51, randomFiles: 2, randomSize: 200_000)
        let first = try backupSource()
        let r = try accordOK(syncArgs(to: pinned, user: pinnedUser))
        XCTAssertEqual(try decodeSync(r).snapshots, 1)
        XCTAssertEqual(snapshotFiles(of: pinned), [first.id])
        try assertRestoreMatchesSource(from: pinned, label: "pinned")

        // An incremental sync works the same way.
        try appendToFile(source + "/docs/notes.txt", Array("pinned\n".utf8))
        let second = try backupSource()
        XCTAssertEqual(try decodeSync(try accordOK(syncArgs(to: pinned, user: pinnedUser))).snapshots, 1)
        XCTAssertEqual(snapshotFiles(of: pinned), [first.id, second.id].sorted())
    }

    func testAnotherDirectoryIsRefusedNamingBoth() throws {
        try makeTree(source, seed: 52, randomFiles: 1, randomSize: 20_000)
        try backupSource()
        let elsewhere = scratch.sub("elsewhere")
        let r = try accord(syncArgs(to: elsewhere, user: pinnedUser, json: false))
        XCTAssertFalse(r.ok, "a sync to a directory other than the pinned one succeeded:\n\(r)")
        XCTAssert(r.stderr.contains("asked for repository \(elsewhere)") && r.stderr.contains("serves only \(pinned!)"), "\(r)")
        XCTAssertFalse(FileManager.default.fileExists(atPath: elsewhere), "the refused directory was created")
        XCTAssertFalse(FileManager.default.fileExists(atPath: pinned + "/config"), "the pinned repository was created for a refused client")
    }

    /// The key runs nothing but serve: a command the client asks for is not run.
    func testTheKeyRunsNoOtherCommand() throws {
        let marker = scratch.sub("ran")
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/ssh")
        p.arguments = ["-F", ssh.config, "\(pinnedUser!)@127.0.0.1", "touch \(marker)"]
        let out = Pipe(), err = Pipe(), input = Pipe()
        p.standardOutput = out
        p.standardError = err
        // stdin stays open, as at a terminal: serve must answer at once, not wait for a hello.
        p.standardInput = input
        try p.run()
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        try? input.fileHandleForWriting.close()
        XCTAssertNotEqual(p.terminationStatus, 0, text)
        XCTAssertFalse(FileManager.default.fileExists(atPath: marker), "the client's own command ran under the pinned key")
        XCTAssert(text.contains("may only run `accord serve`") && text.contains("touch \(marker)"), text)
        // A one-line answer on stderr, and no protocol bytes (an error frame) on stdout.
        XCTAssertEqual(stdout.count, 0, "serve wrote \(stdout.count) bytes to stdout: \(Array(stdout.prefix(16)))")
        XCTAssertEqual(text.split(separator: "\n").filter { $0.contains("accord serve") }.count, 1, text)
    }

    /// `accord -a backup -d DIR -u USER -n NODE` (the original command line) through
    /// the forced command. Its destination is the same -d on the DR node, so the
    /// client runs in a mount namespace where the pinned path shows its own
    /// repository (bind mount), while sshd's serve sees the real pinned directory:
    /// two nodes' views of one path on one machine.
    func testLegacyBackupWithUserAndNodeGoesThroughTheForcedCommand() throws {
        try makeTree(source, seed: 53, randomFiles: 1, randomSize: 100_000)
        let clientRepo = scratch.sub("client-repo")
        try FileManager.default.createDirectory(atPath: clientRepo, withIntermediateDirectories: true)
        chmod(clientRepo, 0o700)
        try FileManager.default.createDirectory(atPath: pinned, withIntermediateDirectories: true)
        chmod(pinned, 0o700)   // the mount point; serve takes an empty private directory
        let plan = scratch.sub("legacy-plan.yaml")
        try writeFile(plan, Array("""
            name: legacy-serve-test
            storage:
              root: \(source)
              excludes: []
              replace: ["."]
            dumps: []
            objects: []

            """.utf8))
        let script = "mount --bind \"$1\" \"$2\" && exec \"$3\" -a backup -q -d \"$2\" --plan \"$4\" -u \"$5\" -n 127.0.0.1 \"--ssh-option=-F $6\""
        let r = try runProcess("/usr/bin/unshare", ["-m", "--propagation", "private", "sh", "-c", script, "sh", clientRepo, pinned,
                                                    AccordBinary.path, plan, pinnedUser, ssh.config], timeout: 600)
        let text = r.output
        XCTAssertTrue(r.ok, "accord -a backup -u -n through the forced command failed:\n\(r)")

        let sent = snapshotFiles(of: clientRepo)
        XCTAssertEqual(sent.count, 1, "the client's backup did not land in its own repository:\n\(text)")
        XCTAssertEqual(snapshotFiles(of: pinned), sent, "the DR node's pinned repository lacks the backup:\n\(text)")
        XCTAssert(FileManager.default.fileExists(atPath: pinned + "/restore"), "the -u/-n flow places the restore marker on the DR node")
        waitForUnlocked(pinned)
        let check = try accord(["check", "--read-data", "-d", pinned])
        XCTAssert(check.ok && check.stdout.contains("no errors found"), "\(check)")
    }
}
