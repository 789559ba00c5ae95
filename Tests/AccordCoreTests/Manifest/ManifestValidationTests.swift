import Foundation
import XCTest
import AccordTestSupport
#if canImport(Glibc)
import Glibc
#endif
@testable import AccordCore
import AccordRuntime

/// The manifest validity rules (FORMAT.md, "Manifest", "Validity"): every
/// hostile record is refused by `ManifestReader.next()` with
/// `ManifestError.invalid` naming the snapshot, the record number and the
/// path, before anything downstream sees it — and chunk-list bombs are
/// refused before their ids are allocated.
final class ManifestValidationTests: XCTestCase {
    typealias Store = ChunkListTests.MemoryStore
    let snapshot = SnapshotID(hashing: "crafted snapshot")

    // MARK: Helpers

    func p(_ s: String) -> RawPath { Array(s.utf8) }
    func dir(_ path: String) -> ManifestEntry { ManifestEntry(kind: .directory, path: p(path), mode: 0o755) }
    func file(_ path: String, size: UInt64 = 0, blobs: Int = 0) -> ManifestEntry {
        ManifestEntry(kind: .file, path: p(path), size: size, blobs: (0..<blobs).map { BlobID(hashing: "content \($0)") })
    }
    func symlink(_ path: String, to target: String) -> ManifestEntry {
        ManifestEntry(kind: .symlink, path: p(path), mode: 0o777, linkTarget: p(target))
    }
    func hardlink(_ path: String, to target: String) -> ManifestEntry {
        ManifestEntry(kind: .hardlink, path: p(path), linkTarget: p(target))
    }

    /// The raw stream of `entries` as given (no writer checks), stored in `store`.
    func manifest(_ entries: [ManifestEntry], _ store: Store) -> [BlobID] {
        var w = ByteWriter()
        w.raw(ManifestCodec.magic)
        for e in entries { ManifestCodec.encode(e, into: &w) }
        return [store.put(w.bytes)]
    }

    func readAll(_ entries: [ManifestEntry], _ store: Store = Store()) throws -> [ManifestEntry] {
        var reader = ManifestReader(blobs: manifest(entries, store), snapshot: snapshot) { try store.load($0) }
        var out: [ManifestEntry] = []
        while let e = try reader.next() { out.append(e) }
        return out
    }

    /// Reading `entries` must stop at record `record` (from 1) with an
    /// invalid-manifest error naming the snapshot, the record, `path` (as
    /// printed) and a rule containing `rule`.
    func assertRejected(_ entries: [ManifestEntry], _ store: Store = Store(), record: Int, path: String, rule: String,
                        _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        do {
            let read = try readAll(entries, store)
            XCTFail("\(what): accepted (\(read.count) entries: \(read.map(\.path.displayPath)))", file: file, line: line)
        } catch let e as ManifestError {
            guard case .invalid(let s, let r, let path0, let rule0) = e else {
                return XCTFail("\(what): wrong error \(e)", file: file, line: line)
            }
            XCTAssertEqual(s, snapshot, what, file: file, line: line)
            XCTAssertEqual(r, record, "\(what): wrong record number in \(e)", file: file, line: line)
            XCTAssertEqual(path0, entries[record - 1].path, what, file: file, line: line)
            XCTAssertTrue(rule0.contains(rule), "\(what): rule \"\(rule0)\" does not say \"\(rule)\"", file: file, line: line)
            let text = e.description
            for word in ["snapshot \(snapshot.short)", "record \(record)", path, rule] where !text.contains(word) {
                XCTFail("\(what): the message does not name \"\(word)\": \(text)", file: file, line: line)
            }
        } catch {
            XCTFail("\(what): wrong error type \(type(of: error)): \(error)", file: file, line: line)
        }
    }

    // MARK: Paths

    func testPathsThatAreNotAbsoluteAndCanonicalAreRejected() {
        let cases: [(RawPath, String, String)] = [
            (p("/../../x"), "/../../x", "has a .. component"),
            (p("/opt/anaconda/storage/git/../../../etc/cron.d/x"), "/opt/anaconda/storage/git/../../../etc/cron.d/x", "has a .. component"),
            (p("/a/.."), "/a/..", "has a .. component"),
            (p("etc/passwd"), "etc/passwd", "is not absolute"),
            (p("x"), "x", "is not absolute"),
            ([], "\"\"", "is empty"),
            (p("/a/./b"), "/a/./b", "has a . component"),
            (p("/."), "/.", "has a . component"),
            (p("//etc"), "//etc", "has an empty component"),
            (p("/a//b"), "/a//b", "has an empty component"),
            (p("/a/"), "/a/", "ends in /"),
            (p("/a") + [0] + p("b"), "/a\\x00b", "holds a NUL byte"),
        ]
        for (path, printed, rule) in cases {
            var e = file("/x")
            e.path = path
            assertRejected([dir("/"), e], record: 2, path: printed, rule: rule, "path \(printed)")
        }
        XCTAssertEqual(ManifestEntry.canonicalPathProblem(p("/x/../y")), "has a .. component")
        XCTAssertNil(ManifestEntry.canonicalPathProblem(p("/")))
        // Canonical paths with awkward bytes are fine.
        XCTAssertNoThrow(try readAll([dir("/"), file("/..."), file("/.a"), file("/a b\n"), ManifestEntry(kind: .file, path: [0x2f, 0xff, 0xfe])]))
    }

    // MARK: Order and nesting

    func testRecordsOutOfTreeOrderOrRepeatedAreRejected() {
        assertRejected([dir("/"), file("/b"), file("/a")], record: 3, path: "/a", rule: "out of tree order", "/b then /a")
        assertRejected([dir("/"), dir("/a"), file("/a-c"), file("/a/b")], record: 4, path: "/a/b", rule: "out of tree order",
                       "/a/b after /a-c (plain byte order)")
        assertRejected([dir("/"), file("/a"), file("/a")], record: 3, path: "/a", rule: "appears twice", "a file twice")
        // A directory entry followed by a symlink entry of the same path.
        assertRejected([dir("/"), dir("/etc"), symlink("/etc", to: "/")], record: 3, path: "/etc", rule: "appears twice",
                       "directory then symlink of the same path")
        assertRejected([dir("/"), dir("/")], record: 2, path: "/", rule: "appears twice", "/ twice")
    }

    func testEntriesBelowANonDirectoryAreRejected() {
        assertRejected([dir("/"), symlink("/a", to: "/etc"), file("/a/passwd", size: 5, blobs: 1)], record: 3, path: "/a/passwd",
                       rule: "below \"/a\", which is a symlink", "a file beneath a symlink")
        assertRejected([dir("/"), symlink("/a", to: "/etc"), dir("/a/b"), file("/a/b/c")], record: 3, path: "/a/b",
                       rule: "below \"/a\", which is a symlink", "a directory beneath a symlink")
        assertRejected([dir("/"), file("/f"), file("/f/x")], record: 3, path: "/f/x", rule: "below \"/f\", which is a file", "beneath a file")
        assertRejected([dir("/"), file("/f"), hardlink("/g", to: "/f"), file("/g/x")], record: 4, path: "/g/x",
                       rule: "below \"/g\", which is a hardlink", "beneath a hard link")
        let stream = ManifestEntry(kind: .stream, path: p("/db.sql"), mode: 0o600)
        assertRejected([dir("/"), stream, file("/db.sql/x")], record: 3, path: "/db.sql/x", rule: "which is a stream", "beneath a stream")
        // The nearest recorded ancestor counts, even with directories between left out.
        assertRejected([dir("/"), symlink("/a", to: "/"), file("/a/b/c/d")], record: 3, path: "/a/b/c/d",
                       rule: "below \"/a\", which is a symlink", "deep beneath a symlink, ancestors not recorded")
        // A symlink at / followed by entries; and a symlink (or file) at / at all.
        assertRejected([symlink("/", to: "/etc"), file("/passwd")], record: 1, path: "/", rule: "/ must be a directory", "symlink at /")
        assertRejected([file("/")], record: 1, path: "/", rule: "/ must be a directory", "file at /")
        // Siblings after a symlink's subtree position are fine, as are entries without recorded ancestors.
        XCTAssertEqual(try readAll([dir("/"), symlink("/a", to: "/etc"), file("/a-b"), file("/a.c"), dir("/b"), file("/b/c")]).count, 6)
        XCTAssertEqual(try readAll([file("/srv/x/y"), dir("/srv/z"), file("/srv/z/w")]).count, 3)
    }

    // MARK: Hard links

    func testHardLinksMustNameAnEarlierRegularFileOfTheSnapshot() {
        let base = [dir("/"), dir("/d"), file("/d/f", size: 3, blobs: 1), symlink("/d/l", to: "f")]
        assertRejected(base + [hardlink("/e", to: "/etc/passwd")], record: 5, path: "/e", rule: "not an earlier regular file",
                       "hard link to a path outside the snapshot")
        assertRejected(base + [hardlink("/e", to: "/d/../../etc/shadow")], record: 5, path: "/e", rule: "not an earlier regular file",
                       "hard link to a non-canonical path")
        assertRejected([dir("/"), hardlink("/a", to: "/b"), file("/b")], record: 2, path: "/a", rule: "not an earlier regular file",
                       "hard link to a later path")
        assertRejected(base + [hardlink("/e", to: "/d")], record: 5, path: "/e", rule: "not an earlier regular file", "hard link to a directory")
        assertRejected(base + [hardlink("/e", to: "/d/l")], record: 5, path: "/e", rule: "not an earlier regular file", "hard link to a symlink")
        assertRejected(base + [hardlink("/e", to: "/d/h"), hardlink("/f", to: "/e")], record: 5, path: "/e",
                       rule: "not an earlier regular file", "hard link to a hard link")
        let stream = ManifestEntry(kind: .stream, path: p("/s.sql"), mode: 0o600)
        assertRejected(base + [stream, hardlink("/t", to: "/s.sql")], record: 6, path: "/t", rule: "not an earlier regular file",
                       "hard link to a stream")
        var sized = hardlink("/e", to: "/d/f")
        sized.size = 3
        assertRejected(base + [sized], record: 5, path: "/e", rule: "size 3", "hard link with a size")
        XCTAssertEqual(try readAll(base + [hardlink("/e", to: "/d/f"), hardlink("/f", to: "/d/f")]).count, 6)
    }

    // MARK: Other fields

    func testKindsWithoutContentHaveNoBlobsAndLinkTargetsAreWellFormed() {
        var d = dir("/d"); d.blobs = [BlobID(hashing: "x")]
        assertRejected([dir("/"), d], record: 2, path: "/d", rule: "must have none", "directory with a blob")
        var s = symlink("/s", to: "t"); s.blobs = [BlobID(hashing: "x")]
        assertRejected([dir("/"), s], record: 2, path: "/s", rule: "must have none", "symlink with a blob")
        var ds = dir("/d"); ds.size = 4096
        assertRejected([dir("/"), ds], record: 2, path: "/d", rule: "size 4096", "directory with a size")
        assertRejected([dir("/"), symlink("/s", to: "")], record: 2, path: "/s", rule: "symlink target is empty", "empty symlink target")
        assertRejected([dir("/"), symlink("/s", to: "/etc\u{0}x")], record: 2, path: "/s", rule: "NUL", "symlink target with NUL")
        var f = file("/f"); f.linkTarget = p("/etc/passwd")
        assertRejected([dir("/"), f], record: 2, path: "/f", rule: "has a LinkTarget", "file with a LinkTarget")
        var m = file("/f"); m.mode = 0o100644
        assertRejected([dir("/"), m], record: 2, path: "/f", rule: "above 0o7777", "mode with file-type bits")
        var t = file("/f"); t.mtimeNsec = 1_000_000_000
        assertRejected([dir("/"), t], record: 2, path: "/f", rule: "nanosecond", "nanoseconds out of range")
        var x = file("/f"); x.xattrs = [.init(name: p("user.a\u{0}b"), value: [])]
        assertRejected([dir("/"), x], record: 2, path: "/f", rule: "extended attribute name", "xattr name with NUL")
    }

    // MARK: Blob counts

    func testInlineBlobCountsMustFitTheSize() {
        // At most ⌈size ÷ 64⌉ blobs, at least ⌈size ÷ 64 MiB⌉.
        assertRejected([dir("/"), file("/f", size: 128, blobs: 3)], record: 2, path: "/f", rule: "must have 1 to 2", "3 blobs for 128 bytes")
        assertRejected([dir("/"), file("/f", size: 0, blobs: 1)], record: 2, path: "/f", rule: "must have none", "a blob for an empty file")
        assertRejected([dir("/"), file("/f", size: 1, blobs: 0)], record: 2, path: "/f", rule: "must have 1 to 1", "no blob for 1 byte")
        assertRejected([dir("/"), file("/f", size: (64 << 20) * 3 + 1, blobs: 3)], record: 2, path: "/f", rule: "must have 4 to",
                       "3 blobs for just over 192 MiB")
        let huge = ManifestEntry(kind: .stream, path: p("/s"), size: UInt64(ChunkList.maxIDs) * (64 << 20) + 1, blobs: [BlobID(hashing: "x")])
        assertRejected([dir("/"), huge], record: 2, path: "/s", rule: "needs more than \(ChunkList.maxIDs) blobs", "a size beyond the cap")
        // The edges are accepted.
        XCTAssertEqual(try readAll([dir("/"), file("/a", size: 128, blobs: 2), file("/b", size: 129, blobs: 3), file("/c", size: 64 << 20, blobs: 1),
                                    file("/d", size: (64 << 20) + 1, blobs: 2), file("/e")]).count, 6)
    }

    // MARK: Chunk lists

    /// A record keeping its content in chunk-list blobs `refs`.
    func listed(_ path: String, size: UInt64, refs: [BlobID], kind: ManifestEntry.Kind = .stream) -> ManifestEntry {
        var e = ManifestEntry(kind: kind, path: p(path), mode: 0o600, size: size)
        e.list = ChunkList.Info(refs: refs, blobs: refs, base: [], generation: 0)
        return e
    }

    func ids(_ n: Int, _ tag: String) -> [BlobID] {
        var rng = SeededRandom(seed: SHA256Hasher.hash(tag).w0)
        return (0..<n).map { _ in BlobID(w0: rng.next(), w1: rng.next(), w2: rng.next(), w3: rng.next()) }
    }

    func testChunkListCountsMustFitTheSize() {
        let store = Store()
        let full = store.put(ChunkList.encodeFull(ids(2000, "a")[...]))
        // Readable as it is.
        XCTAssertEqual(try readAll([dir("/"), listed("/s", size: 2000 * 4096, refs: [full])], store)[1].blobs.count, 2000)
        // Too many ids for its size (at most ⌈64,000 ÷ 64⌉ = 1000), and too few (size 2^40 needs 16,384).
        assertRejected([dir("/"), listed("/s", size: 64_000, refs: [full])], store, record: 2, path: "/s",
                       rule: "more than the 1000 content ids", "2000 listed ids for 64,000 bytes")
        assertRejected([dir("/"), listed("/s", size: 1 << 40, refs: [full])], store, record: 2, path: "/s",
                       rule: "2000 content blobs for a size of", "2000 listed ids for 1 TiB")
        // Two parts whose sum is over the bound: refused before the second is appended.
        assertRejected([dir("/"), listed("/s", size: 3000 * 64, refs: [full, full])], store, record: 2, path: "/s",
                       rule: "more than the 3000 content ids", "two parts over the bound")
        // More refs than the size allows ids; a chunk list on a directory.
        assertRejected([dir("/"), listed("/s", size: 64, refs: [full, full])], store, record: 2, path: "/s",
                       rule: "2 chunk-list blobs", "more list blobs than ids")
        assertRejected([dir("/"), listed("/d", size: 0, refs: [full], kind: .directory)], store, record: 2, path: "/d",
                       rule: "has a chunk list", "a directory with a chunk list")
        // Structural rules throw even when list errors are tolerated.
        var reader = ManifestReader(blobs: manifest([dir("/"), listed("/s", size: 64_000, refs: [full])], store), snapshot: snapshot) { try store.load($0) }
        reader.tolerateListErrors = true
        XCTAssertNotNil(try reader.next())
        XCTAssertThrowsError(try reader.next()) { XCTAssertTrue("\($0)".contains("more than the 1000"), "\($0)") }
    }

    /// How far `body` raised this process's resident memory above what it
    /// was before, in bytes: the peak mark (VmHWM) is reset first (Linux's
    /// /proc/self/clear_refs, "5"), so unlike `ru_maxrss`, a process-lifetime
    /// high-water mark, what earlier tests used does not hide it.
    func peakGrowth(file: StaticString = #filePath, line: UInt = #line, _ body: () throws -> Void) rethrows -> Int {
        func status(_ field: String) -> Int {
            guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
                  let l = text.split(separator: "\n").first(where: { $0.hasPrefix(field + ":") }),
                  let kib = Int(String(l.dropFirst(field.count + 1).filter(\.isNumber))) else {
                XCTFail("no \(field) in /proc/self/status", file: file, line: line)
                return 0
            }
            return kib * 1024
        }
        let before = status("VmRSS")
        let reset = (try? "5".write(toFile: "/proc/self/clear_refs", atomically: false, encoding: .utf8)) != nil
        XCTAssertTrue(reset, "cannot reset the peak-RSS mark", file: file, line: line)
        XCTAssertLessThanOrEqual(status("VmHWM"), before + (64 << 20), "the peak-RSS mark was not reset", file: file, line: line)
        try body()
        return status("VmHWM") - before
    }

    func testDeltaBombsAreRejectedBeforeTheirIdsAreAllocated() throws {
        let store = Store()
        // A full part of 65,536 ids (2 MiB), and small deltas copying it whole again and again:
        // 1,024 copies would be 2 GiB of ids, 32,767 copies 64 GiB.
        let part = ids(ChunkList.partSize, "part")
        let base = store.put(ChunkList.encodeFull(part[...]))
        var loads = 0
        let growth = try peakGrowth {
        for copies in [1024, 32767] {
            let delta = ChunkList.encodeDelta(generation: 1, base: [base], total: copies * part.count,
                                              ops: Array(repeating: .copy(from: 0, count: part.count), count: copies))
            XCTAssertLessThan(delta.count, 200_000, "the bomb is small")
            let ref = store.put(delta)
            for size in [UInt64(1) << 20, UInt64(1) << 50] {
                let entries = [dir("/"), listed("/db.sql", size: size, refs: [ref])]
                var reader = ManifestReader(blobs: manifest(entries, store), snapshot: snapshot) { loads += 1; return try store.load($0) }
                XCTAssertNotNil(try reader.next())
                XCTAssertThrowsError(try reader.next(), "a delta copying its base \(copies) times, record size \(size)") { error in
                    guard let me = error as? ManifestError, case .invalid(let s, 2, let path, let rule) = me else {
                        return XCTFail("wrong error: \(error)")
                    }
                    XCTAssertEqual(s, snapshot)
                    XCTAssertEqual(path, p("/db.sql"))
                    let limit = size == 1 << 20 ? (1 << 20) / 64 : ChunkList.maxIDs
                    XCTAssertTrue(rule.contains("more than the \(limit) content ids"), rule)
                }
            }
        }
        }
        // Refused from the delta's header: its base was never loaded.
        XCTAssertFalse(store.blobs.isEmpty)
        XCTAssertEqual(loads, 4 * 2, "each read loads the manifest and the delta only")
        XCTAssertLessThan(growth, 64 << 20, "rejecting delta bombs raised peak memory by \(growth >> 20) MiB")

        let growth2 = try peakGrowth {
        // A chain: a delta whose base is a delta expanding past the cap is refused at that level.
        let wide = store.put(ChunkList.encodeDelta(generation: 1, base: [base], total: 1024 * part.count,
                                                   ops: Array(repeating: .copy(from: 0, count: part.count), count: 1024)))
        let top = store.put(ChunkList.encodeDelta(generation: 2, base: [wide], total: 10, ops: [.copy(from: 0, count: 10)]))
        assertRejected([dir("/"), listed("/db.sql", size: 1 << 20, refs: [top])], store, record: 2, path: "/db.sql",
                       rule: "more than the \(ChunkList.maxIDs) content ids", "a chain whose middle level is a bomb")
        // Runs adding up past Total are refused while decoding (before the base is read).
        let lying = store.put(ChunkList.encodeDelta(generation: 1, base: [base], total: 100,
                                                    ops: Array(repeating: .copy(from: 0, count: part.count), count: 50)))
        XCTAssertThrowsError(try ChunkList.resolve([lying], load: { try store.load($0) })) { XCTAssertTrue("\($0)".contains("a run of 65536 ids"), "\($0)") }
        }
        XCTAssertLessThan(growth2, 64 << 20, "rejecting chained delta bombs raised peak memory by \(growth2 >> 20) MiB")
    }

    /// The review's chain: deltas that each copy their whole base (2^25 ids,
    /// within the cap) down to one 65,536-id part named 512 times, under
    /// records of 64-byte files that each need one id of it. Expanding every
    /// base whole took 5.7 s and 2.1 GiB per record at depth 4; each level
    /// now builds only what the level above copies.
    func testADeepChainUnderTinyRecordsExpandsOnlyWhatTheyCopy() throws {
        let store = Store()
        let part = ids(ChunkList.partSize, "part")
        let partRef = store.put(ChunkList.encodeFull(part[...]))
        let cap = ChunkList.maxIDs
        var level = store.put(ChunkList.encodeDelta(generation: 1, base: Array(repeating: partRef, count: cap / part.count),
                                                    total: cap, ops: [.copy(from: 0, count: cap)]))
        var chain = [level]
        for g in 2..<ChunkList.maxGeneration {
            level = store.put(ChunkList.encodeDelta(generation: g, base: [level], total: cap, ops: [.copy(from: 0, count: cap)]))
            chain.append(level)
        }
        XCTAssertLessThan(store.blobs[level]!.count, 64, "each level is a few bytes")
        // 40 records of 64 bytes (one id each), copying from both ends and the middle of the chain.
        let positions = [0, cap - 1, cap / 2 + 7, part.count - 1]
        var entries = [dir("/")]
        var expected: [BlobID] = []
        for k in 0..<40 {
            let from = positions[k % positions.count]
            let top = store.put(ChunkList.encodeDelta(generation: ChunkList.maxGeneration, base: [level], total: 1, ops: [.copy(from: from, count: 1)]))
            var e = listed("/f\(1000 + k)", size: 64, refs: [top], kind: .file)
            e.mode = 0o644
            entries.append(e)
            expected.append(part[from % part.count])
        }
        var loads = 0
        var read: [ManifestEntry] = []
        let growth = try peakGrowth {
            var reader = ManifestReader(blobs: manifest(entries, store), snapshot: snapshot) { loads += 1; return try store.load($0) }
            while let e = try reader.next() { read.append(e) }
        }
        XCTAssertEqual(read.count, 41)
        XCTAssertEqual(read.dropFirst().map { $0.blobs }, expected.map { [$0] }, "each record resolves to the id it copies")
        XCTAssertEqual(read[1].list?.generation, ChunkList.maxGeneration)
        XCTAssertEqual(read[1].list?.blobs.count, 1 + chain.count + cap / part.count, "the whole chain is still listed as needed")
        // Per record: the manifest once, its own delta and the 31 below it; the part once for the whole reader.
        XCTAssertLessThanOrEqual(loads, 1 + 40 * ChunkList.maxGeneration + 1)
        XCTAssertLessThan(growth, 64 << 20, "resolving 40 records on a 2^25-id chain raised peak memory by \(growth >> 20) MiB")
    }

    /// Partial expansion gives exactly what whole expansion gives, on random
    /// chains whose copies overlap, repeat, reorder and shrink their bases.
    func testPartialExpansionMatchesWholeExpansion() throws {
        var rng = SeededRandom(seed: 0xC1_0513)
        for round in 0..<30 {
            let store = Store()
            // Bottom: 1 to 4 full parts of 1 to 300 ids.
            let parts = (0..<(1 + rng.below(4))).map { k in ids(1 + rng.below(300), "r\(round) p\(k)") }
            var refs = parts.map { store.put(ChunkList.encodeFull($0[...])) }
            var whole = parts.flatMap { $0 }
            for g in 1...(1 + rng.below(6)) {
                var ops: [ChunkList.Op] = []
                var next: [BlobID] = []
                for _ in 0..<(1 + rng.below(8)) {
                    if rng.below(4) == 0 {
                        let new = ids(1 + rng.below(5), "r\(round) g\(g) i\(ops.count)")
                        ops.append(.insert(new[...])); next += new
                    } else {
                        let from = rng.below(whole.count), count = 1 + rng.below(whole.count - from)
                        ops.append(.copy(from: from, count: count)); next += whole[from..<from + count]
                    }
                }
                refs = [store.put(ChunkList.encodeDelta(generation: g, base: refs, total: next.count, ops: ops))]
                whole = next
            }
            XCTAssertEqual(try ChunkList.resolve(refs) { try store.load($0) }.0, whole, "round \(round)")
        }
    }

    // MARK: Extended attributes

    /// A raw record of `count` xattrs, each named "a" with an empty value (3 bytes each).
    func xattrBomb(_ path: String, count: Int) -> [UInt8] {
        var r = ByteWriter(capacity: 64 + 3 * count)
        r.u8(ManifestEntry.Kind.file.rawValue)
        r.string(p(path))
        for _ in 0..<3 { r.varint(0) }          // mode, uid, gid
        r.zigzag(0); r.varint(0); r.zigzag(0); r.varint(0)
        for _ in 0..<3 { r.varint(0) }          // inode, device, size
        r.string([UInt8]())
        r.varint(UInt64(count))
        var xattrs = [UInt8](repeating: 0, count: 3 * count)
        xattrs.withUnsafeMutableBufferPointer { b in for i in stride(from: 0, to: b.count, by: 3) { b[i] = 1; b[i + 1] = 0x61 } }
        r.raw(xattrs)
        r.varint(0)
        var w = ByteWriter(capacity: r.bytes.count + 16)
        w.raw(ManifestCodec.magic)
        ManifestCodec.encode(dir("/"), into: &w)
        w.varint(UInt64(r.bytes.count))
        w.raw(r.bytes)
        return w.bytes
    }

    func testXattrBombsAreRefusedBeforeAllocating() throws {
        // The review's record: 16.7 million xattrs in 48 MiB (it took 1.17 GiB to read).
        let store = Store()
        let bomb = store.put(xattrBomb("/f", count: 16_700_000))
        let growth = try peakGrowth {
            var reader = ManifestReader(blobs: [bomb], snapshot: snapshot) { try store.load($0) }
            XCTAssertNotNil(try reader.next())
            XCTAssertThrowsError(try reader.next()) { error in
                guard let me = error as? ManifestError, case .invalid(let s, 2, let path, let rule) = me else { return XCTFail("wrong error: \(error)") }
                XCTAssertEqual(s, snapshot)
                XCTAssertEqual(path, p("/f"))
                XCTAssertTrue(rule.contains("16700000 extended attributes, more than the 32768"), rule)
                XCTAssertTrue("\(me)".contains("record 2"), "\(me)")
            }
        }
        // The reader holds the 48 MiB stream once; nothing is allocated per xattr.
        XCTAssertLessThan(growth, 128 << 20, "refusing the xattr bomb raised peak memory by \(growth >> 20) MiB")

        // The limits are exact: 32,768 xattrs read, one more does not.
        let most = store.put(xattrBomb("/f", count: ManifestCodec.maxXattrs))
        var reader = ManifestReader(blobs: [most], snapshot: snapshot) { try store.load($0) }
        XCTAssertNotNil(try reader.next())
        XCTAssertEqual(try reader.next()?.xattrs.count, ManifestCodec.maxXattrs)
        assertRejectedStream([store.put(xattrBomb("/f", count: ManifestCodec.maxXattrs + 1))], store, rule: "more than the 32768")
        // 64 MiB of names and values: 64 values of 1 MiB - 2 bytes read; one more byte does not.
        func big(_ extra: Int) -> ManifestEntry {
            var e = file("/f")
            let value = [UInt8](repeating: 7, count: (1 << 20) - 3)
            e.xattrs = (0..<64).map { (k: Int) -> ManifestEntry.Xattr in
                let name: [UInt8] = [0x61, UInt8(0x30 + k / 10), UInt8(0x30 + k % 10)]
                return ManifestEntry.Xattr(name: name, value: value)
            }
            e.xattrs[0].value += Array(repeating: 7, count: extra)
            return e
        }
        XCTAssertEqual(try readAll([dir("/"), big(0)])[1].xattrs.count, 64)
        assertRejected([dir("/"), big(1)], record: 2, path: "/f", rule: "more than the 67108864 bytes", "xattrs of 64 MiB + 1 byte")
    }

    func assertRejectedStream(_ blobs: [BlobID], _ store: Store, rule: String, file: StaticString = #filePath, line: UInt = #line) {
        var reader = ManifestReader(blobs: blobs, snapshot: snapshot) { try store.load($0) }
        XCTAssertThrowsError(try { while try reader.next() != nil {} }(), file: file, line: line) { error in
            XCTAssertTrue("\(error)".contains(rule), "\(error)", file: file, line: line)
        }
    }

    // MARK: The writer

    func testTheWriterRefusesWhatReadersWouldRefuse() throws {
        func attempt(_ entries: [ManifestEntry]) -> Error? {
            let store = Store()
            let writer = ManifestWriter(gear: GearTable(seed: 5), store: { store.store($0) }, lists: { store.storeList($0) })
            do { for e in entries { try writer.append(e) }; _ = try writer.finish(); return nil } catch { return error }
        }
        let cases: [([ManifestEntry], String)] = [
            ([dir("/"), file("/a/../b")], "has a .. component"),
            ([dir("/"), file("/b"), file("/a")], "out of tree order"),
            ([dir("/"), hardlink("/h", to: "/nowhere")], "not an earlier regular file"),
            ([dir("/"), symlink("/l", to: "/etc"), file("/l/x")], "which is a symlink"),
            ([dir("/"), file("/f", size: 64, blobs: 2)], "must have 1 to 1"),
            ([dir("/"), ManifestEntry(kind: .file, path: p("/x"), xattrs: Array(repeating: .init(name: p("user.a"), value: []), count: 32769))], "extended attributes"),
        ]
        for (entries, rule) in cases {
            guard let error = attempt(entries) else { XCTFail("the writer accepted \(entries.map(\.path.displayPath))"); continue }
            XCTAssertTrue("\(error)".contains(rule) && "\(error)".contains(entries.last!.path.displayPath), "\(error)")
        }
        XCTAssertNil(attempt([dir("/"), file("/a", size: 64, blobs: 1), hardlink("/b", to: "/a")]))
    }

    func testResolveStopsAtTheBoundItIsGiven() throws {
        let store = Store()
        let a = store.put(ChunkList.encodeFull(ids(1500, "a")[...]))
        let b = store.put(ChunkList.encodeFull(ids(1500, "b")[...]))
        XCTAssertEqual(try ChunkList.resolve([a, b], maxIDs: 3000) { try store.load($0) }.0.count, 3000)
        XCTAssertThrowsError(try ChunkList.resolve([a, b], maxIDs: 2999) { try store.load($0) }) { XCTAssertTrue($0 is ChunkList.TooLong, "\($0)") }
        XCTAssertThrowsError(try ChunkList.resolve([a], maxIDs: 1499) { try store.load($0) }) { XCTAssertTrue($0 is ChunkList.TooLong, "\($0)") }
        // A list blob over 4 MiB is not a chunk list a writer makes.
        let big = store.put(ChunkList.encodeFull(ids(ChunkList.maxListBlobBytes / 32 + 1, "big")[...]))
        XCTAssertThrowsError(try ChunkList.resolve([big]) { try store.load($0) }) { XCTAssertTrue("\($0)".contains("over the"), "\($0)") }
        // A run of 0 ids is refused (every op holds one id or more).
        let zero = store.put(ChunkList.encodeDelta(generation: 1, base: [a], total: 1, ops: [.copy(from: 0, count: 0), .copy(from: 0, count: 1)]))
        XCTAssertThrowsError(try ChunkList.resolve([zero]) { try store.load($0) })
    }

    // MARK: A valid manifest

    func testAManifestAsTheWriterMakesItPasses() throws {
        // Every kind, hard links, a stream, long lists (full parts and a delta), awkward names.
        let store = Store()
        let writer = ManifestWriter(gear: GearTable(seed: 5), store: { store.store($0) }, lists: { store.storeList($0) })
        let dumpIDs = ids(70_000, "dump")
        var entries = [dir("/"), dir("/db"), ManifestEntry(kind: .stream, path: p("/db/all.sql"), mode: 0o600, size: 70_000 * 4096, blobs: dumpIDs),
                       dir("/srv"), file("/srv/a", size: 10, blobs: 1), hardlink("/srv/a2", to: "/srv/a"), file("/srv/b\n\u{7f}"),
                       symlink("/srv/l", to: "../etc/../x"), dir("/srv/sub"), hardlink("/srv/sub/a3", to: "/srv/a"), file("/srv/sub/big", size: 3 << 26, blobs: 3)]
        for e in entries { try writer.append(e) }
        let ids1 = try writer.finish()
        var reader = ManifestReader(blobs: ids1, snapshot: snapshot) { try store.load($0) }
        var back: [ManifestEntry] = []
        while let e = try reader.next() { back.append(e) }
        XCTAssertEqual(back, entries)
        XCTAssertEqual(back[2].list?.refs.count, 2, "70,000 ids are two full parts")
        // The next day: a delta on that list.
        var changed = dumpIDs
        changed[500] = BlobID(hashing: "changed")
        entries[2].blobs = changed
        let writer2 = ManifestWriter(gear: GearTable(seed: 5), store: { store.store($0) }, lists: { store.storeList($0) })
        for (k, e) in entries.enumerated() { try writer2.append(e, parent: k == 2 ? back[2] : nil) }
        var reader2 = ManifestReader(blobs: try writer2.finish(), snapshot: snapshot) { try store.load($0) }
        var back2: [ManifestEntry] = []
        while let e = try reader2.next() { back2.append(e) }
        XCTAssertEqual(back2, entries)
        XCTAssertEqual(back2[2].list?.generation, 1, "the second list is a delta")
    }
}
