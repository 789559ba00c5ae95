import Foundation
import AccordRuntime
import XCTest
@testable import AccordCore

/// Pack files: header and tail round trips, the writer names a pack by its
/// hash, every truncation is rejected, readers and the blob decoder survive
/// mutated bytes, and the tail matches the golden file.
final class PackTests: CodecTestCase {
    func testPackHeaderRoundTripsThroughAFile() throws {
        var rng = TestRandom(seed: 10)
        let (bytes, entries, _) = samplePack(&rng, blobs: 40)
        let path = try writeScratch(bytes)
        XCTAssertEqual(try PackReader.readHeader(path: path), entries)
        XCTAssertTrue(entries.contains { $0.compression == .zlib } && entries.contains { $0.compression == .none },
                      "test setup: want both compressions")
    }

    func testEmptyPackRoundTrips() throws {
        let path = try writeScratch(PackFormat.encodeTail([]))
        XCTAssertEqual(try PackReader.readHeader(path: path), [])
    }

    func testPackWriterWritesPackNamedByItsHashThatReadsBack() throws {
        var rng = TestRandom(seed: 11)
        let layout = RepositoryLayout(root: scratch + "/repo")
        try Sys.mkdir(layout.root, mode: 0o700)
        for d in layout.subdirectories { try Sys.mkdir(d, mode: 0o700) }
        let writer = try PackWriter(layout: layout)
        let deflater = Deflater(level: .default)
        var plain: [BlobID: [UInt8]] = [:]
        var out: [UInt8] = []
        for i in 0..<20 {
            let data = i % 2 == 0 ? rng.bytes(10_000) : Array(String(repeating: "accord \(i) ", count: 500).utf8)
            let blobID = BlobID(hashing: data)
            let c = data.withUnsafeBytes { deflater.compress($0, into: &out) }
            try (c == .zlib ? out : data).withUnsafeBytes {
                try writer.add(id: blobID, type: .data, compression: c, rawLength: data.count, stored: $0)
            }
            plain[blobID] = data
        }
        let packID = try writer.finish()
        let path = layout.packPath(packID)
        let fileBytes = try AtomicFile.read(path)
        XCTAssertEqual(PackID(hashing: fileBytes), packID, "a pack's name must be the SHA-256 of its bytes")
        XCTAssertEqual(fileBytes.count, writer.size)
        let header = try PackReader.readHeader(path: path)
        XCTAssertEqual(header, writer.entries)
        let inflater = Inflater()
        var decoded: [UInt8] = []
        for e in header {
            try fileBytes.withUnsafeBytes { buf in
                try BlobDecoder.decode(stored: UnsafeRawBufferPointer(rebasing: buf[Int(e.offset)..<Int(e.offset + e.storedLength)]),
                                       id: e.id, compression: e.compression, rawLength: Int(e.rawLength), inflater: inflater, into: &decoded)
            }
            XCTAssertEqual(decoded, plain[e.id])
        }
        XCTAssertEqual(try Sys.listDirectory(layout.tmpDirectory), [], "the temporary pack file was left behind")
    }

    func testEveryTruncationOfAPackIsRejected() throws {
        var rng = TestRandom(seed: 12)
        let (bytes, _, _) = samplePack(&rng, blobs: 6)
        // Every cut in the header and trailer, every 13th in the blobs.
        let headerStart = bytes.count - 12 - 8 - 6 * PackFormat.entrySize
        for n in 0..<bytes.count where n >= headerStart - 1 || n % 13 == 0 {
            let path = try writeScratch(Array(bytes[..<n]))
            XCTAssertThrowsError(try PackReader.readHeader(path: path), "a pack cut to \(n) of \(bytes.count) bytes was accepted")
        }
    }

    func testPackReaderSurvivesMutatedPacks() throws {
        var rng = TestRandom(seed: 13)
        let (bytes, _, _) = samplePack(&rng, blobs: 8)
        let started = Date()
        var rejected = 0
        let iterations = 3000
        for _ in 0..<iterations {
            let mutated = mutate(bytes, &rng)
            let path = try writeScratch(mutated)
            guard let entries = try? PackReader.readHeader(path: path) else { rejected += 1; continue }
            // Accepted: then it must describe the file consistently.
            let headerLength = 8 + entries.count * PackFormat.entrySize
            var offset = 0
            for e in entries {
                XCTAssertEqual(Int(e.offset), offset, "accepted header with overlapping or gapped blobs")
                if e.compression == .none { XCTAssertEqual(e.rawLength, e.storedLength) }
                offset += Int(e.storedLength)
            }
            XCTAssertEqual(offset + headerLength + PackFormat.trailerSize, mutated.count, "accepted header does not cover the pack")
        }
        XCTAssertGreaterThan(rejected, iterations / 4, "mutations were rarely detected")
        XCTAssertLessThan(Date().timeIntervalSince(started), 60)
    }

    func testBlobDecoderRejectsAlteredBlobs() throws {
        var rng = TestRandom(seed: 14)
        let (bytes, entries, plain) = samplePack(&rng, blobs: 10)
        let inflater = Inflater()
        var out: [UInt8] = []
        let started = Date()
        for i in 0..<3000 {
            let e = entries[i % entries.count]
            let stored = Array(bytes[Int(e.offset)..<Int(e.offset + e.storedLength)])
            let mutated = mutate(stored, &rng)
            do {
                try mutated.withUnsafeBytes {
                    try BlobDecoder.decode(stored: $0, id: e.id, compression: e.compression, rawLength: Int(e.rawLength), inflater: inflater, into: &out)
                }
                XCTAssertEqual(out, plain[e.id], "a mutated blob decoded to different bytes without an error")
            } catch {
                XCTAssertTrue("\(error)".contains(e.id.hex), "the error does not name the blob: \(error)")
            }
        }
        // A wrong raw length is an error too.
        let z = try XCTUnwrap(entries.first { $0.compression == .zlib })
        let stored = Array(bytes[Int(z.offset)..<Int(z.offset + z.storedLength)])
        for wrong in [Int(z.rawLength) - 1, Int(z.rawLength) + 1, 0] {
            XCTAssertThrowsError(try stored.withUnsafeBytes {
                try BlobDecoder.decode(stored: $0, id: z.id, compression: .zlib, rawLength: wrong, inflater: inflater, into: &out)
            }, "inflated with raw length \(wrong) instead of \(z.rawLength)")
        }
        XCTAssertLessThan(Date().timeIntervalSince(started), 60)
    }

    func testPackTailMatchesGolden() throws {
        let entries = [
            PackEntry(id: BlobID(hashing: "first"), type: .data, compression: .none, rawLength: 5, storedLength: 5, offset: 0),
            PackEntry(id: BlobID(hashing: "second"), type: .tree, compression: .zlib, rawLength: 70_000, storedLength: 1234, offset: 5),
        ]
        try Golden.check(hexDump(PackFormat.encodeTail(entries)), name: "pack-tail-v1.hex")
    }
}
