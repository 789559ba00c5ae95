import Foundation
import XCTest
@testable import AccordCore

/// Manifest records: writer/reader round trips over any split of the stream,
/// tree order, truncations and mutations rejected, golden encoding.
final class ManifestCodecTests: CodecTestCase {
    func testManifestRoundTripsThroughWriterAndReader() throws {
        var rng = TestRandom(seed: 20)
        let entries = sampleEntries(&rng, count: 4000)
        var store: [BlobID: [UInt8]] = [:]
        let writer = ManifestWriter(gear: GearTable(seed: 23)) { bytes in
            let id = BlobID(hashing: bytes)
            store[id] = Array(bytes)
            return id
        }
        for e in entries { try writer.append(e) }
        let ids = try writer.finish()
        XCTAssertGreaterThan(ids.count, 2, "a large manifest should span several blobs")
        for id in ids { XCTAssertLessThanOrEqual(store[id]!.count, ChunkerProfile.manifest.max) }
        var reader = ManifestReader(blobs: ids) { store[$0]! }
        XCTAssertEqual(try readAll(&reader), entries)
        XCTAssertEqual(writer.entryCount, entries.count)
    }

    func testManifestReaderDecodesAnySplitOfTheStream() throws {
        var rng = TestRandom(seed: 21)
        let entries = sampleEntries(&rng, count: 300)
        let stream = encodeStream(entries)
        for maxPiece in [1, 3, 64, 5000, stream.count] {
            var pieces: [[UInt8]] = []
            var i = 0
            while i < stream.count {
                let n = Swift.min(stream.count - i, 1 + rng.below(maxPiece))
                pieces.append(Array(stream[i..<i + n])); i += n
            }
            let ids = pieces.indices.map { BlobID(w0: 0, w1: 0, w2: 0, w3: UInt64($0)) }
            var reader = ManifestReader(blobs: ids) { id in
                // Mutated records may name chunk-list blobs: unknown ids fail to load.
                guard id.w0 == 0, id.w1 == 0, id.w2 == 0, id.w3 < UInt64(pieces.count) else { throw DecodeError.invalid("no such blob", offset: 0) }
                return pieces[Int(id.w3)]
            }
            XCTAssertEqual(try readAll(&reader), entries, "pieces of at most \(maxPiece) bytes")
        }
    }

    func testManifestWriterRejectsEntriesOutOfTreeOrder() throws {
        let writer = ManifestWriter(gear: GearTable(seed: 1)) { BlobID(hashing: $0) }
        try writer.append(ManifestEntry(kind: .directory, path: Array("/a".utf8)))
        try writer.append(ManifestEntry(kind: .file, path: Array("/a/b".utf8)))
        XCTAssertThrowsError(try writer.append(ManifestEntry(kind: .file, path: Array("/a/b".utf8))), "duplicate path accepted")
        XCTAssertThrowsError(try writer.append(ManifestEntry(kind: .file, path: Array("/a".utf8))), "path going back accepted")
        try writer.append(ManifestEntry(kind: .file, path: Array("/a-c".utf8)))
    }

    func testTreeOrderPutsASubtreeBeforeTheNextSibling() {
        let paths = ["/a", "/a/b", "/a/b/c", "/a-c", "/a b", "/a!", "/ab", "/b"].map { Array($0.utf8) }
        let sorted = paths.shuffled().sorted(by: ManifestEntry.treeOrder)
        XCTAssertEqual(sorted.map(\.displayPath), ["/a", "/a/b", "/a/b/c", "/a b", "/a!", "/a-c", "/ab", "/b"])
        XCTAssertEqual(ManifestEntry.compareTreeOrder(Array("/x".utf8), Array("/x".utf8)), 0)
    }

    /// `compareTreeOrder` skips common prefixes 8 bytes at a time: it must
    /// agree with a byte-by-byte compare ("/" lowest) wherever the first
    /// difference falls (inside or past a word, or one path a prefix of the
    /// other) and whatever the bytes are ("/", NUL, bytes above 0x7f).
    func testTreeOrderCompareAgreesWithAByteByByteCompareAtEveryOffset() {
        func reference(_ a: [UInt8], _ b: [UInt8]) -> Int {
            for (x, y) in zip(a, b) where x != y {
                return (x == 0x2f ? -1 : Int(x)) < (y == 0x2f ? -1 : Int(y)) ? -1 : 1
            }
            return a.count == b.count ? 0 : (a.count < b.count ? -1 : 1)
        }
        var rng = TestRandom(seed: 0x7EE)
        let alphabet: [UInt8] = [0x00, 0x2e, 0x2f, 0x30, 0x61, 0x7f, 0x80, 0xff]
        var checked = 0
        for length in 0...40 {
            let base = (0..<length).map { _ in alphabet[Int(rng.next() % UInt64(alphabet.count))] }
            for at in 0...length {
                for other in alphabet {
                    var b = Array(base[..<at])
                    if at < length { b.append(other) }
                    b += (0..<Int(rng.next() % 12)).map { _ in alphabet[Int(rng.next() % UInt64(alphabet.count))] }
                    for (x, y) in [(base, b), (b, base), (base, base)] {
                        XCTAssertEqual(ManifestEntry.compareTreeOrder(x, y), reference(x, y), "\(x) vs \(y)")
                        checked += 1
                    }
                }
            }
        }
        XCTAssertGreaterThan(checked, 10_000)
    }

    func testEveryTruncationOfAManifestRecordIsRejected() throws {
        var rng = TestRandom(seed: 22)
        for e in sampleEntries(&rng, count: 30) {
            var w = ByteWriter()
            ManifestCodec.encode(e, into: &w)
            let bytes = w.bytes
            let record = try bytes.withUnsafeBytes { buf -> [UInt8] in
                var r = ByteReader(buf)
                let n = try r.count(max: buf.count)
                return Array(bytes[r.offset..<r.offset + n])
            }
            XCTAssertEqual(try record.withUnsafeBytes { try ManifestCodec.decodeRecord($0) }, e)
            for n in 0..<record.count {
                XCTAssertThrowsError(try Array(record[..<n]).withUnsafeBytes { try ManifestCodec.decodeRecord($0) },
                                     "record of \(e.path.displayPath) cut to \(n) bytes decoded")
            }
        }
    }

    func testManifestReaderSurvivesMutatedStreams() {
        var rng = TestRandom(seed: 23)
        let entries = sampleEntries(&rng, count: 40)
        let stream = encodeStream(entries)
        let started = Date()
        var failed = 0
        for _ in 0..<3000 {
            let mutated = mutate(stream, &rng)
            let cut = rng.below(mutated.count + 1)
            let pieces = [Array(mutated[..<cut]), Array(mutated[cut...])]
            var reader = ManifestReader(blobs: [BlobID(w0: 0, w1: 0, w2: 0, w3: 0), BlobID(w0: 0, w1: 0, w2: 0, w3: 1)]) { id in
                // Mutated records may name chunk-list blobs: unknown ids fail to load.
                guard id.w0 == 0, id.w1 == 0, id.w2 == 0, id.w3 < UInt64(pieces.count) else { throw DecodeError.invalid("no such blob", offset: 0) }
                return pieces[Int(id.w3)]
            }
            do { _ = try readAll(&reader, limit: 100_000) } catch { failed += 1 }
        }
        XCTAssertGreaterThan(failed, 1000)
        XCTAssertLessThan(Date().timeIntervalSince(started), 60)
    }

    func testManifestEncodingMatchesGolden() throws {
        let entries = [
            ManifestEntry(kind: .directory, path: [0x2f], mode: 0o755, mtimeSec: 1_700_000_000, mtimeNsec: 5),
            ManifestEntry(kind: .file, path: Array("/a b\n".utf8) + [0xff], mode: 0o4755, uid: 1234, gid: 5678,
                          mtimeSec: -1, mtimeNsec: 999_999_999, ctimeSec: 1_700_000_001, ctimeNsec: 1, inode: 42, device: 2049,
                          size: 5, xattrs: [.init(name: Array("user.k".utf8), value: [0, 1])], blobs: [BlobID(hashing: "hello")]),
            ManifestEntry(kind: .stream, path: Array("/db/dump.sql".utf8), mode: 0o600, size: 0),
            ManifestEntry(kind: .symlink, path: Array("/l".utf8), mode: 0o777, linkTarget: Array("target".utf8)),
            ManifestEntry(kind: .hardlink, path: Array("/m".utf8), linkTarget: Array("/a b".utf8)),
        ]
        try Golden.check(hexDump(encodeStream(entries)), name: "manifest-v1.hex")
    }
}
