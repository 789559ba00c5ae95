import Foundation
import XCTest
import AccordCore
import AccordRuntime
#if canImport(Glibc)
import Glibc
#endif

/// A backup killed at any moment leaves a repository that `check` passes and
/// the next backup reuses (ARCHITECTURE.md: packs → index → snapshot, each
/// temp file + fsync + rename).
final class CrashTests: AccordTestCase {
    func testKilledBackupLeavesCheckableRepositoryAndItsPacksAreReused() throws {
        // 96 MiB of incompressible data: about six 16 MiB packs, so the kill
        // lands after some packs are complete and before the snapshot.
        let root = scratch.sub("src")
        try TreeBuilder.mkdir(Array(root.utf8))
        let fileCount = 24, fileSize = 4 << 20
        for i in 0..<fileCount { try TreeBuilder.write(Array((root + "/part\(i).bin").utf8), kernelRandomBytes(fileSize)) }
        let treeBytes = UInt64(fileCount * fileSize)

        let child = try AccordCLI.start(["backup", "-d", repo, "--threads", "1", root], scratch: scratch)
        let deadline = Date().addingTimeInterval(120)
        while child.isRunning, packFiles().isEmpty, Date() < deadline { usleep(500) }
        usleep(UInt32.random(in: 0...40_000))
        child.kill(SIGKILL)
        let killed = AccordCLI.finish(child)
        guard killed.signaled, killed.status == SIGKILL else {
            return XCTFail("the backup ended before it was killed; the test needs a larger tree:\n\(killed)")
        }
        XCTAssertEqual(snapshotFiles(), [], "a killed backup left a snapshot")
        let leftPacks = packFiles()
        XCTAssertGreaterThan(leftPacks.count, 0)
        let leftBytes = try leftPacks.reduce(UInt64(0)) { $0 + (try Sys.lstat($1)).size }

        // check passes: packs without an index are notes, the dead backup's lock is stale.
        let check = try accord("check", "-d", repo)
        XCTAssertFalse(check.signaled, "\(check)")
        XCTAssertEqual(check.status, 0, "check fails after a killed backup:\n\(check)")

        // The next backup completes and reuses what the killed one stored.
        let next = try backup(root)
        XCTAssertEqual(next.summary.totalBytes, treeBytes)
        XCTAssertLessThan(next.summary.addedBytes, treeBytes)
        XCTAssertLessThanOrEqual(next.summary.addedBytes, treeBytes - leftBytes + (1 << 20),
                                 "\(leftPacks.count) packs (\(leftBytes) bytes) survived the kill, yet the next backup added \(next.summary.addedBytes) of \(treeBytes) bytes")

        let full = try accordOK("check", "-d", repo, "--read-data")
        XCTAssertFalse(full.stdout.contains("not in the index"), "packs of the killed backup are still unindexed:\n\(full)")

        // Restore a few files (a debug build restores slowly; check --read-data verified every blob).
        let target = scratch.sub("restored")
        let sample = [0, fileCount / 2, fileCount - 1]
        try AccordCLI.run(["restore", "-d", repo, "latest", "--target", target] + sample.flatMap { ["--include", root + "/part\($0).bin"] },
                          scratch: scratch)
        for i in sample {
            let name = "/part\(i).bin"
            let a = try TreeBuilder.hash(Array((root + name).utf8))
            let b = try TreeBuilder.hash(Array((target + root + name).utf8))
            XCTAssertEqual(a, b, "\(name) differs after restore")
        }
    }

    /// Kills backups at random moments (before, during and after packs are
    /// written), round after round on one repository, each round with 32 MiB
    /// of new data. Slow: ACCORD_SLOW_TESTS=1.
    func testBackupsKilledAtRandomMomentsNeverBreakTheRepository() throws {
        guard ProcessInfo.processInfo.environment["ACCORD_SLOW_TESTS"] == "1" else {
            throw XCTSkip("slow: set ACCORD_SLOW_TESTS=1")
        }
        let root = scratch.sub("src")
        try TreeBuilder.mkdir(Array(root.utf8))
        var rng = SystemRandomNumberGenerator()
        var killedRounds = 0
        for round in 0..<12 {
            for i in 0..<8 { try TreeBuilder.write(Array((root + "/part\(i).bin").utf8), kernelRandomBytes(4 << 20)) }
            let child = try AccordCLI.start(["backup", "-d", repo, "--threads", "1", root], scratch: scratch)
            usleep(UInt32.random(in: 0...150_000, using: &rng))
            child.kill(SIGKILL)
            let result = AccordCLI.finish(child)
            XCTAssertTrue(result.signaled || result.status == 0, "round \(round): \(result)")
            if result.signaled { killedRounds += 1 }
            let check = try accord("check", "-d", repo, "--read-data")
            XCTAssertEqual(check.status, 0, "round \(round): check fails after a backup killed at a random moment:\n\(check)")
        }
        XCTAssertGreaterThan(killedRounds, 3, "most backups finished before the kill: the test did not test much")
        _ = try backup(root)
        try accordOK("check", "-d", repo, "--read-data")
    }
}
