import Foundation
import XCTest
import AccordTestSupport
import AccordCore
import AccordRuntime

/// `accord key list|add|remove|passwd|export` (issue 15): several passphrases
/// open one repository; the last key file and the one in use are never
/// removed; the paper backup names the repository and never the passphrase.
final class KeyCLITests: AccordTestCase {
    var first = "", second = ""

    /// An encrypted repository with a snapshot, opened by the password file `first`
    /// (set as $ACCORD_PASSWORD_FILE); `second` holds another passphrase, not yet a key.
    func makeRepository() throws {
        let root = scratch.sub("src")
        try TreeBuilder.mkdir(Array(root.utf8))
        try TreeBuilder.write(Array((root + "/a.txt").utf8), Array("hello keys".utf8))
        first = try useEncryption(passphrase: "first passphrase")
        second = try writePasswordFile("second passphrase")
        try accordOK("init", "-d", repo)
        _ = try backup([root])
    }

    func keyNames() -> [String] { names(in: repo + "/keys") }

    func opens(_ file: String) throws -> Bool { try accord(["snapshots", "list", "-d", repo, "--password-file", file]).ok }

    /// `key list --json`: id → in use.
    func listKeys(with file: String) throws -> [String: Bool] {
        let r = try accordOK(["key", "list", "-d", repo, "--json", "--password-file", file])
        var out: [String: Bool] = [:]
        for line in r.stdout.split(separator: "\n") {
            let o = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], String(line))
            out[try XCTUnwrap(o["id"] as? String)] = try XCTUnwrap(o["inUse"] as? Bool)
            let kdf = try XCTUnwrap(o["kdf"] as? [String: Any])
            XCTAssertEqual(kdf["N"] as? Int, 16384, "the test's ACCORD_SCRYPT_N is recorded")
            XCTAssertEqual(o["host"] as? String, Sys.hostname)
        }
        return out
    }

    func testTwoKeyFilesBothOpenAndRemovingOneLeavesTheOther() throws {
        try makeRepository()
        let added = try accordOK(["key", "add", "-d", repo, "--new-password-file", second])
        XCTAssertTrue(added.stdout.contains("added key"), "\(added)")
        XCTAssertEqual(keyNames().count, 2)
        XCTAssertTrue(try opens(first) && opens(second), "each passphrase opens the repository")
        let keys = try listKeys(with: second)
        XCTAssertEqual(keys.count, 2)
        let secondKey = try XCTUnwrap(keys.first { $0.value }?.key, "key list marks the key that opened it")
        let firstKey = try XCTUnwrap(keys.first { !$0.value }?.key)
        let table = try accordOK(["key", "list", "-d", repo, "--password-file", second])
        XCTAssertTrue(table.stdout.contains("* " + secondKey.prefix(8)) && table.stdout.contains("scrypt N=16384 r=8 p=1"), "\(table)")

        // The key in use is not removed; another one is.
        let own = try accord(["key", "remove", "-d", repo, String(secondKey.prefix(8)), "--password-file", second])
        XCTAssertEqual(own.status, 1, "\(own)")
        XCTAssertTrue(own.stderr.contains("opened"), "\(own)")
        try accordOK(["key", "remove", "-d", repo, String(firstKey.prefix(10)), "--password-file", second])
        XCTAssertEqual(keyNames(), [secondKey])
        XCTAssertFalse(try opens(first), "the removed key's passphrase still opens the repository")
        XCTAssertTrue(try opens(second), "removing one key file broke the other")
        accordEnvironment["ACCORD_PASSWORD_FILE"] = second
        try assertRestores("latest", root: scratch.sub("src"), expected: try listTree(scratch.sub("src"), .modesTimesAndContent),
                           "restore with the remaining key")
    }

    func testLastKeyIsNeverRemoved() throws {
        try makeRepository()
        let only = try XCTUnwrap(keyNames().first)
        for spec in [String(only.prefix(8)), only] {
            let r = try accord(["key", "remove", "-d", repo, spec])
            XCTAssertEqual(r.status, 1, "\(r)")
            XCTAssertFalse(r.stderr.isEmpty, "\(r)")
        }
        let unknown = try accord(["key", "remove", "-d", repo, "ffffffff"])
        XCTAssertEqual(unknown.status, 1, "\(unknown)")
        XCTAssertTrue(unknown.stderr.contains("ffffffff"), "\(unknown)")
        XCTAssertEqual(keyNames(), [only], "the last key file was removed")
        XCTAssertTrue(try opens(first))
    }

    func testPasswdThenOldFailsAndNewWorks() throws {
        try makeRepository()
        let before = keyNames()
        let r = try accordOK(["key", "passwd", "-d", repo, "--new-password-file", second])
        XCTAssertTrue(r.stdout.contains("changed the passphrase"), "\(r)")
        XCTAssertEqual(keyNames().count, 1)
        XCTAssertNotEqual(keyNames(), before, "passwd kept the old key file")
        XCTAssertFalse(try opens(first), "the old passphrase still opens the repository")
        XCTAssertTrue(try opens(second), "the new passphrase does not open the repository")
        let missing = try accord(["key", "passwd", "-d", repo, "--password-file", second])
        XCTAssertEqual(missing.status, 1, "passwd without a new passphrase and without a terminal:\n\(missing)")
        XCTAssertTrue(missing.stderr.contains("--new-password-file"), "\(missing)")
        XCTAssertEqual(keyNames().count, 1)
    }

    /// The paper backup: the repository id, the 32-byte key in checksummed
    /// lines that verify, and never the passphrase.
    func testExportPrintsRepositoryIDAndCheckedKeyLinesButNotThePassphrase() throws {
        try makeRepository()
        let r = try accordOK(["key", "export", "-d", repo])
        let config = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(try Files.read(repo + "/config"))) as? [String: Any])
        let id = try XCTUnwrap(config["id"] as? String)
        XCTAssertTrue(r.stdout.contains("repository: \(id)"), "\(r)")
        XCTAssertFalse(r.output.contains("first passphrase"), "export printed the passphrase:\n\(r)")
        var key: [UInt8] = []
        for (n, line) in r.stdout.split(separator: "\n").filter({ $0.first?.isNumber == true }).enumerated() {
            let parts = line.split(separator: " - ")
            XCTAssertEqual(parts.count, 2, String(line))
            XCTAssertTrue(parts[0].hasPrefix("\(n + 1): "), String(line))
            let hex = parts[0].dropFirst("\(n + 1): ".count).replacingOccurrences(of: " ", with: "")
            let bytes = stride(from: 0, to: hex.count, by: 2).compactMap { i -> UInt8? in
                let s = hex.index(hex.startIndex, offsetBy: i)
                return UInt8(hex[s..<hex.index(s, offsetBy: 2)], radix: 16)
            }
            let sum = SHA256Hasher.hash(Array(id.utf8) + [UInt8(n + 1)] + bytes).hex.prefix(4)
            XCTAssertEqual(String(parts[1]), String(sum), "line \(n + 1)'s checksum")
            key += bytes
        }
        XCTAssertEqual(key.count, 32, "the master key is 32 bytes:\n\(r)")
        XCTAssertTrue(r.stdout.contains("check: " + SHA256Hasher.hash(Array("accord paper key".utf8) + Array(id.utf8) + key).hex.prefix(8)), "\(r)")
        // Without the passphrase there is no export.
        let denied = try accord(["key", "export", "-d", repo, "--password-file", second])
        XCTAssertEqual(denied.status, 1, "\(denied)")
        XCTAssertFalse(denied.stdout.contains("repository:"), "\(denied)")
    }

    func testKeyCommandsOnPlainRepositoryAreRefused() throws {
        try accordOK("init", "-d", repo, "--encryption", "none")
        for args in [["key", "list"], ["key", "export"], ["key", "add", "--new-password-file", try writePasswordFile("x")]] {
            let r = try accord(args + ["-d", repo])
            XCTAssertEqual(r.status, 1, "\(r)")
            XCTAssertTrue(r.stderr.contains("plain repository"), "\(r)")
        }
        XCTAssertFalse(Files.exists(repo + "/keys") && !names(in: repo + "/keys").isEmpty, "a key was added to a plain repository")
    }

    /// No option of any command takes a passphrase itself (argv is readable
    /// by every user): each option naming a password or passphrase takes a FILE.
    func testNoOptionTakesAPassphrase() throws {
        let commands: [[String]] = [[], ["init"], ["backup"], ["restore"], ["snapshots", "list"], ["check"], ["sync"], ["forget"], ["prune"],
                                    ["key", "list"], ["key", "add"], ["key", "remove"], ["key", "passwd"], ["key", "export"]]
        var seen: Set<String> = []
        for c in commands {
            let r = try accord(c + ["--help"])
            XCTAssertTrue(r.ok, "\(r)")
            let regex = try NSRegularExpression(pattern: "--[a-z-]*(pass|secret|key)[a-z-]*( <[A-Za-z-]+>)?")
            let text = r.stdout as NSString
            for m in regex.matches(in: r.stdout, range: NSRange(location: 0, length: text.length)) {
                let option = text.substring(with: m.range)
                seen.insert(option)
                XCTAssertTrue(option.hasSuffix(" <FILE>") || !option.contains(" "), "accord \(c.joined(separator: " ")): \(option) takes a value that is not a file")
            }
        }
        XCTAssertTrue(seen.contains("--password-file <FILE>") && seen.contains("--new-password-file <FILE>"), "\(seen)")
    }
    /// `key import`: a paper backup typed back in adds a key file for a new
    /// passphrase, even with every key file gone; a mistyped line, another
    /// repository's paper or a wrong key is refused and adds nothing.
    func testImportFromPaperBackupRestoresAccess() throws {
        try makeRepository()
        let paper = try accordOK(["key", "export", "-d", repo]).stdout
        let paperFile = scratch.sub("paper.txt")
        // Lost every key file (the repository is otherwise intact).
        for k in keyNames() { try FileManager.default.removeItem(atPath: repo + "/keys/" + k) }
        XCTAssertFalse(try opens(first))

        let lines = paper.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let mistyped = lines.map { l -> String in
            guard l.hasPrefix("2: ") else { return l }
            var c = Array(l)
            c[3] = c[3] == "0" ? "1" : "0"   // one digit of key line 2 mistyped
            return String(c)
        }
        let cases: [(String, String)] = [
            (mistyped.joined(separator: "\n"), "key line 2 does not match its checksum"),
            (paper.replacingOccurrences(of: "repository: ", with: "repository: 00"), "the paper key is for repository"),
            (lines.filter { !$0.hasPrefix("check:") }.joined(separator: "\n"), "check:"),
            (lines.filter { !$0.hasPrefix("4: ") }.joined(separator: "\n"), "not 32"),
        ]
        for (text, mention) in cases {
            try Files.write(paperFile, Array(text.utf8), mode: 0o600)
            let r = try accord(["key", "import", "-d", repo, "--paper-file", paperFile, "--new-password-file", second])
            XCTAssertEqual(r.status, 1, "\(mention):\n\(r)")
            XCTAssertTrue(r.stderr.contains(mention), "expected \(mention):\n\(r)")
            XCTAssertEqual(keyNames(), [], "a refused import wrote a key file")
        }
        // Without the header line, and with extra blank lines: accepted.
        try Files.write(paperFile, Array(("\n" + lines.dropFirst().joined(separator: "\n") + "\n\n").utf8), mode: 0o600)
        let r = try accord(["key", "import", "-d", repo, "--paper-file", paperFile, "--new-password-file", second])
        XCTAssertTrue(r.ok && r.stdout.contains("imported"), "\(r)")
        XCTAssertEqual(keyNames().count, 1)
        XCTAssertTrue(try opens(second), "the imported key's passphrase does not open the repository")
        XCTAssertFalse(try opens(first))
        accordEnvironment["ACCORD_PASSWORD_FILE"] = second
        try assertRestores("latest", root: scratch.sub("src"), expected: try listTree(scratch.sub("src"), .modesTimesAndContent), "restore after key import")
    }
    /// At a terminal the passphrase is asked on it with echo off: twice for a
    /// new repository (a mismatch creates nothing), once to open one.
    func testPromptOnTheTerminalWithEchoOff() throws {
        let typed = "typed-at-the-prompt-4c1d"
        let env = ["ACCORD_ENCRYPTION": "aes-256-gcm", "ACCORD_SCRYPT_N": "16384", "ACCORD_SETTINGS": scratch.sub("none.yaml")]
        let mismatch = try runOnTerminal(["init", "-d", repo], environment: env,
                                         answers: [("New passphrase for", typed), ("Again", typed + "x")])
        XCTAssertEqual(mismatch.status, 1, "\(mismatch)")
        XCTAssertTrue(mismatch.output.contains("differ"), "\(mismatch)")
        XCTAssertFalse(Files.exists(repo), "a mismatched confirmation created the repository")

        let made = try runOnTerminal(["init", "-d", repo], environment: env, answers: [("New passphrase for", typed), ("Again", typed)])
        XCTAssertTrue(made.ok && made.output.contains("created encrypted"), "\(made)")
        XCTAssertFalse(made.output.contains(typed), "the passphrase was echoed:\n\(made)")
        XCTAssertTrue(try opens(try writePasswordFile(typed)), "the passphrase typed is not the repository's")

        let listed = try runOnTerminal(["key", "list", "-d", repo], environment: env, answers: [("Passphrase for", typed)])
        XCTAssertTrue(listed.ok && listed.output.contains("* "), "\(listed)")
        XCTAssertFalse(listed.output.contains(typed), "\(listed)")
        XCTAssertFalse(listed.output.contains("Again"), "opening asks once:\n\(listed)")
    }
}
