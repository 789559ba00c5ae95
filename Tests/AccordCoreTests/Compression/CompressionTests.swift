import Foundation
import XCTest
@testable import AccordCore

/// Compression: zlib format (RFC 1950) from every level and engine, raw
/// storage of incompressible data, and the igzip fallback.
final class CompressionTests: CodecTestCase {
    func testCompressionRoundTripsAndKeepsIncompressibleDataRaw() throws {
        var rng = TestRandom(seed: 15)
        let deflater = Deflater(level: .default), inflater = Inflater()
        var packed: [UInt8] = [], back: [UInt8] = []
        let text = Array(String(repeating: "pg_dumpall --clean; ", count: 20_000).utf8)
        XCTAssertEqual(text.withUnsafeBytes { deflater.compress($0, into: &packed) }, .zlib)
        XCTAssertLessThan(packed.count, text.count / 10)
        try packed.withUnsafeBytes { try inflater.inflate($0, rawLength: text.count, into: &back) }
        XCTAssertEqual(back, text)
        XCTAssertEqual(packed.prefix(1), [0x78], "stored data must be zlib format (RFC 1950)")

        for size in [10, 1000, 40_000, 1 << 20] {
            let random = rng.bytes(size)
            XCTAssertEqual(random.withUnsafeBytes { deflater.compress($0, into: &packed) }, .none, "random \(size) bytes were 'compressed'")
            XCTAssertEqual(packed, [])
        }
        let off = Deflater(level: CompressionLevel(0))
        XCTAssertEqual(text.withUnsafeBytes { off.compress($0, into: &packed) }, .none, "level 0 compressed")
        XCTAssertEqual(CompressionLevel(name: "max"), .max)
        XCTAssertNil(CompressionLevel(name: "11"))
    }

    func testDefaultLevelWritesZlibThatZlibAndLibdeflateInflate() throws {
        var rng = TestRandom(seed: 30)
        let deflater = Deflater(level: .default)
        var packed: [UInt8] = []
        let compressible: [(String, [UInt8])] = [
            ("64 B phrase", Array(String(repeating: "accord ", count: 10).utf8.prefix(64))),
            ("65 B repeated", [UInt8](repeating: 0x41, count: 65)),
            ("4 KiB text", text(&rng, count: 4 << 10)),
            ("32 KiB text", text(&rng, count: 32 << 10)),
            ("1 MiB text", text(&rng, count: 1 << 20)),
            ("1 MiB zeros", [UInt8](repeating: 0, count: 1 << 20)),
            ("1 MiB of one short phrase", Array(String(repeating: "pg_dumpall --clean; ", count: 52_429).utf8.prefix(1 << 20))),
            ("8 MiB text", text(&rng, count: 8 << 20)),
            ("8 MiB random then text", rng.bytes(4 << 20) + text(&rng, count: 4 << 20)),
        ]
        for (what, raw) in compressible {
            XCTAssertEqual(raw.withUnsafeBytes { deflater.compress($0, into: &packed) }, .zlib, "\(what) not compressed")
            XCTAssertLessThan(packed.count, raw.count - raw.count / 64, what)
            try assertValidZlib(packed, raw: raw, what)
        }
        // Stored raw: under 64 bytes, random, and random but for a compressible middle that passes the probe.
        var middle = rng.bytes(1 << 20)
        middle.replaceSubrange(1 << 19 ..< (1 << 19) + 8192, with: text(&rng, count: 8192))   // the probed 8 KiB
        let raw: [(String, [UInt8])] = [("empty", []), ("1 B", [7]), ("63 B text", text(&rng, count: 63)),
                                        ("4 KiB random", rng.bytes(4 << 10)), ("1 MiB random", rng.bytes(1 << 20)),
                                        ("1 MiB random with a text middle", middle)]
        for (what, data) in raw {
            XCTAssertEqual(data.withUnsafeBytes { deflater.compress($0, into: &packed) }, .none, "\(what) 'compressed'")
            XCTAssertEqual(packed, [], what)
        }
        XCTAssertEqual(deflater.igzipFailures, 0)
    }

    func testEveryLevelAndEngineWritesValidZlib() throws {
        var rng = TestRandom(seed: 31)
        let samples = [text(&rng, count: 3000), text(&rng, count: 300_000)]
        var packed: [UInt8] = []
        for engine in [Deflater.Engine.automatic, .libdeflate, .igzip] {
            for level in Int32(1) ... 9 {
                let deflater = Deflater(level: CompressionLevel(level), engine: engine)
                for raw in samples {
                    let what = "\(engine) level \(level), \(raw.count) bytes"
                    XCTAssertEqual(raw.withUnsafeBytes { deflater.compress($0, into: &packed) }, .zlib, what)
                    try assertValidZlib(packed, raw: raw, what)
                }
                XCTAssertEqual(deflater.igzipFailures, 0)
            }
        }
    }

    func testBlobsIgzipFailsOnGoToLibdeflate() throws {
        var rng = TestRandom(seed: 32)
        let deflater = Deflater(level: .default)
        deflater.igzipLevelForTesting = 9   // igzip has no level 9: it fails with ISAL_INVALID_LEVEL
        var packed: [UInt8] = []
        for raw in [text(&rng, count: 5000), text(&rng, count: 1 << 20)] {
            XCTAssertEqual(raw.withUnsafeBytes { deflater.compress($0, into: &packed) }, .zlib)
            try assertValidZlib(packed, raw: raw, "\(raw.count) bytes after an igzip failure")
        }
        let random = rng.bytes(1 << 20)
        XCTAssertEqual(random.withUnsafeBytes { deflater.compress($0, into: &packed) }, .none, "the libdeflate probe let random data through")
        XCTAssertEqual(deflater.igzipFailures, 4, "igzip calls: a blob; a probe and a blob; a probe")
        deflater.igzipLevelForTesting = nil
        let raw = text(&rng, count: 70_000)
        XCTAssertEqual(raw.withUnsafeBytes { deflater.compress($0, into: &packed) }, .zlib)
        try assertValidZlib(packed, raw: raw, "igzip again")
        XCTAssertEqual(deflater.igzipFailures, 4)
    }
}
