// Two plan restores (`accord -a restore`) at once (issue 13): the first holds
// an exclusive lock for its whole run — its pre-restore snapshot is a backup
// under that same lock — and the second is refused, naming the holder. A small
// plan (a storage tree, no dumps, no objects) and the fake kubectl TEST FIXTURE;
// no database is needed.
import Foundation
import XCTest
import AccordCore
import AccordRuntime
#if canImport(Glibc)
import Glibc
#endif

final class PlanRestoreLockTests: XCTestCase {
    var scratch: ScratchDirectory!
    var clusterEnv: [String: String] = [:]
    var repo: String { scratch.sub("repo") }
    var storage: String { scratch.sub("st") }
    var planFile: String { scratch.sub("lockplan.yaml") }

    override func setUpWithError() throws {
        try super.setUpWithError()
        _ = try PlansTestPaths.requireAccord()
        scratch = try ScratchDirectory("plock")
        clusterEnv = try ProcessRunner.testenv("fake-cluster.sh", [scratch.sub("k8s")])
        try Tree.write(storage + "/data/a.txt", "alpha\n")
        try Tree.write(storage + "/data/sub/b.bin", bytes: Sys.randomBytes(50_000))
        try Tree.write(planFile, """
        storage:
          root: \(storage)
          excludes: []
          replace: [data]
        dumps: []
        objects: []
        restoreSteps: [check-marker, pre-restore-snapshot, replace-storage, start-postgres, remove-marker]
        timeouts:
          scaleSeconds: 120
          runningSeconds: 120
          pollSeconds: 0.1
        """)
    }

    override func tearDown() {
        scratch?.remove()
        super.tearDown()
    }

    func accord(_ args: [String], env extra: [String: String] = [:]) throws -> CommandResult {
        var env = ProcessInfo.processInfo.environment
        for k in env.keys where k.hasPrefix("FAKE_KUBECTL_") || k == "ACCORD_REPOSITORY" { env.removeValue(forKey: k) }
        for (k, v) in clusterEnv { env[k] = v }
        for (k, v) in extra { env[k] = v }
        env["PATH"] = clusterEnv["FAKE_KUBECTL_BIN_DIR"]! + ":" + (env["PATH"] ?? "/usr/bin:/bin")
        return try ProcessRunner.run(PlansTestPaths.accord, args, environment: env, timeout: 150)
    }

    func kubectlLog() -> String { (try? String(contentsOfFile: clusterEnv["FAKE_KUBECTL_LOG"]!, encoding: .utf8)) ?? "" }

    /// Lock files in the repository, decoded.
    func locks() -> [LockInfo] {
        let dir = repo + "/locks"
        return ((try? Sys.listDirectory(dir)) ?? []).compactMap { name in
            (try? Tree.read(dir + "/" + name)).flatMap { try? JSONDecoder().decode(LockInfo.self, from: Data($0)) }
        }
    }

    func testASecondPlanRestoreIsRefusedWhileTheFirstHoldsItsExclusiveLock() throws {
        let b = try accord(["backup", "-d", repo, "--plan", planFile])
        XCTAssertEqual(b.status, 0, "\(b)")
        guard b.status == 0 else { return }
        try Tree.write(storage + "/data/a.txt", "changed after the backup\n")

        // Restore A stops in start-postgres: its postgres never runs (fake kubectl), so it waits holding its lock.
        let restoreArgs = ["-a", "restore", "-d", repo, "--plan", planFile]
        let group = DispatchGroup()
        let first = LockedBox<CommandResult?>(nil)
        let env = ["FAKE_KUBECTL_NEVER_RUNNING": "anaconda-enterprise-postgres"]
        // nonisolated(unsafe): `accord` only reads `clusterEnv`, set in setUp before this
        // thread starts, and the test waits for the group (its defer) before it returns.
        nonisolated(unsafe) let test = self
        DispatchQueue.global().async(group: group) { first.value = try? test.accord(restoreArgs, env: env) }
        defer {
            for l in locks() where l.command.hasPrefix("restore") && l.pid > 1 { kill(-l.pid, SIGKILL); kill(l.pid, SIGKILL) }
            _ = group.wait(timeout: .now() + 30)
        }
        // Wait (bounded) until A has taken its pre-restore snapshot, replaced the storage and scaled postgres up.
        let deadline = Date().addingTimeInterval(120)
        while !kubectlLog().contains("--replicas=1") && group.wait(timeout: .now()) == .timedOut && Date() < deadline { usleep(50_000) }
        guard kubectlLog().contains("--replicas=1") else {
            _ = group.wait(timeout: .now() + 5)
            return XCTFail("restore A never reached start-postgres (its pre-restore backup under the exclusive lock failed?):\n\(first.value.map { "\($0)" } ?? "still running")")
        }
        let held = locks()
        XCTAssertEqual(held.count, 1, "\(held)")
        let holder = try XCTUnwrap(held.first)
        XCTAssertTrue(holder.exclusive, "a plan restore holds only a shared lock: \(holder.summary)")
        XCTAssertEqual(holder.command, "restore lockplan")

        let mutatingBefore = kubectlLog().split(separator: "\n").filter { !$0.contains("\"verb\": \"get\"") && !$0.contains("\"verb\":\"get\"") }.count
        let second = try accord(restoreArgs, env: env)
        XCTAssertNotEqual(second.status, 0, "a second plan restore ran beside the first:\n\(second)")
        XCTAssertFalse(second.signaled, "\(second)")
        XCTAssertTrue(second.stderr.contains("is held by a exclusive lock by `restore lockplan` (pid \(holder.pid)"),
                      "the error does not name the holder:\n\(second)")
        XCTAssertTrue(second.stderr.contains("accord unlock --all"), "\(second)")
        XCTAssertFalse(second.stdout.contains("step "), "the refused restore ran steps:\n\(second)")
        let mutatingAfter = kubectlLog().split(separator: "\n").filter { !$0.contains("\"verb\": \"get\"") && !$0.contains("\"verb\":\"get\"") }.count
        XCTAssertEqual(mutatingAfter, mutatingBefore, "the refused restore changed the cluster")
        XCTAssertEqual(locks().count, 1, "the refused restore left its lock")

        // A's safety snapshot, taken by the nested backup under A's lock, is complete.
        let list = try accord(["snapshots", "list", "-d", repo, "--json"])
        let pre = try parseSnapshotList(list).filter { $0.tags.contains("pre-restore") }
        XCTAssertEqual(pre.count, 1, "\(list)")
        if let p = pre.first {
            let dump = try accord(["dump", "-d", repo, p.id, storage + "/data/a.txt"])
            XCTAssertEqual(dump.stdout, "changed after the backup\n", "the pre-restore snapshot lacks the replaced data:\n\(dump)")
        }
    }
}
