import Foundation
import XCTest
import AccordCore
import AccordTestSupport
import AccordRuntime

/// `Repository.loadIndex` reads index files through a 1 MiB window,
/// hashing as it goes: records cross the window's edges, and damage found
/// while decoding or only by the hash must both be reported as before.
final class IndexLoadTests: AccordTestCase {
    /// 3 packs of 12,000 blobs: 1.66 MB, more than the loader's window.
    func bigIndex(_ rng: inout SeededRandom) -> IndexFile {
        let kinds: [BlobCompression] = [.none, .zlib, .delta]
        var packs: [IndexFile.Pack] = []
        for p in 0..<3 {
            var blobs: [PackEntry] = []
            for i in 0..<12_000 {
                let type: BlobType = i % 7 == 0 ? .tree : .data
                blobs.append(PackEntry(id: BlobID(bytes: rng.bytes(32))!, type: type, compression: kinds[(i + p) % 3],
                                       rawLength: UInt32(1000 + i), storedLength: UInt32(500 + i), offset: UInt32(i) * 4096))
            }
            packs.append(IndexFile.Pack(id: PackID(bytes: rng.bytes(32))!, blobs: blobs))
        }
        return IndexFile(packs: packs)
    }

    /// Makes an empty file for each pack: `loadIndex` keeps only packs present on disk.
    func touchPacks(_ repository: Repository, _ packs: [PackID]) throws {
        for id in packs {
            try Sys.mkdirs(Array(repository.layout.packDirectory(id).utf8), mode: 0o700)
            try TreeBuilder.write(Array(repository.layout.packPath(id).utf8), [])
        }
    }

    func testAnIndexLargerThanTheReadWindowLoadsEveryEntryOfPresentPacks() throws {
        var rng = SeededRandom(seed: 0x1D0A)
        let repository = try Repository.initialize(at: repo)
        let file = bigIndex(&rng)
        XCTAssertGreaterThan(file.encode().count, 1 << 20, "test setup: the index must exceed the 1 MiB window")
        try touchPacks(repository, [file.packs[0].id, file.packs[2].id])   // pack 1 is missing
        try repository.writeIndex(file)

        let loaded = try Repository.open(at: repo)
        try loaded.loadIndex()
        XCTAssertEqual(loaded.index.blobCount, 24_000)
        for (p, pack) in file.packs.enumerated() {
            for e in pack.blobs {
                let l = loaded.index.lookup(e.id)
                if p == 1 { XCTAssertNil(l, "an entry of a missing pack was loaded"); continue }
                guard let l else { return XCTFail("blob \(e.id.short) of pack \(p) not loaded") }
                XCTAssertEqual(loaded.index.pack(of: l), pack.id)
                XCTAssertEqual([l.offset, l.storedLength, l.rawLength], [e.offset, e.storedLength, e.rawLength])
                XCTAssertEqual(l.type, e.type)
                XCTAssertEqual(l.compression, e.compression)
            }
        }
    }

    func testATruncatedOrMalformedIndexIsNamedWithWhatIsWrong() throws {
        var rng = SeededRandom(seed: 0x1D0B)
        let repository = try Repository.initialize(at: repo)
        let file = bigIndex(&rng)
        try touchPacks(repository, file.packs.map(\.id))
        let id = try repository.writeIndex(file)
        let path = repository.layout.indexPath(id)
        let good = try TreeBuilder.read(Array(path.utf8))

        // Cut inside a record past the first window, and inside the header.
        for cut in [(1 << 20) + 17, 10] {
            try TreeBuilder.write(Array(path.utf8), Array(good[..<cut]), mode: 0o600)
            let r = try Repository.open(at: repo)
            XCTAssertThrowsError(try r.loadIndex(), "an index cut to \(cut) bytes loaded") { error in
                XCTAssertTrue("\(error)".contains(id.hex), "\(error)")
                XCTAssertTrue("\(error)".contains("does not match its name"), "cut to \(cut): \(error)")
            }
        }
        // Well named but with an unknown blob type past the first window: the
        // error names the same byte as the whole-file decoder's does.
        try Sys.unlink(Array(path.utf8))
        var badType = good
        let typeByte = 12 + 2 * (36 + 12_000 * 46) + 36 + 1_000 * 46 + 32   // third pack, blob 1,000: 46-byte records (FORMAT.md)
        XCTAssertGreaterThan(typeByte, 1 << 20, "test setup: the damage must lie past the first window")
        badType[typeByte] = 0xEE
        let expected = try XCTUnwrap(badType.withUnsafeBytes { buf -> String? in
            do { _ = try IndexFile.decode(buf); return nil } catch { return "\(error)" }
        })
        XCTAssertTrue(expected.contains("unknown blob type"), expected)
        let badTypeID = IndexID(hashing: badType)
        try TreeBuilder.write(Array(repository.layout.indexPath(badTypeID).utf8), badType, mode: 0o600)
        XCTAssertThrowsError(try Repository.open(at: repo).loadIndex()) { error in
            XCTAssertTrue("\(error)".contains(expected), "the loader says \(error), the decoder \(expected)")
        }
        try Sys.unlink(Array(repository.layout.indexPath(badTypeID).utf8))

        // Well named but malformed: one trailing byte, the file named by its new hash.
        let bad = good + [0]
        let badID = IndexID(hashing: bad)
        try TreeBuilder.write(Array(repository.layout.indexPath(badID).utf8), bad, mode: 0o600)
        let r = try Repository.open(at: repo)
        XCTAssertThrowsError(try r.loadIndex()) { error in
            XCTAssertTrue("\(error)".contains(badID.hex), "\(error)")
            XCTAssertTrue("\(error)".contains("trailing bytes"), "\(error)")
        }
    }

    /// A hostile index names a 4 GiB stored length: loading refuses it before
    /// any reader could allocate that much for the blob (FORMAT.md, "Index files").
    func testAnIndexEntryWithAHugeStoredLengthIsRefusedWhenLoaded() throws {
        var rng = SeededRandom(seed: 0x1D0C)
        let repository = try Repository.initialize(at: repo)
        let pack = PackID(hashing: rng.bytes(32))
        try touchPacks(repository, [pack])
        for (stored, raw) in [(UInt32.max, UInt32(100)), (UInt32(100), UInt32.max), (PackFormat.maxStoredLength + 1, UInt32(10))] {
            let blob = BlobID(hashing: rng.bytes(32))
            let file = IndexFile(packs: [.init(id: pack, blobs: [PackEntry(id: blob, type: .data, compression: .zlib, rawLength: raw,
                                                                       storedLength: stored, offset: 0)])])
            let id = try repository.writeIndex(file)
            XCTAssertThrowsError(try Repository.open(at: repo).loadIndex(), "stored \(stored), raw \(raw) loaded") { error in
                XCTAssertTrue("\(error)".contains("lengths out of bounds"), "\(error)")
                XCTAssertTrue("\(error)".contains(id.hex), "the error names the index file: \(error)")
            }
            XCTAssertThrowsError(try repository.readIndexFile(id))
            try Sys.unlink(Array(repository.layout.indexPath(id).utf8))
        }
        // At the bounds it loads.
        let blob = BlobID(hashing: rng.bytes(32))
        try repository.writeIndex(IndexFile(packs: [.init(id: pack, blobs: [PackEntry(id: blob, type: .data, compression: .zlib,
            rawLength: PackFormat.maxRawLength, storedLength: PackFormat.maxStoredLength, offset: 0)])]))
        let loaded = try Repository.open(at: repo)
        try loaded.loadIndex()
        XCTAssertNotNil(loaded.index.lookup(blob))
    }

    /// A sparse index file of 8 TB (or a server's HEAD saying so) is refused
    /// unread, by size: before this, `reserve` trapped on the allocation it
    /// implied, and the hash check read terabytes of zeros.
    func testAnIndexFileOfTerabytesIsRefusedUnreadAndReservesNothing() throws {
        let repository = try Repository.initialize(at: repo)
        let name = String(repeating: "0", count: 64)
        let path = repo + "/index/" + name
        try Files.write(path, [], mode: 0o600)
        XCTAssertEqual(truncate(path, 8 << 40), 0, "truncate: errno \(errno)")
        XCTAssertThrowsError(try Repository.open(at: repo).loadIndex()) { error in
            XCTAssertTrue("\(error)".contains(name) && "\(error)".contains("more than an index file may be"), "\(error)")
        }
        _ = repository
    }
}
