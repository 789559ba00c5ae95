import Foundation
import XCTest
import AccordCore
import AccordRuntime

/// Repeated backups store only what changed.
final class DedupTests: AccordTestCase {
    func makeTree(seed: UInt64) throws -> String {
        var rng = SeededRandom(seed: seed)
        let root = scratch.sub("src")
        let r = Array(root.utf8)
        try TreeBuilder.mkdir(r)
        try TreeBuilder.mkdir(r.appending("docs"))
        for i in 0..<4 { try TreeBuilder.write(r.appending("blob\(i).bin"), rng.bytes(1 << 20 + i * 4096)) }
        for i in 0..<20 { try TreeBuilder.write(r.appending("docs/note\(i).txt"), rng.text(20_000 + i)) }
        try TreeBuilder.write(r.appending("empty"), [])
        return root
    }

    /// Data blobs a snapshot's files use.
    func dataBlobs(_ entries: [ManifestEntry]) -> Set<BlobID> {
        Set(entries.flatMap(\.blobs))
    }

    func testSecondBackupOfUnchangedTreeAddsUnderOnePercent() throws {
        let root = try makeTree(seed: 1)
        let first = try backup(root)
        XCTAssertGreaterThan(first.summary.addedBytes, 4 << 20)
        let second = try backup(root)
        let s = second.summary
        XCTAssertEqual(s.totalBytes, first.summary.totalBytes)
        XCTAssertLessThan(Double(s.addedBytes), Double(s.totalBytes) * 0.01,
                          "second backup of an unchanged tree added \(s.addedBytes) of \(s.totalBytes) bytes")
        XCTAssertEqual(s.bytesRead, 0, "unchanged files were read again")
        XCTAssertEqual(s.filesUnchanged, s.files)
        XCTAssertEqual(s.addedBytes, s.addedManifestBytes, "an unchanged tree stored new data blobs")
    }

    func testUnchangedTreeWritesNoNewDataPack() throws {
        let root = try makeTree(seed: 2)
        _ = try backup(root)
        let before = Set(packFiles())
        _ = try backup(root)
        let repository = try openRepository()
        for path in Set(packFiles()).subtracting(before) {
            let entries = try PackReader.readHeader(path: path)
            XCTAssertTrue(entries.allSatisfy { $0.type == .tree },
                          "backup of an unchanged tree wrote pack \(path) with \(entries.filter { $0.type == .data }.count) data blobs")
        }
        XCTAssertEqual(try repository.listSnapshotIDs().count, 2)
    }

    /// An unchanged file keeps its xattrs in the new snapshot, and one set
    /// between backups is seen (the walker lists xattrs again for unchanged
    /// files: not every filesystem moves the ctime when one is set).
    func testXattrsOfUnchangedFilesAreKeptAndNewOnesAreSeen() throws {
        let root = try makeTree(seed: 5)
        let kept = Array((root + "/docs/note1.txt").utf8), added = Array((root + "/docs/note2.txt").utf8)
        let name = Array("user.accord.walk".utf8)
        do { try Sys.setXattr(kept, name: name, value: [7, 0, 9]) } catch {
            throw XCTSkip("no user xattrs on this filesystem: \(error)")
        }
        _ = try backup(root)
        try Sys.setXattr(added, name: name, value: [1, 2])
        let second = try backup(root)
        XCTAssertEqual(second.summary.filesUnchanged, second.summary.files - 1, "only the file given an xattr changed")
        let repository = try openRepository()
        let entries = Dictionary(uniqueKeysWithValues: try manifestEntries(repository).map { ($0.path, $0) })
        XCTAssertEqual(entries[kept]?.xattrs, [.init(name: name, value: [7, 0, 9])], "an unchanged file lost its xattr")
        XCTAssertEqual(entries[added]?.xattrs, [.init(name: name, value: [1, 2])], "an xattr set between backups was missed")
        let target = scratch.sub("restored")
        _ = try accordOK("restore", "-d", repo, "latest", "--target", target)
        let restored = Array((target + root + "/docs/note1.txt").utf8)
        XCTAssertEqual(try Sys.listXattrs(restored).map(\.value), [[7, 0, 9]])
    }

    func testForcedRereadStoresNoNewData() throws {
        let root = try makeTree(seed: 3)
        _ = try backup(root)
        let forced = try backup(root, extra: ["--force"])
        XCTAssertEqual(forced.summary.bytesRead, forced.summary.totalBytes, "--force did not read every file")
        XCTAssertEqual(forced.summary.filesUnchanged, 0)
        XCTAssertEqual(forced.summary.addedBytes, forced.summary.addedManifestBytes,
                       "re-reading unchanged files stored their chunks again")
    }

    func testIdenticalFilesAreStoredOnce() throws {
        var rng = SeededRandom(seed: 4)
        let root = scratch.sub("src")
        let content = rng.bytes(3 << 20)
        try TreeBuilder.mkdir(Array(root.utf8))
        for name in ["a.bin", "b.bin", "c.bin"] { try TreeBuilder.write(Array((root + "/" + name).utf8), content) }
        let s = try backup(root).summary
        XCTAssertEqual(s.totalBytes, 9 << 20)
        XCTAssertLessThan(s.addedBytes, (3 << 20) + (64 << 10), "three copies of one file were stored \(s.addedBytes) bytes")
    }

    func testChangedFileIsReadAgainAndOthersAreNot() throws {
        let root = try makeTree(seed: 5)
        _ = try backup(root)
        var rng = SeededRandom(seed: 55)
        try TreeBuilder.write(Array((root + "/docs/note3.txt").utf8), rng.text(30_000))
        let s = try backup(root).summary
        XCTAssertEqual(s.files - s.filesUnchanged, 1, "only the changed file should be read")
        XCTAssertEqual(s.bytesRead, 30_000)
        // The restore of the latest snapshot has the new content.
        let target = scratch.sub("restored")
        try accordOK("restore", "-d", repo, "latest", "--target", target)
        XCTAssertEqual(try TreeBuilder.read(Array((target + root + "/docs/note3.txt").utf8)), { var r = SeededRandom(seed: 55); return r.text(30_000) }())
    }

    /// Content-defined chunking: 4 KiB inserted in the middle of a 64 MiB file
    /// (tree profile, 1 MiB average chunks) changes only the chunks around it.
    func testInsertingInMiddleOfLargeFileAddsFewChunks() throws {
        var rng = SeededRandom(seed: 64)
        let root = scratch.sub("src")
        try TreeBuilder.mkdir(Array(root.utf8))
        let file = Array((root + "/large.bin").utf8)
        // Fixed cut points: a plain repository's come from its config's random
        // chunkerSeed, and with some seeds this insert touches a fifth chunk.
        try accordOK("init", "-d", repo, "--encryption", "none")
        let config = repo + "/config"
        let seeded = String(decoding: try Files.read(config), as: UTF8.self)
            .replacingOccurrences(of: #""chunkerSeed" *: *"[0-9a-f]{16}""#, with: #""chunkerSeed" : "2544cfe684ebf9e2""#, options: .regularExpression)
        XCTAssertTrue(seeded.contains("2544cfe684ebf9e2"), seeded)
        try Data(seeded.utf8).write(to: URL(fileURLWithPath: config))
        var content = rng.bytes(64 << 20)
        try TreeBuilder.write(file, content)
        let first = try backup(root)
        XCTAssertGreaterThan(first.summary.addedBlobs, 30, "64 MiB at 1 MiB average should be dozens of chunks")
        let repository1 = try openRepository()
        let before = dataBlobs(try manifestEntries(repository1).filter { $0.path == file })

        content.insert(contentsOf: rng.bytes(4096), at: 32 << 20)
        try TreeBuilder.write(file, content)
        let second = try backup(root)
        let repository2 = try openRepository()
        let after = dataBlobs(try manifestEntries(repository2).filter { $0.path == file })
        let new = after.subtracting(before)
        XCTAssertGreaterThan(new.count, 0, "the changed file reused every chunk: its content was not re-read")
        XCTAssertLessThanOrEqual(new.count, 4, "4 KiB inserted into 64 MiB made \(new.count) new chunks of \(after.count)")
        XCTAssertLessThan(second.summary.addedBytes, 16 << 20,
                          "4 KiB inserted into 64 MiB added \(second.summary.addedBytes) bytes")
        XCTAssertEqual(second.summary.bytesRead, UInt64(content.count))
    }
}
