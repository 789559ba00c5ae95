import Foundation
import XCTest
@testable import AccordCore

/// The manifest side of manifest deltas: which parent piece a new piece is
/// offered as its base (`ManifestWriter`'s anchors and credits), and which
/// piece a record starts in (`ManifestReader.recordBlob`).
final class ManifestAnchorTests: XCTestCase {
    let a = BlobID(hashing: Array("parent piece A".utf8))
    let b = BlobID(hashing: Array("parent piece B".utf8))

    /// Files /d/f0000… of ~40 bytes' records each: `n` of them fit one piece (under the profile's minimum).
    func files(_ n: Int) -> [ManifestEntry] {
        [ManifestEntry(kind: .directory, path: Array("/d".utf8))]
            + (0..<n).map { ManifestEntry(kind: .file, path: Array(String(format: "/d/f%04d", $0).utf8)) }
    }

    /// Writes `entries` with `anchors[i]` for entry i; returns the base each stored piece was offered (nil: plain `store`).
    func offered(_ entries: [ManifestEntry], _ anchors: [Int: BlobID]) throws -> [BlobID?] {
        var out: [BlobID?] = []
        let writer = ManifestWriter(gear: GearTable(seed: 7), store: { out.append(nil); return BlobID(hashing: $0) },
                                    storeNear: { bytes, near in out.append(near); return BlobID(hashing: bytes) })
        for (i, e) in entries.enumerated() { try writer.append(e, anchor: anchors[i]) }
        _ = try writer.finish()
        return out
    }

    func testAPieceIsOfferedTheParentPieceMostOfItsBytesCameFrom() throws {
        let e = files(30)
        XCTAssertLessThan(ManifestCodecTestSupport.streamLength(e), ChunkerProfile.manifest.min, "test setup: one piece")
        // Records 1-10 from A, 11-30 from B: B has two thirds of the bytes.
        XCTAssertEqual(try offered(e, [1: a, 11: b]), [b])
        // Records 21-30 back in A: A has two thirds.
        XCTAssertEqual(try offered(e, [1: a, 11: b, 21: a]), [a])
        // Records without an anchor (new in this snapshot) go with the one before them: the
        // directory and record 1 have none, so A's share is records 2-20, B's 21-30.
        XCTAssertEqual(try offered(e, [2: a, 21: b]), [a])
        // No anchor at all: stored without a base.
        XCTAssertEqual(try offered(e, [:]), [nil])
    }

    func testAnchorsCarryAcrossPieces() throws {
        // A manifest of several pieces, the first half anchored to A, the second to B:
        // each piece is offered A until B's records take the majority of one.
        let e = files(3000)
        var anchors: [Int: BlobID] = [1: a]
        anchors[1500] = b
        let bases = try offered(e, anchors)
        XCTAssertGreaterThan(bases.count, 3, "test setup: several pieces")
        XCTAssertEqual(bases.first!, a)
        XCTAssertEqual(bases.last!, b, "the last piece holds only records anchored to B")
        XCTAssertEqual(bases.filter { $0 == nil }.count, 0, "a piece after an anchor was offered no base")
    }

    /// `recordBlob` names the piece holding each record's first byte, also
    /// when records span pieces and pieces are tiny or empty.
    func testRecordBlobNamesThePieceARecordStartsIn() throws {
        let e = files(200)
        var stream: [UInt8] = ManifestCodec.magic
        var starts: [Int] = []
        for x in e {
            starts.append(stream.count)
            var w = ByteWriter()
            ManifestCodec.encode(x, into: &w)
            stream += w.bytes
        }
        for cut in [7, 100, 1000] {
            var pieces: [[UInt8]] = []
            var i = 0, k = 0
            while i < stream.count {
                let n = Swift.min(stream.count - i, k % 5 == 4 ? 0 : cut + k % 3)
                pieces.append(Array(stream[i..<i + n])); i += n; k += 1
            }
            let ids = pieces.indices.map { BlobID(w0: 0, w1: 0, w2: 0, w3: UInt64($0)) }
            var pieceStarts: [Int] = []
            var at = 0
            for p in pieces { pieceStarts.append(at); at += p.count }
            var reader = ManifestReader(blobs: ids) { pieces[Int($0.w3)] }
            var n = 0
            while let got = try reader.next() {
                XCTAssertEqual(got.path, e[n].path)
                // The last piece starting at or before the record's first byte that is not empty.
                let expected = pieceStarts.indices.last { pieceStarts[$0] <= starts[n] && pieces[$0].count > 0 }!
                XCTAssertEqual(reader.recordBlob, ids[expected], "record \(n) (at \(starts[n])) with pieces of ~\(cut) bytes")
                n += 1
            }
            XCTAssertEqual(n, e.count)
        }
    }
}

enum ManifestCodecTestSupport {
    static func streamLength(_ entries: [ManifestEntry]) -> Int {
        var w = ByteWriter()
        w.raw(ManifestCodec.magic)
        for e in entries { ManifestCodec.encode(e, into: &w) }
        return w.bytes.count
    }
}
