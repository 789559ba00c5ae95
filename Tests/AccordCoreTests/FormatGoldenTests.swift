import Foundation
import XCTest
@testable import AccordCore
import AccordRuntime

/// The worked example of FORMAT.md, byte for byte.
///
/// Builds a tiny repository content deterministically: two data blobs in one
/// pack (written by `PackWriter` into a temporary repository layout), the
/// index file for that pack, and a two-entry manifest stream (gear seed 23).
/// Renders each file as `hexdump -Cv` does, followed by a map of every field
/// that is produced by a reader written from FORMAT.md alone (`SpecReader`
/// below: it shares no decoding code with AccordCore), and compares the text
/// with `Golden/format-example.txt` and with the example block in FORMAT.md,
/// so neither the code nor the document can drift.
///
/// `ACCORD_UPDATE_GOLDEN=1 swift test --filter FormatGoldenTests` rewrites the
/// golden file and the FORMAT.md block in the source tree; read the diff.
///
/// The compressed blob is whatever `Deflater` writes at level 6: another
/// compressor (zlib, zlib-ng, libdeflate) changes its stored bytes, the pack
/// id and the index name, though no blob id (FORMAT.md, "Blob types and
/// compression"); regenerate and check that the prose around the FORMAT.md
/// block still holds.
final class FormatGoldenTests: XCTestCase {
    static let goldenFile = "format-example.txt"
    static let blockStart = "<!-- golden: Tests/AccordCoreTests/Golden/format-example.txt"
    static let blockEnd = "<!-- end golden -->"

    static let hello = Array("hello\n".utf8)
    static let text = Array(String(repeating: "accord backup: chunk, hash, pack.\n", count: 6).utf8)

    // MARK: The tests

    func testExampleMatchesGoldenFile() throws {
        let actual = try Self.renderExample()
        if Self.updating {
            try Data(actual.utf8).write(to: Self.sourceGoldenURL)
            print("FormatGoldenTests: rewrote \(Self.sourceGoldenURL.path)")
            return
        }
        guard let url = Bundle.module.resourceURL?.appendingPathComponent("Golden/\(Self.goldenFile)"),
              let expected = try? String(contentsOf: url, encoding: .utf8) else {
            XCTFail("Golden/\(Self.goldenFile) is missing from the test bundle: run ACCORD_UPDATE_GOLDEN=1 swift test --filter FormatGoldenTests")
            return
        }
        if actual != expected {
            let out = FileManager.default.temporaryDirectory.appendingPathComponent("format-example.actual.txt")
            try? Data(actual.utf8).write(to: out)
            XCTFail("the on-disk format changed: `diff \(Self.sourceGoldenURL.path) \(out.path)`; "
                    + "if the change is meant, bump the format (FORMAT.md, \"Versioning\") and rerun with ACCORD_UPDATE_GOLDEN=1")
        }
    }

    func testFormatMdShowsTheGoldenExample() throws {
        let actual = try Self.renderExample()
        let doc = try String(contentsOf: Self.formatMdURL, encoding: .utf8)
        guard let block = Self.exampleBlock(in: doc) else {
            XCTFail("FORMAT.md has no example block between `\(Self.blockStart) …` + ```text and ``` + `\(Self.blockEnd)`")
            return
        }
        if Self.updating {
            let updated = String(doc[..<block.lowerBound]) + actual + String(doc[block.upperBound...])
            if updated != doc { try Data(updated.utf8).write(to: Self.formatMdURL) }
            print("FormatGoldenTests: rewrote the example block of \(Self.formatMdURL.path)")
            return
        }
        if String(doc[block]) != actual {
            let out = FileManager.default.temporaryDirectory.appendingPathComponent("format-example.actual.txt")
            try? Data(actual.utf8).write(to: out)
            XCTFail("FORMAT.md's worked example differs from the bytes the code writes (compare its block with \(out.path)): "
                    + "rerun with ACCORD_UPDATE_GOLDEN=1 and check that the prose around the block still holds")
        }
    }

    /// The reader built from FORMAT.md agrees with what the code wrote.
    func testExampleDecodesByTheRulesOfFormatMd() throws {
        let e = try Self.buildExample()
        // Names are SHA-256 of the file bytes.
        XCTAssertEqual(PackID(hashing: e.pack), e.packID)
        XCTAssertEqual(IndexID(hashing: e.index), e.indexID)
        XCTAssertEqual(BlobID(hashing: e.manifest), e.manifestID)

        var pack = SpecReader(e.pack)
        let header = try pack.pack()
        XCTAssertEqual(header.count, 2)
        XCTAssertEqual(header.map(\.id), [SHA256Hasher.hash(Self.hello), SHA256Hasher.hash(Self.text)])
        XCTAssertEqual(header.map(\.compression), [0, 1])
        XCTAssertEqual(header.map(\.raw), [6, UInt32(Self.text.count)])
        // Stored bytes, inflated, hash to the id.
        for h in header {
            let stored = Array(e.pack[Int(h.offset)..<Int(h.offset + h.stored)])
            var plain: [UInt8] = []
            if h.compression == 1 {
                XCTAssertEqual(Array(stored.prefix(2)), [0x78, 0x9c], "zlib header of level 6")
                try stored.withUnsafeBytes { try Inflater().inflate($0, rawLength: Int(h.raw), into: &plain) }
            } else {
                plain = stored
            }
            XCTAssertEqual(SHA256Hasher.hash(plain), h.id)
        }
        // The code's own decoder agrees.
        let decoded = try e.pack.withUnsafeBytes { buf -> [PackEntry] in
            let hl = try PackFormat.decodeTrailer(UnsafeRawBufferPointer(rebasing: buf[(buf.count - 12)...]), packSize: buf.count)
            return try PackFormat.decodeHeader(UnsafeRawBufferPointer(rebasing: buf[(buf.count - 12 - hl)..<(buf.count - 12)]), packSize: buf.count)
        }
        XCTAssertEqual(decoded.map(\.offset), header.map(\.offset))

        var index = SpecReader(e.index)
        let indexed = try index.index()
        XCTAssertEqual(indexed.count, 1)
        XCTAssertEqual(indexed.first?.pack, e.packID.digest)
        XCTAssertEqual(indexed.first?.blobs, header)

        var manifest = SpecReader(e.manifest)
        let entries = try manifest.manifest()
        XCTAssertEqual(entries, Self.manifestEntries.map { SpecReader.Record($0) })
    }

    func testTreeOrderIsComponentWiseByteOrder() {
        // FORMAT.md: "/" ranks below every other byte, which is the same as
        // comparing the lists of path components, each byte by byte.
        let paths = ["/", "/a", "/a/b", "/a/b/c", "/a-c", "/a.b", "/a0", "/ab", "/b", "/b/\u{7f}", "/é"]
        for x in paths {
            for y in paths {
                let a = Array(x.utf8), b = Array(y.utf8)
                let expected = SpecReader.componentOrder(a, b)
                XCTAssertEqual(ManifestEntry.compareTreeOrder(a, b), expected, "\(x) vs \(y)")
            }
        }
        XCTAssertEqual(paths, paths.sorted { ManifestEntry.treeOrder(Array($0.utf8), Array($1.utf8)) })
    }

    func testGearTableAndChunkerFollowTheFormatMdPseudoCode() {
        let gear = GearTable(seed: 23)
        let words = SpecReader.gearTable(seed: 23)
        for i in 0..<256 { XCTAssertEqual(gear[i], words[i], "gear[\(i)]") }
        let data = SpecReader.splitMix64Bytes(seed: 42, count: Self.chunkInputSize)
        XCTAssertEqual(FastCDC.chunkLengths(data, profile: .dump021, gear: gear),
                       SpecReader.chunkLengths(data, profile: .dump021, gear: words))
        // Boundaries do not depend on how the input arrives.
        var c = FastCDC(profile: .dump021, gear: gear)
        var lengths: [Int] = [], start = 0, available = 0
        data.withUnsafeBufferPointer { buf in
            while start < buf.count {
                available = Swift.min(buf.count, available + 1000)
                if let n = c.nextBoundary(buf.baseAddress! + start, count: available - start, eof: available == buf.count) {
                    lengths.append(n); start += n
                }
            }
        }
        XCTAssertEqual(lengths, FastCDC.chunkLengths(data, profile: .dump021, gear: gear))
    }

    // MARK: Building the example

    static let chunkInputSize = 128 << 10

    static var manifestEntries: [ManifestEntry] {
        let dir = ManifestEntry(kind: .directory, path: Array("/srv".utf8), mode: 0o755, uid: 0, gid: 0,
                                mtimeSec: 1_700_000_000, mtimeNsec: 0, ctimeSec: 1_700_000_000, ctimeNsec: 0,
                                inode: 2, device: 2049, size: 0)
        let file = ManifestEntry(kind: .file, path: Array("/srv/notes.txt".utf8), mode: 0o644, uid: 1000, gid: 1000,
                                 mtimeSec: 1_700_000_000, mtimeNsec: 123_456_789, ctimeSec: 1_700_000_100, ctimeNsec: 500_000_000,
                                 inode: 131, device: 2049, size: UInt64(hello.count + text.count),
                                 xattrs: [.init(name: Array("user.origin".utf8), value: Array("example".utf8))],
                                 blobs: [BlobID(hashing: hello), BlobID(hashing: text)])
        return [dir, file]
    }

    struct Example {
        var pack: [UInt8], packID: PackID
        var index: [UInt8], indexID: IndexID
        var manifest: [UInt8], manifestID: BlobID
        var textStoredLength: Int
    }

    static func buildExample() throws -> Example {
        let root = FileManager.default.temporaryDirectory
            .appendingPathComponent("accord-format-golden-\(UUID().uuidString)").path
        let layout = RepositoryLayout(root: root)
        try Sys.mkdir(root, mode: 0o700)
        defer { try? FileManager.default.removeItem(atPath: root) }
        try Sys.mkdir(layout.tmpDirectory, mode: 0o700)
        try Sys.mkdir(layout.dataDirectory, mode: 0o700)

        // Blobs: "hello\n" is under 64 bytes, so stored raw; the text deflates.
        let deflater = Deflater(level: CompressionLevel(6))
        var compressed: [UInt8] = []
        let helloComp = hello.withUnsafeBytes { deflater.compress($0, into: &compressed) }
        precondition(helloComp == .none)
        let textComp = text.withUnsafeBytes { deflater.compress($0, into: &compressed) }
        precondition(textComp == .zlib)

        let writer = try PackWriter(layout: layout)
        try hello.withUnsafeBytes {
            try writer.add(id: BlobID(hashing: hello), type: .data, compression: .none, rawLength: hello.count, stored: $0)
        }
        try compressed.withUnsafeBytes {
            try writer.add(id: BlobID(hashing: text), type: .data, compression: .zlib, rawLength: text.count, stored: $0)
        }
        let packID = try writer.finish()
        let pack = try AtomicFile.read(layout.packPath(packID))

        let index = IndexFile(packs: [.init(id: packID, blobs: writer.entries)]).encode()

        var stored: [[UInt8]] = []
        let manifestWriter = ManifestWriter(gear: GearTable(seed: 23)) { bytes in
            stored.append(Array(bytes))
            return BlobID(hashing: bytes)
        }
        for e in manifestEntries { try manifestWriter.append(e) }
        let ids = try manifestWriter.finish()
        precondition(ids.count == 1 && stored.count == 1, "the example manifest is one blob")

        return Example(pack: pack, packID: packID, index: index, indexID: IndexID(hashing: index),
                       manifest: stored[0], manifestID: ids[0], textStoredLength: compressed.count)
    }

    // MARK: Rendering

    static func renderExample() throws -> String {
        let e = try buildExample()
        var out = """
        Accord repository format 2: worked example
        Written by Tests/AccordCoreTests/FormatGoldenTests.swift; offsets in hex, lengths in decimal.

        blob \(BlobID(hashing: hello).hex)
             "hello\\n", 6 bytes, type 0 (data): under 64 bytes, stored raw (compression 0)
        blob \(BlobID(hashing: text).hex)
             "accord backup: chunk, hash, pack.\\n" x 6, \(text.count) bytes, type 0 (data): level 6 -> \(e.textStoredLength) bytes (compression 1, zlib format)


        """
        out += "pack file data/\(e.packID.hex.prefix(2))/\(e.packID.hex)  (\(e.pack.count) bytes)\n"
        out += hexdump(e.pack)
        var pack = SpecReader(e.pack)
        _ = try pack.pack()
        out += pack.renderMap()

        out += "\nindex file index/\(e.indexID.hex)  (\(e.index.count) bytes)\n"
        out += hexdump(e.index)
        var index = SpecReader(e.index)
        _ = try index.index()
        out += index.renderMap()

        out += "\nmanifest blob \(e.manifestID.hex)  (\(e.manifest.count) bytes, type 1 tree;\n"
        out += "the whole stream: under the manifest profile's 4 KiB minimum, so one blob)\n"
        out += hexdump(e.manifest)
        var manifest = SpecReader(e.manifest)
        _ = try manifest.manifest()
        out += manifest.renderMap()

        let gear = SpecReader.gearTable(seed: 23)
        func h64(_ v: UInt64) -> String { let s = String(v, radix: 16); return "0x" + String(repeating: "0", count: 16 - s.count) + s }
        out += "\nchunker vectors (FORMAT.md, \"Chunker\")\n"
        out += "  gear table of seed 23 (chunkerSeed \"0000000000000017\"):\n"
        out += "    gear[0]   = \(h64(gear[0]))\n    gear[1]   = \(h64(gear[1]))\n    gear[255] = \(h64(gear[255]))\n"
        let data = SpecReader.splitMix64Bytes(seed: 42, count: chunkInputSize)
        let lengths = FastCDC.chunkLengths(data, profile: .dump021, gear: GearTable(seed: 23))
        out += "  \(chunkInputSize) bytes of SplitMix64(seed 42) words, little-endian, cut with profile dump (\(ChunkerProfile.dump021.min)/\(ChunkerProfile.dump021.avg)/\(ChunkerProfile.dump021.max)), seed 23:\n"
        out += "    sha256 of input \(BlobID(hashing: data).hex)\n"
        var line = "    lengths"
        for n in lengths {
            if line.count > 80 { out += line + "\n"; line = "           " }
            line += " \(n)"
        }
        out += line + "\n"
        return out
    }

    /// `hexdump -Cv` output: offset, 16 bytes in two groups of 8, ASCII; then the length.
    static func hexdump(_ bytes: [UInt8]) -> String {
        var out = ""
        var offset = 0
        while offset < bytes.count {
            let line = bytes[offset..<Swift.min(bytes.count, offset + 16)]
            var s = hex(offset, 8) + " "
            for i in 0..<16 {
                if i == 8 { s += " " }
                s += i < line.count ? " " + hex(Int(line[offset + i]), 2) : "   "
            }
            s += "  |"
            for b in line { s += (0x20...0x7e).contains(b) ? String(UnicodeScalar(b)) : "." }
            out += s + "|\n"
            offset += 16
        }
        return out + hex(bytes.count, 8) + "\n"
    }

    static func hex(_ v: Int, _ width: Int) -> String {
        let s = String(v, radix: 16)
        return String(repeating: "0", count: Swift.max(0, width - s.count)) + s
    }

    // MARK: Paths

    static var updating: Bool { ProcessInfo.processInfo.environment["ACCORD_UPDATE_GOLDEN"] == "1" }
    static var testsDirectory: URL { URL(fileURLWithPath: #filePath).deletingLastPathComponent() }
    static var sourceGoldenURL: URL { testsDirectory.appendingPathComponent("Golden/\(goldenFile)") }
    static var formatMdURL: URL {
        testsDirectory.deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("FORMAT.md")
    }

    /// The lines between "```text" (after the start marker) and "```" (before the end marker).
    static func exampleBlock(in doc: String) -> Range<String.Index>? {
        guard let start = doc.range(of: blockStart),
              let fence = doc.range(of: "\n```text\n", range: start.upperBound..<doc.endIndex),
              let end = doc.range(of: "\n```\n" + blockEnd, range: fence.upperBound..<doc.endIndex) else { return nil }
        return fence.upperBound..<doc.index(after: end.lowerBound)
    }
}

/// A reader written from FORMAT.md alone: little-endian integers, LEB128,
/// zigzag, its own CRC-32, FastCDC and SplitMix64. It records every field it
/// reads (offset, length, meaning) so the golden file can show a map.
/// Ids stay raw digests (`ID`): the document's reader knows bytes, not the code's id kinds.
struct SpecReader {
    struct Field { var offset: Int; var length: Int; var name: String; var value: String }
    struct HeaderEntry: Equatable { var type: UInt8; var compression: UInt8; var raw: UInt32; var stored: UInt32; var id: ID; var offset: UInt32 }
    struct Record: Equatable {
        var kind: UInt8, path: [UInt8], mode: UInt64, uid: UInt64, gid: UInt64
        var mtime: Int64, mtimeNsec: UInt64, ctime: Int64, ctimeNsec: UInt64
        var inode: UInt64, device: UInt64, size: UInt64, link: [UInt8]
        var xattrs: [[UInt8]], blobs: [ID]
        init(kind: UInt8, path: [UInt8], mode: UInt64, uid: UInt64, gid: UInt64, mtime: Int64, mtimeNsec: UInt64,
             ctime: Int64, ctimeNsec: UInt64, inode: UInt64, device: UInt64, size: UInt64, link: [UInt8], xattrs: [[UInt8]], blobs: [ID]) {
            self.kind = kind; self.path = path; self.mode = mode; self.uid = uid; self.gid = gid
            self.mtime = mtime; self.mtimeNsec = mtimeNsec; self.ctime = ctime; self.ctimeNsec = ctimeNsec
            self.inode = inode; self.device = device; self.size = size; self.link = link; self.xattrs = xattrs; self.blobs = blobs
        }
        init(_ e: ManifestEntry) {
            self.init(kind: e.kind.rawValue, path: e.path, mode: UInt64(e.mode), uid: UInt64(e.uid), gid: UInt64(e.gid),
                      mtime: e.mtimeSec, mtimeNsec: UInt64(e.mtimeNsec), ctime: e.ctimeSec, ctimeNsec: UInt64(e.ctimeNsec),
                      inode: e.inode, device: e.device, size: e.size, link: e.linkTarget,
                      xattrs: e.xattrs.flatMap { [$0.name, $0.value] }, blobs: e.blobs.map(\.digest))
        }
    }
    struct Malformed: Error, CustomStringConvertible { var description: String }

    let bytes: [UInt8]
    var position = 0
    var fields: [Field] = []

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    // MARK: Primitive reads, each recorded as a field

    mutating func take(_ n: Int, _ name: String, value: (ArraySlice<UInt8>) -> String = { _ in "" }) throws -> ArraySlice<UInt8> {
        guard n >= 0, position + n <= bytes.count else { throw Malformed(description: "\(name) runs past the end") }
        let s = bytes[position..<position + n]
        fields.append(Field(offset: position, length: n, name: name, value: value(s)))
        position += n
        return s
    }

    mutating func u8(_ name: String) throws -> UInt8 { let s = try take(1, name) { "\($0.first!)" }; return s.first! }

    mutating func u16(_ name: String) throws -> UInt16 {
        UInt16(truncatingIfNeeded: le(try take(2, name) { "\(Self.le($0))" }))
    }

    mutating func u32(_ name: String, hex: Bool = false) throws -> UInt32 {
        let v = UInt32(truncatingIfNeeded: le(try take(4, name) { s in
            hex ? "0x" + FormatGoldenTests.hex(Int(Self.le(s)), 8) : "\(Self.le(s))"
        }))
        return v
    }

    mutating func id(_ name: String) throws -> ID { ID(bytes: try take(32, name) { hexString($0) })! }

    mutating func magic(_ expected: String, _ name: String) throws {
        let s = try take(expected.utf8.count, name) { "\"" + String(decoding: $0, as: UTF8.self) + "\"" }
        guard Array(s) == Array(expected.utf8) else { throw Malformed(description: "bad magic \(Array(s))") }
    }

    /// Unsigned LEB128: 7 bits a byte, low group first, high bit set on all but the last byte.
    mutating func varint(_ name: String, show: (UInt64) -> String = { "\($0)" }) throws -> UInt64 {
        var v: UInt64 = 0, shift: UInt64 = 0, n = 0
        while true {
            guard position + n < bytes.count, shift < 64 else { throw Malformed(description: "bad varint \(name)") }
            let b = bytes[position + n]
            v |= UInt64(b & 0x7f) << shift
            n += 1
            if b & 0x80 == 0 { break }
            shift += 7
        }
        _ = try take(n, name) { _ in show(v) }
        return v
    }

    mutating func zigzag(_ name: String) throws -> Int64 {
        var result: Int64 = 0
        _ = try varint(name) { u in
            result = Int64(bitPattern: (u >> 1) ^ (0 &- (u & 1)))
            return "\(result) (zigzag \(u))"
        }
        return result
    }

    /// A byte string: varint length, then the bytes.
    mutating func string(_ name: String) throws -> [UInt8] {
        let n = try varint("\(name) length")
        return Array(try take(Int(n), name) { "\"" + String(decoding: $0, as: UTF8.self) + "\"" })
    }

    static func le(_ s: ArraySlice<UInt8>) -> UInt64 {
        var v: UInt64 = 0
        for (i, b) in s.enumerated() { v |= UInt64(b) << (8 * UInt64(i)) }
        return v
    }
    func le(_ s: ArraySlice<UInt8>) -> UInt64 { Self.le(s) }

    // MARK: Files

    /// Pack = Blob_1 || … || Blob_n || Header || HeaderLength(4) || "ACCORDPK"
    mutating func pack() throws -> [HeaderEntry] {
        let size = bytes.count
        guard size >= 20 else { throw Malformed(description: "pack too short") }
        let headerLength = Int(Self.le(bytes[(size - 12)..<(size - 8)]))
        guard Array(bytes[(size - 8)...]) == Array("ACCORDPK".utf8), headerLength >= 8, headerLength + 12 <= size else {
            throw Malformed(description: "bad pack trailer")
        }
        let headerStart = size - 12 - headerLength
        guard Self.crc32(bytes[headerStart..<(size - 16)]) == UInt32(Self.le(bytes[(size - 16)..<(size - 12)])) else {
            throw Malformed(description: "pack header CRC-32 mismatch")
        }
        position = headerStart
        let count = Int(try u32("Header: Count"))
        guard 8 + 44 * count == headerLength else { throw Malformed(description: "Count does not fit HeaderLength") }
        var entries: [HeaderEntry] = []
        var blobFields: [Field] = []
        var offset: UInt32 = 0
        for k in stride(from: 1, through: count, by: 1) {
            let type = try u8("Entry \(k): Type")
            let compression = try u8("Entry \(k): Compression")
            guard type <= 1, compression <= 1 else { throw Malformed(description: "unknown type or compression") }
            _ = try u16("Entry \(k): Reserved")
            let raw = try u32("Entry \(k): RawLength")
            let stored = try u32("Entry \(k): StoredLength")
            let id = try self.id("Entry \(k): ID")
            guard compression == 1 || raw == stored else { throw Malformed(description: "raw blob with two lengths") }
            entries.append(HeaderEntry(type: type, compression: compression, raw: raw, stored: stored, id: id, offset: offset))
            let what = compression == 0 ? "raw" : "zlib " + hexString(bytes[Int(offset)..<Int(offset) + 2]) + " … Adler-32"
            blobFields.append(Field(offset: Int(offset), length: Int(stored), name: "Blob \(k) stored bytes", value: "(\(what))"))
            offset += stored
        }
        guard Int(offset) == headerStart else { throw Malformed(description: "blob lengths do not add up to the pack") }
        _ = try u32("Header: CRC-32 of Count..Entry \(count)", hex: true)
        _ = try u32("HeaderLength")
        try magic("ACCORDPK", "Magic")
        fields.insert(contentsOf: blobFields, at: 0)
        return entries
    }

    /// Index = "ACCIDX01" || PackCount(4) || (PackID(32) || BlobCount(4) || Blob(46)*)*
    mutating func index() throws -> [(pack: ID, blobs: [HeaderEntry])] {
        try magic("ACCIDX01", "Magic")
        let packs = Int(try u32("PackCount"))
        var out: [(pack: ID, blobs: [HeaderEntry])] = []
        for p in 0..<packs {
            let packID = try id("Pack \(p + 1): PackID")
            let n = Int(try u32("Pack \(p + 1): BlobCount"))
            var blobs: [HeaderEntry] = []
            for k in 0..<n {
                let name = "Pack \(p + 1) blob \(k + 1)"
                let id = try self.id("\(name): ID")
                let type = try u8("\(name): Type")
                let compression = try u8("\(name): Compression")
                let offset = try u32("\(name): Offset")
                let stored = try u32("\(name): StoredLength")
                let raw = try u32("\(name): RawLength")
                blobs.append(HeaderEntry(type: type, compression: compression, raw: raw, stored: stored, id: id, offset: offset))
            }
            out.append((packID, blobs))
        }
        guard position == bytes.count else { throw Malformed(description: "trailing bytes in index") }
        return out
    }

    /// Manifest = "ACMF" || 0x01 || (varint(RecordLength) || Record)*
    mutating func manifest() throws -> [Record] {
        try magic("ACMF", "Magic")
        guard try u8("Version") == 1 else { throw Malformed(description: "manifest version") }
        var records: [Record] = []
        var previous: [UInt8]?
        while position < bytes.count {
            let n = records.count + 1
            let length = Int(try varint("Entry \(n): RecordLength"))
            let end = position + length
            let kind = try u8("Entry \(n): Kind")
            if let last = fields.last { fields[fields.count - 1].value = "\(last.value) (\(["", "file", "directory", "symlink", "hardlink", "stream"][Int(min(kind, 5))]))" }
            let path = try string("Entry \(n): Path")
            let mode = try varint("Entry \(n): Mode") { "0o" + String($0, radix: 8) }
            let uid = try varint("Entry \(n): UID")
            let gid = try varint("Entry \(n): GID")
            let mtime = try zigzag("Entry \(n): MtimeSec")
            let mtimeNsec = try varint("Entry \(n): MtimeNsec")
            let ctime = try zigzag("Entry \(n): CtimeSec")
            let ctimeNsec = try varint("Entry \(n): CtimeNsec")
            let inode = try varint("Entry \(n): Inode")
            let device = try varint("Entry \(n): Device")
            let size = try varint("Entry \(n): Size")
            let link = try string("Entry \(n): LinkTarget")
            let nx = try varint("Entry \(n): XattrCount")
            var xattrs: [[UInt8]] = []
            for x in 0..<nx {
                xattrs.append(try string("Entry \(n): Xattr \(x + 1) Name"))
                xattrs.append(try string("Entry \(n): Xattr \(x + 1) Value"))
            }
            let nb = try varint("Entry \(n): BlobCount")
            var blobs: [ID] = []
            for b in 0..<nb { blobs.append(try id("Entry \(n): BlobID \(b + 1)")) }
            guard position == end else { throw Malformed(description: "record \(n) length mismatch") }
            if let p = previous, Self.componentOrder(p, path) >= 0 { throw Malformed(description: "entries out of tree order") }
            previous = path
            records.append(Record(kind: kind, path: path, mode: mode, uid: uid, gid: gid, mtime: mtime, mtimeNsec: mtimeNsec,
                                  ctime: ctime, ctimeNsec: ctimeNsec, inode: inode, device: device, size: size, link: link,
                                  xattrs: xattrs, blobs: blobs))
        }
        return records
    }

    /// The map lines: offset (hex, as in the dump), length, field, value.
    func renderMap() -> String {
        let width = fields.map(\.name.count).max() ?? 0
        var out = "  offset    length  field\n"
        for f in fields.sorted(by: { $0.offset < $1.offset }) {
            let len = String(f.length)
            let name = f.name + String(repeating: " ", count: width - f.name.count)
            let line = "  \(FormatGoldenTests.hex(f.offset, 8))  \(String(repeating: " ", count: Swift.max(0, 6 - len.count)))\(len)  \(name)  \(f.value)"
            out += line.replacingOccurrences(of: "\\s+$", with: "", options: .regularExpression) + "\n"
        }
        return out
    }

    // MARK: Algorithms as FORMAT.md states them

    /// CRC-32 as zlib's crc32, gzip and PNG: reflected polynomial 0xEDB88320, init and final xor 0xFFFFFFFF.
    static func crc32<C: Collection>(_ data: C) -> UInt32 where C.Element == UInt8 {
        var c: UInt32 = 0xffff_ffff
        for b in data {
            c ^= UInt32(b)
            for _ in 0..<8 { c = c & 1 != 0 ? (c >> 1) ^ 0xedb8_8320 : c >> 1 }
        }
        return c ^ 0xffff_ffff
    }

    /// Paths compared as lists of components ("/"-separated), each component byte by byte.
    static func componentOrder(_ a: [UInt8], _ b: [UInt8]) -> Int {
        let x = a.split(separator: 0x2f, omittingEmptySubsequences: true).map(Array.init)
        let y = b.split(separator: 0x2f, omittingEmptySubsequences: true).map(Array.init)
        for (p, q) in zip(x, y) where p != q { return p.lexicographicallyPrecedes(q) ? -1 : 1 }
        return x.count == y.count ? 0 : (x.count < y.count ? -1 : 1)
    }

    static func splitMix64(_ state: inout UInt64) -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }

    static func gearTable(seed: UInt64) -> [UInt64] {
        var s = seed
        return (0..<256).map { _ in splitMix64(&s) }
    }

    static func splitMix64Bytes(seed: UInt64, count: Int) -> [UInt8] {
        var s = seed
        var out: [UInt8] = []
        out.reserveCapacity(count + 8)
        while out.count < count { withUnsafeBytes(of: splitMix64(&s).littleEndian) { out.append(contentsOf: $0) } }
        return Array(out.prefix(count))
    }

    /// FastCDC as FORMAT.md's pseudo-code: lengths of the chunks of a whole input.
    static func chunkLengths(_ data: [UInt8], profile: ChunkerProfile, gear: [UInt64]) -> [Int] {
        let bits = profile.avg.trailingZeroBitCount
        let maskS = ~(~UInt64(0) >> UInt64(bits + 2))
        let maskL = ~(~UInt64(0) >> UInt64(Swift.max(1, bits - 2)))
        var out: [Int] = []
        var start = 0
        while start < data.count {
            let n = data.count - start
            var length = Swift.min(n, profile.max)
            if n > profile.min {
                var h: UInt64 = 0
                var i = profile.min
                var cut: Int?
                while i < Swift.min(n, profile.max) {
                    h = (h &<< 1) &+ gear[Int(data[start + i])]
                    i += 1
                    if h & (i <= profile.avg ? maskS : maskL) == 0 { cut = i; break }
                }
                if let c = cut { length = c }
            }
            out.append(length)
            start += length
        }
        return out
    }
}
