// The process runner's own error (issue 14): a command that cannot start or
// that fails names the command and what failed, and no longer says "No
// snapshot was written" (it used to throw `BackupError`, so a kubectl failure
// during a restore, or ssh during a sync, read as a failed backup).
import Foundation
import XCTest
import AccordCore
import AccordEngine
import AccordPlans
import AccordRuntime

final class CommandErrorTests: XCTestCase {
    var scratch: ScratchDirectory!

    override func setUpWithError() throws {
        try super.setUpWithError()
        scratch = try ScratchDirectory("command-error")
    }

    override func tearDown() {
        scratch?.remove()
        super.tearDown()
    }

    func testAProgramThatCannotStartIsCannotStartNamingTheCommand() throws {
        let missing = scratch.sub("no-such-program")
        let runner = CommandRunner(argv: [missing, "--flag"])
        XCTAssertThrowsError(try runner.start()) { e in
            guard case CommandError.cannotStart(let command, _)? = e as? CommandError else { return XCTFail("not cannotStart: \(e)") }
            XCTAssertEqual(command, "\(missing) --flag")
            let m = "\(e)"
            XCTAssertTrue(m.hasPrefix("cannot start `\(missing) --flag`: "), m)
            XCTAssertFalse(m.contains("No snapshot was written"), m)
        }
    }

    func testACommandThatExitsNonZeroIsFailedWithStatusAndStderr() throws {
        let runner = CommandRunner(command: "echo 'disk on fire' >&2; exit 3")
        _ = try runner.start(captureStdout: false)
        XCTAssertThrowsError(try runner.waitSucceeded()) { e in
            XCTAssertEqual(e as? CommandError, .failed(command: "echo 'disk on fire' >&2; exit 3", status: "exit status 3", stderrTail: "disk on fire"))
            let m = "\(e)"
            XCTAssertTrue(m.contains("`echo 'disk on fire' >&2; exit 3` failed (exit status 3)"), m)
            XCTAssertFalse(m.contains("No snapshot was written"), m)
        }
        let ok = CommandRunner(command: "true")
        _ = try ok.start(captureStdout: false)
        XCTAssertNoThrow(try ok.waitSucceeded())
    }

    /// A plan restore whose kubectl is missing: its first step fails naming the
    /// kubectl command and its status, as a restore error, not a backup's.
    func testAMissingKubectlDuringAPlanRestoreNamesTheCommand() throws {
        let data = scratch.sub("data")
        try Sys.mkdir(data, mode: 0o755)
        let fd = try Sys.open(data + "/a.txt", Sys.O_WRONLY | Sys.O_CREAT | Sys.O_TRUNC)
        try Sys.writeAll(fd, Array("a\n".utf8), path: data + "/a.txt")
        Sys.close(fd)
        let repository = try Repository.initialize(at: scratch.sub("repo"))
        var bo = BackupOptions()
        bo.paths = [Array(data.utf8)]
        bo.threads = 1
        let backup = try Backup(repository: repository, options: bo).run()
        let kubectl = scratch.sub("no-such-kubectl")
        let plan = try Plan.parse("""
        kubectl: \(kubectl)
        restoreSteps: [delete-sessions]
        """, source: scratch.sub("plan.yaml"))
        let reopened = try Repository.open(at: scratch.sub("repo"))
        try reopened.loadIndex()
        var o = PlanRestoreOptions()
        o.override = true
        XCTAssertThrowsError(try PlanRestore(plan: plan, repository: reopened, snapshotID: backup.id, snapshot: backup.snapshot, options: o).run()) { e in
            let m = "\(e)"
            XCTAssertTrue(m.contains("`\(kubectl) get deployments"), m)
            XCTAssertTrue(m.contains("exit status 127"), m)
            XCTAssertFalse(m.contains("No snapshot was written"), m)
        }
    }
}
