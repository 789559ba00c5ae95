import Foundation
import XCTest
import AccordCore

/// The link dies mid-transfer (simulated on the remote side with
/// `--remote-command` wrappers): the client fails within a bound with a clear
/// message, the destination stays consistent, and a plain rerun succeeds.
final class DeadLinkTests: SSHSyncTestCase {
    /// Bytes let through before the link dies; the tree is ~3.7 MB.
    let cutAfter = 1_000_000

    override func setUpWithError() throws {
        try super.setUpWithError()
        try makeTree(source, seed: 7, randomFiles: 3, randomSize: 1 << 20)
        try backupSource()
    }

    /// Runs the sync through `wrapper`, expects a fast failure; then checks the destination and reruns plainly.
    @discardableResult
    func assertDeadLinkFailsThenRerunSucceeds(wrapper: String, extra: [String] = [], bound: Double = 15, serverEnds: Bool = true,
                                             file: StaticString = #filePath, line: UInt = #line) throws -> CommandResult {
        let dest = scratch.sub("dest")
        let r = try accord(syncArgs(to: dest, json: false, extra: ["--remote-command", wrapper] + extra), timeout: 40)
        XCTAssertFalse(r.signaled, "the sync crashed:\n\(r)", file: file, line: line)
        XCTAssertNotEqual(r.status, 0, "the sync succeeded over a link that died:\n\(r)", file: file, line: line)
        XCTAssertLessThan(r.seconds, bound, "the client took too long to notice the dead link:\n\(r)", file: file, line: line)
        XCTAssertFalse(r.stderr.isEmpty, "no message:\n\(r)", file: file, line: line)
        if serverEnds { waitForUnlocked(dest, timeout: 10) }
        XCTAssertEqual(snapshotFiles(of: dest), [], "a snapshot was stored although its blobs never all arrived", file: file, line: line)
        if FileManager.default.fileExists(atPath: dest + "/config") {
            let check = try accord(["check", "-d", dest])
            XCTAssert(check.ok, "check fails after the dead link:\n\(check)", file: file, line: line)
        }
        let rerun = try accord(syncArgs(to: dest), timeout: 40)
        XCTAssert(rerun.ok, "the rerun failed:\n\(rerun)", file: file, line: line)
        if rerun.ok { try assertRestoreMatchesSource(from: dest, label: "rerun", file: file, line: line) }
        return r
    }

    func testStreamCutShortMidTransferFailsWithMessageAndRerunSucceeds() throws {
        // The server's stdin ends after N bytes (unbuffered head: stdio buffering would stall the hello).
        let wrapper = try remoteScript("cut-stream.sh", "stdbuf -o0 head -c \(cutAfter) | sudo -n accord \"$@\"")
        let r = try assertDeadLinkFailsThenRerunSucceeds(wrapper: wrapper)
        XCTAssert(r.stderr.contains("connection closed") || r.stderr.contains("ended"), "unclear message:\n\(r)")
    }

    func testConnectionDroppedMidTransferFailsWithMessageAndRerunSucceeds() throws {
        // After N bytes the wrapper SIGKILLs its sshd session process: the TCP connection drops.
        let wrapper = try remoteScript("drop-connection.sh", "{ stdbuf -o0 head -c \(cutAfter); kill -9 $PPID; } | sudo -n accord \"$@\"")
        let r = try assertDeadLinkFailsThenRerunSucceeds(wrapper: wrapper)
        XCTAssert(r.stderr.contains("ended") || r.stderr.contains("connection"), "unclear message:\n\(r)")
    }

    func testFrozenLinkIsDetectedWithinTheServerAliveOptionsGiven() throws {
        // After N bytes the wrapper freezes its sshd session (SIGSTOP) for 20 s: the
        // link goes silent without closing, as when the network goes away. With
        // `--ssh-option ServerAliveInterval=1 --ssh-option ServerAliveCountMax=2`
        // ssh gives up after ~3 s (the built-in 15 s × 4 would take a minute).
        let pidDir = scratch.sub("pids")
        try FileManager.default.createDirectory(atPath: pidDir, withIntermediateDirectories: true)
        chmod(pidDir, 0o777)
        let wrapper = try remoteScript("freeze-link.sh", """
            echo $PPID > \(pidDir)/frozen
            { stdbuf -o0 head -c \(cutAfter); kill -STOP $PPID; sleep 20; kill -CONT $PPID; } | sudo -n accord "$@"
            """)
        defer {
            // Thaw the frozen session now (it belongs to the sshd this class started).
            if let s = try? String(contentsOfFile: pidDir + "/frozen", encoding: .utf8), let pid = Int32(s.trimmingCharacters(in: .whitespacesAndNewlines)) {
                kill(pid, SIGCONT)
            }
        }
        try assertDeadLinkFailsThenRerunSucceeds(wrapper: wrapper, extra: ["--ssh-option", "ServerAliveInterval=1", "--ssh-option", "ServerAliveCountMax=2"],
                                                 bound: 12, serverEnds: false)
    }
}
