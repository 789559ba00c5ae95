import Foundation
import XCTest
import AccordCore

/// `accord sync --to /local/dir`: the same protocol through a local `accord serve` child.
final class LocalSyncTests: SyncTestCase {
    func testFirstSyncToLocalDirectoryRestoresTheSourceTreeAndIsPrivate() throws {
        try makeTree(source, seed: 2, randomFiles: 3, randomSize: 400_000)
        let snap = try backupSource()
        let dest = scratch.sub("dest")

        let r = try accordOK(["sync", "-d", sourceRepo, "--to", dest, "--json"])
        let stats = try decodeSync(r)
        XCTAssertEqual(stats.snapshots, 1)
        XCTAssertGreaterThan(stats.blobs, 3)
        XCTAssertLessThanOrEqual(stats.payloadBytes, snap.addedBytes, "the payload is at most what the backup stored")
        XCTAssertGreaterThanOrEqual(stats.wireBytesSent, stats.payloadBytes)
        XCTAssertEqual(snapshotFiles(of: dest), [snap.id])

        try assertRestoreMatchesSource(from: dest, label: "local")

        // The destination repository is private: directories 0700, files 0600.
        var wrong: [String] = []
        let e = FileManager.default.enumerator(atPath: dest)!
        var paths = [dest]
        while let rel = e.nextObject() as? String { paths.append(dest + "/" + rel) }
        for p in paths {
            var st = stat()
            XCTAssertEqual(lstat(p, &st), 0)
            let perm = st.st_mode & 0o7777
            switch st.st_mode & S_IFMT {
            case S_IFDIR where perm != 0o700: wrong.append("dir \(p) \(String(perm, radix: 8))")
            case S_IFREG where perm != 0o600: wrong.append("file \(p) \(String(perm, radix: 8))")
            case S_IFDIR, S_IFREG: break
            default: wrong.append("unexpected \(p)")
            }
        }
        XCTAssertGreaterThan(paths.count, 6)
        XCTAssert(wrong.isEmpty, "the destination repository is not private:\n" + wrong.joined(separator: "\n"))
    }

    func testSecondSyncOfUnchangedRepositorySendsNoBlobs() throws {
        try makeTree(source, seed: 3, randomFiles: 1, randomSize: 300_000)
        try backupSource()
        let dest = scratch.sub("dest")
        try accordOK(["sync", "-d", sourceRepo, "--to", dest, "-q"])
        let again = try decodeSync(try accordOK(["sync", "-d", sourceRepo, "--to", dest, "--json"]))
        XCTAssertEqual(again.snapshots, 0)
        XCTAssertEqual(again.blobs, 0)
        XCTAssertEqual(again.payloadBytes, 0)
        XCTAssertLessThan(again.wireBytesSent + again.wireBytesReceived, 4096)
    }
}
