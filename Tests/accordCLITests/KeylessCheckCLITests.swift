import Foundation
import XCTest
import AccordTestSupport
import AccordCore
import AccordRuntime

/// `accord check` of an encrypted repository without its key (issue 15): with
/// `--without-key`, and by itself when no passphrase source is configured and
/// standard input is not a terminal (a DR node that never holds the key). It
/// passes an intact repository saying what it left out, and names a damaged
/// file as `check` with the key does.
final class KeylessCheckCLITests: AccordTestCase {
    /// No passphrase source at all: no password file or command, a settings file that does not exist.
    var noSource: [String: String] { ["ACCORD_PASSWORD_FILE": "", "ACCORD_PASSWORD_COMMAND": "", "ACCORD_SETTINGS": scratch.sub("no-settings.yaml")] }

    func makeRepository() throws {
        let root = scratch.sub("src")
        try TreeBuilder.mkdir(Array(root.utf8))
        try TreeBuilder.write(Array((root + "/a.txt").utf8), Array(String(repeating: "keyless\n", count: 2000).utf8))
        try useEncryption()
        try accordOK("init", "-d", repo)
        _ = try backup([root])
    }

    func testCheckWithoutTheKeyPassesAndSaysWhatItLeftOut() throws {
        try makeRepository()
        let withKey = try accordOK(["check", "-d", repo, "--read-data"])
        XCTAssertFalse(withKey.stdout.contains("without the repository's key"), withKey.stdout)
        for (args, env) in [(["--without-key"], [String: String]()), (["--without-key"], noSource)] {
            let r = try accordOK(["check", "-d", repo, "--read-data"] + args, environment: env)
            XCTAssertTrue(r.stdout.contains("checked without the repository's key; not checked:"), "\(args): \(r.stdout)")
            XCTAssertTrue(r.stdout.contains("manifests") && r.stdout.contains("no errors found"), "\(args): \(r.stdout)")
        }
        // Without the flag and without a key source, check never passes keyless by itself:
        // a check that read no blob must not look like one that did.
        let silent = try accord(["check", "-d", repo, "--read-data"], environment: noSource)
        XCTAssertEqual(silent.status, 1, "\(silent)")
        XCTAssertTrue(silent.stderr.contains("--without-key") || silent.stderr.contains("--password-file"), silent.stderr)
        XCTAssertFalse(silent.stdout.contains("no errors found"), silent.stdout)
        let both = try accord(["check", "-d", repo, "--without-key", "--password-file", scratch.sub("x")])
        XCTAssertFalse(both.ok)
        XCTAssertTrue(both.stderr.contains("--without-key and --password-file exclude each other"), both.stderr)
    }

    func testAFlippedByteInASnapshotIsNamedWithAndWithoutTheKey() throws {
        try makeRepository()
        let name = try XCTUnwrap(snapshotNames().first)
        let path = repo + "/snapshots/" + name
        var b = try Files.read(path)
        b[b.count - 3] ^= 0x40
        try Files.write(path, b, mode: 0o600)
        for (args, env) in [([String](), [String: String]()), (["--without-key"], [:]), (["--without-key"], noSource)] {
            let r = try accord(["check", "-d", repo] + args, environment: env)
            XCTAssertEqual(r.status, 1, "\(args) \(env): \(r)")
            XCTAssertTrue(r.stderr.contains("snapshot \(name)"), "\(args) \(env): \(r.stderr)")
        }
    }
}
