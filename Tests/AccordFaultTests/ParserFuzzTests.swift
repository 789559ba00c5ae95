import Foundation
import XCTest
@testable import AccordCore
import AccordRuntime
#if canImport(Glibc)
import Glibc
#endif

/// Seeded random mutation of every on-disk structure's decoder: pack
/// trailer and header, index file, snapshot, config and lock JSON, manifest
/// record and manifest stream. Any input must give a value or an error —
/// never a trap, a hang or an allocation out of proportion to the input.
/// Each run happens in a forked child (`IsolatedRun`), so a crasher is
/// reported with its bytes; saved crashers live in `Crashers/` as hex.
final class ParserFuzzTests: XCTestCase {
    // MARK: Targets

    enum Target: Int, CaseIterable {
        case packTail, indexFile, snapshot, config, lock, manifestRecord, manifestStream
        /// `manifestTree`: blobs (`Blobs.split`), the first a manifest stream, the
        /// others chunk lists its records name (`Blobs.id(k)`), read with the
        /// validating `ManifestReader`; every entry it returns is checked
        /// against FORMAT.md's validity rules independently (`TreeRules`) and a
        /// violation traps, so a hostile record that slips through is a crasher.
        /// `chunkList`: a u32 little-endian bound then blobs; blob 0 resolved
        /// with `ChunkList.resolve` under that bound, which must hold.
        case manifestTree, chunkList
        /// Fixture-only targets (not fuzzed): `packHeader` is a u32 little-endian
        /// pack size followed by a header, given to `PackFormat.decodeHeader`
        /// as is; `packBlobs` is a whole pack read as `check --read-data`
        /// reads it, every blob inflated whatever its RawLength.
        case packHeader, packBlobs

        static let fuzzed: [Target] = [.packTail, .indexFile, .snapshot, .config, .lock, .manifestRecord, .manifestStream, .manifestTree, .chunkList]

        var name: String { String(describing: self) }

        /// A whole pack: trailer, header, then every blob whose slice lies inside it
        /// (and, with `maxRawLength`, whose raw length is within it); true if the
        /// trailer and header were accepted.
        static func decodePack(_ input: [UInt8], maxRawLength: UInt32?) -> Bool {
            guard input.count >= PackFormat.trailerSize + 8 else { return false }
            return (try? input.withUnsafeBytes { buf -> Bool in
                let hl = try PackFormat.decodeTrailer(UnsafeRawBufferPointer(rebasing: buf[(buf.count - 12)...]), packSize: buf.count)
                let entries = try PackFormat.decodeHeader(UnsafeRawBufferPointer(rebasing: buf[(buf.count - 12 - hl)..<(buf.count - 12)]), packSize: buf.count)
                let inflater = Inflater()
                var plain: [UInt8] = []
                for e in entries where Int(e.offset) + Int(e.storedLength) <= buf.count && e.rawLength <= maxRawLength ?? .max {
                    try? BlobDecoder.decode(stored: UnsafeRawBufferPointer(rebasing: buf[Int(e.offset)..<(Int(e.offset) + Int(e.storedLength))]), id: e.id,
                                            compression: e.compression, rawLength: Int(e.rawLength), inflater: inflater, into: &plain)
                }
                return true
            }) ?? false
        }

        /// Decodes one input as `accord` would; returns true if it was accepted.
        func decode(_ input: [UInt8], rng: inout SeededRandom) -> Bool {
            switch self {
            case .packTail:
                // As PackReader.readHeader and Check.verifyPack do: trailer, then header, then each blob's slice.
                // Blobs longer than FORMAT.md allows (64 MiB) are the fixture Crashers/packBlobs-rawLength-4GiB.hex.
                return Self.decodePack(input, maxRawLength: 64 << 20)
            case .packHeader:
                guard input.count >= 4 else { return false }
                let size = Int(input[0]) | Int(input[1]) << 8 | Int(input[2]) << 16 | Int(input[3]) << 24
                return (try? Array(input[4...]).withUnsafeBytes { try PackFormat.decodeHeader($0, packSize: size) }) != nil
            case .packBlobs:
                return Self.decodePack(input, maxRawLength: nil)
            case .indexFile:
                return (try? input.withUnsafeBytes { try IndexFile.decode($0) }) != nil
            case .snapshot:
                return (try? Snapshot.decode(input, name: "fuzz")) != nil
            case .config:
                return (try? JSONDecoder().decode(RepositoryConfig.self, from: Data(input))) != nil
            case .lock:
                guard let l = try? JSONDecoder().decode(LockInfo.self, from: Data(input)) else { return false }
                _ = l.isStale()
                _ = l.summary
                return true
            case .manifestRecord:
                return (try? input.withUnsafeBytes { try ManifestCodec.decodeRecord($0) }) != nil
            case .manifestStream:
                // The stream cut into random pieces (as blobs), one of which may fail to load.
                var pieces: [[UInt8]] = []
                var pos = 0
                while pos < input.count {
                    let n = min(input.count - pos, 1 + rng.int(0..<max(1, input.count / 2 + 1)))
                    pieces.append(Array(input[pos..<pos + n]))
                    pos += n
                }
                let failing = rng.int(0..<8) == 0 ? rng.int(0..<max(1, pieces.count)) : -1
                let ids = pieces.indices.map { BlobID(hashing: "piece \($0)") }
                var reader = ManifestReader(blobs: ids) { id in
                    // Mutated records may name chunk-list blobs: unknown ids fail to load.
                    guard let k = ids.firstIndex(of: id) else { throw DecodeError.invalid("no such blob", offset: 0) }
                    if k == failing { throw DecodeError.invalid("load failed", offset: 0) }
                    return pieces[k]
                }
                var entries = 0
                do {
                    while let _ = try reader.next() {
                        entries += 1
                        // Every record takes at least 2 bytes: more entries than that is a loop.
                        if entries > input.count { fatalError("manifest reader returned more entries than the stream has bytes") }
                    }
                    return true
                } catch { return false }
            case .manifestTree:
                let blobs = Blobs.split(input[...])
                guard !blobs.isEmpty else { return false }
                var reader = ManifestReader(blobs: [Blobs.id(0)], snapshot: SnapshotID(w0: 0, w1: 0, w2: 0, w3: 99)) { try Blobs.load($0, blobs) }
                reader.tolerateListErrors = rng.int(0..<2) == 0
                var rules = TreeRules()
                do {
                    while let e = try reader.next() {
                        if let broken = rules.check(e) { fatalError("the validating reader returned \(e.path.displayPath): \(broken)") }
                        if rules.count > input.count { fatalError("manifest reader returned more entries than the stream has bytes") }
                    }
                    return true
                } catch { return false }
            case .chunkList:
                guard input.count >= 4 else { return false }
                let bound = min(Int(input[0]) | Int(input[1]) << 8 | Int(input[2]) << 16 | Int(input[3]) << 24, Blobs.maxFuzzIDs)
                let blobs = Blobs.split(input[4...])
                guard !blobs.isEmpty else { return false }
                guard let (ids, _) = try? ChunkList.resolve([Blobs.id(0)], maxIDs: bound, load: { try Blobs.load($0, blobs) }) else { return false }
                if ids.count > bound { fatalError("a chunk list resolved to \(ids.count) ids under a bound of \(bound)") }
                return true
            }
        }
    }

    /// Inputs made of several blobs: each is a u32 little-endian length and
    /// that many bytes (the last takes what is left if it is short). Blob k
    /// is named by `id(k)`: 31 zero bytes and k.
    enum Blobs {
        /// The most ids the fuzzed chunk lists may expand to (128 MiB of ids).
        static let maxFuzzIDs = 1 << 22

        static func split(_ b: ArraySlice<UInt8>) -> [[UInt8]] {
            var out: [[UInt8]] = []
            var i = b.startIndex
            while i + 4 <= b.endIndex && out.count < 64 {
                let n = Int(b[i]) | Int(b[i + 1]) << 8 | Int(b[i + 2]) << 16 | Int(b[i + 3]) << 24
                let end = min(b.endIndex, i + 4 + n)
                out.append(Array(b[(i + 4)..<end]))
                i = end
            }
            return out
        }

        static func join(_ blobs: [[UInt8]]) -> [UInt8] {
            var out: [UInt8] = []
            for b in blobs { out += [0, 8, 16, 24].map { UInt8(truncatingIfNeeded: b.count >> $0) } + b }
            return out
        }

        static func id(_ k: Int) -> BlobID { BlobID(w0: 0, w1: 0, w2: 0, w3: UInt64(k)) }

        static func load(_ id: BlobID, _ blobs: [[UInt8]]) throws -> [UInt8] {
            guard id.w0 == 0, id.w1 == 0, id.w2 == 0, id.w3 < UInt64(blobs.count) else { throw DecodeError.invalid("no such blob", offset: 0) }
            return blobs[Int(id.w3)]
        }
    }

    /// FORMAT.md's manifest validity rules, written again from the document
    /// (not shared with `ManifestValidator`), for entries in stream order.
    struct TreeRules {
        var count = 0
        var previous: RawPath?
        var kinds: [RawPath: ManifestEntry.Kind] = [:]

        mutating func check(_ e: ManifestEntry) -> String? {
            count += 1
            let path = e.path
            guard path.first == 0x2f, !path.contains(0) else { return "not absolute, or holds NUL" }
            if path != [0x2f] {
                let parts = path.split(separator: 0x2f, omittingEmptySubsequences: false).dropFirst()
                if parts.contains(where: { $0.isEmpty || $0.elementsEqual([0x2e]) || $0.elementsEqual([0x2e, 0x2e]) }) { return "not canonical" }
            } else if e.kind != .directory { return "/ is not a directory" }
            if let previous, ManifestEntry.compareTreeOrder(previous, path) >= 0 { return "not after \(previous.displayPath)" }
            previous = path
            for i in path.indices where path[i] == 0x2f && i < path.count - 1 {
                let ancestor = i == 0 ? [0x2f] : Array(path[0..<i])
                if let k = kinds[ancestor], k != .directory { return "below the \(k) \(ancestor.displayPath)" }
            }
            kinds[path] = e.kind
            switch e.kind {
            case .file, .stream:
                if e.listError != nil { return nil }
                let most = e.size / 64 + (e.size % 64 == 0 ? 0 : 1), least = e.size / (64 << 20) + (e.size % (64 << 20) == 0 ? 0 : 1)
                if UInt64(e.blobs.count) > most || UInt64(e.blobs.count) < least || e.blobs.count > ChunkList.maxIDs {
                    return "\(e.blobs.count) blobs for \(e.size) bytes"
                }
            case .directory, .symlink, .hardlink:
                if e.size != 0 || !e.blobs.isEmpty || e.list != nil { return "a \(e.kind) with content" }
                if e.kind == .hardlink && kinds[e.linkTarget] != .file { return "hard link to \(e.linkTarget.displayPath)" }
            }
            return nil
        }
    }

    // MARK: Seeds: valid encodings

    static func seeds(_ target: Target) -> [[UInt8]] {
        var rng = SeededRandom(seed: 0x5EED)
        switch target {
        case .packTail:
            var out: [[UInt8]] = []
            for blobCount in [0, 1, 3] {
                var data: [UInt8] = []
                var entries: [PackEntry] = []
                let deflater = Deflater(level: .default)
                for k in 0..<blobCount {
                    let plain = k % 2 == 0 ? rng.text(3000 + k * 500) : rng.bytes(200)
                    var stored: [UInt8] = []
                    let comp = plain.withUnsafeBytes { deflater.compress($0, into: &stored) }
                    if comp == .none { stored = plain }
                    entries.append(PackEntry(id: BlobID(hashing: plain), type: k == 2 ? .tree : .data, compression: comp,
                                             rawLength: UInt32(plain.count), storedLength: UInt32(stored.count), offset: UInt32(data.count)))
                    data += stored
                }
                out.append(data + PackFormat.encodeTail(entries))
            }
            return out
        case .indexFile:
            let entry = { (o: UInt32, s: UInt32) in PackEntry(id: BlobID(hashing: "b\(o)"), type: .data, compression: .zlib, rawLength: s * 2, storedLength: s, offset: o) }
            return [IndexFile(packs: []).encode(),
                    IndexFile(packs: [.init(id: PackID(hashing: "p1"), blobs: [entry(0, 100), entry(100, 50)])]).encode(),
                    IndexFile(packs: [.init(id: PackID(hashing: "p1"), blobs: [entry(0, 7)]), .init(id: PackID(hashing: "p2"), blobs: [])]).encode()]
        case .snapshot:
            var summary = Snapshot.Summary()
            summary.files = 3; summary.totalBytes = 12345; summary.errors = ["/srv/unreadable"]; summary.durationSeconds = 1.5
            let s = Snapshot(time: Timestamp(seconds: 1_764_235_398, nanoseconds: 171_528_463), host: "ae5-master", username: "root",
                             plan: "ae5", tags: ["daily", "pre-restore"], paths: ["/db/dump.sql", "/opt/anaconda/storage"],
                             sources: [.init(kind: "command", path: "/db/dump.sql", command: "pg_dumpall", profile: .dump),
                                       .init(kind: "path", path: "/opt/anaconda/storage", excludes: ["*.tmp"], profile: .tree)],
                             parent: SnapshotID(hashing: "parent"), manifest: [BlobID(hashing: "m1"), BlobID(hashing: "m2")], summary: summary)
            return [try! s.encode()]
        case .config:
            let e = JSONEncoder()
            e.outputFormatting = [.prettyPrinted, .sortedKeys]
            return [Array(try! e.encode(RepositoryConfig.new())) + [0x0a]]
        case .lock:
            return [Array("""
            {
              "command" : "backup",
              "exclusive" : false,
              "host" : "vm",
              "pid" : 20599,
              "time" : "2026-11-27T09:23:16.982508703Z",
              "username" : "root"
            }

            """.utf8)]
        case .packHeader, .packBlobs:
            return []
        case .manifestTree:
            // A tree of every kind, a record with a full chunk list (blob 1) and one with a delta on it (blob 2).
            let full = (0..<1100).map { BlobID(hashing: "chunk \($0)") }
            var changed = full
            changed[7] = BlobID(hashing: "changed")
            let delta = ChunkList.encodeDelta(generation: 1, base: [Blobs.id(1)], total: changed.count, ops: ChunkList.diff(base: full, new: changed).ops)
            func listed(_ path: String, _ ref: Int) -> ManifestEntry {
                var e = ManifestEntry(kind: .stream, path: Array(path.utf8), mode: 0o600, size: 1100 * 4096)
                e.list = ChunkList.Info(refs: [Blobs.id(ref)], blobs: [], base: [], generation: 0)
                return e
            }
            let entries: [ManifestEntry] = [
                ManifestEntry(kind: .directory, path: [0x2f], mode: 0o755),
                ManifestEntry(kind: .directory, path: Array("/srv".utf8), mode: 0o755),
                ManifestEntry(kind: .file, path: Array("/srv/a".utf8), size: 210, blobs: [BlobID(hashing: "x"), BlobID(hashing: "y")]),
                ManifestEntry(kind: .hardlink, path: Array("/srv/h".utf8), linkTarget: Array("/srv/a".utf8)),
                ManifestEntry(kind: .symlink, path: Array("/srv/l".utf8), linkTarget: Array("../etc".utf8)),
                ManifestEntry(kind: .directory, path: Array("/srv/sub".utf8), mode: 0o700),
                ManifestEntry(kind: .hardlink, path: Array("/srv/sub/h2".utf8), linkTarget: Array("/srv/a".utf8)),
                listed("/srv/z.sql", 1), listed("/srv/zz.sql", 2),
            ]
            var w = ByteWriter()
            w.raw(ManifestCodec.magic)
            for e in entries { ManifestCodec.encode(e, into: &w) }
            return [Blobs.join([w.bytes, ChunkList.encodeFull(full[...]), delta])]
        case .chunkList:
            let full = (0..<50).map { BlobID(hashing: "id \($0)") }
            var next = full
            next.insert(BlobID(hashing: "new"), at: 20)
            let d1 = ChunkList.encodeDelta(generation: 1, base: [Blobs.id(1)], total: next.count, ops: ChunkList.diff(base: full, new: next).ops)
            let d1b = ChunkList.encodeDelta(generation: 1, base: [Blobs.id(2)], total: next.count, ops: ChunkList.diff(base: full, new: next).ops)
            let d2 = ChunkList.encodeDelta(generation: 2, base: [Blobs.id(1)], total: 30, ops: [.copy(from: 10, count: 30)])
            let bound: [UInt8] = [0, 0, 1, 0]   // 65,536 ids
            return [bound + Blobs.join([ChunkList.encodeFull(full[...])]),
                    bound + Blobs.join([d1, ChunkList.encodeFull(full[...])]),
                    bound + Blobs.join([d2, d1b, ChunkList.encodeFull(full[...])])]
        case .manifestRecord, .manifestStream:
            let entries: [ManifestEntry] = [
                ManifestEntry(kind: .directory, path: Array("/srv".utf8), mode: 0o755, mtimeSec: 1_700_000_000, mtimeNsec: 5),
                ManifestEntry(kind: .file, path: Array("/srv/a.txt".utf8), mode: 0o644, uid: 1000, gid: 1000, mtimeSec: -5, mtimeNsec: 999_999_999,
                              ctimeSec: 1_700_000_001, inode: 1 << 40, device: 2049, size: 210,
                              xattrs: [.init(name: Array("user.origin".utf8), value: [0, 1, 2, 0xff])],
                              blobs: [BlobID(hashing: "x"), BlobID(hashing: "y")]),
                ManifestEntry(kind: .hardlink, path: Array("/srv/h".utf8), linkTarget: Array("/srv/a.txt".utf8)),
                ManifestEntry(kind: .symlink, path: Array("/srv/l".utf8), linkTarget: Array("a.txt".utf8)),
                ManifestEntry(kind: .stream, path: Array("/srv/z.sql".utf8), mode: 0o600, size: 5000, blobs: [BlobID(hashing: "z")]),
            ]
            if target == .manifestRecord {
                return entries.map { e in
                    var w = ByteWriter()
                    ManifestCodec.encode(e, into: &w)
                    // Drop the varint length prefix: decodeRecord takes the record itself.
                    var skip = 0
                    while w.bytes[skip] & 0x80 != 0 { skip += 1 }
                    return Array(w.bytes[(skip + 1)...])
                }
            }
            var w = ByteWriter()
            w.raw(ManifestCodec.magic)
            for e in entries { ManifestCodec.encode(e, into: &w) }
            return [w.bytes]
        }
    }

    // MARK: Mutation

    static let interesting32: [UInt32] = [0, 1, 7, 8, 12, 20, 44, 52, 0x7f, 0x80, 0xff, 0x100, 0x7fff, 0xffff, 0x10000,
                                          0x7fff_ffff, 0x8000_0000, 0xffff_fffe, 0xffff_ffff]
    static let interesting8: [UInt8] = [0, 1, 2, 5, 0x7f, 0x80, 0x81, 0xfe, 0xff]

    static func mutate(_ input: [UInt8], target: Target, corpus: [[UInt8]], rng: inout SeededRandom) -> [UInt8] {
        var b = input
        for _ in 0..<(1 + rng.int(0..<4)) {
            switch rng.int(0..<12) {
            case 0 where !b.isEmpty:   // flip a bit
                let i = rng.int(0..<b.count); b[i] ^= UInt8(1) << UInt8(rng.int(0..<8))
            case 1 where !b.isEmpty:   // an interesting byte
                b[rng.int(0..<b.count)] = interesting8[rng.int(0..<interesting8.count)]
            case 2 where b.count >= 4: // an interesting little-endian u32
                let i = rng.int(0..<(b.count - 3))
                let v = interesting32[rng.int(0..<interesting32.count)] &+ (rng.int(0..<4) == 0 ? UInt32(b.count) : 0)
                for k in 0..<4 { b[i + k] = UInt8(truncatingIfNeeded: v >> (8 * UInt32(k))) }
            case 3:                    // insert random bytes
                let i = rng.int(0..<(b.count + 1)); b.insert(contentsOf: rng.bytes(1 + rng.int(0..<16)), at: i)
            case 4 where !b.isEmpty:   // delete a range
                let i = rng.int(0..<b.count); b.removeSubrange(i..<min(b.count, i + 1 + rng.int(0..<16)))
            case 5 where !b.isEmpty:   // truncate
                b.removeLast(rng.int(0..<b.count))
            case 6:                    // append
                b += rng.bytes(rng.int(0..<32))
            case 7 where b.count > 2:  // duplicate a range
                let i = rng.int(0..<b.count), n = rng.int(1..<min(64, b.count - i + 1))
                b.insert(contentsOf: b[i..<min(b.count, i + n)], at: rng.int(0..<b.count))
            case 8:                    // splice with another seed
                let other = corpus[rng.int(0..<corpus.count)]
                if !other.isEmpty && !b.isEmpty {
                    let cut = rng.int(0..<b.count), from = rng.int(0..<other.count)
                    b = Array(b[..<cut]) + other[from...]
                }
            case 9 where b.count > 1:  // a large varint (LEB128, up to 11 bytes) somewhere
                let i = rng.int(0..<b.count)
                var v = rng.next() >> UInt64(rng.int(0..<64))
                var bytes: [UInt8] = []
                repeat { bytes.append(UInt8(v & 0x7f) | (v > 0x7f ? 0x80 : 0)); v >>= 7 } while v > 0
                if rng.int(0..<4) == 0 { bytes = [UInt8](repeating: 0xff, count: 1 + rng.int(0..<11)) + [0x01] }
                b.replaceSubrange(i..<min(b.count, i + bytes.count), with: bytes)
            case 10 where target == .snapshot || target == .config || target == .lock:
                b = mutateJSON(b, rng: &rng)
            default:
                break
            }
        }
        if target == .packTail && rng.int(0..<2) == 0 { fixPackTail(&b, rng: &rng) }
        return b
    }

    /// Makes a mutated pack's trailer and CRC consistent again, so mutations reach the entries.
    static func fixPackTail(_ b: inout [UInt8], rng: inout SeededRandom) {
        guard b.count >= 20 else { return }
        var hl = Int(b[b.count - 12]) | Int(b[b.count - 11]) << 8 | Int(b[b.count - 10]) << 16 | Int(b[b.count - 9]) << 24
        if rng.int(0..<2) == 0 || hl < 8 || hl + 12 > b.count {
            // A header length that fits: 8 + 44·n.
            let n = rng.int(0..<max(1, (b.count - 20) / 44 + 1))
            hl = min(8 + 44 * n, b.count - 12)
            for k in 0..<4 { b[b.count - 12 + k] = UInt8(truncatingIfNeeded: hl >> (8 * k)) }
        }
        b.replaceSubrange((b.count - 8)..., with: PackFormat.magic)
        let start = b.count - 12 - hl
        guard start >= 0, hl >= 8 else { return }
        let crc = b.withUnsafeBytes { buf -> UInt32 in
            let body = UnsafeRawBufferPointer(rebasing: buf[start..<(b.count - 16)])
            return UInt32(crc32Of(body))
        }
        for k in 0..<4 { b[b.count - 16 + k] = UInt8(truncatingIfNeeded: crc >> (8 * UInt32(k))) }
    }

    static func mutateJSON(_ b: [UInt8], rng: inout SeededRandom) -> [UInt8] {
        var s = String(decoding: b, as: UTF8.self)
        let replacements = ["0", "-1", "1e400", "18446744073709551616", "-9223372036854775809", "1.5", "\"\"", "null", "[]", "{}", "true",
                            "\"2026-13-45T99:99:99.9999999999999Z\"", "\"Z\"", "\"-999-01-01T00:00:00Z\"", "\"2026-11-27T09:23:18.Z\"",
                            "\"9999999999-01-01T00:00:00Z\"", "\"\\ud800\"", String(repeating: "[", count: 5000) + String(repeating: "]", count: 5000),
                            "\"" + String(repeating: "a", count: 70000) + "\""]
        // Replace a JSON value (after a ':' or inside an array) with something else.
        let colons = s.indices.filter { s[$0] == ":" || s[$0] == "[" || s[$0] == "," }
        if let at = colons.isEmpty ? nil : colons[rng.int(0..<colons.count)] {
            let valueStart = s.index(after: at)
            var end = valueStart
            var depth = 0
            var inString = false
            while end < s.endIndex {
                let c = s[end]
                if inString { if c == "\"" { inString = false } }
                else if c == "\"" { inString = true }
                else if c == "[" || c == "{" { depth += 1 }
                else if c == "]" || c == "}" { if depth == 0 { break }; depth -= 1 }
                else if c == "," && depth == 0 { break }
                end = s.index(after: end)
            }
            s.replaceSubrange(valueStart..<end, with: " " + replacements[rng.int(0..<replacements.count)])
        }
        return Array(s.utf8)
    }

    // MARK: Running

    /// Fuzzes one target for `seconds` in a child process.
    func fuzz(_ target: Target, seconds: Double, seed: UInt64) -> IsolatedRun.Outcome {
        let corpus = Self.seeds(target)
        return IsolatedRun.run(timeout: seconds + 30) { run in
            var rng = SeededRandom(seed: seed)
            let stop = Date().addingTimeInterval(seconds)
            // The seeds themselves decode.
            for s in corpus {
                run.willDecode(target: target.rawValue, s)
                if !target.decode(s, rng: &rng) { _exit(3) }
            }
            var pool = corpus
            var i = 0
            while i % 64 != 0 || Date() < stop {
                i += 1
                let input = Self.mutate(pool[rng.int(0..<pool.count)], target: target, corpus: corpus, rng: &rng)
                run.willDecode(target: target.rawValue, input)
                if target.decode(input, rng: &rng) {
                    run.count(0)
                    // Accepted mutants become parents: the next mutations go deeper.
                    if pool.count < 256 { pool.append(input) } else { pool[rng.int(corpus.count..<pool.count)] = input }
                } else {
                    run.count(1)
                }
            }
        }
    }

    func failIfCrashed(_ outcome: IsolatedRun.Outcome, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        guard outcome.crashed else { return }
        let target = Target(rawValue: outcome.lastTarget)?.name ?? "target\(outcome.lastTarget)"
        let hex = hexString(outcome.lastInput)
        let dir = "/tmp/accord-fuzz-crashers"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let saved = dir + "/\(target)-\(SHA256Hasher.hash(outcome.lastInput).short).hex"
        try? Files.write(saved, Array("# \(what): \(outcome)\n\(hex)\n".utf8))
        XCTFail("\(what): \(outcome). Input (\(outcome.lastInput.count) bytes, saved to \(saved); copy it to Tests/AccordFaultTests/Crashers/\(target)-NAME.hex):\n\(hex.prefix(4000))",
                file: file, line: line)
    }

    func testEveryDecoderSurvivesRandomMutationsOfValidInput() {
        let seconds = slowTestsEnabled ? 30.0 : 1.5
        var lines: [String] = []
        for (k, target) in Target.fuzzed.enumerated() {
            let outcome = fuzz(target, seconds: seconds, seed: 0xF022 &+ UInt64(k))
            if outcome.exitStatus == 3 { XCTFail("\(target.name): a valid seed input does not decode"); continue }
            failIfCrashed(outcome, "fuzzing \(target.name)")
            lines.append("\(target.name): \(outcome.iterations) inputs, \(outcome.counters[0]) accepted, \(outcome.counters[1]) rejected, max RSS \(outcome.maxRSSKiB / 1024) MiB — \(outcome.crashed ? "CRASH" : "ok")")
            XCTAssertLessThan(outcome.maxRSSKiB, 1 << 20, "\(target.name): decoding small inputs used \(outcome.maxRSSKiB / 1024) MiB")
        }
        print("decoder fuzzing (\(seconds) s per target):\n  " + lines.joined(separator: "\n  "))
    }

    // MARK: Saved crashers

    /// Every `Crashers/<target>-<what>.hex` decodes without crashing, hanging
    /// or exhausting memory. Content: the input in hex (whitespace ignored);
    /// `#` lines say what crashed, where, and what should happen instead.
    /// The fuzz test saves a crasher it finds to /tmp/accord-fuzz-crashers/.
    func testSavedCrashersDecodeWithoutCrashing() throws {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Crashers").path
        let files = ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { $0.hasSuffix(".hex") }.sorted()
        var lines: [String] = []
        for name in files {
            guard let target = Target.allCases.first(where: { name.hasPrefix($0.name + "-") }) else {
                XCTFail("\(name): the file name must start with a target name (\(Target.allCases.map(\.name)))"); continue
            }
            let text = try String(contentsOfFile: dir + "/" + name, encoding: .utf8)
            let comment = text.split(separator: "\n").filter { $0.hasPrefix("#") }.map { $0.dropFirst().trimmingCharacters(in: .whitespaces) }.joined(separator: " ")
            let hex = text.split(separator: "\n").filter { !$0.hasPrefix("#") }.joined().filter { !$0.isWhitespace }
            var bytes: [UInt8] = []
            var it = hex.makeIterator()
            while let hi = it.next(), let lo = it.next() { bytes.append(UInt8(String([hi, lo]), radix: 16) ?? 0) }
            // 1 GiB of address space beyond what the process uses: a decoder needs a few MiB for these inputs.
            let outcome = IsolatedRun.run(timeout: 30, addressSpaceHeadroom: 1 << 30) { run in
                var rng = SeededRandom(seed: 1)
                run.willDecode(target: target.rawValue, bytes)
                _ = target.decode(bytes, rng: &rng)
            }
            lines.append("\(name): \(outcome.crashed ? "FAILS" : "ok") — \(outcome)")
            if outcome.crashed { XCTFail("saved crasher \(name) (\(comment)): \(outcome)") }
        }
        print("saved crashers:\n  " + lines.joined(separator: "\n  "))
    }
}

extension ParserFuzzTests {
    /// The saved hostile manifests and chunk-list bombs are refused by a
    /// validity rule (`ManifestError.invalid`, `ChunkList.TooLong`), not by
    /// an accident of their encoding: without validation they would reach the
    /// trap in `TreeRules` or allocate gigabytes.
    func testSavedHostileManifestsAreRefusedByAValidityRule() throws {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Crashers").path
        let files = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasPrefix("manifestTree-") || $0.hasPrefix("chunkList-") }.sorted()
        XCTAssertGreaterThanOrEqual(files.count, 8)
        for name in files {
            let text = try String(contentsOfFile: dir + "/" + name, encoding: .utf8)
            let hex = Array(text.split(separator: "\n").filter { !$0.hasPrefix("#") }.joined().filter { !$0.isWhitespace })
            let bytes = stride(from: 0, to: hex.count - 1, by: 2).map { UInt8(String(hex[$0...$0 + 1]), radix: 16) ?? 0 }
            if name.hasPrefix("chunkList-") {
                let bound = Int(bytes[0]) | Int(bytes[1]) << 8 | Int(bytes[2]) << 16 | Int(bytes[3]) << 24
                let blobs = Blobs.split(bytes[4...])
                XCTAssertThrowsError(try ChunkList.resolve([Blobs.id(0)], maxIDs: bound) { try Blobs.load($0, blobs) }, name) {
                    XCTAssertTrue($0 is ChunkList.TooLong, "\(name): refused for another reason: \($0)")
                }
                continue
            }
            let blobs = Blobs.split(bytes[...])
            var reader = ManifestReader(blobs: [Blobs.id(0)]) { try Blobs.load($0, blobs) }
            XCTAssertThrowsError(try { while try reader.next() != nil {} }(), name) { error in
                guard let e = error as? ManifestError, case .invalid = e else { return XCTFail("\(name): refused for another reason: \(error)") }
            }
        }
    }
}

func crc32Of(_ body: UnsafeRawBufferPointer) -> UInt {
    // zlib's CRC-32 (reflected 0xEDB88320), as FORMAT.md specifies, computed here independently.
    var crc: UInt32 = 0xFFFF_FFFF
    for byte in body {
        crc ^= UInt32(byte)
        for _ in 0..<8 { crc = (crc >> 1) ^ (0xEDB8_8320 & (0 &- (crc & 1))) }
    }
    return UInt(crc ^ 0xFFFF_FFFF)
}
