import XCTest
import AccordCore
@testable import AccordSync

/// The frame decoder fed every split (STYLE.md item 13, after swift-nio's
/// `ByteToMessageDecoderVerifier`): one by one, in random pieces, all at once.
final class FrameDecoderTests: XCTestCase {
    /// One frame of every kind, with edge values.
    static let everyFrame: [Frame] = {
        var rng = SeededRandom(seed: 13)
        let ids = (0..<5).map { _ in SnapshotID(hashing: rng.bytes(16)) }
        return [
            .hello(version: Frame.protocolVersion, flags: Frame.flagAllowOtherRepository, config: Array(#"{"id":"abc","version":1}"#.utf8)),
            .hello(version: 0xffff, flags: 0, config: []),
            .helloOK(version: Frame.protocolVersion, config: Array("{}".utf8)),
            .have(ids.map(\.w0)),
            .have([]),
            .missing(count: 5, bitmap: [0b10101]),
            .missing(count: 9, bitmap: [0xff, 0x01]),
            .missing(count: 0, bitmap: []),
            .blobs([SyncBlob(index: 0, type: .data, compression: .none, rawLength: 300, stored: rng.bytes(300))]),
            .blobs([SyncBlob(index: 8191, type: .tree, compression: .zlib, rawLength: 1 << 20, stored: rng.bytes(20_000)),
                    SyncBlob(index: 0xffff, type: .data, compression: .none, rawLength: 0, stored: []),
                    SyncBlob(index: 7, type: .data, compression: .zlib, rawLength: UInt32(Frame.maxBlobLength), stored: rng.bytes(3))]),
            .blobs([]),
            .sealedBlobs([SealedSyncBlob(index: 3, type: .data, compression: .none, rawLength: 100, id: BlobID(hashing: [1]),
                                         storedHash: SHA256Hasher.hash([2]), stored: rng.bytes(128)),
                          SealedSyncBlob(index: 0xffff, type: .tree, compression: .delta, rawLength: UInt32(Frame.maxBlobLength), id: BlobID(hashing: [3]),
                                         storedHash: SHA256Hasher.hash([4]), stored: [])]),
            .sealedBlobs([]),
            .keyFile(Array(#"{"version":1}"#.utf8)),
            .keyFile([]),
            .keyOK(KeyID(hashing: [5])),
            .haveBases([BlobID(hashing: [6]), BlobID(hashing: [7])]),
            .haveBases([]),
            .flush,
            .flushed(packs: 3, blobs: 0xffff_ffff),
            .snapshot(Array(#"{"paths":["/x"]}"#.utf8)),
            .snapshotOK(ids[3]),
            .listSnapshots,
            .snapshotList([ids[4], ids[0]]),
            .snapshotList([]),
            .placeMarker,
            .markerOK,
            .bye,
            .error(code: 1, message: "blob 00ff was rejected: ünïcode ✓"),
            .error(code: 0, message: ""),
        ]
    }()

    static let stream: [UInt8] = everyFrame.flatMap { $0.encode() }
    /// Where each frame starts in `stream`.
    static let frameStarts: [Int] = Array(everyFrame.reduce(into: [0]) { $0.append($0.last! + $1.encode().count) }.dropLast())

    /// Feeds `stream` in pieces of the given sizes, draining after each piece.
    func decode(_ stream: [UInt8], pieces sizes: [Int]) throws -> [Frame] {
        var decoder = FrameDecoder()
        var out: [Frame] = []
        var at = 0
        for n in sizes {
            decoder.feed(stream[at..<min(stream.count, at + n)])
            at += n
            while let f = try decoder.next() { out.append(f) }
        }
        XCTAssertEqual(at, stream.count, "the pieces do not cover the stream")
        XCTAssertEqual(decoder.buffered, 0, "bytes left over after the last frame")
        return out
    }

    func testEveryFrameKindRoundTripsThroughEncodeAndDecode() throws {
        XCTAssertEqual(Set(Self.everyFrame.map { $0.kind.rawValue }).count, 19, "a Frame case is missing from everyFrame")
        for f in Self.everyFrame {
            let bytes = f.encode()
            XCTAssertEqual(Int(UInt32(bytes[0]) | UInt32(bytes[1]) << 8 | UInt32(bytes[2]) << 16 | UInt32(bytes[3]) << 24), bytes.count - 4,
                           "\(f.kind): the length prefix must count the bytes after it")
            XCTAssertEqual(bytes[4], f.kind.rawValue)
            let back = try bytes.withUnsafeBytes { try Frame.decode(kind: bytes[4], payload: UnsafeRawBufferPointer(rebasing: $0[5...])) }
            XCTAssertEqual(back, f)
        }
    }

    func testDecoderFedOneByteAtATimeYieldsEveryFrame() throws {
        let frames = try decode(Self.stream, pieces: Array(repeating: 1, count: Self.stream.count))
        XCTAssertEqual(frames, Self.everyFrame)
    }

    func testDecoderFedAllAtOnceYieldsEveryFrame() throws {
        XCTAssertEqual(try decode(Self.stream, pieces: [Self.stream.count]), Self.everyFrame)
    }

    func testDecoderFedRandomSplitsYieldsEveryFrame() throws {
        var rng = SeededRandom(seed: 9)
        for round in 0..<100 {
            var sizes: [Int] = []
            var left = Self.stream.count
            let maxPiece = [2, 7, 64, 1000, 100_000][round % 5]
            while left > 0 { let n = min(left, 1 + rng.int(below: maxPiece)); sizes.append(n); left -= n }
            XCTAssertEqual(try decode(Self.stream, pieces: sizes), Self.everyFrame, "round \(round), pieces \(sizes.prefix(20))…")
        }
    }

    func testDecoderSplitAtEveryOffsetYieldsEveryFrame() throws {
        // Two pieces, cut at every offset near a frame boundary (inside every
        // length prefix and kind byte, and the start of every payload), and every 61 bytes elsewhere.
        var cuts = Set(stride(from: 1, to: Self.stream.count, by: 61))
        for s in Self.frameStarts { for d in -3...48 where s + d > 0 && s + d < Self.stream.count { cuts.insert(s + d) } }
        for cut in cuts.sorted() {
            XCTAssertEqual(try decode(Self.stream, pieces: [cut, Self.stream.count - cut]), Self.everyFrame, "cut at \(cut)")
        }
    }

    func testPartialFrameIsNotAnError() throws {
        var decoder = FrameDecoder()
        let bytes = Frame.flushed(packs: 1, blobs: 2).encode()
        decoder.feed(bytes.prefix(bytes.count - 1))
        XCTAssertNil(try decoder.next())
        XCTAssertNil(try decoder.next(), "asking again without new bytes must still wait")
        decoder.feed(bytes.suffix(1))
        XCTAssertEqual(try decoder.next(), .flushed(packs: 1, blobs: 2))
        XCTAssertNil(try decoder.next())
    }

    func testFrameClaimingHugeLengthIsRejectedFromItsHeaderAlone() {
        // Only the 5 header bytes are fed: the decoder must refuse at once, not wait
        // for (or allocate) 4 GiB.
        for length: UInt32 in [0xffff_ffff, UInt32(Frame.maxLength) + 1, 1 << 31] {
            var decoder = FrameDecoder()
            decoder.feed(withUnsafeBytes(of: length.littleEndian) { Array($0) } + [Frame.Kind.blob.rawValue])
            XCTAssertThrowsError(try decoder.next(), "length \(length)") { error in
                guard case ProtocolError.frameTooLarge(let n) = error else { return XCTFail("wrong error \(error)") }
                XCTAssertEqual(n, Int(length))
                XCTAssert("\(error)".contains("exceeds"), "\(error)")
            }
            XCTAssertLessThan(decoder.buffered, 16)
        }
        // The largest legal length (a sealed 64 MiB blob) is accepted as "need more bytes".
        var decoder = FrameDecoder()
        decoder.feed(withUnsafeBytes(of: UInt32(Frame.maxLength).littleEndian) { Array($0) } + [Frame.Kind.sealedBlob.rawValue])
        XCTAssertNil(try decoder.next())
        // A plain `blobs` frame has the smaller limit of protocol 1, and a key file 64 KiB.
        for (kind, limit) in [(Frame.Kind.blob, Frame.maxPlainBlobsLength), (.keyFile, 1 + KeyFile.maxFileSize)] {
            var d = FrameDecoder()
            d.feed(withUnsafeBytes(of: UInt32(limit).littleEndian) { Array($0) } + [kind.rawValue])
            XCTAssertNil(try d.next(), "\(kind) at its limit")
            d = FrameDecoder()
            d.feed(withUnsafeBytes(of: UInt32(limit + 1).littleEndian) { Array($0) } + [kind.rawValue])
            XCTAssertThrowsError(try d.next(), "\(kind) above its limit") { error in
                guard case ProtocolError.frameTooLargeForKind(kind, limit + 1, limit: limit) = error else { return XCTFail("wrong error \(error)") }
            }
        }
    }

    func testZeroLengthFrameIsRejected() {
        var decoder = FrameDecoder()
        decoder.feed([0, 0, 0, 0, 1])
        XCTAssertThrowsError(try decoder.next())
    }

    func testIdListClaimingMoreIdsThanABatchIsRejectedBeforeReadingThem() {
        // A `have` whose count says 2^32-1 ids but carries 64 bytes.
        var payload: [UInt8] = [0xff, 0xff, 0xff, 0xff] + [UInt8](repeating: 7, count: 64)
        for kind in [Frame.Kind.have, .snapshotList] {
            XCTAssertThrowsError(try payload.withUnsafeBytes { try Frame.decode(kind: kind.rawValue, payload: $0) }) { error in
                XCTAssert("\(error)".contains("malformed"), "\(error)")
            }
        }
        payload = [0xff, 0xff, 0, 0, 1]  // missing: 65535 ids, 1 bitmap byte
        XCTAssertThrowsError(try payload.withUnsafeBytes { try Frame.decode(kind: Frame.Kind.missing.rawValue, payload: $0) })
    }

    func testUnknownKindAndTrailingBytesAreRejected() {
        var decoder = FrameDecoder()
        decoder.feed([1, 0, 0, 0, 0x55])
        XCTAssertThrowsError(try decoder.next()) { XCTAssert("\($0)".contains("unknown frame kind 85"), "\($0)") }
        var d2 = FrameDecoder()
        d2.feed([2, 0, 0, 0, Frame.Kind.bye.rawValue, 0])
        XCTAssertThrowsError(try d2.next()) { XCTAssert("\($0)".contains("trailing"), "\($0)") }
    }

    func testMutatedStreamsNeverCrashTheDecoder() {
        // Seeded random mutations: flipped bits, overwritten bytes (often in a
        // length or count), truncations, insertions. Errors are fine; a trap is not.
        var rng = SeededRandom(seed: 0xacc0_5eed)
        let base = Self.stream
        var decodedFrames = 0, errors = 0
        for _ in 0..<3000 {
            var s = base
            for _ in 0..<(1 + rng.int(below: 4)) {
                switch rng.int(below: 5) {
                case 0: s[rng.int(below: s.count)] ^= UInt8(1) << UInt8(rng.int(below: 8))
                case 1: s[rng.int(below: s.count)] = UInt8(truncatingIfNeeded: rng.next())
                case 2: s.removeLast(rng.int(below: min(200, s.count)))
                case 3: s.insert(UInt8(truncatingIfNeeded: rng.next()), at: rng.int(below: s.count + 1))
                default:
                    // Aim at a frame's 4-byte length prefix.
                    let at = Self.frameStarts[rng.int(below: Self.frameStarts.count)]
                    if at + 4 <= s.count { s[at + rng.int(below: 4)] = UInt8(truncatingIfNeeded: rng.next()) }
                }
                if s.isEmpty { s = [0] }
            }
            var decoder = FrameDecoder()
            var at = 0
            do {
                while at < s.count {
                    let n = min(s.count - at, 1 + rng.int(below: 600))
                    decoder.feed(s[at..<(at + n)])
                    at += n
                    while let f = try decoder.next() { decodedFrames += 1; _ = f.encode() }
                }
            } catch {
                errors += 1
                XCTAssertFalse("\(error)".isEmpty)
            }
        }
        XCTAssertGreaterThan(errors, 100, "mutations should mostly be detected")
        XCTAssertGreaterThan(decodedFrames, 0)
    }
}
