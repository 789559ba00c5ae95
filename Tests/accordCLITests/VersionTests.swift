import Foundation
import XCTest
import AccordCore
import AccordTestSupport

/// `accord version`, `accord --version` and the original command line's
/// `--version`: the same lines from all three, the formats read from the
/// code's own constants, and nothing touched on disk.
final class VersionTests: AccordTestCase {
    struct VersionJSON: Decodable {
        struct Formats: Decodable { var writes: Int; var writes_plain: Int; var reads: [Int] }
        struct Build: Decodable { var swift: String; var os: String; var arch: String; var commit: String? }
        var version: String
        var repository_format: Formats
        var snapshot_format: Int
        var sync_protocol: Int
        var build: Build
        var libc: String?
        var libcurl: String?
    }

    func testVersionNamesTheReleaseTheFormatsAndTheBuild() throws {
        let r = try accordOK("version")
        let lines = r.stdout.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.count, 6, "\(r)")
        let first = lines.first ?? ""
        XCTAssertNotNil(first.range(of: #"^accord [0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$"#, options: .regularExpression),
                        "the first line is not `accord MAJOR.MINOR.PATCH`:\n\(r)")
        let reads = RepositoryConfig.readableVersions
        XCTAssertTrue(r.stdout.contains("writes version \(RepositoryConfig.encryptedVersion) (encrypted, the default) or \(RepositoryConfig.currentVersion) (--encryption none), reads versions \(reads.lowerBound)-\(reads.upperBound)"),
                      "the repository format versions are not RepositoryConfig's:\n\(r)")
        XCTAssertTrue(r.stdout.contains("snapshot format \(Snapshot.currentVersion)"), "\(r)")
        XCTAssertNotNil(r.stdout.range(of: #"\nsync protocol: version [0-9]+\n"#, options: .regularExpression), "\(r)")
        // libcurl is loaded at run time for s3: repositories; make deps installs it.
        XCTAssertNotNil(r.stdout.range(of: #"\ns3: repositories: libcurl [0-9]+\.[0-9]+\.[0-9]+ \(libcurl(-gnutls)?\.so\.4\)\n"#, options: .regularExpression), "\(r)")
        #if os(Linux) && arch(x86_64)
        XCTAssertTrue(r.stdout.contains(" for linux x86_64, commit "), "\(r)")
        XCTAssertNotNil(r.stdout.range(of: #"running on glibc [0-9]+\.[0-9]+"#, options: .regularExpression), "\(r)")
        #endif
        XCTAssertEqual(r.stderr, "")
    }

    func testDashDashVersionPrintsTheSameFromEitherParser() throws {
        let expected = try accordOK("version").stdout
        for args in [["--version"], ["backup", "--version"], ["-a", "backup", "--version"], ["-d", repo, "--version"]] {
            let r = try accord(args)
            XCTAssertTrue(r.ok, "accord \(args.joined(separator: " ")):\n\(r)")
            XCTAssertEqual(r.stdout, expected, "accord \(args.joined(separator: " ")) prints other lines than `accord version`")
        }
        XCTAssertFalse(Files.exists(repo), "a --version created the repository")
    }

    func testJSONHasTheStableSchemaAndTheSameValues() throws {
        let text = try accordOK("version").stdout
        let r = try accordOK("version", "--json")
        let v = try JSONDecoder().decode(VersionJSON.self, from: Data(r.stdoutBytes))
        XCTAssertTrue(text.hasPrefix("accord \(v.version)\n"), "--json names another release:\n\(r)\n\(text)")
        XCTAssertEqual(v.repository_format.writes, RepositoryConfig.encryptedVersion)
        XCTAssertEqual(v.repository_format.writes_plain, RepositoryConfig.currentVersion)
        XCTAssertEqual(v.repository_format.reads, Array(RepositoryConfig.readableVersions))
        XCTAssertEqual(v.snapshot_format, Snapshot.currentVersion)
        XCTAssertTrue(text.contains("sync protocol: version \(v.sync_protocol)\n"), "\(r)")
        XCTAssertTrue(text.contains("commit \(v.build.commit ?? "unknown")"), "\(r)")
        XCTAssertTrue(text.contains("s3: repositories: libcurl \(v.libcurl ?? "(null)") ("), "--json's libcurl is not the text's:\n\(r)\n\(text)")
        XCTAssertEqual(r.stdout.split(separator: "\n").count, 1, "--json is not one line:\n\(r)")
    }

    func testUnknownOptionIsAUsageError() throws {
        let r = try accord("version", "--no-such-option")
        XCTAssertEqual(r.status, 64, "\(r)")
        XCTAssertTrue(r.stderr.contains("Unknown option '--no-such-option'") && r.stderr.contains("Usage: accord version"), "\(r)")
    }

    /// The man page (`make man`: swift-argument-parser's generate-manual reads
    /// `--experimental-dump-help`) and the completions describe the subcommand
    /// parser, not the original command line's flags alone: every subcommand is in them.
    func testManPageSourceAndCompletionsCoverEverySubcommand() throws {
        let dump = try accordOK("--experimental-dump-help")
        let tool = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(dump.stdoutBytes)) as? [String: Any], "\(dump)")
        let subcommands = ((tool["command"] as? [String: Any])?["subcommands"] as? [[String: Any]] ?? []).compactMap { $0["commandName"] as? String }
        for name in ["init", "backup", "restore", "sync", "check", "diff", "stats", "version"] {
            XCTAssertTrue(subcommands.contains(name), "--experimental-dump-help has no \(name): \(subcommands)")
        }
        for shell in ["bash", "zsh", "fish"] {
            let r = try accordOK("--generate-completion-script", shell)
            XCTAssertTrue(r.stdout.contains("diff") && r.stdout.contains("stats") && r.stdout.contains("version"), "\(shell) completion:\n\(r.stdout.prefix(500))")
        }
        let script = scratch.sub("accord.bash")
        try Files.write(script, Array(try accordOK("--generate-completion-script", "bash").stdout.utf8))
        let syntax = try runProcess("/bin/bash", ["-n", script])
        XCTAssertTrue(syntax.ok, "the bash completion does not parse:\n\(syntax)")
    }
}
