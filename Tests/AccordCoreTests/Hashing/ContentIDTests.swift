import XCTest
import AccordCore
import AccordTestSupport

/// What every kind of id shares (`ContentID`), checked once for each kind
/// through one generic helper. That the kinds do not mix (a `PackID` where a
/// `BlobID` is wanted) is the compiler's to check: no test can run it.
final class ContentIDTests: XCTestCase {
    func testEveryKindParsesPrintsAndOrdersItsBytesAlike() {
        assertSharedBehaviour(BlobID.self)
        assertSharedBehaviour(PackID.self)
        assertSharedBehaviour(SnapshotID.self)
        assertSharedBehaviour(IndexID.self)
    }

    func testEveryKindIsFourWordsInline() {
        // MasterIndex keeps millions in arrays: no boxing, no padding beyond the raw digest.
        for size in [MemoryLayout<BlobID>.size, MemoryLayout<PackID>.size, MemoryLayout<SnapshotID>.size, MemoryLayout<IndexID>.size] {
            XCTAssertEqual(size, 32)
        }
        XCTAssertEqual(MemoryLayout<BlobID>.stride, MemoryLayout<ID>.stride)
    }

    func assertSharedBehaviour<I: ContentID>(_ kind: I.Type, file: StaticString = #filePath, line: UInt = #line) {
        let name = "\(kind)"
        // Hex: the SHA-256 of "abc", printed and parsed back.
        let abc = I(hashing: "abc")
        let abcHex = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        XCTAssertEqual(abc.hex, abcHex, name, file: file, line: line)
        XCTAssertEqual(abc.description, abcHex, name, file: file, line: line)
        XCTAssertEqual(abc.short, "ba7816bf", name, file: file, line: line)
        XCTAssertEqual(I(hex: abcHex), abc, name, file: file, line: line)
        XCTAssertEqual(I(hashing: Array("abc".utf8)), abc, name, file: file, line: line)
        XCTAssertEqual(Array("abc".utf8).withUnsafeBytes { I(hashing: $0) }, abc, name, file: file, line: line)
        XCTAssertEqual(abc.w0, 0xba78_16bf_8f01_cfea, "\(name): w0 is the first 8 bytes, big-endian", file: file, line: line)
        XCTAssertEqual(I(digest: abc.digest), abc, name, file: file, line: line)
        XCTAssertEqual(I.zero.hex, String(repeating: "0", count: 64), name, file: file, line: line)

        // A name has one spelling: uppercase, short, long and non-hex are refused.
        for bad in [abcHex.uppercased(), "BA" + abcHex.dropFirst(2), String(abcHex.dropLast()), abcHex + "0",
                    "g" + abcHex.dropFirst(), "", " " + abcHex.dropFirst()] {
            XCTAssertNil(I(hex: bad), "\(name) accepted \"\(bad)\"", file: file, line: line)
        }

        // Bytes: 32 exactly, both ways, through an array and a raw pointer.
        XCTAssertEqual(abc.bytes.count, 32, name, file: file, line: line)
        XCTAssertEqual(I(bytes: abc.bytes), abc, name, file: file, line: line)
        XCTAssertNil(I(bytes: abc.bytes.dropLast()), "\(name) from 31 bytes", file: file, line: line)
        XCTAssertNil(I(bytes: abc.bytes + [0]), "\(name) from 33 bytes", file: file, line: line)
        var written = [UInt8](repeating: 0xee, count: 34)
        written.withUnsafeMutableBytes { abc.write(to: $0.baseAddress! + 1) }
        XCTAssertEqual(Array(written[1...32]), abc.bytes, name, file: file, line: line)
        XCTAssertEqual([written[0], written[33]], [0xee, 0xee], "\(name): write(to:) writes 32 bytes, no more", file: file, line: line)
        XCTAssertEqual(written.withUnsafeBytes { I(bytes: $0.baseAddress! + 1) }, abc, name, file: file, line: line)

        // Order is byte order (and so hex order), across every word boundary:
        // ids that differ in one byte only, and random ones.
        var rng = SeededRandom(seed: 0x1D5)
        var ids: [I] = []
        for k in 0..<32 {
            for v: UInt8 in [0x00, 0x7f, 0x80, 0xff] {
                var b = abc.bytes
                b[k] = v
                ids.append(I(bytes: b)!)
            }
        }
        for _ in 0..<200 { ids.append(I(bytes: rng.bytes(32))!) }
        let byBytes = ids.sorted { $0.bytes.lexicographicallyPrecedes($1.bytes) }
        XCTAssertEqual(ids.sorted(), byBytes, "\(name): < is not byte order", file: file, line: line)
        XCTAssertEqual(ids.sorted().map(\.hex), ids.map(\.hex).sorted(), "\(name): < is not hex order", file: file, line: line)
        for id in ids { XCTAssertEqual(I(hex: id.hex), id, name, file: file, line: line) }

        // Equal ids are one key; distinct ones are not.
        XCTAssertEqual(Set(ids + ids.map { I(digest: $0.digest) }).count, Set(ids.map(\.hex)).count, name, file: file, line: line)
    }
}
