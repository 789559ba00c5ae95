import Foundation
import XCTest
@testable import AccordCore

/// A byte source over an array that returns short reads of random sizes, as
/// pipes and sockets do.
struct ChoppySource: ByteSource {
    let data: [UInt8]
    var position = 0
    var rng: TestRandom
    let maxRead: Int
    private(set) var reads = 0

    init(_ data: [UInt8], maxRead: Int, seed: UInt64) {
        self.data = data; self.maxRead = maxRead; rng = TestRandom(seed: seed)
    }

    mutating func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        let n = Swift.min(buffer.count, data.count - position, 1 + rng.below(maxRead))
        if n <= 0 { return 0 }
        data.withUnsafeBytes { src in
            buffer.baseAddress!.copyMemory(from: src.baseAddress! + position, byteCount: n)
        }
        position += n
        reads += 1
        return n
    }
}

struct Chunk: Equatable, CustomStringConvertible {
    var length: Int
    var id: BlobID
    var description: String { "\(length) \(id.hex)" }
}

/// Cuts a source with `ChunkStream`, the way backup does.
func streamChunks<S: ByteSource>(_ source: inout S, profile: ChunkerProfile, gear: GearTable) throws -> [Chunk] {
    let stream = ChunkStream(profile: profile, gear: gear)
    var out: [Chunk] = []
    try stream.forEachChunk(from: &source) { out.append(Chunk(length: $0.count, id: BlobID(hashing: $0))) }
    return out
}

func wholeChunks(_ data: [UInt8], profile: ChunkerProfile, gear: GearTable) -> [Chunk] {
    var offset = 0
    return FastCDC.chunkLengths(data, profile: profile, gear: gear).map { len in
        defer { offset += len }
        return data.withUnsafeBytes { Chunk(length: len, id: BlobID(hashing: UnsafeRawBufferPointer(rebasing: $0[offset..<offset + len]))) }
    }
}

final class ChunkerTests: XCTestCase {
    let gear = GearTable(seed: 23)
    static let tiny = ChunkerProfile(name: "tiny", min: 64, avg: 256, max: 1024)

    func assertBounds(_ lengths: [Int], total: Int, profile p: ChunkerProfile, _ what: String,
                      file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(lengths.reduce(0, +), total, "\(what): chunks do not add up to the input", file: file, line: line)
        for (i, len) in lengths.enumerated() {
            XCTAssertLessThanOrEqual(len, p.max, "\(what): chunk \(i) is longer than max \(p.max)", file: file, line: line)
            XCTAssertGreaterThan(len, 0, "\(what): empty chunk \(i)", file: file, line: line)
            if i < lengths.count - 1 {
                XCTAssertGreaterThanOrEqual(len, p.min, "\(what): chunk \(i) of \(lengths.count) is shorter than min \(p.min)", file: file, line: line)
            }
        }
    }

    func testChunksRespectMinAndMaxForEveryProfile() {
        var rng = TestRandom(seed: 1)
        for profile in ChunkerProfile.builtIn + [Self.tiny] {
            let size = Swift.min(20 * profile.max, 12 << 20)
            var pattern: [UInt8] = []
            pattern.reserveCapacity(size + 37)
            while pattern.count < size { pattern += (0..<37).map { UInt8($0 * 7) } }
            let inputs: [(String, [UInt8])] = [
                ("random", rng.bytes(size)),
                ("zeros", [UInt8](repeating: 0, count: size)),
                ("period-37 pattern", Array(pattern.prefix(size))),
                ("random plus a short tail", rng.bytes(3 * profile.max + 5)),
            ]
            for (name, data) in inputs {
                let lengths = FastCDC.chunkLengths(data, profile: profile, gear: gear)
                assertBounds(lengths, total: data.count, profile: profile, "\(profile.name) on \(name)")
            }
        }
    }

    func testRandomDataChunksAverageNearTheTarget() {
        var rng = TestRandom(seed: 2)
        for profile in [ChunkerProfile.dump021, .manifest, Self.tiny] {
            let data = rng.bytes(Swift.min(1000 * profile.avg, 16 << 20))
            let lengths = FastCDC.chunkLengths(data, profile: profile, gear: gear)
            let mean = Double(data.count) / Double(lengths.count)
            XCTAssertGreaterThan(mean, Double(profile.avg) * 0.5, "\(profile): mean chunk \(mean)")
            XCTAssertLessThan(mean, Double(profile.avg) * 2, "\(profile): mean chunk \(mean)")
            // Normalized chunking: few chunks are cut at the max.
            XCTAssertLessThan(lengths.filter { $0 == profile.max }.count, lengths.count / 20, "\(profile): too many forced cuts")
        }
    }

    func testEmptyAndTinyInputs() throws {
        XCTAssertEqual(FastCDC.chunkLengths([], profile: .tree, gear: gear), [])
        var empty = ChoppySource([], maxRead: 10, seed: 1)
        XCTAssertEqual(try streamChunks(&empty, profile: .tree, gear: gear), [])
        var tiny = ChoppySource([1, 2, 3], maxRead: 1, seed: 1)
        XCTAssertEqual(try streamChunks(&tiny, profile: .tree, gear: gear).map(\.length), [3])
        let exactlyMin = [UInt8](repeating: 7, count: ChunkerProfile.dump021.min)
        XCTAssertEqual(FastCDC.chunkLengths(exactlyMin, profile: .dump021, gear: gear), [ChunkerProfile.dump021.min])
    }

    /// The same bytes must give the same chunks however the reads split them.
    func testBoundariesDoNotDependOnReadSizes() throws {
        var rng = TestRandom(seed: 3)
        let cases: [(ChunkerProfile, Int, [Int])] = [
            (Self.tiny, 200_000, [1, 7, 300, 5000]),
            (.dump021, 3 << 20, [13, 4096, 100_000]),
            (.dump, 6 << 20, [13, 65_536, 300_000]),
            (.manifest, 3 << 20, [999, 1 << 20]),
            (.tree, 20 << 20, [65_536, 3 << 20]),
        ]
        for (profile, size, maxReads) in cases {
            let data = rng.bytes(size)
            let expected = wholeChunks(data, profile: profile, gear: gear)
            XCTAssertGreaterThan(expected.count, 1, "\(profile): test input too small")
            for maxRead in maxReads {
                var source = ChoppySource(data, maxRead: maxRead, seed: UInt64(maxRead))
                let got = try streamChunks(&source, profile: profile, gear: gear)
                XCTAssertEqual(got, expected, "\(profile) with reads of at most \(maxRead) bytes cut differently")
            }
        }
    }

    /// `FastCDC` is resumable: asked again with more bytes, it continues its
    /// scan and finds the same boundary as with all bytes at once.
    func testChunkerResumesWhenFedMoreBytes() {
        var rng = TestRandom(seed: 4)
        for profile in [Self.tiny, .dump021] {
            let data = rng.bytes(200 * profile.avg)
            let expected = FastCDC.chunkLengths(data, profile: profile, gear: gear)
            var c = FastCDC(profile: profile, gear: gear)
            var got: [Int] = []
            data.withUnsafeBufferPointer { buf in
                var start = 0, available = 0
                while start < buf.count {
                    available = Swift.min(buf.count - start, available + 1 + rng.below(profile.avg / 2))
                    let eof = start + available == buf.count
                    if let len = c.nextBoundary(buf.baseAddress! + start, count: available, eof: eof) {
                        got.append(len)
                        start += len
                        available -= len
                    }
                }
            }
            XCTAssertEqual(got, expected, "\(profile): feeding bytes bit by bit changed the boundaries")
        }
    }

    /// Shift resistance: bytes added in front (or in the middle) change only the chunks near them.
    func testInsertedBytesKeepMostChunkIDs() {
        var rng = TestRandom(seed: 5)
        let profile = ChunkerProfile.dump021
        let data = rng.bytes(4 << 20)
        let original = Set(wholeChunks(data, profile: profile, gear: gear).map(\.id))
        let edits: [(String, [UInt8])] = [
            ("1 byte prepended", [0x42] + data),
            ("100 bytes prepended", rng.bytes(100) + data),
            ("5000 bytes prepended", rng.bytes(5000) + data),
            ("3 bytes inserted in the middle", Array(data[..<(2 << 20)]) + [1, 2, 3] + Array(data[(2 << 20)...])),
            ("first 10 bytes removed", Array(data.dropFirst(10))),
        ]
        for (name, edited) in edits {
            let ids = wholeChunks(edited, profile: profile, gear: gear).map(\.id)
            let kept = ids.filter(original.contains).count
            XCTAssertGreaterThan(Double(kept), 0.97 * Double(original.count),
                                 "\(name): only \(kept) of \(original.count) chunks survived")
            XCTAssertLessThan(kept, ids.count, "\(name): no chunk changed, the edit was not seen")
        }
    }

    func testGearSeedChangesBoundaries() {
        var rng = TestRandom(seed: 6)
        let data = rng.bytes(1 << 20)
        let a = FastCDC.chunkLengths(data, profile: .dump021, gear: GearTable(seed: 23))
        let b = FastCDC.chunkLengths(data, profile: .dump021, gear: GearTable(seed: 24))
        let again = FastCDC.chunkLengths(data, profile: .dump021, gear: GearTable(seed: 23))
        XCTAssertEqual(a, again, "the same seed must cut the same way")
        XCTAssertNotEqual(a, b, "a different gear seed cut at the same places")
        XCTAssertNotEqual(GearTable(seed: 23)[0], GearTable(seed: 24)[0])
    }

    func testBuiltInProfilesAreValidAndBadOnesAreRejected() {
        for p in ChunkerProfile.builtIn { XCTAssertNoThrow(try p.validate(), "\(p)") }
        XCTAssertNoThrow(try Self.tiny.validate())
        let bad = [ChunkerProfile(name: "min≥avg", min: 8192, avg: 8192, max: 65536),
                   ChunkerProfile(name: "avg not a power of two", min: 1024, avg: 5000, max: 65536),
                   ChunkerProfile(name: "max too large", min: 1 << 20, avg: 4 << 20, max: 128 << 20),
                   ChunkerProfile(name: "min too small", min: 16, avg: 256, max: 1024),
                   ChunkerProfile(name: "max≤avg", min: 1024, avg: 8192, max: 8192)]
        for p in bad { XCTAssertThrowsError(try p.validate(), "\(p.name) was accepted") }
        XCTAssertEqual(ChunkerProfile.named("dump"), .dump)
        XCTAssertNil(ChunkerProfile.named("nope"))
    }

    /// rustic's `chunk_random` in our terms: 8 MiB from a fixed-seed generator,
    /// gear seed 23; the (length, id) list is checked in.
    func testChunkListsMatchGoldenFiles() throws {
        var rng = TestRandom(seed: 1)
        let data = rng.bytes(8 << 20)
        for profile in [ChunkerProfile.tree, .dump021] {
            var source = ChoppySource(data, maxRead: 1 << 20, seed: 9)
            let chunks = try streamChunks(&source, profile: profile, gear: gear)
            var text = """
            # FastCDC chunks of 8 MiB from SplitMix64(seed 1) as little-endian words, gear seed 23,
            # profile \(profile.name) (min \(profile.min), avg \(profile.avg), max \(profile.max)). One chunk a line: length SHA-256.

            """
            for c in chunks { text += "\(c)\n" }
            try Golden.check(text, name: "chunks-\(profile.name)-seed23.txt")
        }
    }
}
