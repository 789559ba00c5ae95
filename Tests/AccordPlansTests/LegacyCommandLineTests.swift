// The original tool's command line (`accord -a backup|restore …`) and
// `accord plan show`, run as the built binary. No cluster or database is
// needed: these fail (or print) before touching either.
import Foundation
import XCTest
import Yams
import AccordCore
import AccordRuntime

final class LegacyCommandLineTests: XCTestCase {
    var scratch: ScratchDirectory!
    var repo: String { scratch.sub("repo") }

    override func setUpWithError() throws {
        try super.setUpWithError()
        _ = try PlansTestPaths.requireAccord()
        scratch = try ScratchDirectory("cli")
        // kubectl/gravity first on PATH for every test: if a regression let a
        // command reach the cluster, they fail loudly instead of running the real ones.
        try FileManager.default.createDirectory(atPath: scratch.path + "/no-cluster", withIntermediateDirectories: true)
        for tool in ["kubectl", "gravity"] {
            try Tree.write(scratch.path + "/no-cluster/" + tool, "#!/bin/sh\necho \"$0 must not run\" >&2\nexit 99\n", mode: 0o755)
        }
    }

    override func tearDown() {
        scratch?.remove()
        super.tearDown()
    }

    func accord(_ args: [String]) throws -> CommandResult {
        var env = ProcessInfo.processInfo.environment
        env.removeValue(forKey: "ACCORD_REPOSITORY")
        // kubectl/gravity that fail loudly if anything here reached the cluster.
        env["PATH"] = scratch.path + "/no-cluster:" + (env["PATH"] ?? "/usr/bin:/bin")
        return try ProcessRunner.run(PlansTestPaths.accord, args, environment: env, timeout: 60)
    }

    /// Asserts a usage error: non-zero exit, every fragment in stderr, and no repository created.
    func assertRejected(_ args: [String], mentioning fragments: [String], file: StaticString = #filePath, line: UInt = #line) throws {
        let r = try accord(args)
        let shown = "accord " + args.joined(separator: " ")
        XCTAssertNotEqual(r.status, 0, "\(shown) succeeded:\n\(r)", file: file, line: line)
        XCTAssertFalse(r.signaled, "\(shown) crashed:\n\(r)", file: file, line: line)
        for f in fragments {
            XCTAssertTrue(r.stderr.contains(f), "\(shown): message does not mention \"\(f)\":\n\(r)", file: file, line: line)
        }
        XCTAssertNil(try? Sys.lstat(repo), "\(shown) created the repository", file: file, line: line)
    }

    // MARK: Wrong flags

    func testUnknownActionIsRejected() throws {
        try assertRejected(["-a", "bogus", "-d", repo], mentioning: ["bogus", "backup or restore"])
        try assertRejected(["--action=bogus", "-d", repo], mentioning: ["bogus", "backup or restore"])
    }

    func testUserWithoutNodeIsRejected() throws {
        try assertRejected(["-a", "backup", "-u", "root", "-d", repo], mentioning: ["-u", "-n"])
        try assertRejected(["-a", "backup", "-n", "dr-node", "-d", repo], mentioning: ["-u", "-n"])
    }

    func testSyncWithoutUserAndNodeIsRejected() throws {
        try assertRejected(["-a", "backup", "-s", "-d", repo], mentioning: ["-s", "-u", "-n"])
    }

    func testSyncFlagsOnRestoreAreRejected() throws {
        try assertRejected(["-a", "restore", "-u", "root", "-n", "dr-node", "-d", repo], mentioning: ["-n", "restore"])
    }

    func testNonPositiveWaitTimeoutIsRejected() throws {
        try assertRejected(["-a", "restore", "--wait-timeout", "0", "-d", repo], mentioning: ["--wait-timeout"])
    }

    func testOverrideWithoutActionIsRejectedAskingForA() throws {
        // Legacy.validate has the message ("these flags belong to -a backup|restore: give -a");
        // it must be what the user sees, not a bare "Unknown option".
        for args in [["--override", "-d", repo], ["-d", repo, "--override"], ["--no-config"]] {
            try assertRejected(args, mentioning: [])
            let error = try accord(args).stderr.split(separator: "\n").first.map(String.init) ?? ""
            XCTAssertTrue(error.contains("-a"), "accord \(args.joined(separator: " ")): the error should say that -a is needed, got \"\(error)\"")
        }
    }

    func testRestoreFromAMissingRepositoryFailsNamingItWithoutTouchingTheCluster() throws {
        let r = try accord(["-a", "restore", "-d", repo])
        XCTAssertEqual(r.status, 1, "\(r)")
        XCTAssertTrue(r.stderr.contains(repo), "the message should name the repository:\n\(r)")
        XCTAssertFalse(r.stderr.contains("must not run"), "restore ran kubectl:\n\(r)")
    }

    // MARK: plan show

    func testPlanShowPrintsTheMergedPlan() throws {
        let file = scratch.sub("plan.yaml")
        try Tree.write(file, """
        storage:
          root: /srv/ae5/storage
          excludes: [/srv/ae5/storage/pgdata]
        timeouts:
          runningSeconds: 42
        """)
        let r = try accord(["plan", "show", "--plan", file])
        XCTAssertEqual(r.status, 0, "\(r)")
        let shown = try XCTUnwrap(try Yams.load(yaml: r.stdout) as? [String: Any], "plan show did not print a YAML mapping:\n\(r)")
        XCTAssertEqual(shown["name"] as? String, "plan", "an unnamed plan file is named after its file name")
        let storage = try XCTUnwrap(shown["storage"] as? [String: Any])
        XCTAssertEqual(storage["root"] as? String, "/srv/ae5/storage")
        XCTAssertEqual(storage["excludes"] as? [String], ["/srv/ae5/storage/pgdata"])
        XCTAssertEqual(storage["replace"] as? [String], ["git", "pgdata", "object/anaconda-objects", "object/anaconda-projects"])
        let t = try XCTUnwrap(shown["timeouts"] as? [String: Any])
        XCTAssertEqual(t["runningSeconds"] as? Int, 42)
        XCTAssertEqual(t["scaleSeconds"] as? Int, 300, "timeouts.scaleSeconds should keep ae5's value")
        XCTAssertEqual((shown["restoreSteps"] as? [String])?.first, "check-marker")
        let dumps = try XCTUnwrap(shown["dumps"] as? [[String: Any]])
        XCTAssertEqual(dumps.map { $0["path"] as? String }, ["/postgres/pg_dumpall.sql", "/gravity/gravity-backup.tar.gz"])
        XCTAssertTrue((dumps[0]["command"] as? String ?? "").contains("pg_dumpall -U {pguser} --clean"), "\(dumps[0])")
        XCTAssertEqual((shown["objects"] as? [Any])?.count, 6)
    }

    func testPlanShowOfBuiltInReposPlan() throws {
        let r = try accord(["plan", "show", "--plan", "ae5-repos"])
        XCTAssertEqual(r.status, 0, "\(r)")
        let shown = try XCTUnwrap(try Yams.load(yaml: r.stdout) as? [String: Any], "plan show did not print a YAML mapping:\n\(r)")
        XCTAssertEqual(shown["name"] as? String, "ae5-repos")
        let dumps = try XCTUnwrap(shown["dumps"] as? [[String: Any]])
        XCTAssertEqual(dumps.count, 1)
        XCTAssertEqual(dumps.first?["command"] as? String, "{kubectl} exec -n {namespace} deploy/{postgres} -- pg_dump -U {pguser} -Fc -Z0 anaconda_repository")
        XCTAssertEqual((shown["storage"] as? [String: Any])?["root"] as? String, "/opt/anaconda/storage/object/anaconda-repository")
        XCTAssertEqual(shown["objects"] as? [String], [])
    }

    func testPlanShowRejectsABadPlanFileWithItsReason() throws {
        let file = scratch.sub("bad.yaml")
        try Tree.write(file, "restoreSteps: [check-marker, reboot]\n")
        let r = try accord(["plan", "show", "--plan", file])
        XCTAssertNotEqual(r.status, 0, "\(r)")
        XCTAssertTrue(r.stderr.contains("reboot") && r.stderr.contains("unknown restore step"), "\(r)")
        let missing = try accord(["plan", "show", "--plan", scratch.sub("missing.yaml")])
        XCTAssertNotEqual(missing.status, 0, "\(missing)")
        XCTAssertTrue(missing.stderr.contains("missing.yaml"), "\(missing)")
    }
}
