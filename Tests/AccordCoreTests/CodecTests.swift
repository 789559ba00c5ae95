import Foundation
import XCTest
@testable import AccordCore
import AccordRuntime

/// Encode → decode round trips for every on-disk format, golden bytes for
/// the binary ones, and decoders fed truncated and mutated input: they must
/// throw (or return something consistent), never crash, never hang.
final class CodecTests: XCTestCase {
    var scratch = ""

    override func setUpWithError() throws {
        scratch = FileManager.default.temporaryDirectory.path + "/accord-codec-" + hexString(Sys.randomBytes(6))
        try Sys.mkdir(scratch, mode: 0o700)
    }

    override func tearDown() {
        try? FileManager.default.removeItem(atPath: scratch)
    }

    // MARK: Sample data

    func id(_ rng: inout TestRandom) -> ID { ID(w0: rng.next(), w1: rng.next(), w2: rng.next(), w3: rng.next()) }

    /// Entries of every kind, in tree order, with awkward values.
    func sampleEntries(_ rng: inout TestRandom, count: Int) -> [ManifestEntry] {
        var out: [ManifestEntry] = [ManifestEntry(kind: .directory, path: [0x2f], mode: 0o755)]
        for i in 0..<count {
            var name: RawPath = Array(String(format: "%06d", i).utf8)
            if i % 7 == 0 { name += [0x20, 0x0a, 0xff, 0xfe] }          // space, newline, not UTF-8
            let path: RawPath = [0x2f] + name
            let kind: ManifestEntry.Kind = [.file, .directory, .symlink, .hardlink, .stream][i % 5]
            var e = ManifestEntry(kind: kind, path: path, mode: UInt32(rng.below(0o10000)),
                                  uid: i % 3 == 0 ? UInt32.max : UInt32(rng.below(70_000)), gid: UInt32(rng.below(70_000)),
                                  mtimeSec: i % 4 == 0 ? -Int64(rng.below(1 << 40)) : Int64(rng.below(1 << 40)),
                                  mtimeNsec: Int64(rng.below(1_000_000_000)),
                                  ctimeSec: Int64.max - Int64(i), ctimeNsec: 999_999_999,
                                  inode: rng.next(), device: rng.next())
            // Valid as FORMAT.md's "Validity" asks: symlink targets without NUL, hard links to the
            // file 3 records back, blob counts their sizes allow (1 to 64 MiB per blob here).
            if kind == .symlink { e.linkTarget = rng.bytes(1 + rng.below(200)).map { $0 == 0 ? 1 : $0 } }
            if kind == .hardlink { e.linkTarget = out[out.count - 3].path }
            if i % 11 == 0 { e.xattrs = [.init(name: Array("user.a".utf8), value: rng.bytes(rng.below(50))),
                                         .init(name: Array("user.b".utf8), value: [])] }
            if kind == .file || kind == .stream {
                e.blobs = (0..<rng.below(12)).map { _ in id(&rng) }
                if !e.blobs.isEmpty { e.size = UInt64(e.blobs.count - 1) << 26 + 1 + rng.next() >> 38 }
            }
            out.append(e)
        }
        return out
    }

    func encodeStream(_ entries: [ManifestEntry]) -> [UInt8] {
        var w = ByteWriter()
        w.raw(ManifestCodec.magic)
        for e in entries { ManifestCodec.encode(e, into: &w) }
        return w.bytes
    }

    func readAll(_ reader: inout ManifestReader, limit: Int = 1_000_000) throws -> [ManifestEntry] {
        var out: [ManifestEntry] = []
        while let e = try reader.next() {
            out.append(e)
            if out.count > limit { XCTFail("manifest reader does not end"); break }
        }
        return out
    }

    /// A pack: blobs (zlib where it helps) then the tail; returns bytes and entries.
    func samplePack(_ rng: inout TestRandom, blobs: Int) -> (bytes: [UInt8], entries: [PackEntry], plain: [BlobID: [UInt8]]) {
        let deflater = Deflater(level: .default)
        var bytes: [UInt8] = [], entries: [PackEntry] = [], plain: [BlobID: [UInt8]] = [:]
        var out: [UInt8] = []
        for i in 0..<blobs {
            let data = i % 2 == 0 ? rng.bytes(1 + rng.below(3000)) : [UInt8](repeating: UInt8(i), count: 100 + rng.below(5000))
            let blobID = SHA256Hasher.hash(data)
            let c = data.withUnsafeBytes { deflater.compress($0, into: &out) }
            let stored = c == .zlib ? out : data
            entries.append(PackEntry(id: blobID, type: i % 3 == 0 ? .tree : .data, compression: c,
                                     rawLength: UInt32(data.count), storedLength: UInt32(stored.count), offset: UInt32(bytes.count)))
            bytes += stored
            plain[blobID] = data
        }
        return (bytes + PackFormat.encodeTail(entries), entries, plain)
    }

    func writeScratch(_ bytes: [UInt8], name: String = "pack") throws -> String {
        let path = scratch + "/" + name
        let fd = try Sys.open(path, Sys.O_WRONLY | Sys.O_CREAT | Sys.O_TRUNC)
        defer { Sys.close(fd) }
        try Sys.writeAll(fd, bytes, path: path)
        return path
    }

    // MARK: Integers

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

    // MARK: Packs

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
            let blobID = SHA256Hasher.hash(data)
            let c = data.withUnsafeBytes { deflater.compress($0, into: &out) }
            try (c == .zlib ? out : data).withUnsafeBytes {
                try writer.add(id: blobID, type: .data, compression: c, rawLength: data.count, stored: $0)
            }
            plain[blobID] = data
        }
        let packID = try writer.finish()
        let path = layout.packPath(packID)
        let fileBytes = try AtomicFile.read(path)
        XCTAssertEqual(SHA256Hasher.hash(fileBytes), packID, "a pack's name must be the SHA-256 of its bytes")
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
            PackEntry(id: SHA256Hasher.hash("first"), type: .data, compression: .none, rawLength: 5, storedLength: 5, offset: 0),
            PackEntry(id: SHA256Hasher.hash("second"), type: .tree, compression: .zlib, rawLength: 70_000, storedLength: 1234, offset: 5),
        ]
        try Golden.check(hexDump(PackFormat.encodeTail(entries)), name: "pack-tail-v1.hex")
    }

    // MARK: Compression

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

    /// Log-like lines of words and numbers from `rng`: compresses 3-5x, like the text backups see most.
    func text(_ rng: inout TestRandom, count: Int) -> [UInt8] {
        let words = ["INSERT", "INTO", "orders", "VALUES", "accord", "backup", "pack", "chunk", "user", "region",
                     "eu-west-1", "status", "ok", "error", "latency", "{\"id\":", "null", "true", "false", "\n"]
        var out: [UInt8] = []
        out.reserveCapacity(count + 32)
        while out.count < count {
            out += Array(words[rng.below(words.count)].utf8)
            out.append(rng.below(4) == 0 ? 0x2c : 0x20)
            if rng.below(3) == 0 { out += Array(String(rng.below(100_000)).utf8); out.append(0x20) }
        }
        return Array(out.prefix(count))
    }

    /// Checks a stored blob is a zlib stream (RFC 1950) that zlib itself and `Inflater` both inflate to `raw`.
    func assertValidZlib(_ stored: [UInt8], raw: [UInt8], _ what: String, file: StaticString = #filePath, line: UInt = #line) throws {
        guard stored.count >= 6 else { return XCTFail("\(what): \(stored.count) bytes cannot be a zlib stream", file: file, line: line) }
        let cmf = Int(stored[0]), flg = Int(stored[1])
        XCTAssertEqual(cmf, 0x78, "\(what): CMF must be deflate with a 32 KiB window", file: file, line: line)
        XCTAssertEqual((cmf * 256 + flg) % 31, 0, "\(what): FCHECK", file: file, line: line)
        XCTAssertEqual(flg & 0x20, 0, "\(what): no preset dictionary allowed", file: file, line: line)
        XCTAssertEqual(zlibInflate(stored, rawLength: raw.count), raw, "\(what): zlib does not inflate it to the input", file: file, line: line)
        var back: [UInt8] = []
        try stored.withUnsafeBytes { try Inflater().inflate($0, rawLength: raw.count, into: &back) }
        XCTAssertEqual(back, raw, "\(what): Inflater does not inflate it to the input", file: file, line: line)
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

    // MARK: Index

    func sampleIndex(_ rng: inout TestRandom, packs: Int) -> IndexFile {
        IndexFile(packs: (0..<packs).map { _ in
            var offset: UInt32 = 0
            return IndexFile.Pack(id: id(&rng), blobs: (0..<(1 + rng.below(30))).map { i in
                let stored = UInt32(1 + rng.below(1 << 20))
                defer { offset &+= stored }
                return PackEntry(id: id(&rng), type: i % 4 == 0 ? .tree : .data, compression: i % 2 == 0 ? .zlib : .none,
                                 rawLength: i % 2 == 0 ? stored * 3 : stored, storedLength: stored, offset: offset)
            })
        })
    }

    func testIndexFileRoundTrips() throws {
        var rng = TestRandom(seed: 16)
        for packs in [0, 1, 25] {
            let file = sampleIndex(&rng, packs: packs)
            let bytes = file.encode()
            XCTAssertEqual(try bytes.withUnsafeBytes { try IndexFile.decode($0) }, file)
        }
    }

    func testEveryTruncationOfAnIndexFileIsRejected() {
        var rng = TestRandom(seed: 17)
        let bytes = sampleIndex(&rng, packs: 3).encode()
        for n in 0..<bytes.count {
            XCTAssertThrowsError(try Array(bytes[..<n]).withUnsafeBytes { try IndexFile.decode($0) }, "index cut to \(n) bytes decoded")
        }
        XCTAssertThrowsError(try (bytes + [0]).withUnsafeBytes { try IndexFile.decode($0) }, "trailing byte accepted")
    }

    func testIndexDecoderSurvivesMutations() {
        var rng = TestRandom(seed: 18)
        let bytes = sampleIndex(&rng, packs: 4).encode()
        let started = Date()
        var rejected = 0
        for _ in 0..<4000 {
            let mutated = mutate(bytes, &rng)
            if let file = try? mutated.withUnsafeBytes({ try IndexFile.decode($0) }) {
                XCTAssertEqual(file.encode(), mutated, "an accepted index file does not re-encode to its bytes")
            } else {
                rejected += 1
            }
        }
        XCTAssertGreaterThan(rejected, 1000)
        XCTAssertLessThan(Date().timeIntervalSince(started), 60)
    }

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
        var ids: [ID] = []
        for i in 0..<30_000 {
            var x = id(&rng)
            if i % 3 == 0 { x.w0 = (x.w0 & 0x0000_ffff_ffff_ffff) | 0x1234_0000_0000_0000 }   // one crowded bucket
            if i % 5 == 0 { x.w0 = (x.w0 & 0x0000_0000_ffff_ffff) | 0xabcd_0042_0000_0000 }   // and equal next 16 bits
            ids.append(x)
        }
        let index = MasterIndex()
        // Expected: a whole copy over a delta copy, else the first added (lower pack, offset).
        var expected: [ID: (pack: Int, offset: UInt32, delta: Bool)] = [:]
        var packIDs: [PackID] = []
        for p in 0..<60 {
            let pack = id(&rng)
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
            var x = id(&rng)
            x.w0 = (x.w0 & 0x0000_ffff_ffff_ffff) | 0x1234_0000_0000_0000
            if expected[x] == nil { XCTAssertNil(index.lookup(x), "found \(x.short) in a crowded bucket, never added") }
        }
    }

    // MARK: Manifest

    func testManifestRoundTripsThroughWriterAndReader() throws {
        var rng = TestRandom(seed: 20)
        let entries = sampleEntries(&rng, count: 4000)
        var store: [BlobID: [UInt8]] = [:]
        let writer = ManifestWriter(gear: GearTable(seed: 23)) { bytes in
            let id = SHA256Hasher.hash(bytes)
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
            let ids = pieces.indices.map { ID(w0: 0, w1: 0, w2: 0, w3: UInt64($0)) }
            var reader = ManifestReader(blobs: ids) { id in
                // Mutated records may name chunk-list blobs: unknown ids fail to load.
                guard id.w0 == 0, id.w1 == 0, id.w2 == 0, id.w3 < UInt64(pieces.count) else { throw DecodeError.invalid("no such blob", offset: 0) }
                return pieces[Int(id.w3)]
            }
            XCTAssertEqual(try readAll(&reader), entries, "pieces of at most \(maxPiece) bytes")
        }
    }

    func testManifestWriterRejectsEntriesOutOfTreeOrder() throws {
        let writer = ManifestWriter(gear: GearTable(seed: 1)) { SHA256Hasher.hash($0) }
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
            var reader = ManifestReader(blobs: [ID(w0: 0, w1: 0, w2: 0, w3: 0), ID(w0: 0, w1: 0, w2: 0, w3: 1)]) { id in
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
                          size: 5, xattrs: [.init(name: Array("user.k".utf8), value: [0, 1])], blobs: [SHA256Hasher.hash("hello")]),
            ManifestEntry(kind: .stream, path: Array("/db/dump.sql".utf8), mode: 0o600, size: 0),
            ManifestEntry(kind: .symlink, path: Array("/l".utf8), mode: 0o777, linkTarget: Array("target".utf8)),
            ManifestEntry(kind: .hardlink, path: Array("/m".utf8), linkTarget: Array("/a b".utf8)),
        ]
        try Golden.check(hexDump(encodeStream(entries)), name: "manifest-v1.hex")
    }

    // MARK: Snapshots

    func sampleSnapshot(_ rng: inout TestRandom) -> Snapshot {
        var summary = Snapshot.Summary()
        summary.files = 3; summary.totalBytes = 1 << 40; summary.errors = ["/x/\u{FFFD}", "/y z"]; summary.durationSeconds = 1.25
        return Snapshot(time: Timestamp(seconds: 1_790_000_000, nanoseconds: 123_456_789), host: "node-1", username: "root",
                        plan: "paths", tags: ["daily", "ä"], paths: ["/opt/anaconda/storage"],
                        sources: [.init(kind: "path", path: "/opt/anaconda/storage", pathHex: nil, excludes: ["*.tmp"], profile: .tree),
                                  .init(kind: "command", path: "/db/all.sql", command: "pg_dumpall", profile: .dump)],
                        parent: id(&rng), manifest: [id(&rng), id(&rng)], summary: summary)
    }

    func testSnapshotJSONRoundTrips() throws {
        var rng = TestRandom(seed: 24)
        let s = sampleSnapshot(&rng)
        let bytes = try s.encode()
        let back = try Snapshot.decode(bytes, name: "test")
        XCTAssertEqual(try back.encode(), bytes)
        XCTAssertEqual(back.time, s.time)
        XCTAssertEqual(back.time.rfc3339, "2026-09-21T14:13:20.123456789Z")
        XCTAssertEqual(back.manifestIDs, s.manifestIDs)
        XCTAssertEqual(back.parentID, s.parentID)
        XCTAssertEqual(back.summary, s.summary)
        XCTAssertEqual(back.sources, s.sources)
    }

    func testTimestampParsesWhatItPrints() {
        for (sec, ns) in [(Int64(0), Int64(0)), (1_700_000_000, 1), (1_700_000_000, 999_999_999), (4_102_444_800, 500_000_000)] {
            let t = Timestamp(seconds: sec, nanoseconds: ns)
            XCTAssertEqual(Timestamp(rfc3339: t.rfc3339), t, t.rfc3339)
        }
        XCTAssertEqual(Timestamp(rfc3339: "2026-11-27T09:30:00Z")?.nanoseconds, 0)
        XCTAssertEqual(Timestamp(rfc3339: "2026-11-27T09:30:00.5Z")?.nanoseconds, 500_000_000)
        for bad in ["", "2026-11-27", "2026-11-27T09:30:00", "yyyy-11-27T09:30:00Z", "2026-11-27T09:30:00.x1Z"] {
            XCTAssertNil(Timestamp(rfc3339: bad), bad)
        }
    }

    func testSnapshotDecoderSurvivesMutatedJSON() {
        var rng = TestRandom(seed: 25)
        let bytes = (try? sampleSnapshot(&rng).encode()) ?? []
        XCTAssertFalse(bytes.isEmpty)
        let started = Date()
        var rejected = 0
        for _ in 0..<3000 {
            let mutated = mutate(bytes, &rng)
            if let s = try? Snapshot.decode(mutated, name: "fuzz") {
                XCTAssertEqual(s.manifestIDs.count, s.manifest.count, "accepted a snapshot with a bad manifest id")
                XCTAssertEqual(s.version, Snapshot.currentVersion)
            } else {
                rejected += 1
            }
        }
        XCTAssertGreaterThan(rejected, 1000)
        XCTAssertLessThan(Date().timeIntervalSince(started), 60)
    }
}

// MARK: Helpers

/// Seeded structural mutations: bit flips, byte stores, interesting 32-bit
/// values, truncation, deletion, insertion, duplication.
func mutate(_ input: [UInt8], _ rng: inout TestRandom) -> [UInt8] {
    var b = input
    for _ in 0..<(1 + rng.below(3)) {
        switch rng.below(9) {
        case 0 where !b.isEmpty: b[rng.below(b.count)] ^= UInt8(1) << UInt8(rng.below(8))
        case 1 where !b.isEmpty: b[rng.below(b.count)] = UInt8(truncatingIfNeeded: rng.next())
        case 2: b = Array(b.prefix(rng.below(b.count + 1)))
        case 3 where !b.isEmpty:
            let start = rng.below(b.count)
            b.removeSubrange(start..<Swift.min(b.count, start + 1 + rng.below(64)))
        case 4: b.insert(contentsOf: rng.bytes(1 + rng.below(16)), at: rng.below(b.count + 1))
        case 5 where !b.isEmpty:
            let start = rng.below(b.count)
            let piece = b[start..<Swift.min(b.count, start + 1 + rng.below(100))]
            b.insert(contentsOf: piece, at: rng.below(b.count + 1))
        case 6 where b.count >= 4:
            let values: [UInt32] = [0, 1, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff, 0xffff]
            let v = values[rng.below(values.count)]
            let at = rng.below(b.count - 3)
            for k in 0..<4 { b[at + k] = UInt8(truncatingIfNeeded: v >> (8 * UInt32(k))) }
        case 7: b += rng.bytes(1 + rng.below(32))
        default:
            if !b.isEmpty { b[rng.below(b.count)] = [0x00, 0xff, 0x80, 0x7f][rng.below(4)] }
        }
    }
    return b
}

/// 32 bytes a line, offset then hex, for golden files.
func hexDump(_ bytes: [UInt8]) -> String {
    var out = ""
    var i = 0
    while i < bytes.count {
        let line = bytes[i..<Swift.min(bytes.count, i + 32)]
        let offset = String(i, radix: 16)
        out += String(repeating: "0", count: max(0, 6 - offset.count)) + offset + "  " + hexString(line) + "\n"
        i += 32
    }
    return out
}
