import Foundation
import XCTest
import AccordCore
import AccordTestSupport

/// Commands never load the index themselves: `openSnapshot` loads it after the
/// snapshot (so it covers every blob the snapshot names, whatever backups
/// committed meanwhile) and `prepareForWriting` loads it and adopts the packs of
/// an interrupted writer.
final class RepositoryDoorTests: AccordTestCase {
    func makeSource() throws -> String {
        let src = scratch.sub("src")
        try Files.mkdir(src)
        var rng = SeededRandom(seed: 0xD002)
        for i in 0..<6 { try Files.write(src + "/f\(i)", rng.bytes(50_000 + i * 7_000)) }
        return src
    }

    func testOpenSnapshotLoadsAnIndexThatCoversASnapshotCommittedAfterOpen() throws {
        let src = try makeSource()
        try initRepository()
        let repository = try Repository.open(at: repo)
        XCTAssertFalse(repository.isIndexLoaded, "open must not load the index: the snapshot is not chosen yet")
        // Another process commits a snapshot after this repository object was opened.
        let made = try backup(src)

        let (id, snapshot) = try repository.openSnapshot("latest")
        XCTAssertEqual(id.hex, made.id)
        XCTAssertTrue(repository.isIndexLoaded)
        var reader = repository.manifestReader(snapshot, id: id)
        var files = 0
        while let e = try reader.next() {
            guard e.kind == .file else { continue }
            var bytes: [UInt8] = []
            for b in e.blobs { bytes += try repository.readBlob(b) }
            XCTAssertEqual(bytes, try Files.read(String(decoding: e.path, as: UTF8.self)), "content of \(String(decoding: e.path, as: UTF8.self))")
            files += 1
        }
        XCTAssertEqual(files, 6)
    }

    func testPrepareForWritingAdoptsThePacksOfABackupThatDiedBeforeItsIndex() throws {
        let src = try makeSource()
        try initRepository()
        _ = try backup(src)
        // As if the backup died after its packs and before its index file.
        let indexDir = repo + "/index"
        for name in names(in: indexDir) { try FileManager.default.removeItem(atPath: indexDir + "/" + name) }
        let packs = packIDs()
        XCTAssertFalse(packs.isEmpty)

        let repository = try Repository.open(at: repo)
        let adopted = try repository.prepareForWriting()
        XCTAssertEqual(adopted, packs.count, "every pack without an index entry is adopted")
        XCTAssertEqual(names(in: indexDir).count, 1, "the adopted packs are written to one new index file")
        XCTAssertGreaterThan(repository.index.blobCount, 6)
        XCTAssertEqual(try repository.prepareForWriting(), 0, "a second call finds nothing left to adopt")
        try assertCheckPasses(readData: true, "after adoption")
    }
}
