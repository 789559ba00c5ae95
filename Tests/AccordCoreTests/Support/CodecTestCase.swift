import Foundation
import AccordRuntime
import XCTest
@testable import AccordCore

/// Shared by the codec suites (Encoding, Pack, Compression, Index, Manifest,
/// Snapshot): a scratch directory per test and seeded sample values of every
/// on-disk format. Decoders fed truncated and mutated input must throw (or
/// return something consistent), never crash, never hang.
class CodecTestCase: XCTestCase {
    var scratchDirectory: ScratchDirectory!
    var scratch: String { scratchDirectory.path }

    override func setUpWithError() throws {
        scratchDirectory = try ScratchDirectory("codec")
    }

    override func tearDown() {
        scratchDirectory?.remove()
    }

    /// A random id of the kind the context asks for.
    func id<I: ContentID>(_ rng: inout TestRandom, as _: I.Type = I.self) -> I { I(w0: rng.next(), w1: rng.next(), w2: rng.next(), w3: rng.next()) }

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
            let blobID = BlobID(hashing: data)
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

    func sampleSnapshot(_ rng: inout TestRandom) -> Snapshot {
        var summary = Snapshot.Summary()
        summary.files = 3; summary.totalBytes = 1 << 40; summary.errors = ["/x/\u{FFFD}", "/y z"]; summary.durationSeconds = 1.25
        return Snapshot(time: Timestamp(seconds: 1_790_000_000, nanoseconds: 123_456_789), host: "node-1", username: "root",
                        plan: "paths", tags: ["daily", "ä"], paths: ["/opt/anaconda/storage"],
                        sources: [.init(kind: "path", path: "/opt/anaconda/storage", pathHex: nil, excludes: ["*.tmp"], profile: .tree),
                                  .init(kind: "command", path: "/db/all.sql", command: "pg_dumpall", profile: .dump)],
                        parent: id(&rng), manifest: [id(&rng), id(&rng)], summary: summary)
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
