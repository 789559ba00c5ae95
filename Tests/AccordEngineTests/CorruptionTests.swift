import Foundation
import XCTest
import AccordCore
import AccordRuntime

/// Broken repositories, named after the defect (STYLE.md item 12): `check`
/// and `restore` must fail with a non-zero exit and name what is damaged.
final class CorruptionTests: AccordTestCase {
    var root = ""
    var good: [(path: String, content: [UInt8])] = []
    var badPath = ""

    /// Backs up three files; returns where the first data blob of `bad.bin` is stored.
    func backUpTree() throws -> (blob: BlobID, pack: PackID, location: BlobLocation) {
        var rng = SeededRandom(seed: 0xBAD)
        root = scratch.sub("src")
        try TreeBuilder.mkdir(Array(root.utf8))
        good = [(root + "/good1.bin", rng.bytes(1 << 20)), (root + "/good2.txt", rng.text(300_000))]
        for g in good { try TreeBuilder.write(Array(g.path.utf8), g.content) }
        badPath = root + "/bad.bin"
        try TreeBuilder.write(Array(badPath.utf8), rng.bytes(600_000))
        _ = try backup(root)
        let repository = try openRepository()
        let entry = try XCTUnwrap(try manifestEntries(repository).first { $0.path == Array(badPath.utf8) })
        let blob = try XCTUnwrap(entry.blobs.first)
        let location = try XCTUnwrap(repository.index.lookup(blob))
        for g in good {
            let e = try XCTUnwrap(try manifestEntries(repository).first { $0.path == Array(g.path.utf8) })
            XCTAssertFalse(e.blobs.contains(blob), "test setup: the good files must not share the damaged blob")
        }
        return (blob, repository.index.pack(of: location), location)
    }

    func packPath(_ id: PackID) -> String { repo + "/data/" + String(id.hex.prefix(2)) + "/" + id.hex }

    func flipByte(in path: String, at offset: Int64) throws {
        let fd = try Sys.open(path, Sys.O_RDWR)
        defer { Sys.close(fd) }
        var b: [UInt8] = [0]
        _ = try b.withUnsafeMutableBytes { try Sys.preadFully(fd, $0.baseAddress!, 1, offset, path: path) }
        b[0] ^= 0x5a
        try b.withUnsafeBytes { try Sys.pwriteAll(fd, $0, offset, path: path) }
    }

    func testCheckReadDataNamesPackAndBlobOfFlippedByte() throws {
        let (blob, pack, location) = try backUpTree()
        try accordOK("check", "-d", repo, "--read-data")
        try flipByte(in: packPath(pack), at: Int64(location.offset) + Int64(location.storedLength / 2))

        let r = try accord("check", "-d", repo, "--read-data")
        XCTAssertFalse(r.signaled, "\(r)")
        XCTAssertEqual(r.status, 1, "check --read-data passed a pack with a flipped byte:\n\(r)")
        XCTAssertTrue(r.stderr.contains(pack.hex), "the error does not name pack \(pack.hex):\n\(r)")
        XCTAssertTrue(r.stderr.contains(blob.hex), "the error does not name blob \(blob.hex):\n\(r)")
    }

    func testRestoreFailsLoudlyOnCorruptBlobAndRestoresTheRest() throws {
        let (_, pack, location) = try backUpTree()
        try flipByte(in: packPath(pack), at: Int64(location.offset) + 17)

        let target = scratch.sub("restored")
        let r = try accord("restore", "-d", repo, "latest", "--target", target)
        XCTAssertFalse(r.signaled, "\(r)")
        XCTAssertEqual(r.status, 1, "restore of a corrupt blob must fail:\n\(r)")
        XCTAssertTrue(r.stderr.contains(badPath), "the error does not name the damaged file \(badPath):\n\(r)")
        for g in good {
            XCTAssertEqual(try? TreeBuilder.read(Array((target + g.path).utf8)), g.content, "\(g.path) was not restored intact")
        }
        XCTAssertNil(try? Sys.lstat(Array((target + badPath).utf8)), "a damaged file was left behind, looking restored")

        let dump = try accord("dump", "-d", repo, "latest", badPath)
        XCTAssertNotEqual(dump.status, 0, "dump of a damaged file succeeded:\n\(dump)")
        XCTAssertFalse(dump.signaled, "\(dump)")
    }

    /// Restoring over an older tree: a file whose every blob is damaged is
    /// reported and the copy already at the target is left as it was (the
    /// restore makes a file at its first write, which never comes).
    func testRestoreOverAnOldCopyKeepsItWhenTheNewContentIsDamaged() throws {
        _ = try backUpTree()
        let repository = try openRepository()
        let entry = try XCTUnwrap(try manifestEntries(repository).first { $0.path == Array(badPath.utf8) })
        for blob in entry.blobs {   // one or two: chunk boundaries depend on the repository's gear table
            let l = try XCTUnwrap(repository.index.lookup(blob))
            try flipByte(in: packPath(repository.index.pack(of: l)), at: Int64(l.offset) + 17)
        }
        let target = try assertRestoreKeepsAnOldCopy(of: badPath, under: root)
        for g in good {
            XCTAssertEqual(try? TreeBuilder.read(Array((target + g.path).utf8)), g.content, "\(g.path) was not restored intact")
        }
    }

    /// Restoring over an older tree when a pack is gone: a file with blobs in
    /// it is reported, and its copy at the target is left as it was (its
    /// blobs are not in the index, so it fails before anything is made).
    func testRestoreOverAnOldCopyKeepsItWhenAPackOfItIsMissing() throws {
        var rng = SeededRandom(seed: 0xBAD2)
        let root = scratch.sub("src")
        try TreeBuilder.mkdir(Array(root.utf8))
        let big = root + "/big.bin", small = root + "/small.txt"
        try TreeBuilder.write(Array(big.utf8), rng.bytes(40 << 20))   // more than two 16 MiB packs
        try TreeBuilder.write(Array(small.utf8), rng.text(2000))
        _ = try backup(root)
        let repository = try openRepository()
        let snapshot = try repository.loadSnapshot(try repository.resolveSnapshot("latest"))
        let bigEntry = try XCTUnwrap(try manifestEntries(repository).first { $0.path == Array(big.utf8) })
        let lost = repository.index.pack(of: try XCTUnwrap(repository.index.lookup(bigEntry.blobs[0])))
        for m in snapshot.manifest {
            let id = try XCTUnwrap(BlobID(hex: m))
            XCTAssertNotEqual(repository.index.pack(of: try XCTUnwrap(repository.index.lookup(id))), lost,
                              "test setup: the manifest must not be in the pack removed")
        }
        try Sys.unlink(packPath(lost))
        try assertRestoreKeepsAnOldCopy(of: big, under: root)
    }

    /// Puts an older copy of `path` under a fresh restore target, restores the
    /// latest snapshot there, which must fail naming `path`, and checks that
    /// the older copy is still there. Returns the target.
    @discardableResult
    func assertRestoreKeepsAnOldCopy(of path: String, under root: String,
                                     file: StaticString = #filePath, line: UInt = #line) throws -> String {
        let target = scratch.sub("restored")
        let old = Array("the copy restored last week".utf8)
        try Sys.mkdirs(Array((target + root).utf8), mode: 0o755)
        try TreeBuilder.write(Array((target + path).utf8), old)
        let r = try accord("restore", "-d", repo, "latest", "--target", target)
        XCTAssertFalse(r.signaled, "\(r)", file: file, line: line)
        XCTAssertEqual(r.status, 1, "a restore that cannot restore \(path) passed:\n\(r)", file: file, line: line)
        XCTAssertTrue(r.stderr.contains(path), "the error does not name \(path):\n\(r)", file: file, line: line)
        XCTAssertEqual(try? TreeBuilder.read(Array((target + path).utf8)), old,
                       "the old copy of \(path) was lost although its new content could not be restored", file: file, line: line)
        return target
    }

    func testCheckReportsMissingPackAndRestoreNamesTheLostFiles() throws {
        let (_, pack, _) = try backUpTree()
        try Sys.unlink(packPath(pack))
        let r = try accord("check", "-d", repo)
        XCTAssertEqual(r.status, 1, "\(r)")
        XCTAssertTrue(r.stderr.contains("pack \(pack.hex) is missing"), "\(r)")

        let restore = try accord("restore", "-d", repo, "latest", "--target", scratch.sub("restored"))
        XCTAssertNotEqual(restore.status, 0, "\(restore)")
        XCTAssertFalse(restore.signaled, "\(restore)")
    }

    /// A pack cut below its 12-byte trailer (a torn write, a full disk) must
    /// be reported, not crash the checker.
    func testCheckReadDataReportsPackTruncatedBelowTrailerSize() throws {
        let (_, pack, _) = try backUpTree()
        let fd = try Sys.open(packPath(pack), Sys.O_WRONLY)
        try Sys.ftruncate(fd, 5)
        Sys.close(fd)

        let r = try accord("check", "-d", repo, "--read-data")
        XCTAssertFalse(r.signaled, "check --read-data crashed on a 5-byte pack:\n\(r)")
        XCTAssertEqual(r.status, 1, "\(r)")
        XCTAssertTrue(r.stderr.contains(pack.hex), "the error does not name the truncated pack:\n\(r)")
    }

    func testCheckReportsAlteredIndexFile() throws {
        _ = try backUpTree()
        let index = try XCTUnwrap(try Sys.listDirectory(repo + "/index").first)
        try flipByte(in: repo + "/index/" + index, at: 20)
        let r = try accord("check", "-d", repo)
        XCTAssertEqual(r.status, 1, "\(r)")
        XCTAssertTrue(r.stderr.contains(index), "the error does not name index file \(index):\n\(r)")
    }

    /// Errors must say what to do (STYLE.md item 5), so the command they
    /// suggest must exist.
    func testCorruptIndexErrorSuggestsACommandThatExists() throws {
        _ = try backUpTree()
        let index = try XCTUnwrap(try Sys.listDirectory(repo + "/index").first)
        try flipByte(in: repo + "/index/" + index, at: 20)
        let r = try accord("backup", "-d", repo, root)
        XCTAssertEqual(r.status, 1, "\(r)")
        // The advice is the first `accord …` in backquotes.
        guard let start = r.stderr.range(of: "`accord "), let end = r.stderr[start.upperBound...].firstIndex(of: "`") else {
            return XCTFail("the error suggests no command:\n\(r)")
        }
        let words = r.stderr[start.upperBound..<end].split(separator: " ").map(String.init).filter { !$0.hasPrefix("-") }
        // Do what the message says; a usage error (64) means the command does not exist.
        let advised = try AccordCLI.run(words + ["-d", repo], scratch: scratch)
        XCTAssertNotEqual(advised.status, 64, "the error suggests `accord \(words.joined(separator: " "))`, which is not a command:\n\(r)\n\(advised)")
    }
}
