import Foundation
import XCTest
import AccordCore
@testable import AccordSync

/// The repository serve opens can be pinned by the node (settings file
/// `serve.repository`, or a forced command's --repo with the client's request
/// in SSH_ORIGINAL_COMMAND); a pinned serve refuses any other directory,
/// naming both. These run serve as a child of the test (as ssh would), with
/// the settings file named by ACCORD_SETTINGS.
final class ServePinningTests: SyncTestCase {
    var sessions: [ServeSession] = []
    var pinned: String { scratch.sub("pinned") }
    var other: String { scratch.sub("other") }

    func serve(_ args: [String], environment: [String: String]) throws -> ServeSession {
        let s = try ServeSession(args, logPath: scratch.sub("serve-\(sessions.count).log"), environment: environment)
        sessions.append(s)
        return s
    }

    override func tearDown() {
        for s in sessions { s.kill() }
        super.tearDown()
    }

    func testSettingsPinRefusesAnotherDirectoryNamingBoth() throws {
        let src = try sourceWithOneSnapshot()
        let settings = try writeSettings("serve:\n  repository: \(pinned)\n")
        let s = try serve(["--repo", other], environment: ["ACCORD_SETTINGS": settings])
        let m = try XCTUnwrap(errorMessage(try s.hello(src.config)), "serve opened an unpinned directory; log:\n\(s.log)")
        XCTAssert(m.contains("asked for repository \(other)") && m.contains("serves only \(pinned)") && m.contains("serve.repository in \(settings)"), m)
        XCTAssertEqual(s.exit()?.status, 1)
        XCTAssert(s.log.contains("serves only \(pinned)"), "serve's log does not say why:\n\(s.log)")
        XCTAssertFalse(FileManager.default.fileExists(atPath: other), "the refused directory was created")
        XCTAssertFalse(FileManager.default.fileExists(atPath: pinned))
    }

    /// The pin compares canonical paths: another spelling of the pinned
    /// directory is the pinned directory; without --repo serve uses the pin.
    func testSettingsPinAcceptsThePinnedDirectoryUnderAnotherSpellingAndAsDefault() throws {
        let src = try sourceWithOneSnapshot()
        let settings = try writeSettings("serve:\n  repository: \(pinned)\n  idle-timeout: 60\n")
        try FileManager.default.createSymbolicLink(atPath: scratch.sub("alias"), withDestinationPath: scratch.path)
        for args in [["--repo", scratch.sub("alias") + "/./pinned"], ["--repo", scratch.path + "//x/../pinned"], []] {
            let s = try serve(args, environment: ["ACCORD_SETTINGS": settings])
            guard case .helloOK? = try s.hello(src.config) else { return XCTFail("serve \(args) refused the pinned directory: \(s.log)") }
            try s.connection.send(.bye)
            XCTAssertEqual(s.exit()?.status, 0, s.log)
        }
        XCTAssert(FileManager.default.fileExists(atPath: pinned + "/config"))
    }

    func testForcedCommandRefusesTheClientsOtherDirectoryNamingBoth() throws {
        let src = try sourceWithOneSnapshot()
        // sshd runs `serve --repo PINNED` (the forced command) and puts the client's request here.
        let original = "sudo -n accord serve --repo '\(other)'"
        let s = try serve(["--repo", pinned], environment: ["SSH_ORIGINAL_COMMAND": original])
        let m = try XCTUnwrap(errorMessage(try s.hello(src.config)), "log:\n\(s.log)")
        XCTAssert(m.contains("asked for repository \(other)") && m.contains("serves only \(pinned)") && m.contains("forced command"), m)
        XCTAssertFalse(FileManager.default.fileExists(atPath: other))
        XCTAssertFalse(FileManager.default.fileExists(atPath: pinned))

        // The same request for the pinned directory is served.
        let ok = try serve(["--repo", pinned], environment: ["SSH_ORIGINAL_COMMAND": "sudo -n accord serve --repo \(pinned)"])
        guard case .helloOK? = try ok.hello(src.config) else { return XCTFail("the pinned directory was refused: \(ok.log)") }
        try ok.connection.send(.bye)
        XCTAssertEqual(ok.exit()?.status, 0)
    }

    func testForcedCommandRefusesARequestThatIsNotServe() throws {
        let s = try serve(["--repo", pinned], environment: ["SSH_ORIGINAL_COMMAND": "cat /etc/shadow"])
        // Not a sync client (`ssh dr-node cat /etc/shadow`): one plain line on stderr and
        // exit 1 at once, with stdin left open; no error frame's bytes on stdout (a
        // wait for a hello would end only after 10 s, then write one).
        let out = s.fromServe.fileHandleForReading.readDataToEndOfFile()
        XCTAssertEqual(out.count, 0, "serve wrote \(out.count) bytes to a client that is not accord sync: \(Array(out.prefix(16)))")
        XCTAssertEqual(s.exit(closeInput: false)?.status, 1, s.log)
        let lines = s.log.split(separator: "\n")
        XCTAssertEqual(lines.count, 1, s.log)
        XCTAssert(s.log.contains("may only run `accord serve`") && s.log.contains("cat /etc/shadow"), s.log)
        XCTAssertFalse(FileManager.default.fileExists(atPath: pinned))
    }

    /// serve run at a terminal (`sudo accord serve …` typed by hand, `ssh -t`) says in
    /// one line on stderr what it is for and exits 1 at once, whether its settings are
    /// usable or not: no wait for a hello, no protocol bytes on the terminal, nothing created.
    func testServeAtATerminalAnswersOneLineAtOnce() throws {
        let unusable = try writeSettings("serve:\n  idle-timeout: 0\n")
        for (environment, expected) in [([String: String](), "not at a terminal"), (["ACCORD_SETTINGS": unusable], "serve.idle-timeout must be")] {
            // `script` runs serve on a pseudo-terminal (its stdin, stdout and stderr) and copies what it writes.
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/script")
            p.arguments = ["-qefc", "'\(AccordBinary.path)' serve --repo '\(other)'", "/dev/null"]
            var env = ProcessInfo.processInfo.environment
            env.removeValue(forKey: "SSH_ORIGINAL_COMMAND")
            env.removeValue(forKey: "ACCORD_SETTINGS")
            for (k, v) in environment { env[k] = v }
            p.environment = env
            let input = Pipe(), out = Pipe()
            p.standardInput = input       // left open: a hello could still come
            p.standardOutput = out
            p.standardError = out
            try p.run()
            let deadline = Date().addingTimeInterval(20)
            while p.isRunning && Date() < deadline { usleep(5000) }
            let running = p.isRunning
            if running { kill(p.processIdentifier, SIGKILL) }
            try? input.fileHandleForWriting.close()
            p.waitUntilExit()
            let bytes = [UInt8](out.fileHandleForReading.readDataToEndOfFile())
            let text = String(decoding: bytes, as: UTF8.self)
            XCTAssertFalse(running, "serve at a terminal waited for a hello: \(text)")
            XCTAssertEqual(p.terminationStatus, 1, text)
            XCTAssertEqual(text.split(whereSeparator: { $0 == "\n" || $0 == "\r\n" || $0 == "\r" }).count, 1, text.debugDescription)
            XCTAssert(text.contains(expected), text)
            // No protocol bytes (an error frame's length and kind) on the terminal.
            XCTAssertFalse(bytes.contains { $0 < 0x09 || $0 == 0x7f }, "\(bytes)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: other))
        }
    }

    /// A settings file that could unpin the repository by mistake is refused,
    /// naming the key: an unknown key, a wrong type, a writable file.
    func testUnusableSettingsAreRefusedNamingTheKey() throws {
        let src = try sourceWithOneSnapshot()
        let cases: [(String, [String])] = [
            ("serve:\n  repositroy: /srv/x\n", ["unknown key serve.repositroy", "known: idle-timeout, max-clock-skew, repository"]),
            // (metrics: became a section of its own: an unknown section is refused the same way.)
            ("monitoring:\n  port: 9100\n", ["unknown key monitoring", "known sections:", "serve"]),
            ("serve:\n  idle-timeout: 0\n", ["serve.idle-timeout must be a whole number of seconds from 1 to 86400, not 0"]),
            ("serve:\n  idle-timeout: ten\n", ["serve.idle-timeout", "not ten"]),
            ("serve:\n  repository: relative/dir\n", ["serve.repository must be an absolute path"]),
            ("serve:\n  repository: /srv/../etc\n", ["serve.repository must be an absolute path"]),
            ("serve: [1, 2]\n", ["serve must be a mapping"]),
            // Above the skew past which `latest` and `forget` distrust a snapshot.
            ("serve:\n  max-clock-skew: 86401\n", ["serve.max-clock-skew must be at most 86400 seconds", "`latest` skips"]),
            ("serve:\n  max-clock-skew: 31536000\n", ["serve.max-clock-skew must be at most 86400 seconds", "not 31536000"]),
            ("serve: {repository: /x\n", ["not valid YAML"]),
        ]
        for (text, expected) in cases {
            let settings = try writeSettings(text)
            let s = try serve(["--repo", other], environment: ["ACCORD_SETTINGS": settings])
            let m = try XCTUnwrap(errorMessage(try s.hello(src.config)), "settings \(text.debugDescription) accepted; log:\n\(s.log)")
            XCTAssert(m.contains("settings file \(settings) is unusable"), m)
            for e in expected { XCTAssert(m.contains(e), "\(text.debugDescription): \(m)") }
            XCTAssertEqual(s.exit()?.status, 1)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: other), "serve ran despite unusable settings")
    }

    func testSettingsWritableByOthersOrNotOwnedByRootAreRefusedWhenRunningAsRoot() throws {
        guard getuid() == 0 else { throw XCTSkip("ownership rules apply when serve runs as root") }
        let src = try sourceWithOneSnapshot()
        let settings = try writeSettings("serve:\n  repository: \(pinned)\n")
        chmod(settings, 0o666)
        var s = try serve(["--repo", pinned], environment: ["ACCORD_SETTINGS": settings])
        var m = try XCTUnwrap(errorMessage(try s.hello(src.config)))
        XCTAssert(m.contains("writable by group or others (mode 666)"), m)
        chmod(settings, 0o644)
        XCTAssertEqual(chown(settings, 65534, 65534), 0)
        s = try serve(["--repo", pinned], environment: ["ACCORD_SETTINGS": settings])
        m = try XCTUnwrap(errorMessage(try s.hello(src.config)))
        XCTAssert(m.contains("owned by uid 65534, not root"), m)
        XCTAssertEqual(chown(settings, 0, 0), 0)
        let dir = (settings as NSString).deletingLastPathComponent
        chmod(dir, 0o777)
        s = try serve(["--repo", pinned], environment: ["ACCORD_SETTINGS": settings])
        m = try XCTUnwrap(errorMessage(try s.hello(src.config)))
        XCTAssert(m.contains("directory \(dir) is writable by group or others"), m)
        chmod(dir, 0o755)
        XCTAssertFalse(FileManager.default.fileExists(atPath: pinned))
    }

    /// Without a settings file serve behaves as before; with a pin, a local
    /// `sync --to DIR` (serve is its own child) is not pinned.
    func testLocalSyncIsNotPinnedAndNoSettingsFileMeansDefaults() throws {
        try makeTree(source, seed: 41, randomFiles: 1, randomSize: 30_000)
        let snap = try backupSource()
        let settings = try writeSettings("serve:\n  repository: \(pinned)\n")
        let r = try AccordBinary.start(["sync", "-d", sourceRepo, "--to", other, "-q"], outputDirectory: scratch.path,
                                       environment: ["ACCORD_SETTINGS": settings]).finish(timeout: 120)
        XCTAssert(r.ok, "a local sync was refused by serve's pin:\n\(r)")
        XCTAssertEqual(snapshotFiles(of: other), [snap.id])
        XCTAssertFalse(FileManager.default.fileExists(atPath: pinned))

        let missing = scratch.sub("no-such-settings.yaml")
        let third = scratch.sub("third")
        let s = try serve(["--repo", third], environment: ["ACCORD_SETTINGS": missing])
        guard case .helloOK? = try s.hello(try readFile(sourceRepo + "/config")) else { return XCTFail("no settings file must mean defaults: \(s.log)") }
        try s.connection.send(.bye)
        XCTAssertEqual(s.exit()?.status, 0)
    }

    // MARK: The client's request, as sshd passes it

    func testRequestedRepositoryIsReadAsAShellWouldSplitTheCommand() throws {
        XCTAssertEqual(try ServeAccess.requestedRepository(in: "sudo -n accord serve --repo /opt/anaconda_backup"), "/opt/anaconda_backup")
        XCTAssertEqual(try ServeAccess.requestedRepository(in: "sudo -n accord serve --repo '/a dir/it'\\''s'"), "/a dir/it's")
        XCTAssertEqual(try ServeAccess.requestedRepository(in: "/usr/local/bin/accord serve --directory=\"/x/y\""), "/x/y")
        XCTAssertEqual(try ServeAccess.requestedRepository(in: "accord serve -d /z"), "/z")
        XCTAssertEqual(try ServeAccess.requestedRepository(in: "accord serve --idle-timeout 5"), nil)
        XCTAssertThrowsError(try ServeAccess.requestedRepository(in: "rm -rf /")) { XCTAssert("\($0)".contains("may only run `accord serve`"), "\($0)") }
        XCTAssertThrowsError(try ServeAccess.requestedRepository(in: "accord serve --repo '/unterminated")) { XCTAssert("\($0)".contains("cannot read"), "\($0)") }
        // The last --repo is what serve's parser would take.
        XCTAssertEqual(try ServeAccess.requestedRepository(in: "accord serve --repo /a --repo /b"), "/b")
    }

    func testPinsMustAgreeAndAForcedCommandMustNameItsRepository() throws {
        let a = ServeAccess.Pin(path: "/srv/a", source: "serve.repository in /etc/accord/accord.yaml")
        XCTAssertThrowsError(try ServeAccess.repository(argument: "/srv/b", settingsPin: a, originalCommand: "accord serve --repo /srv/b", local: false)) {
            XCTAssert("\($0)".contains("pinned twice") && "\($0)".contains("/srv/a") && "\($0)".contains("/srv/b"), "\($0)")
        }
        XCTAssertThrowsError(try ServeAccess.repository(argument: nil, settingsPin: nil, originalCommand: "accord serve --repo /x", local: false)) {
            XCTAssert("\($0)".contains("forced command runs serve without --repo"), "\($0)")
        }
        XCTAssertEqual(try ServeAccess.repository(argument: "/srv/a", settingsPin: a, originalCommand: "accord serve --repo /srv/a/", local: false), "/srv/a")
        XCTAssertEqual(try ServeAccess.repository(argument: "/anything", settingsPin: a, originalCommand: nil, local: true), "/anything")
        XCTAssertThrowsError(try ServeAccess.repository(argument: nil, settingsPin: nil, originalCommand: nil, local: false))
    }
}
