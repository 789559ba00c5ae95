import Foundation
import XCTest
import AccordTestSupport
@testable import AccordCore

/// Delta blobs (FORMAT.md, "Delta blobs"): the program format, the encoder's
/// round trip on edited data, and programs that must be refused (never a trap).
final class DeltaCodecTests: XCTestCase {
    func apply(_ program: [UInt8], base: [UInt8], rawLength: Int) throws -> [UInt8] {
        var out: [UInt8] = []
        try program.withUnsafeBytes { p in try base.withUnsafeBytes { b in try DeltaCodec.apply(program: p, base: b, rawLength: rawLength, into: &out) } }
        return out
    }

    func encode(_ base: [UInt8], _ target: [UInt8], limit: Int = .max) -> [UInt8]? {
        base.withUnsafeBytes { b in target.withUnsafeBytes { DeltaCodec.encode(base: b, target: $0, limit: limit) } }
    }

    func testTheFormatDocumentsExample() throws {
        let base = Array("abcdefgh12345678".utf8)
        let program: [UInt8] = [0x10, 0x00, 0x03, 0x2d, 0x0e, 0x09]
        XCTAssertEqual(String(decoding: try apply(program, base: base, rawLength: 16), as: UTF8.self), "abcdefgh-2345678")
        // And through the blob decoder, as stored bytes: base id, then the program.
        let baseID = BlobID(hashing: base)
        let target = Array("abcdefgh-2345678".utf8)
        let stored = baseID.bytes + program
        XCTAssertEqual(stored.count, 38)
        var out: [UInt8] = []
        var asked: [BlobID] = []
        try stored.withUnsafeBytes {
            try BlobDecoder.decode(stored: $0, id: BlobID(hashing: target), compression: .delta, rawLength: 16,
                                   inflater: Inflater(), into: &out, base: { asked.append($0); return base })
        }
        XCTAssertEqual(out, target)
        XCTAssertEqual(asked, [baseID], "the decoder must ask for the base the stored bytes name")
    }

    /// FORMAT.md's second example ("Delta blobs"): the encoder's own program
    /// for a one-line edit of a small file, byte for byte.
    func testTheFormatDocumentsFileExampleIsWhatTheEncoderWrites() throws {
        let base = Array("let a = 1\nlet b = 2\nlet c = 3\n".utf8)
        let target = Array("let a = 1\nlet b = 42\nlet c = 3\n".utf8)
        XCTAssertEqual(base.count, 30)
        XCTAssertEqual(target.count, 31)
        let program = try XCTUnwrap(encode(base, target))
        XCTAssertEqual(program, [0x24, 0x00, 0x03, 0x34, 0x18, 0x12])
        XCTAssertEqual(try apply(program, base: base, rawLength: 31), target)
        // The writer's limit is the whole stored form less the 32-byte base id:
        // this 31-byte blob (stored raw) never becomes a delta.
        XCTAssertNil(encode(base, target, limit: 31 - 32))
    }

    /// Tree chunks (up to 8 MiB) as bases: past 512 KiB the table holds every
    /// `stride`-th position, and an insert or an edit still costs about its bytes.
    func testLargeChunksAsBasesCostAboutTheirEdits() throws {
        var rng = SeededRandom(seed: 0x1A46E)
        for size in [1 << 20, 3 << 20, DeltaCodec.maxLength - (8 << 10)] {
            var base: [UInt8] = []
            base.reserveCapacity(size + 64)
            while base.count < size { base += Array("\(rng.below(1 << 30)),2026-\(1 + rng.below(12)),\(rng.below(100_000)).\(rng.below(100))\n".utf8) }
            base = Array(base.prefix(size))
            var target = base
            let inserted = rng.bytes(4096)
            target.insert(contentsOf: inserted, at: size / 2)
            let edit = size / 5
            target.replaceSubrange(edit..<edit + 20, with: rng.bytes(20))
            target.removeSubrange(size - size / 7..<size - size / 7 + 300)
            let program = try XCTUnwrap(encode(base, target, limit: target.count), "no program for a \(size)-byte base")
            XCTAssertEqual(try apply(program, base: base, rawLength: target.count), target, "\(size): the program does not rebuild the target")
            XCTAssertLessThan(program.count, 4096 + 20 + 200, "\(size): 4 KiB inserted and two small edits cost \(program.count) bytes")
        }
        // A chunk rewritten (no common run) is given up before the end of the scan: nil.
        let base = rng.bytes(1 << 20), rewritten = rng.bytes(1 << 20)
        XCTAssertNil(encode(base, rewritten, limit: rewritten.count - 32))
    }

    func testEditedDataRoundTripsAndCostsLittle() throws {
        var rng = SeededRandom(seed: 0xDE17A)
        for round in 0..<300 {
            let n = 16 + rng.below(32 << 10)
            // Row-like text, so that matches are not only the exact ones.
            var base: [UInt8] = []
            while base.count < n { base += Array("\(rng.below(1_000_000))\t\(rng.below(40))\t0\t                    \n".utf8) }
            base = Array(base.prefix(n))
            var target = base
            let edits = rng.below(4)
            for _ in 0..<edits {
                let at = rng.below(target.count + 1)
                switch rng.below(3) {
                case 0: target.insert(contentsOf: rng.bytes(1 + rng.below(120)), at: at)
                case 1: target.removeSubrange(at..<min(target.count, at + 1 + rng.below(120)))
                default:
                    let end = min(target.count, at + 1 + rng.below(60))
                    target.replaceSubrange(at..<end, with: rng.bytes(end - at))
                }
            }
            if target.isEmpty { target = [1] }
            guard let program = encode(base, target) else {
                XCTAssertGreaterThan(target.count, DeltaCodec.maxLength, "round \(round): no program for a \(target.count)-byte target")
                continue
            }
            XCTAssertEqual(try apply(program, base: base, rawLength: target.count), target, "round \(round): program does not rebuild the target")
            // Each edit costs at most its bytes plus a few ops; the rest is copies.
            XCTAssertLessThan(program.count, 24 + edits * (120 + 24), "round \(round): \(edits) edits cost \(program.count) bytes")
        }
    }

    func testOneChangedRowInADumpChunkCostsAFewBytes() throws {
        var rows: [UInt8] = []
        for aid in 1_512_100..<1_512_150 { rows += Array("\(aid)\t16\t0\t\(String(repeating: " ", count: 84))\n".utf8) }
        var changed = rows
        let row = Array("1512120\t16\t0\t".utf8), newRow = Array("1512120\t16\t-4711\t".utf8)
        let at = try XCTUnwrap(changed.indices.first { changed[$0...].starts(with: row) })
        changed.replaceSubrange(at..<at + row.count, with: newRow)
        let program = try XCTUnwrap(encode(rows, changed))
        XCTAssertEqual(try apply(program, base: rows, rawLength: changed.count), changed)
        XCTAssertLessThan(program.count, 20, "a one-row change of a \(rows.count)-byte chunk took \(program.count) bytes")
    }

    /// A 256 KiB chunk of the `dump` profile with rows changed here and there,
    /// longer and shorter than before: each costs about its new bytes, found
    /// again near where the previous copy ended (and through the table of
    /// the base's positions where that fails: a row moved far away).
    func testScatteredRowEditsOfALargeDumpChunkCostAboutTheirBytes() throws {
        var rows: [UInt8] = []
        var aid = 3_000_001
        while rows.count < 256 << 10 { rows += Array("\(aid)\t31\t0\t\(String(repeating: " ", count: 84))\n".utf8); aid += 1 }
        var changed = rows
        var rng = SeededRandom(seed: 0x256)
        for balance in ["-4711", "2", "", "123456789", "-1"] {   // five rows: longer, same, shorter
            let at = (changed.count / 6) * (1 + rng.below(5)) + rng.below(1000)
            let lineStart = (changed[..<at].lastIndex(of: 0x0a) ?? -1) + 1
            let fieldStart = changed[lineStart...].firstIndex(of: 0x09)! + 1
            let balanceStart = changed[fieldStart...].firstIndex(of: 0x09)! + 1
            let balanceEnd = changed[balanceStart...].firstIndex(of: 0x09)!
            changed.replaceSubrange(balanceStart..<balanceEnd, with: Array(balance.utf8))
        }
        // A row moved from the start to the end (an UPDATE that left its page).
        let firstRow = Array(changed[...changed.firstIndex(of: 0x0a)!])
        changed.removeFirst(firstRow.count)
        changed += firstRow
        let program = try XCTUnwrap(encode(rows, changed, limit: changed.count / 8))
        XCTAssertEqual(try apply(program, base: rows, rawLength: changed.count), changed)
        XCTAssertLessThan(program.count, 120, "five changed rows and a moved one in 256 KiB took \(program.count) bytes")
    }

    /// The encoder indexes the window near its last copy on a second search
    /// there; that index must give exactly the programs a scan of the window
    /// gives: dump-like rows (padding everywhere), edited, moved and new,
    /// and random data with new bytes near and far from the last copy.
    func testTheWindowIndexGivesTheScansPrograms() throws {
        var rng = SeededRandom(seed: 0x3d)
        var compared = 0, withInserts = 0
        for round in 0..<40 {
            var base: [UInt8] = []
            if round % 2 == 0 {
                var aid = 1 + rng.below(1_000_000)
                while base.count < 64 << 10 + rng.below(128 << 10) {
                    base += Array("\(aid)\t\(rng.below(40))\t\(rng.below(9999) - 5000)\t\(String(repeating: " ", count: 84))\n".utf8)
                    aid += 1
                }
            } else {
                base = rng.bytes(1 + rng.below(200 << 10))
            }
            var target = base
            for _ in 0..<(1 + rng.below(12)) {
                let at = rng.below(target.count)
                switch rng.below(4) {
                case 0: target.replaceSubrange(at..<min(target.count, at + rng.below(40)), with: rng.bytes(rng.below(40)))
                case 1: target.insert(contentsOf: rng.bytes(1 + rng.below(300)), at: at)
                case 2:   // a run of the base moved by up to 400 bytes
                    let from = max(0, min(base.count - 1, at + rng.below(800) - 400))
                    target.insert(contentsOf: base[from..<min(base.count, from + 8 + rng.below(200))], at: at)
                default: target.removeSubrange(at..<min(target.count, at + rng.below(500)))
                }
            }
            guard !target.isEmpty else { continue }
            let indexed = base.withUnsafeBytes { b in target.withUnsafeBytes { t in
                DeltaCodec.encode(base: b, target: t, limit: target.count, indexesWindow: true) } }
            let scanned = base.withUnsafeBytes { b in target.withUnsafeBytes { t in
                DeltaCodec.encode(base: b, target: t, limit: target.count, indexesWindow: false) } }
            XCTAssertTrue(indexed == scanned, "round \(round): the window index changed the program (\(indexed?.count ?? -1) bytes, the scan's \(scanned?.count ?? -1))")
            if let program = indexed {
                XCTAssertEqual(try apply(program, base: base, rawLength: target.count), target, "round \(round)")
                compared += 1
                if program.count > 40 { withInserts += 1 }
            }
        }
        XCTAssertGreaterThan(compared, 30, "most rounds must give a program to compare")
        XCTAssertGreaterThan(withInserts, 10, "most rounds must have inserts, where the window is searched")
    }

    func testEncoderHonoursItsLimitAndSizeBounds() {
        var rng = SeededRandom(seed: 7)
        let base = rng.bytes(4096), unrelated = rng.bytes(4096)
        XCTAssertNil(encode(base, unrelated, limit: 4096), "a delta of unrelated data is no smaller than the data")
        XCTAssertNotNil(encode(base, base, limit: 16))
        XCTAssertNil(encode(base, base, limit: 2), "a limit below the program's size must give nil")
        XCTAssertNil(encode(base, []), "an empty target has no program (blobs are never empty)")
        XCTAssertNil(encode(rng.bytes(DeltaCodec.maxLength + 1), base), "bases over the size bound are not used")
        XCTAssertNil(encode(base, rng.bytes(DeltaCodec.maxLength + 1)))
        // Shorter than a match: one insert.
        let tiny = encode(Array("ab".utf8), Array("xyz".utf8))
        XCTAssertEqual(tiny, [0x07] + Array("xyz".utf8))
    }

    func testMalformedProgramsAreRefused() {
        let base = Array("0123456789".utf8)
        let cases: [(String, [UInt8], Int)] = [
            ("empty program", [], 1),
            ("copy from beyond the base", [0x02, 0x0b], 1),
            ("op of zero bytes", [0x00, 0x00, 0x02, 0x00], 1),
            ("insert past the program's end", [0x07, 0x41], 3),
            ("result too short", [0x04, 0x00], 3),
            ("result too long", [0x08, 0x00], 3),
            ("truncated varint", [0x80], 1),
            ("copy with no From", [0x04], 2),
            ("huge op length", [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01], 4),
        ]
        for (what, program, raw) in cases {
            XCTAssertThrowsError(try apply(program, base: base, rawLength: raw), what)
        }
        XCTAssertThrowsError(try apply([0x0a, 0x06], base: base, rawLength: 5), "copy of 5 from 6 runs past a 10-byte base")
        XCTAssertEqual(try apply([0x08, 0x05], base: base, rawLength: 4), Array("5678".utf8))
    }

    func testDecoderRefusesADeltaWithoutItsBase() throws {
        let base = Array("abcdefgh12345678".utf8)
        let target = Array("abcdefgh12345678".utf8)
        let stored = BlobID(hashing: base).bytes + [0x20, 0x00]
        var out: [UInt8] = []
        func decode(_ s: [UInt8], base reader: BlobDecoder.BaseReader?, id: BlobID? = BlobID(hashing: target)) throws {
            try s.withUnsafeBytes { try BlobDecoder.decode(stored: $0, id: id, compression: .delta, rawLength: 16, inflater: Inflater(), into: &out, base: reader) }
        }
        XCTAssertNoThrow(try decode(stored, base: { _ in base }))
        XCTAssertThrowsError(try decode(stored, base: nil)) { XCTAssertTrue("\($0)".contains("without access to its base"), "\($0)") }
        XCTAssertThrowsError(try decode(stored, base: { id in throw BlobError.notInIndex(id) })) {
            XCTAssertTrue("\($0)".contains("is stored as a delta on blob"), "\($0)")
        }
        XCTAssertThrowsError(try decode(stored, base: { _ in Array("ABCDEFGH12345678".utf8) })) {
            XCTAssertTrue("\($0)".contains("content hashes to"), "a wrong base must fail the id check: \($0)")
        }
        XCTAssertThrowsError(try decode(Array(stored.prefix(32)), base: { _ in base }), "32 stored bytes hold no program")
        // A pack header with a delta entry of 32 stored bytes or fewer is refused.
        let entry = PackEntry(id: BlobID(hashing: target), type: .data, compression: .delta, rawLength: 16, storedLength: 32, offset: 0)
        let pack = [UInt8](repeating: 0, count: 32) + PackFormat.encodeTail([entry])
        XCTAssertThrowsError(try pack.withUnsafeBytes { buf -> [PackEntry] in
            let hl = try PackFormat.decodeTrailer(UnsafeRawBufferPointer(rebasing: buf[(buf.count - 12)...]), packSize: buf.count)
            return try PackFormat.decodeHeader(UnsafeRawBufferPointer(rebasing: buf[(buf.count - 12 - hl)..<(buf.count - 12)]), packSize: buf.count)
        })
    }

    func testTheIndexPrefersAWholeCopyOfABlobOverADeltaCopy() {
        var rng = SeededRandom(seed: 0x1DE)
        func id<I: ContentID>() -> I { I(bytes: rng.bytes(32))! }
        let x: BlobID = id(), other: BlobID = id()
        let packA: PackID = id(), packB: PackID = id(), packC: PackID = id()
        func entry(_ id: BlobID, _ c: BlobCompression, at offset: UInt32) -> PackEntry {
            PackEntry(id: id, type: .data, compression: c, rawLength: 100, storedLength: c == .delta ? 40 : 100, offset: offset)
        }
        for sealBetween in [false, true] {
            let index = MasterIndex()
            index.add(pack: packA, entries: [entry(other, .zlib, at: 0), entry(x, .delta, at: 100)])
            if sealBetween { index.seal() }
            XCTAssertEqual(index.lookup(x)?.compression, .delta)
            index.add(pack: packB, entries: [entry(x, .zlib, at: 0)])
            XCTAssertEqual(index.lookup(x).map { index.pack(of: $0) }, packB, "sealed first: \(sealBetween): the whole copy must win")
            index.add(pack: packC, entries: [entry(x, .delta, at: 0), entry(x, .none, at: 40)])
            index.seal()
            XCTAssertEqual(index.lookup(x).map { index.pack(of: $0) }, packB, "a later copy must not replace a whole one")
            XCTAssertEqual(index.lookup(x)?.compression, .zlib)
            XCTAssertEqual(index.lookup(other).map { index.pack(of: $0) }, packA)
        }
    }
}
