import Foundation
import XCTest
import AccordCore

/// Each way the connection can fail before any data moves: fast, non-zero,
/// one message that says what is wrong.
final class SSHConnectionErrorTests: SSHSyncTestCase {
    override func setUpWithError() throws {
        try super.setUpWithError()
        try makeTree(source, seed: 6, randomFiles: 1, randomSize: 50_000)
        try backupSource()
    }

    /// Runs a sync that must fail within 15 s with `expected` in its message; returns the result.
    @discardableResult
    func assertSyncFails(_ args: [String], saying expected: String, file: StaticString = #filePath, line: UInt = #line) throws -> CommandResult {
        let r = try accord(args, timeout: 60)
        XCTAssertFalse(r.signaled, "the sync crashed or hung:\n\(r)", file: file, line: line)
        XCTAssertNotEqual(r.status, 0, "the sync succeeded:\n\(r)", file: file, line: line)
        XCTAssertLessThan(r.seconds, 15, "the failure took too long:\n\(r)", file: file, line: line)
        XCTAssert(r.stderr.contains(expected), "the message does not say \"\(expected)\":\n\(r)", file: file, line: line)
        XCTAssertLessThanOrEqual(r.stderr.split(separator: "\n").count, 3, "one clear message, not a dump:\n\(r)", file: file, line: line)
        return r
    }

    func testWrongPortFailsFastWithConnectionRefused() throws {
        let port = closedLoopbackPort()
        try assertSyncFails(syncArgs(to: scratch.sub("dest"), extra: ["--ssh-option", "Port=\(port)"]), saying: "connection refused")
        XCTAssertFalse(FileManager.default.fileExists(atPath: scratch.sub("dest")))
    }

    func testKeyNotInAuthorizedKeysFailsFastSayingTheKeyWasNotAccepted() throws {
        let key = scratch.sub("stranger_ed25519")
        let keygen = try runProcess("/usr/bin/ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "not-authorized", "-f", key])
        XCTAssertTrue(keygen.ok, "\(keygen)")
        // No -F: only this key, and the test's known_hosts so the host key is trusted.
        let args = ["sync", "-d", sourceRepo, "--to", remote(scratch.sub("dest")),
                    "--ssh-option=-p \(ssh.port)", "--ssh-option=-i \(key)", "--ssh-option=-o IdentitiesOnly=yes",
                    "--ssh-option", "UserKnownHostsFile=\(ssh.knownHosts)", "--ssh-option", "GlobalKnownHostsFile=/dev/null",
                    "--ssh-option", "StrictHostKeyChecking=yes"]
        try assertSyncFails(args, saying: "did not accept the ssh key")
    }

    func testUserWithoutPasswordlessSudoFailsFastSayingSo() throws {
        try assertSyncFails(syncArgs(to: scratch.sub("dest"), user: ssh.noSudoUser), saying: "cannot run sudo without a password")
        XCTAssertFalse(FileManager.default.fileExists(atPath: scratch.sub("dest")))
    }

    func testDirectoryThatCannotBeCreatedFailsFastSayingSo() throws {
        // A path under a regular file: mkdir fails with ENOTDIR even for root.
        try writeFile(scratch.sub("plain-file"), Array("x".utf8))
        try assertSyncFails(syncArgs(to: scratch.sub("plain-file/repo")), saying: "cannot create the repository directory")
    }

    func testDestinationHoldingAnotherRepositoryIsRefused() throws {
        let other = scratch.sub("other")
        try accordOK(["init", "-d", other])
        let before = try readFile(other + "/config")
        try assertSyncFails(syncArgs(to: other), saying: "different repository")
        XCTAssertEqual(snapshotFiles(of: other), [])
        XCTAssertEqual(try readFile(other + "/config"), before, "the other repository's config was changed")
        XCTAssertEqual(packFiles(of: other), [])
    }

    func testMissingRemoteAccordFailsFastSayingItIsNotInstalled() throws {
        try assertSyncFails(syncArgs(to: scratch.sub("dest"), extra: ["--remote-command", "sudo -n /nonexistent/accord"]),
                            saying: "accord is not installed")
    }

    func testUnknownHostKeyFailsFastSayingSo() throws {
        let emptyKnownHosts = scratch.sub("known_hosts")
        try writeFile(emptyKnownHosts, [])
        let args = ["sync", "-d", sourceRepo, "--to", remote(scratch.sub("dest")),
                    "--ssh-option=-p \(ssh.port)", "--ssh-option=-i \(ssh.key)", "--ssh-option", "IdentitiesOnly=yes",
                    "--ssh-option", "UserKnownHostsFile=\(emptyKnownHosts)", "--ssh-option", "GlobalKnownHostsFile=/dev/null",
                    "--ssh-option", "StrictHostKeyChecking=yes"]
        try assertSyncFails(args, saying: "host key")
    }
}
