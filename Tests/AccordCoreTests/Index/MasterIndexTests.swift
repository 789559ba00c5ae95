import Foundation
import XCTest
@testable import AccordCore

/// The in-memory master index: every blob found before and after `seal()`,
/// and the right copy kept among many.
final class MasterIndexTests: CodecTestCase {
    func testMasterIndexFindsEveryBlobBeforeAndAfterSeal() {
        var rng = TestRandom(seed: 19)
        let file = sampleIndex(&rng, packs: 40)
        let index = MasterIndex()
        index.add(file)
        func verify(_ when: String) {
            for p in file.packs {
                for e in p.blobs {
                    guard let l = index.lookup(e.id) else { return XCTFail("\(when): blob \(e.id.short) not found") }
                    XCTAssertEqual(index.pack(of: l), p.id, when)
                    XCTAssertEqual(l.offset, e.offset); XCTAssertEqual(l.storedLength, e.storedLength)
                    XCTAssertEqual(l.rawLength, e.rawLength); XCTAssertEqual(l.type, e.type); XCTAssertEqual(l.compression, e.compression)
                }
            }
            for _ in 0..<1000 { XCTAssertNil(index.lookup(id(&rng)), "\(when): found a blob never added") }
            XCTAssertEqual(index.blobCount, file.packs.reduce(0) { $0 + $1.blobs.count })
        }
        verify("before seal")
        index.seal()
        verify("after seal")
        let more = sampleIndex(&rng, packs: 3)
        index.add(more)
        XCTAssertNotNil(index.lookup(more.packs[0].blobs[0].id), "blob added after seal not found")
        XCTAssertNotNil(index.lookup(file.packs[0].blobs[0].id))
    }

    /// Large enough for `seal()`'s radix sort (≥ 4,096 records), with ids
    /// crowded into a few top-16-bit buckets (the insertion sort, the >32
    /// bucket sort and the lookup's steps from its guess all run) and blobs
    /// stored several times: whole and as deltas, in different packs.
    func testSealedIndexKeepsTheRightCopyOfEveryBlobAmongManyAndCrowded() {
        var rng = TestRandom(seed: 29)
        var ids: [BlobID] = []
        for i in 0..<30_000 {
            var x = id(&rng, as: BlobID.self)
            if i % 3 == 0 { x.w0 = (x.w0 & 0x0000_ffff_ffff_ffff) | 0x1234_0000_0000_0000 }   // one crowded bucket
            if i % 5 == 0 { x.w0 = (x.w0 & 0x0000_0000_ffff_ffff) | 0xabcd_0042_0000_0000 }   // and equal next 16 bits
            ids.append(x)
        }
        let index = MasterIndex()
        // Expected: a whole copy over a delta copy, else the first added (lower pack, offset).
        var expected: [BlobID: (pack: Int, offset: UInt32, delta: Bool)] = [:]
        var packIDs: [PackID] = []
        for p in 0..<60 {
            let pack = id(&rng, as: PackID.self)
            packIDs.append(pack)
            var entries: [PackEntry] = []
            for k in 0..<900 {
                let x = ids[rng.below(ids.count)]
                let delta = rng.below(3) == 0
                let offset = UInt32(k * 100)
                entries.append(PackEntry(id: x, type: .data, compression: delta ? .delta : .zlib,
                                         rawLength: 10, storedLength: 5, offset: offset))
                if let old = expected[x] {
                    if old.delta && !delta { expected[x] = (p, offset, false) }
                } else {
                    expected[x] = (p, offset, delta)
                }
            }
            index.add(pack: pack, entries: entries)
        }
        index.seal()
        XCTAssertEqual(index.blobCount, expected.count, "one entry per distinct blob after seal")
        for (x, want) in expected {
            guard let l = index.lookup(x) else { XCTFail("blob \(x.short) not found"); continue }
            XCTAssertEqual(index.pack(of: l), packIDs[want.pack], "blob \(x.short): wrong copy kept")
            XCTAssertEqual(l.offset, want.offset, "blob \(x.short): wrong copy kept")
        }
        for x in ids where expected[x] == nil { XCTAssertNil(index.lookup(x), "found \(x.short), never added") }
        for _ in 0..<2000 {
            var x = id(&rng, as: BlobID.self)
            x.w0 = (x.w0 & 0x0000_ffff_ffff_ffff) | 0x1234_0000_0000_0000
            if expected[x] == nil { XCTAssertNil(index.lookup(x), "found \(x.short) in a crowded bucket, never added") }
        }
    }
}
