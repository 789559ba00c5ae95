import Foundation
import XCTest
@testable import AccordCore

/// Little-endian integers, varints and zigzag through `ByteWriter`/`ByteReader`:
/// edges round-trip, overlong and truncated input is rejected.
final class VarintTests: XCTestCase {
    func testVarintAndZigzagRoundTripAtEdges() throws {
        let unsigned: [UInt64] = [0, 1, 127, 128, 255, 16_383, 16_384, UInt64(UInt32.max), UInt64.max - 1, UInt64.max]
        let signed: [Int64] = [0, -1, 1, -64, 64, Int64(Int32.min), Int64.min, Int64.max]
        var w = ByteWriter()
        for v in unsigned { w.varint(v) }
        for v in signed { w.zigzag(v) }
        w.u16(0xBEEF); w.u32(0xDEAD_BEEF); w.u64(0x0123_4567_89AB_CDEF)
        try w.bytes.withUnsafeBytes { buf in
            var r = ByteReader(buf)
            for v in unsigned { XCTAssertEqual(try r.varint(), v) }
            for v in signed { XCTAssertEqual(try r.zigzag(), v) }
            XCTAssertEqual(try r.u16(), 0xBEEF)
            XCTAssertEqual(try r.u32(), 0xDEAD_BEEF)
            XCTAssertEqual(try r.u64(), 0x0123_4567_89AB_CDEF)
            XCTAssertTrue(r.isAtEnd)
            XCTAssertThrowsError(try r.u8())
        }
        XCTAssertEqual(w.bytes.suffix(8), [0xEF, 0xCD, 0xAB, 0x89, 0x67, 0x45, 0x23, 0x01], "integers must be little-endian")
    }

    func testByteReaderRejectsOverlongAndTruncatedVarints() throws {
        let cases: [[UInt8]] = [[0x80], [0xff, 0xff], Array(repeating: 0xff, count: 10) + [0x01], Array(repeating: 0x80, count: 11) + [0]]
        for bytes in cases {
            try bytes.withUnsafeBytes { buf in
                var r = ByteReader(buf)
                XCTAssertThrowsError(try r.varint(), "\(bytes) decoded")
            }
        }
        try [UInt8]([0x05, 1, 2]).withUnsafeBytes { buf in
            var r = ByteReader(buf)
            XCTAssertThrowsError(try r.string(), "a 5-byte string in 2 bytes decoded")
        }
    }
}
