import Foundation
import XCTest
import AccordCore
import AccordRuntime
#if canImport(Glibc)
import Glibc
#endif

/// A repository on an 8 MiB tmpfs receives a backup of 24 MB of random
/// data: the backup must fail with a clear "no space" error, leave no
/// snapshot, and the repository must stay valid and usable.
final class DiskFullTests: AccordTestCase {
    var mountPoint: String?
    var small: String { mountPoint! + "/repo" }

    @discardableResult
    func tool(_ path: String, _ args: [String]) -> (status: Int32, output: String) {
        do {
            let r = try runProcess(path, args, timeout: 60)
            return (r.signaled ? -1 : r.status, r.output)
        } catch { return (-1, "\(error)") }
    }

    override func setUpWithError() throws {
        try super.setUpWithError()
        let mp = scratch.sub("small-disk")
        try Files.mkdir(mp)
        let r = tool("/bin/mount", ["-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs", mp])
        guard r.status == 0 else {
            throw XCTSkip("cannot mount an 8 MiB tmpfs at \(mp) (`mount -t tmpfs` needs root with CAP_SYS_ADMIN): disk-full tests skipped [\(r.output.trimmingCharacters(in: .whitespacesAndNewlines))]")
        }
        mountPoint = mp
    }

    override func tearDown() {
        if let mp = mountPoint {
            if tool("/bin/umount", [mp]).status != 0 { tool("/bin/umount", ["-l", mp]) }
        }
        mountPoint = nil
        super.tearDown()
    }

    func growDisk() {
        let r = tool("/bin/mount", ["-o", "remount,size=96m", mountPoint!])
        XCTAssertEqual(r.status, 0, "remount: \(r.output)")
    }

    /// A small snapshot on the small disk, and a 24 MB tree on the big one.
    func prepare(packSize: Int?) throws -> (smallTree: SourceTree, s1: BackupJSON, l1: TreeListing, big: SourceTree) {
        var rng = SeededRandom(seed: 0xD15C)
        let smallTree = try SourceTree(root: scratch.sub("small-src"), rng: &rng, randomFiles: 2, randomSize: 50_000, textFiles: 2, textSize: 20_000)
        try initRepository(small, packSize: packSize)
        let s1 = try backup([smallTree.root], repository: small)
        let l1 = try smallTree.listing()
        let big = try SourceTree(root: scratch.sub("big-src"), rng: &rng, randomFiles: 12, randomSize: 2_000_000, textFiles: 1, textSize: 100_000)
        return (smallTree, s1, l1, big)
    }

    func assertFailsForLackOfSpace(_ r: CommandResult, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertFalse(r.signaled, "\(what) crashed:\n\(r)", file: file, line: line)
        XCTAssertEqual(r.status, 1, "\(what) did not fail with exit 1:\n\(r)", file: file, line: line)
        XCTAssertTrue(r.stderr.contains("No space left on device"), "\(what): the error does not say the disk is full:\n\(r)", file: file, line: line)
        XCTAssertLessThan(r.seconds, 60, "\(what) took \(r.seconds) s to give up", file: file, line: line)
        // The source files are readable: a full repository must not be blamed on them.
        let blamed = r.stderr.split(separator: "\n").filter { $0.contains("cannot read") }
        XCTAssertEqual(blamed.count, 0, "\(what): the repository's full disk is reported as \(blamed.count) unreadable source file(s), e.g. \(blamed.first ?? "")",
                       file: file, line: line)
    }

    func testBackupThatFillsTheDiskFailsClearlyAndTheRepositoryStaysValid() throws {
        let (smallTree, s1, l1, big) = try prepare(packSize: nil)
        let r = try accord("backup", "-d", small, big.root)
        assertFailsForLackOfSpace(r, "a backup of 24 MB into 8 MiB")
        print("disk full, 16 MiB packs: \(r.stderr.trimmingCharacters(in: .whitespacesAndNewlines))")
        XCTAssertEqual(snapshotNames(small), [s1.id], "a failed backup left a snapshot")
        XCTAssertEqual(names(in: small + "/locks"), [], "the failed backup left its lock")
        XCTAssertEqual((try? Sys.listDirectory(small + "/tmp")) ?? [], [], "the failed backup left its temporary pack, filling the disk")

        try assertCheckPasses(small, readData: true, "after the disk filled")
        try assertRestores(s1.id, root: smallTree.root, expected: l1, repository: small, "the earlier snapshot after the disk filled")

        growDisk()
        let b = try backup([big.root], repository: small)
        try assertCheckPasses(small, readData: true, "after freeing space")
        try assertRestores(b.id, root: big.root, expected: try big.listing(), repository: small, includes: Array(big.randomFiles.prefix(3)),
                           "the big backup after freeing space")
    }

    func testBackupThatFillsTheDiskAfterSomePacksLeavesThemForTheNextBackup() throws {
        let (smallTree, s1, l1, big) = try prepare(packSize: 1 << 20)
        let r = try accord("backup", "-d", small, big.root)
        assertFailsForLackOfSpace(r, "a backup of 24 MB into 8 MiB with 1 MiB packs")
        print("disk full, 1 MiB packs: \(r.stderr.trimmingCharacters(in: .whitespacesAndNewlines))")
        XCTAssertEqual(snapshotNames(small), [s1.id])
        let leftovers = try unindexedPacks(small)
        print("disk full left \(leftovers.count) complete packs without an index, \(((try? Sys.listDirectory(small + "/tmp")) ?? []).count) files in tmp/")

        try assertCheckPasses(small, "on the full disk")
        try assertRestores(s1.id, root: smallTree.root, expected: l1, repository: small, "the earlier snapshot on the full disk")

        growDisk()
        let onDisk = blobsInPackHeaders(small)
        let b = try backup([big.root], repository: small)
        let repository = try openRepository(small)
        let refs = try referencedBlobs(repository, try XCTUnwrap(SnapshotID(hex: b.id)))
        XCTAssertEqual(b.summary.addedBlobs, refs.subtracting(onDisk.keys).count, "the backup after freeing space did not reuse the packs written before the disk filled")
        XCTAssertEqual(try unindexedPacks(small), [])
        try assertCheckPasses(small, readData: true, "after freeing space")
    }

    /// With not a byte free, reading commands still work: restoring from a
    /// full backup disk is exactly when it matters.
    func testRestoreAndCheckWorkOnACompletelyFullDisk() throws {
        let (smallTree, s1, l1, _) = try prepare(packSize: nil)
        // Fill what is left, page by page.
        let filler = mountPoint! + "/filler"
        let fd = try Sys.open(filler, Sys.O_WRONLY | Sys.O_CREAT | Sys.O_TRUNC)
        let chunk = [UInt8](repeating: 1, count: 4096)
        while (try? Sys.writeAll(fd, chunk, path: filler)) != nil {}
        Sys.close(fd)

        let b = try accord("backup", "-d", small, smallTree.root)
        assertFailsForLackOfSpace(b, "a backup onto a full disk")
        XCTAssertEqual(names(in: small + "/locks"), [])
        XCTAssertEqual(snapshotNames(small), [s1.id])

        let check = try accord("check", "-d", small)
        let target = scratch.sub("restored")
        let restore = try accord("restore", "-d", small, s1.id, "--target", target, "-q")
        print("on a full disk: check exit \(check.status) [\(check.stderr.prefix(200))], restore exit \(restore.status) [\(restore.stderr.prefix(200))]")
        XCTAssertTrue(restore.ok, "restore from a repository on a full disk fails (it cannot write its lock file):\n\(restore)")
        if restore.ok { assertSameTree(l1, try listTree(target + smallTree.root, .modesTimesAndContent), "restore from a full disk") }
        XCTAssertTrue(check.ok, "check of a repository on a full disk fails (it cannot write its lock file):\n\(check)")

        try FileManager.default.removeItem(atPath: filler)
        try assertCheckPasses(small, readData: true, "after freeing space")
    }
}
