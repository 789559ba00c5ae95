import Foundation
import XCTest
import AccordTestSupport

/// What a newcomer types first: `--help`, a typo in an option or a
/// subcommand, a bad `-a` action. Help goes to stdout with exit 0; a usage
/// error goes to stderr with exit 64, names what was wrong, and shows the
/// usage of the command it was given to.
final class UsageTests: AccordTestCase {
    /// Every subcommand `accord` has (Sources/accord/Accord.swift), with the
    /// arguments it needs before it looks at options it does not know
    /// (`-d DIR` where it takes one: `plan` has none, `serve` has `--repo`).
    func subcommands() -> [(name: String, args: [String])] {
        let d = ["-d", repo]
        return [("init", d), ("backup", d + ["/tmp"]), ("snapshots", ["list"] + d), ("ls", d + ["latest"]),
                ("dump", d + ["latest", "/x"]), ("restore", d + ["latest", "--target", scratch.sub("target")]), ("check", d),
                ("unlock", d), ("sync", d + ["--to", "dr-node"]), ("serve", ["--repo", repo]), ("plan", ["show"]),
                ("forget", d + ["--keep-last", "1"]), ("prune", d), ("repair", ["index"] + d)]
    }

    func testHelpListsEverySubcommand() throws {
        let r = try accord("--help")
        XCTAssertTrue(r.ok, "\(r)")
        let listed = r.stdout.components(separatedBy: "SUBCOMMANDS:").last ?? ""
        for (name, _) in subcommands() {
            XCTAssertTrue(listed.split(separator: "\n").contains { $0.split(separator: " ").first.map(String.init) == name },
                          "`accord --help` does not list `\(name)`:\n\(r)")
        }
        XCTAssertTrue(r.stdout.contains("accord -a backup") && r.stdout.contains("accord -a restore"),
                      "`accord --help` does not show the original command line:\n\(r)")
    }

    func testEverySubcommandHasHelpNamingItsUsage() throws {
        for (name, _) in subcommands() {
            let r = try accord(name, "--help")
            XCTAssertTrue(r.ok, "accord \(name) --help:\n\(r)")
            XCTAssertTrue(r.stdout.contains("OVERVIEW:") && r.stdout.contains("USAGE: accord \(name)"),
                          "accord \(name) --help shows no overview or usage:\n\(r)")
        }
    }

    func testUnknownOptionExitsWithAUsageMessageNamingIt() throws {
        for (name, args) in subcommands() {
            let r = try accord([name] + args + ["--no-such-option"])
            XCTAssertEqual(r.status, 64, "accord \(name) --no-such-option:\n\(r)")
            XCTAssertFalse(r.signaled, "\(r)")
            XCTAssertTrue(r.stderr.contains("Unknown option '--no-such-option'"), "the unknown option is not named:\n\(r)")
            XCTAssertTrue(r.stderr.contains("Usage: accord \(name)"), "no usage of `accord \(name)`:\n\(r)")
        }
        XCTAssertFalse(Files.exists(repo), "a command refused for its options created the repository")
    }

    func testUnknownOptionBeforeAnySubcommandIsNamed() throws {
        let r = try accord("--no-such-option")
        XCTAssertEqual(r.status, 64, "\(r)")
        XCTAssertTrue(r.stderr.contains("Unknown option '--no-such-option'") && r.stderr.contains("Usage: accord"), "\(r)")
    }

    func testUnknownSubcommandIsNamed() throws {
        let r = try accord("frobnicate")
        XCTAssertEqual(r.status, 64, "\(r)")
        XCTAssertTrue(r.stderr.contains("'frobnicate'") && r.stderr.contains("accord <subcommand>"), "\(r)")
        XCTAssertEqual(r.stdout, "")
    }

    /// The original tool's `-a ACTION`: only backup and restore; anything
    /// else, or nothing, is a usage error naming the value and both actions.
    func testLegacyActionWithABadValueIsNamed() throws {
        let bad = try accord("-a", "frobnicate", "-d", repo)
        XCTAssertEqual(bad.status, 64, "\(bad)")
        XCTAssertTrue(bad.stderr.contains("-a must be backup or restore, not frobnicate"), "the bad action is not named:\n\(bad)")
        XCTAssertTrue(bad.stderr.contains("accord -a backup") && bad.stderr.contains("accord -a restore"), "\(bad)")

        let missing = try accord("-a")
        XCTAssertEqual(missing.status, 64, "\(missing)")
        XCTAssertTrue(missing.stderr.contains("Missing value for '-a <ACTION>'"), "\(missing)")
        XCTAssertFalse(Files.exists(repo), "a refused -a created the repository")
    }
}
