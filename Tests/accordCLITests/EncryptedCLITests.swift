import Foundation
import XCTest
import AccordTestSupport
import AccordCore
import AccordRuntime

/// An encrypted repository through the command line (issue 15): where the
/// passphrase comes from, in which order, and what a wrong or missing one does.
final class EncryptedCLITests: AccordTestCase {
    let secretText = "the-plaintext-marker-7f3a91c2 of a file that must not be findable in the repository\n"

    func makeTree() throws -> String {
        let root = scratch.sub("src")
        try TreeBuilder.mkdir(Array(root.utf8))
        try TreeBuilder.write(Array((root + "/secret.txt").utf8), Array(String(repeating: secretText, count: 50).utf8))
        try TreeBuilder.mkdir(Array((root + "/sub").utf8))
        var rng = SeededRandom(seed: 15)
        try TreeBuilder.write(Array((root + "/sub/data.bin").utf8), rng.letterText(300_000))
        return root
    }

    /// Every file of the repository but locks and tmp, with its bytes.
    func repositoryFiles(_ dir: String? = nil) throws -> [String: [UInt8]] {
        let r = dir ?? repo
        var out: [String: [UInt8]] = [:]
        for f in Files.regularFiles(under: r) {
            let rel = String(f.dropFirst(r.count + 1))
            if rel.hasPrefix("locks/") || rel.hasPrefix("tmp/") { continue }
            out[rel] = try Files.read(f)
        }
        return out
    }

    func config(_ dir: String? = nil) throws -> [String: Any] {
        try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(try Files.read((dir ?? repo) + "/config"))) as? [String: Any])
    }

    /// An encrypted repository with one snapshot, made with `passphrase`; the environment is then left without a source.
    func encryptedRepository(passphrase: String = AccordTestCase.testPassphrase) throws -> String {
        let root = try makeTree()
        try useEncryption(passphrase: passphrase)
        try accordOK("init", "-d", repo)
        _ = try backup([root])
        accordEnvironment = ["ACCORD_SCRYPT_N": "16384"]
        return root
    }

    // MARK: Round trip

    func testInitEncryptedBackupRestoreRoundTripWithPasswordFile() throws {
        let root = try makeTree()
        let file = try useEncryption()
        let made = try accordOK("init", "-d", repo)
        XCTAssertTrue(made.stdout.contains("encrypted"), "\(made)")
        let c = try config()
        XCTAssertEqual(c["version"] as? Int, 3, "\(c)")
        XCTAssertEqual(c["encryption"] as? String, "aes-256-gcm", "\(c)")
        XCTAssertEqual(names(in: repo + "/keys").count, 1, "init writes one key file")
        let expected = try listTree(root, .modesTimesAndContent)
        _ = try backup([root])
        try assertRestores("latest", root: root, expected: expected, "encrypted round trip (password file)")
        try assertCheckPasses(readData: true, "check of an encrypted repository")
        // Through --password-file as well as $ACCORD_PASSWORD_FILE.
        accordEnvironment.removeValue(forKey: "ACCORD_PASSWORD_FILE")
        let target = scratch.sub("restored-option")
        try accordOK(["restore", "-d", repo, "--password-file", file, "latest", "--target", target, "-q"])
        assertSameTree(expected, try listTree(target + root, .modesTimesAndContent), "restore with --password-file")
        // No stored file holds the plaintext of a known file.
        let marker = Array("the-plaintext-marker-7f3a91c2".utf8)
        for (name, bytes) in try repositoryFiles() {
            XCTAssertFalse(bytes.withUnsafeBufferPointer { b in
                b.count >= marker.count && (0...(b.count - marker.count)).contains { i in marker.indices.allSatisfy { b[i + $0] == marker[$0] } }
            }, "\(name) holds a known file's plaintext")
        }
    }

    /// Without any setting, `init` makes an encrypted repository; `--encryption none`
    /// a plain version-2 one; a bad name is refused.
    func testEncryptionDefaultsAndOverrides() throws {
        let file = try writePasswordFile("pw-default")
        try accordOK(["init", "-d", repo, "--password-file", file], environment: ["ACCORD_ENCRYPTION": ""])
        XCTAssertEqual(try config()["encryption"] as? String, "aes-256-gcm", "the default is encrypted")
        let plain = scratch.sub("plain")
        try accordOK(["init", "-d", plain, "--encryption", "none"])
        XCTAssertNil(try config(plain)["encryption"], "--encryption none writes a plain config")
        XCTAssertEqual(try config(plain)["version"] as? Int, 2)
        let viaEnv = scratch.sub("plain-env")
        try accordOK(["init", "-d", viaEnv], environment: ["ACCORD_ENCRYPTION": "none"])
        XCTAssertNil(try config(viaEnv)["encryption"], "$ACCORD_ENCRYPTION=none writes a plain config")
        let bad = try accord(["init", "-d", scratch.sub("bad")], environment: ["ACCORD_ENCRYPTION": "rot13"])
        XCTAssertEqual(bad.status, 1, "\(bad)")
        XCTAssertTrue(bad.stderr.contains("ACCORD_ENCRYPTION=rot13"), "\(bad)")
        let badOption = try accord(["init", "-d", scratch.sub("bad2"), "--encryption", "rot13"])
        XCTAssertEqual(badOption.status, 64, "\(badOption)")
        XCTAssertTrue(badOption.stderr.contains("--encryption rot13"), "\(badOption)")
        XCTAssertFalse(Files.exists(scratch.sub("bad")) || Files.exists(scratch.sub("bad2")), "a refused init created a repository")
        // A backup that creates the repository: encrypted by default, plain with --encryption none.
        let root = try makeTree()
        let byBackup = scratch.sub("by-backup"), plainByBackup = scratch.sub("plain-by-backup")
        try accordOK(["backup", "-d", byBackup, "-q", "--password-file", file, root], environment: ["ACCORD_ENCRYPTION": ""])
        XCTAssertEqual(try config(byBackup)["encryption"] as? String, "aes-256-gcm", "a first backup creates an encrypted repository")
        try accordOK(["backup", "-d", plainByBackup, "-q", "--encryption", "none", root], environment: ["ACCORD_ENCRYPTION": ""])
        XCTAssertNil(try config(plainByBackup)["encryption"])
        // Asking for a plain repository while a passphrase is configured is a contradiction.
        let both = try accord(["init", "-d", scratch.sub("both"), "--encryption", "none", "--password-file", file])
        XCTAssertEqual(both.status, 1, "\(both)")
        XCTAssertTrue(both.stderr.contains("--encryption none") && both.stderr.contains("--password-file"), "\(both)")
        XCTAssertFalse(Files.exists(scratch.sub("both")))
    }

    // MARK: Wrong and missing passphrases

    func testWrongPassphraseIsOneClearErrorAndWritesNothing() throws {
        let root = try encryptedRepository()
        let before = try repositoryFiles()
        let wrong = try writePasswordFile("not the passphrase")
        let target = scratch.sub("target")
        for args in [["backup", "-d", repo, root], ["restore", "-d", repo, "latest", "--target", target],
                     ["snapshots", "list", "-d", repo], ["key", "add", "-d", repo, "--new-password-file", wrong]] {
            let r = try accord(args, environment: ["ACCORD_PASSWORD_FILE": wrong])
            XCTAssertEqual(r.status, 1, "\(args[0]):\n\(r)")
            XCTAssertFalse(r.signaled, "\(r)")
            let lines = r.stderr.split(separator: "\n").filter { !$0.trimmingCharacters(in: .whitespaces).isEmpty }
            XCTAssertEqual(lines.count, 1, "\(args[0]): one error, not \(lines.count) lines:\n\(r)")
            XCTAssertTrue(r.stderr.lowercased().contains("passphrase"), "\(args[0]): the error does not say the passphrase is wrong:\n\(r)")
            XCTAssertFalse(r.output.contains("not the passphrase"), "\(args[0]) printed the passphrase:\n\(r)")
        }
        XCTAssertEqual(try repositoryFiles(), before, "a command with a wrong passphrase changed the repository")
        XCTAssertFalse(Files.exists(target), "a restore with a wrong passphrase created its target")
    }

    func testMissingSourceWithoutTerminalIsAClearError() throws {
        _ = try encryptedRepository()
        let r = try accord(["snapshots", "list", "-d", repo], environment: ["ACCORD_SETTINGS": scratch.sub("no-settings.yaml")])
        XCTAssertEqual(r.status, 1, "\(r)")
        for mention in ["--password-file", "ACCORD_PASSWORD_FILE", "ACCORD_PASSWORD_COMMAND", "password-file", "not a terminal"] {
            XCTAssertTrue(r.stderr.contains(mention), "the error does not mention \(mention):\n\(r)")
        }
    }

    /// --password-file, then $ACCORD_PASSWORD_FILE, then $ACCORD_PASSWORD_COMMAND,
    /// then the settings file: each case gives the right passphrase at one level
    /// and a wrong one at every level below it, so a wrong order fails.
    func testSourcesAreTriedInOrder() throws {
        let passphrase = "order-test passphrase"
        _ = try encryptedRepository(passphrase: passphrase)
        let right = try writePasswordFile(passphrase), wrong = try writePasswordFile("wrong")
        let settingsDir = scratch.sub("etc-right")
        try Files.mkdir(settingsDir)
        chmod(settingsDir, 0o755)
        let rightSettings = settingsDir + "/accord.yaml", wrongSettings = settingsDir + "/wrong.yaml"
        try Files.write(rightSettings, Array("repository:\n  password-file: \(right)\n".utf8))
        try Files.write(wrongSettings, Array("repository:\n  password-file: \(wrong)\n".utf8))
        let cases: [(String, [String], [String: String])] = [
            ("--password-file", ["--password-file", right],
             ["ACCORD_PASSWORD_FILE": wrong, "ACCORD_PASSWORD_COMMAND": "cat \(wrong)", "ACCORD_SETTINGS": wrongSettings]),
            ("$ACCORD_PASSWORD_FILE", [], ["ACCORD_PASSWORD_FILE": right, "ACCORD_PASSWORD_COMMAND": "cat \(wrong)", "ACCORD_SETTINGS": wrongSettings]),
            ("$ACCORD_PASSWORD_COMMAND", [], ["ACCORD_PASSWORD_COMMAND": "cat \(right)", "ACCORD_SETTINGS": wrongSettings]),
            ("the settings file", [], ["ACCORD_SETTINGS": rightSettings]),
        ]
        for (what, args, env) in cases {
            let r = try accord(["snapshots", "list", "-d", repo] + args, environment: env)
            XCTAssertTrue(r.ok, "\(what) was not the source used:\n\(r)")
        }
        // And the level above wins over a right one below.
        let above = try accord(["snapshots", "list", "-d", repo, "--password-file", wrong], environment: ["ACCORD_PASSWORD_FILE": right])
        XCTAssertEqual(above.status, 1, "--password-file must win over $ACCORD_PASSWORD_FILE:\n\(above)")
    }

    func testPasswordCommandFailureNamesTheVariableNeverTheOutput() throws {
        _ = try encryptedRepository()
        let r = try accord(["snapshots", "list", "-d", repo],
                           environment: ["ACCORD_PASSWORD_COMMAND": "echo printed-secret-5d1e; echo vault is sealed >&2; exit 3"])
        XCTAssertEqual(r.status, 1, "\(r)")
        XCTAssertTrue(r.stderr.contains("ACCORD_PASSWORD_COMMAND") && r.stderr.contains("exit status 3"), "\(r)")
        XCTAssertTrue(r.stderr.contains("vault is sealed"), "its stderr helps find why:\n\(r)")
        XCTAssertFalse(r.output.contains("printed-secret-5d1e"), "the command's stdout was printed:\n\(r)")
        let silent = try accord(["snapshots", "list", "-d", repo], environment: ["ACCORD_PASSWORD_COMMAND": "true"])
        XCTAssertEqual(silent.status, 1, "\(silent)")
        XCTAssertTrue(silent.stderr.contains("ACCORD_PASSWORD_COMMAND") && silent.stderr.contains("nothing"), "\(silent)")
    }

    /// A password file: one trailing newline ("\n" or "\r\n") is not part of the
    /// passphrase, a second one is; empty, a directory, too big, or (as root)
    /// open to group or others → refused naming the file.
    func testPasswordFileRules() throws {
        _ = try encryptedRepository(passphrase: "pw")
        func list(_ file: String) throws -> CommandResult { try accord(["snapshots", "list", "-d", repo, "--password-file", file]) }
        let crlf = scratch.sub("crlf"), bare = scratch.sub("bare"), twice = scratch.sub("twice")
        try Files.write(crlf, Array("pw\r\n".utf8), mode: 0o600)
        try Files.write(bare, Array("pw".utf8), mode: 0o600)
        try Files.write(twice, Array("pw\n\n".utf8), mode: 0o600)
        XCTAssertTrue(try list(crlf).ok, "a CRLF line end is not part of the passphrase")
        XCTAssertTrue(try list(bare).ok, "a file without a newline holds the passphrase as it is")
        XCTAssertEqual(try list(twice).status, 1, "only one newline is stripped")
        let empty = scratch.sub("empty"), newlineOnly = scratch.sub("newline-only"), big = scratch.sub("big"), dir = scratch.sub("dir")
        try Files.write(empty, [], mode: 0o600)
        try Files.write(newlineOnly, [0x0a], mode: 0o600)
        try Files.write(big, [UInt8](repeating: 0x61, count: 64 * 1024 + 1), mode: 0o600)
        try Files.mkdir(dir)
        let fifo = scratch.sub("fifo")
        XCTAssertEqual(mkfifo(fifo, 0o600), 0)
        var cases: [(String, String)] = [(empty, "empty"), (newlineOnly, "empty"), (big, "at most 65536"), (dir, "not a regular file"), (fifo, "not a regular file"),
                                         (scratch.sub("missing"), "cannot open")]
        if Sys.isRoot {
            let open = try writePasswordFile("pw", mode: 0o640)
            cases.append((open, "chmod 600"))
        }
        for (file, mention) in cases {
            let r = try list(file)
            XCTAssertEqual(r.status, 1, "\(file):\n\(r)")
            XCTAssertTrue(r.stderr.contains(file) && r.stderr.contains(mention), "\(file): expected \(mention):\n\(r)")
        }
    }

    // MARK: Downgrade

    /// A client with a passphrase configured refuses a repository that says it is plain.
    func testPassphraseConfiguredRefusesPlainRepository() throws {
        let root = try makeTree()
        try accordOK("init", "-d", repo, "--encryption", "none")
        _ = try backup([root])
        let file = try writePasswordFile("pw")
        let etc = scratch.sub("etc-plain")
        try Files.mkdir(etc)
        chmod(etc, 0o755)
        try Files.write(etc + "/accord.yaml", Array("repository:\n  password-file: \(file)\n".utf8))
        let before = try repositoryFiles()
        for (args, env) in [(["snapshots", "list", "-d", repo, "--password-file", file], [:]),
                            (["backup", "-d", repo, root], ["ACCORD_PASSWORD_FILE": file]),
                            (["backup", "-d", repo, "-q", root], ["ACCORD_PASSWORD_COMMAND": "cat \(file)"]),
                            (["restore", "-d", repo, "latest", "--target", scratch.sub("t")], ["ACCORD_SETTINGS": etc + "/accord.yaml"])]
                as [([String], [String: String])] {
            let r = try accord(args, environment: env)
            XCTAssertEqual(r.status, 1, "\(args[0]) used a plain repository with a passphrase configured:\n\(r)")
            XCTAssertTrue(r.stderr.contains("plain") || r.stderr.contains("not encrypted"), "\(r)")
        }
        XCTAssertEqual(try repositoryFiles(), before)
        XCTAssertTrue(try accord(["snapshots", "list", "-d", repo]).ok, "without a passphrase the plain repository still opens")
    }
    // MARK: The AE5 flows' key file

    /// A plan backup (an AE5 flow) that creates an encrypted repository with no
    /// passphrase configured creates the node's key file (0600, its directory
    /// 0700), says loudly where it is, and uses it from then on; a plain
    /// backup never creates one, and without a source creates nothing.
    func testPlanBackupCreatesTheNodeKeyFileOnce() throws {
        let store = scratch.sub("store")
        try Files.mkdir(store)
        try Files.write(store + "/object", Array("stored object\n".utf8))
        let plan = scratch.sub("plan.yaml")
        try Files.write(plan, Array("base: ae5-repos\nname: keytest\nstorage:\n  root: \(store)\ndumps: []\n".utf8))
        let etc = scratch.sub("etc-accord")
        try Files.mkdir(etc)
        chmod(etc, 0o755)
        let keyFile = etc + "/keys/repository.key", settings = etc + "/accord.yaml"
        try Files.write(settings, Array("repository:\n  password-file: \(keyFile)\n".utf8))
        let env = ["ACCORD_SETTINGS": settings, "ACCORD_ENCRYPTION": "", "ACCORD_SCRYPT_N": "16384"]

        // Not an AE5 flow: no key file is made, and without a source nothing at all.
        let plainFlow = try accord(["backup", "-d", repo, store], environment: env)
        XCTAssertEqual(plainFlow.status, 1, "\(plainFlow)")
        XCTAssertTrue(plainFlow.stderr.contains(keyFile), "\(plainFlow)")
        XCTAssertFalse(Files.exists(keyFile) || Files.exists(repo), "a backup outside the AE5 flows made a key file or a repository")

        // A key file that cannot be made (here: under a regular file, as under a read-only /etc):
        // the error says how to make it, and no repository is created without it.
        let blocker = scratch.sub("not-a-dir"), badSettings = etc + "/unmakeable.yaml"
        try Files.write(blocker, [0x78])
        try Files.write(badSettings, Array("repository:\n  password-file: \(blocker)/keys/repository.key\n".utf8))
        let unmakeable = try accord(["backup", "-d", repo, "--plan", plan], environment: env.merging(["ACCORD_SETTINGS": badSettings]) { $1 })
        XCTAssertEqual(unmakeable.status, 1, "\(unmakeable)")
        XCTAssertTrue(unmakeable.stderr.contains("cannot create the key file \(blocker)/keys/repository.key") && unmakeable.stderr.contains("head -c 32 /dev/urandom"),
                      "\(unmakeable)")
        XCTAssertFalse(Files.exists(repo), "a repository was created without its key file")

        let first = try accord(["backup", "-d", repo, "--plan", plan], environment: env)
        XCTAssertTrue(first.ok, "\(first)")
        XCTAssertTrue(first.stderr.contains("created the key file \(keyFile)") && first.stderr.contains("OFF this node"), "not loud enough:\n\(first)")
        let st = try Sys.stat(Array(keyFile.utf8)), dir = try Sys.stat(Array((etc + "/keys").utf8))
        XCTAssertEqual(st.permissions, 0o600)
        XCTAssertEqual(dir.permissions, 0o700)
        XCTAssertEqual(try Sys.listDirectory(etc + "/keys"), ["repository.key"], "a temporary file was left beside the key file")
        let passphrase = try Files.read(keyFile)
        XCTAssertEqual(passphrase.count, 65, "32 random bytes as hex and a newline")
        XCTAssertFalse(first.output.contains(String(decoding: passphrase.dropLast(), as: UTF8.self)), "the passphrase was printed")
        XCTAssertEqual(try config()["encryption"] as? String, "aes-256-gcm")

        let second = try accord(["backup", "-d", repo, "--plan", plan], environment: env)
        XCTAssertTrue(second.ok, "\(second)")
        XCTAssertFalse(second.stderr.contains("created the key file"), "\(second)")
        XCTAssertEqual(try Files.read(keyFile), passphrase, "the key file was replaced")
        XCTAssertEqual(snapshotNames().count, 2)
        // Every command reads it through the settings file.
        XCTAssertTrue(try accord(["snapshots", "list", "-d", repo], environment: env).ok)
        let keys = try accord(["key", "list", "-d", repo, "--json"], environment: env)
        XCTAssertTrue(keys.ok && keys.stdout.contains("\"algorithm\":\"hkdf-sha256\""), "a generated 256-bit secret needs no scrypt:\n\(keys)")
    }
}
