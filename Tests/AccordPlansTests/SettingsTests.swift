import Foundation
import XCTest
import AccordPlans

/// The settings file's `repository` section (issue 15), parsed alone; the
/// `serve` section and the file's ownership rules are tested through serve
/// (AccordSyncTests/ServePinningTests).
final class SettingsTests: XCTestCase {
    func testRepositorySectionIsRead() throws {
        let s = try Settings.parse("repository:\n  password-file: /etc/accord/repository.key\n  encryption: none\nserve:\n  idle-timeout: 30\n", source: "t.yaml")
        XCTAssertEqual(s.repository.passwordFile, "/etc/accord/repository.key")
        XCTAssertEqual(s.repository.encryption, "none")
        XCTAssertEqual(s.serve.idleTimeout, 30, "the serve section is still read beside it")
        let empty = try Settings.parse("repository:\n", source: "t.yaml")
        XCTAssertEqual(empty.repository, Settings.RepositoryDefaults(), "an empty section means the defaults")
        XCTAssertEqual(try Settings.parse("serve:\nrepository:\n  encryption: aes-256-gcm\n", source: "t.yaml").repository.encryption,
                       "aes-256-gcm", "an empty serve: no longer ends the parse before later sections")
    }

    /// `metrics: file:` and `log: file:` (issue 18): absolute paths; a metrics
    /// file node_exporter would skip (not *.prom) is refused, as is any other key.
    func testMonitoringSectionsAreReadAndChecked() throws {
        let s = try Settings.parse("metrics:\n  file: /var/lib/node-exporter/accord.prom\nlog:\n  file: /var/log/accord.log\n", source: "t.yaml")
        XCTAssertEqual(s.metrics.file, "/var/lib/node-exporter/accord.prom")
        XCTAssertEqual(s.log.file, "/var/log/accord.log")
        XCTAssertEqual(try Settings.parse("metrics:\nlog:\n", source: "t.yaml"), Settings(), "empty sections mean no metrics and no log")
        let cases: [(String, [String])] = [
            ("metrics:\n  file: /var/lib/accord.txt\n", ["metrics.file must be an absolute path ending in .prom", "not /var/lib/accord.txt"]),
            ("metrics:\n  file: accord.prom\n", ["metrics.file must be an absolute path"]),
            ("metrics:\n  file: /x/.prom\n", ["metrics.file must be an absolute path ending in .prom"]),
            ("metrics:\n  path: /x/a.prom\n", ["unknown key metrics.path", "known: file"]),
            ("metrics: /x/a.prom\n", ["metrics must be a mapping (file:)"]),
            ("log:\n  file: relative.log\n", ["log.file must be an absolute path", "not relative.log"]),
            ("log:\n  file: /var/../log\n", ["log.file must be an absolute path"]),
            ("log:\n  level: debug\n", ["unknown key log.level"]),
            ("logs:\n  file: /a\n", ["unknown key logs", "known sections: serve, repository, metrics, log"]),
        ]
        for (text, expected) in cases {
            XCTAssertThrowsError(try Settings.parse(text, source: "t.yaml"), text.debugDescription) { error in
                for e in expected { XCTAssert("\(error)".contains(e), "\(text.debugDescription): \(error)") }
            }
        }
    }

    /// A typo or a wrong value is refused naming the key: a password-file that
    /// silently did not count would leave the node without its passphrase.
    func testBadRepositorySettingsAreRefusedNamingTheKey() {
        let cases: [(String, [String])] = [
            ("repository:\n  pasword-file: /k\n", ["unknown key repository.pasword-file", "known: encryption, password-file"]),
            ("repository:\n  password-file: relative/key\n", ["repository.password-file must be an absolute path", "not relative/key"]),
            ("repository:\n  password-file: /etc/../key\n", ["repository.password-file must be an absolute path"]),
            ("repository:\n  password-file: /\n", ["repository.password-file must be an absolute path"]),
            ("repository:\n  password-file: 12\n", ["repository.password-file must be an absolute path", "not 12"]),
            ("repository:\n  encryption: aes-128\n", ["repository.encryption must be one of aes-256-gcm, none, not aes-128"]),
            ("repository:\n  encryption: false\n", ["repository.encryption must be one of"]),
            ("repository: /k\n", ["repository must be a mapping (password-file:, encryption:)"]),
            ("keys:\n  a: 1\n", ["unknown key keys", "known sections: serve, repository"]),
        ]
        for (text, expected) in cases {
            XCTAssertThrowsError(try Settings.parse(text, source: "t.yaml"), text.debugDescription) { error in
                let m = "\(error)"
                XCTAssert(m.hasPrefix("settings file t.yaml is unusable: "), m)
                for e in expected { XCTAssert(m.contains(e), "\(text.debugDescription): \(m)") }
            }
        }
    }
}
