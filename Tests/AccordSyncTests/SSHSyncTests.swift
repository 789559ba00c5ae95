import Foundation
import XCTest
import AccordCore
import AccordTestSupport
import AccordRuntime
#if canImport(Glibc)
import Glibc
#endif

/// Sync over a real ssh to loopback (`sudo -n accord serve` as user accordsync).
final class SSHSyncTests: SSHSyncTestCase {
    func testSyncOverSSHRestoresTheTreeAndSecondSyncSendsOnlyTheChange() throws {
        let treeBytes = try makeTree(source, seed: 3, randomFiles: 4, randomSize: 1 << 20)
        let first = try backupSource()
        let dest = scratch.sub("dest")

        let r1 = try accordOK(syncArgs(to: dest))
        let s1 = try decodeSync(r1)
        XCTAssertEqual(s1.snapshots, 1)
        XCTAssertLessThanOrEqual(s1.payloadBytes, first.addedBytes)
        XCTAssertGreaterThan(s1.payloadBytes, 4 << 20, "four MiB of random data must travel")
        XCTAssertEqual(snapshotFiles(of: dest), [first.id])
        try assertRestoreMatchesSource(from: dest, label: "first")

        // Append one line to one small file: only its last chunk and the manifest change.
        try appendToFile(source + "/docs/notes.txt", Array("one more line\n".utf8))
        let second = try backupSource()
        XCTAssertNotEqual(second.id, first.id)
        let r2 = try accordOK(syncArgs(to: dest))
        let s2 = try decodeSync(r2)
        XCTAssertEqual(s2.snapshots, 1)
        XCTAssertGreaterThanOrEqual(s2.blobs, 1)
        XCTAssertGreaterThan(s2.payloadBytes, 0)
        XCTAssertLessThanOrEqual(s2.payloadBytes, second.addedBytes,
                                 "the sync sent more payload than the new snapshot added (\(second.addedBytes) bytes)")
        let bound = UInt64(Double(s2.payloadBytes) * 1.1) + 16 << 10
        XCTAssertLessThanOrEqual(s2.wireBytesSent, bound, "wire bytes sent exceed payload×1.1 + 16 KiB:\n\(r2.stdout)")
        XCTAssertLessThan(s2.wireBytesSent + s2.wireBytesReceived, treeBytes / 20,
                          "an appended line cost \(s2.wireBytesSent) bytes on the wire for a \(treeBytes)-byte tree")
        XCTAssertEqual(snapshotFiles(of: dest), [first.id, second.id].sorted())
        try assertRestoreMatchesSource(from: dest, label: "second")
    }

    func testSSHOptionStartingWithDashIsAcceptedAsSeparateValue() throws {
        // The documented form `--ssh-option "-F FILE"` (two argv words).
        try makeTree(source, seed: 4, randomFiles: 1, randomSize: 10_000)
        try backupSource()
        let dest = scratch.sub("dest")
        let r = try accord(["sync", "-d", sourceRepo, "--to", remote(dest), "--ssh-option", "-F \(ssh.config)", "-q"])
        XCTAssert(r.ok, "`--ssh-option \"-F FILE\"` is rejected; only `--ssh-option=-F FILE` works:\n\(r)")
    }

    func testKilledSyncLeavesCheckableDestinationAndRerunSendsOnlyTheRest() throws {
        // 48 MiB of random data: three 16 MiB packs' worth.
        try FileManager.default.createDirectory(atPath: source, withIntermediateDirectories: true)
        for i in 0..<6 { try writeFile(source + "/part\(i).bin", Sys.randomBytes(8 << 20)) }
        let snap = try backupSource()
        let total = snap.addedBytes  // ≥ the payload a full sync to an empty destination sends
        let dest = scratch.sub("dest")

        let running = try start(syncArgs(to: dest))
        let deadline = Date().addingTimeInterval(60)
        while running.isRunning && packFiles(of: dest).isEmpty && Date() < deadline { usleep(2000) }
        kill(running.pid, SIGKILL)
        let killed = running.finish(timeout: 10)
        guard killed.signaled && killed.status == SIGKILL else {
            return XCTFail("the sync ended before it was killed (a faster machine needs a larger tree):\n\(killed)")
        }
        let left = packFiles(of: dest)
        XCTAssertFalse(left.isEmpty)
        let leftBytes = left.reduce(UInt64(0)) { $0 + fileSize($1) }
        waitForUnlocked(dest)

        XCTAssertEqual(snapshotFiles(of: dest), [], "a killed sync left a snapshot on the destination")
        let check = try accord(["check", "-d", dest])
        XCTAssert(check.ok, "check fails on the destination of a killed sync:\n\(check)")

        // The rerun completes and does not resend the packs that arrived.
        let rerun = try accordOK(syncArgs(to: dest))
        let s = try decodeSync(rerun)
        XCTAssertEqual(s.snapshots, 1)
        XCTAssertLessThan(s.payloadBytes, total)
        XCTAssertLessThanOrEqual(s.payloadBytes + leftBytes, total + 64 << 10,
                                 "\(left.count) pack(s), \(leftBytes) bytes, arrived before the kill, yet the rerun sent \(s.payloadBytes) of \(total) bytes")
        XCTAssertEqual(snapshotFiles(of: dest), [snap.id])
        let full = try accord(["check", "--read-data", "-d", dest])
        XCTAssert(full.ok && full.stdout.contains("no errors found"), "\(full)")
        XCTAssertFalse(full.stdout.contains("not in the index"), "packs of the killed sync were not adopted:\n\(full)")
    }

    func testCorruptBlobInSourceIsRejectedAndNoSnapshotIsStored() throws {
        try makeTree(source, seed: 5, randomFiles: 3, randomSize: 300_000)
        try backupSource()
        // Flip a byte in the middle of a stored data blob: the client sends it as
        // stored, the server must verify it against its id.
        var victim: (pack: String, entry: PackEntry)?
        for p in packFiles(of: sourceRepo) {
            if let e = try PackReader.readHeader(path: p).first(where: { $0.type == .data && $0.storedLength > 1000 }) { victim = (p, e); break }
        }
        guard let (pack, entry) = victim else { return XCTFail("no data blob found in \(sourceRepo)") }
        try flipByte(inFile: pack, at: Int64(entry.offset) + Int64(entry.storedLength / 2))

        let dest = scratch.sub("dest")
        let r = try accord(syncArgs(to: dest, json: false))
        XCTAssertFalse(r.ok, "a corrupt blob was accepted:\n\(r)")
        XCTAssertFalse(r.signaled, "\(r)")
        XCTAssert(r.stderr.contains("rejected") && r.stderr.contains("does not match its id"), "unclear message:\n\(r)")
        XCTAssert(r.stderr.contains(entry.id.hex) || r.stderr.contains(entry.id.short), "the message does not name blob \(entry.id.short):\n\(r)")
        waitForUnlocked(dest)
        XCTAssertEqual(snapshotFiles(of: dest), [], "a snapshot was stored although a blob was rejected")
        let check = try accord(["check", "-d", dest])
        XCTAssert(check.ok, "the destination fails check after a rejected blob:\n\(check)")
    }
}
