import Foundation
import XCTest
import AccordTestSupport
#if canImport(Glibc)
import Glibc
#endif
@testable import AccordCore
import AccordRuntime

/// Chunk lists (FORMAT.md, "Chunk lists"): entries of `ChunkList.threshold`
/// blobs or more keep their id list in list blobs, full or as a delta on the
/// parent's list (deltas chain, at most `ChunkList.maxGeneration` deep).
/// Written with `ManifestWriter(lists:)`, read back with `ManifestReader`,
/// against an in-memory blob store.
final class ChunkListTests: XCTestCase {

    // MARK: Helpers

    struct MissingBlob: Error, CustomStringConvertible {
        var id: BlobID
        var description: String { "blob \(id.short) is not in the store" }
    }

    /// Blobs by their SHA-256; remembers which ones were stored as list blobs.
    final class MemoryStore {
        var blobs: [BlobID: [UInt8]] = [:]
        var listBlobs = Set<BlobID>()
        /// Calls of the list `store` closure (also for blobs already present).
        var listStores = 0

        func store(_ bytes: UnsafeRawBufferPointer) -> BlobID {
            let id = BlobID(hashing: bytes)
            blobs[id] = Array(bytes)
            return id
        }

        func storeList(_ bytes: UnsafeRawBufferPointer) -> BlobID {
            listStores += 1
            let id = store(bytes)
            listBlobs.insert(id)
            return id
        }

        func load(_ id: BlobID) throws -> [UInt8] {
            guard let b = blobs[id] else { throw MissingBlob(id: id) }
            return b
        }

        func put(_ bytes: [UInt8]) -> BlobID { bytes.withUnsafeBytes { store($0) } }
    }

    func randomID(_ rng: inout SeededRandom) -> BlobID {
        BlobID(w0: rng.next(), w1: rng.next(), w2: rng.next(), w3: rng.next())
    }

    func randomIDs(_ rng: inout SeededRandom, _ n: Int) -> [BlobID] {
        (0..<n).map { _ in randomID(&rng) }
    }

    func entry(_ path: String, _ ids: [BlobID], kind: ManifestEntry.Kind = .stream) -> ManifestEntry {
        ManifestEntry(kind: kind, path: Array(path.utf8), mode: 0o600, mtimeSec: 1_700_000_000,
                      size: UInt64(ids.count) * 4096, blobs: ids)
    }

    /// Writes one manifest: "/" then `entries` (already in tree order), each
    /// with its parent; returns the manifest's blob ids.
    func writeManifest(_ store: MemoryStore, _ entries: [(ManifestEntry, ManifestEntry?)]) throws -> [BlobID] {
        let writer = ManifestWriter(gear: GearTable(seed: 23), store: { store.store($0) },
                                    lists: { store.storeList($0) })
        try writer.append(ManifestEntry(kind: .directory, path: [0x2f], mode: 0o755))
        for (e, parent) in entries { try writer.append(e, parent: parent) }
        return try writer.finish()
    }

    /// Every entry of a manifest, "/" included.
    func readManifest(_ store: MemoryStore, _ ids: [BlobID]) throws -> [ManifestEntry] {
        var reader = ManifestReader(blobs: ids) { try store.load($0) }
        var out: [ManifestEntry] = []
        while let e = try reader.next() {
            out.append(e)
            if out.count > 100_000 { XCTFail("manifest reader does not end"); break }
        }
        return out
    }

    /// Writes `e` (with `parent`) as the only file of a manifest and reads it back.
    func roundTrip(_ store: MemoryStore, _ e: ManifestEntry, parent: ManifestEntry? = nil,
                   file: StaticString = #filePath, line: UInt = #line) throws -> ManifestEntry {
        let ids = try writeManifest(store, [(e, parent)])
        let back = try readManifest(store, ids)
        XCTAssertEqual(back.count, 2, file: file, line: line)
        guard back.count == 2 else { throw MissingBlob(id: .zero) }
        XCTAssertEqual(back[1], e, "entry read back differs from the one written", file: file, line: line)
        XCTAssertEqual(back[1].blobs.count, e.blobs.count, file: file, line: line)
        return back[1]
    }

    func decoded(_ store: MemoryStore, _ id: BlobID) throws -> ChunkList.Decoded {
        try ChunkList.decode(try store.load(id), id: id)
    }

    func isDelta(_ d: ChunkList.Decoded) -> Bool {
        if case .delta = d { return true }
        return false
    }

    /// Ids inserted (not copied) by a delta blob.
    func insertedCount(_ d: ChunkList.Decoded) -> Int {
        guard case .delta(_, _, _, let ops) = d else { return -1 }
        return ops.reduce(0) { n, op in
            if case .insert(let ids) = op { return n + ids.count }
            return n
        }
    }

    /// `ids` with `replace` ids replaced, `insert` new ids put in and `delete`
    /// ids dropped, each at a random position.
    func edited(_ ids: [BlobID], _ rng: inout SeededRandom, replace: Int, insert: Int, delete: Int) -> (ids: [BlobID], new: Set<BlobID>) {
        var out = ids
        var new = Set<BlobID>()
        var replaced = Set<Int>()
        while replaced.count < replace { replaced.insert(rng.below(out.count)) }
        for i in replaced { let id = randomID(&rng); out[i] = id; new.insert(id) }
        for _ in 0..<insert { let id = randomID(&rng); out.insert(id, at: rng.below(out.count + 1)); new.insert(id) }
        for _ in 0..<delete {
            // Delete an old id (so the new-id count stays exact).
            var i = rng.below(out.count)
            while new.contains(out[i]) { i = rng.below(out.count) }
            out.remove(at: i)
        }
        return (out, new)
    }

    /// What applying a delta's ops to `base` gives (the reader's algorithm, written again).
    func apply(_ ops: [ChunkList.Op], to base: [BlobID]) -> [BlobID]? {
        var out: [BlobID] = []
        for op in ops {
            switch op {
            case .copy(let from, let count):
                guard from >= 0, count > 0, from + count <= base.count else { return nil }
                out.append(contentsOf: base[from..<from + count])
            case .insert(let ids):
                guard !ids.isEmpty else { return nil }
                out.append(contentsOf: ids)
            }
        }
        return out
    }

    // MARK: 1. Round trip

    func testLongListsGoToListBlobsAndRoundTrip() throws {
        var rng = SeededRandom(seed: 0xC1_0001)
        let store = MemoryStore()
        let bigIDs = randomIDs(&rng, 5000)
        let smallIDs = randomIDs(&rng, 10)
        let below = randomIDs(&rng, ChunkList.threshold - 1)
        let at = randomIDs(&rng, ChunkList.threshold)
        let big = entry("/big", bigIDs, kind: .file)
        let small = entry("/small", smallIDs, kind: .file)
        let e1023 = entry("/t/below", below, kind: .file)
        let e1024 = entry("/t/exact", at, kind: .file)
        let ids = try writeManifest(store, [(big, nil), (small, nil), (ManifestEntry(kind: .directory, path: Array("/t".utf8)), nil),
                                            (e1023, nil), (e1024, nil)])
        let back = try readManifest(store, ids)
        XCTAssertEqual(back.map(\.path.displayPath), ["/", "/big", "/small", "/t", "/t/below", "/t/exact"])
        guard back.count == 6 else { return }
        XCTAssertEqual(back[1], big)
        XCTAssertEqual(back[1].blobs, bigIDs)
        XCTAssertEqual(back[2], small)
        XCTAssertEqual(back[4], e1023)
        XCTAssertEqual(back[5], e1024)
        XCTAssertNil(back[0].list)
        XCTAssertNil(back[2].list, "a 10-blob entry must keep its ids inline")
        XCTAssertNil(back[4].list, "an entry of threshold-1 blobs must keep its ids inline")
        XCTAssertNotNil(back[5].list, "an entry of exactly threshold blobs must use list blobs")
        XCTAssertEqual(back[2].referencedBlobs, smallIDs)

        let list = try XCTUnwrap(back[1].list)
        XCTAssertEqual(list.refs.count, 1, "5000 ids fit one full part")
        XCTAssertEqual(list.generation, 0)
        XCTAssertEqual(list.base, [], "a full list has no base")
        XCTAssertEqual(list.blobs, list.refs)
        for r in list.refs {
            XCTAssertTrue(store.listBlobs.contains(r), "list ref \(r.short) was not stored through lists.store")
            guard case .full(let part) = try decoded(store, r) else { return XCTFail("list blob \(r.short) is not a full list") }
            XCTAssertEqual(part, bigIDs)
        }
        let referenced = back[1].referencedBlobs
        XCTAssertEqual(referenced.count, list.blobs.count + bigIDs.count)
        XCTAssertTrue(Set(list.blobs).isSubset(of: Set(referenced)), "referencedBlobs misses the list blobs")
        XCTAssertTrue(Set(bigIDs).isSubset(of: Set(referenced)), "referencedBlobs misses content blobs")
        XCTAssertEqual(Set(store.listBlobs), Set(back[1].list!.blobs + back[5].list!.blobs),
                       "only the two long entries should have stored list blobs")

        // The ids are out of the manifest stream: it holds no 5000 * 32 bytes.
        let manifestBytes = ids.reduce(0) { $0 + store.blobs[$1]!.count }
        XCTAssertLessThan(manifestBytes, 1023 * 32 + 10 * 32 + 4096,
                          "manifest stream is \(manifestBytes) bytes: the long lists seem to be inline")
        for m in ids { XCTAssertFalse(store.listBlobs.contains(m)) }
    }

    func testWriterWithoutListsKeepsLongListsInlineAndTheReaderReadsThem() throws {
        var rng = SeededRandom(seed: 0xC1_0002)
        let store = MemoryStore()
        let bigIDs = randomIDs(&rng, 3000)
        let writer = ManifestWriter(gear: GearTable(seed: 23)) { store.store($0) }
        try writer.append(ManifestEntry(kind: .directory, path: [0x2f]))
        try writer.append(entry("/big", bigIDs))
        let back = try readManifest(store, try writer.finish())
        XCTAssertEqual(back.count, 2)
        XCTAssertEqual(back.last?.blobs, bigIDs)
        XCTAssertNil(back.last?.list)
        XCTAssertTrue(store.listBlobs.isEmpty)
    }

    func testListFieldIsIgnoredOnInputAndByEquality() throws {
        // An entry handed to the writer with a stale `list` (e.g. copied from a
        // parent) must still be written from its `blobs`.
        var rng = SeededRandom(seed: 0xC1_0003)
        let store = MemoryStore()
        var e = entry("/f", randomIDs(&rng, 20))
        e.list = ChunkList.Info(refs: [randomID(&rng)], blobs: [], base: [], generation: 7)
        let ids = try writeManifest(store, [(e, nil)])
        let back = try readManifest(store, ids)
        XCTAssertEqual(back.last?.blobs, e.blobs)
        XCTAssertNil(back.last?.list, "a short entry must not keep a list it was handed")
        XCTAssertEqual(back.last, e, "== must ignore `list`")
    }

    // MARK: 2. Delta

    func testSmallChangesAreStoredAsDeltasChainedOnTheParentsList() throws {
        var rng = SeededRandom(seed: 0xC1_0010)
        let store = MemoryStore()
        let aIDs = randomIDs(&rng, 5000)
        let a = try roundTrip(store, entry("/db/dump.sql", aIDs))
        let aList = try XCTUnwrap(a.list)
        XCTAssertEqual(aList.generation, 0)

        let (bIDs, newIDs) = edited(aIDs, &rng, replace: 100, insert: 50, delete: 30)
        XCTAssertEqual(bIDs.count, 5000 + 50 - 30)
        let listBlobsBefore = store.listBlobs
        let b = try roundTrip(store, entry("/db/dump.sql", bIDs), parent: a)
        XCTAssertEqual(b.blobs, bIDs, "manifest 2 does not give back B's ids")
        let bList = try XCTUnwrap(b.list)
        XCTAssertEqual(bList.refs.count, 1, "a delta is the record's one list blob")
        XCTAssertEqual(bList.generation, 1)
        XCTAssertEqual(bList.base, aList.refs, "the delta must be based on A's full parts")
        XCTAssertEqual(bList.blobs, bList.refs + aList.refs)
        XCTAssertEqual(store.listBlobs.subtracting(listBlobsBefore), Set(bList.refs), "exactly one new list blob")

        let deltaBytes = try store.load(bList.refs[0])
        let d = try decoded(store, bList.refs[0])
        XCTAssertTrue(isDelta(d), "B's list blob is not a delta")
        XCTAssertLessThan(deltaBytes.count, 5000 * 32 / 5, "delta of \(deltaBytes.count) bytes is not much smaller than a full list")
        XCTAssertEqual(insertedCount(d), newIDs.count, "the delta should insert exactly the \(newIDs.count) new ids")
        if case .delta(let generation, let base, let total, _) = d {
            XCTAssertEqual(generation, 1); XCTAssertEqual(base, aList.refs); XCTAssertEqual(total, bIDs.count)
        }
        // The record's referenced blobs keep A's base alive (prune relies on it).
        let referenced = Set(b.referencedBlobs)
        for r in aList.refs + bList.refs { XCTAssertTrue(referenced.contains(r)) }

        // A second delta (C on B) chains on B's delta: generation 2, and it
        // needs the whole chain (C, B, A's full list).
        let (cIDs, cNew) = edited(bIDs, &rng, replace: 20, insert: 5, delete: 5)
        let c = try roundTrip(store, entry("/db/dump.sql", cIDs), parent: b)
        let cList = try XCTUnwrap(c.list)
        XCTAssertEqual(c.blobs, cIDs)
        XCTAssertEqual(cList.generation, 2)
        XCTAssertEqual(cList.refs.count, 1)
        XCTAssertEqual(cList.base, bList.refs, "a delta is based on its parent's list")
        XCTAssertEqual(cList.blobs, cList.refs + bList.refs + aList.refs, "the chain C, B, A")
        let cDelta = try decoded(store, cList.refs[0])
        XCTAssertTrue(isDelta(cDelta))
        XCTAssertEqual(insertedCount(cDelta), cNew.count, "C's delta should insert only the ids new since B")
        let cReferenced = Set(c.referencedBlobs)
        for r in cList.blobs { XCTAssertTrue(cReferenced.contains(r), "referencedBlobs misses chain blob \(r.short)") }
    }

    // MARK: 3. Unchanged

    func testUnchangedListReusesTheParentsRefsAndStoresNothing() throws {
        var rng = SeededRandom(seed: 0xC1_0020)
        let store = MemoryStore()
        let aIDs = randomIDs(&rng, 5000)
        let a = try roundTrip(store, entry("/db/dump.sql", aIDs))
        let stores = store.listStores, blobCount = store.listBlobs.count
        let again = try roundTrip(store, entry("/db/dump.sql", aIDs), parent: a)
        XCTAssertEqual(again.list?.refs, a.list?.refs, "unchanged list must reuse the parent's refs")
        XCTAssertEqual(again.list, a.list)
        XCTAssertEqual(store.listStores, stores, "an unchanged list stored a list blob")
        XCTAssertEqual(store.listBlobs.count, blobCount)

        // Unchanged on a delta parent: the same delta, same generation.
        let (bIDs, _) = edited(aIDs, &rng, replace: 10, insert: 0, delete: 0)
        let b = try roundTrip(store, entry("/db/dump.sql", bIDs), parent: a)
        XCTAssertEqual(b.list?.generation, 1)
        let stores2 = store.listStores
        let b2 = try roundTrip(store, entry("/db/dump.sql", bIDs), parent: b)
        XCTAssertEqual(b2.list, b.list)
        XCTAssertEqual(store.listStores, stores2)
    }

    // MARK: 4. Large change

    func testLargeChangeWritesAFullListAgain() throws {
        var rng = SeededRandom(seed: 0xC1_0030)
        let store = MemoryStore()
        let aIDs = randomIDs(&rng, 5000)
        let a = try roundTrip(store, entry("/db/dump.sql", aIDs))
        for (replace, expectDelta) in [(2500, false), (1600, false), (1400, true), (0, true)] {
            var (bIDs, _) = edited(aIDs, &rng, replace: replace, insert: 0, delete: 0)
            if replace == 0 { bIDs.swapAt(0, 4999) }   // same ids, different order: nothing new, still a change
            let b = try roundTrip(store, entry("/db/dump.sql", bIDs), parent: a)
            let list = try XCTUnwrap(b.list)
            XCTAssertEqual(b.blobs, bIDs)
            if expectDelta {
                XCTAssertEqual(list.generation, 1, "\(replace) of 5000 ids new: expected a delta")
                XCTAssertEqual(list.refs.count, 1)
                XCTAssertTrue(isDelta(try decoded(store, list.refs[0])))
            } else {
                XCTAssertEqual(list.generation, 0, "\(replace) of 5000 ids new (> 30%): expected a full list")
                XCTAssertEqual(list.base, [])
                XCTAssertEqual(list.blobs, list.refs)
                for r in list.refs {
                    XCTAssertFalse(isDelta(try decoded(store, r)), "\(replace) of 5000 ids new: refs hold a delta")
                }
            }
        }
    }

    /// A delta that would exceed `ChunkList.maxBlobBytes` (a huge dump with
    /// many changes) is written as full parts: no list blob outgrows a pack entry.
    func testDeltaLargerThanMaxBlobBytesIsWrittenAsFullParts() throws {
        var rng = SeededRandom(seed: 0xC1_0035)
        let store = MemoryStore()
        let n = 470_000
        let aIDs = randomIDs(&rng, n)
        let a = try roundTrip(store, entry("/db/dump.sql", aIDs))
        var bIDs = aIDs
        // Replace every 4th id from a point on: 29% new (under the 30% share),
        // but 136k new ids = 4.4 MB of delta.
        var replaced = 0
        var i = 0
        while Double(replaced + 1) <= 0.29 * Double(n) && i < n { bIDs[i] = randomID(&rng); replaced += 1; i += 3 }
        XCTAssertGreaterThan(replaced * 32, ChunkList.maxBlobBytes)
        let b = try roundTrip(store, entry("/db/dump.sql", bIDs), parent: a)
        let list = try XCTUnwrap(b.list)
        XCTAssertEqual(b.blobs, bIDs)
        XCTAssertEqual(list.generation, 0, "a delta over \(ChunkList.maxBlobBytes) bytes should have been a full list")
        XCTAssertEqual(list.refs.count, (n + ChunkList.partSize - 1) / ChunkList.partSize)
        for r in list.refs { XCTAssertLessThanOrEqual(try store.load(r).count, ChunkList.maxBlobBytes) }
    }

    // MARK: 5. Generation cap

    func testDeltaChainIsCappedAtMaxGenerationThenAFullListIsWritten() throws {
        var rng = SeededRandom(seed: 0xC1_0040)
        let store = MemoryStore()
        var ids = randomIDs(&rng, 2000)
        let first = try roundTrip(store, entry("/db/dump.sql", ids))
        var previous = first
        var generations: [Int] = []
        var resetAt: Int? = nil
        for step in 1...(ChunkList.maxGeneration + 3) {
            let change = edited(ids, &rng, replace: 3, insert: 1, delete: 1)
            ids = change.ids
            let next = try roundTrip(store, entry("/db/dump.sql", ids), parent: previous)
            let list = try XCTUnwrap(next.list)
            generations.append(list.generation)
            XCTAssertLessThanOrEqual(list.generation, ChunkList.maxGeneration, "step \(step)")
            if list.generation == 0 {
                if resetAt == nil { resetAt = step }
                XCTAssertEqual(list.base, [])
                XCTAssertEqual(list.blobs, list.refs)
                for r in list.refs { XCTAssertFalse(isDelta(try decoded(store, r)), "step \(step): generation 0 but a delta") }
            } else {
                let p = previous.list!
                XCTAssertEqual(list.generation, p.generation + 1, "step \(step)")
                XCTAssertEqual(list.base, p.refs, "step \(step): a delta is based on its parent's list")
                XCTAssertEqual(list.blobs, list.refs + p.blobs, "step \(step): the chain")
                XCTAssertEqual(list.blobs.count, list.generation + 1, "step \(step): one blob per delta plus the full list")
                XCTAssertEqual(insertedCount(try decoded(store, list.refs[0])), change.new.count, "step \(step)")
            }
            previous = next
        }
        XCTAssertEqual(Array(generations.prefix(ChunkList.maxGeneration)), Array(1...ChunkList.maxGeneration))
        XCTAssertEqual(resetAt, ChunkList.maxGeneration + 1, "generations: \(generations)")
        XCTAssertEqual(Array(generations.suffix(2)), [1, 2], "deltas start again on the new full list")
    }

    // MARK: 6. More than one part

    func testMoreThanPartSizeIdsAreSplitIntoFullParts() throws {
        var rng = SeededRandom(seed: 0xC1_0050)
        let store = MemoryStore()
        let aIDs = randomIDs(&rng, 70_000)
        let a = try roundTrip(store, entry("/db/dump.sql", aIDs))
        let list = try XCTUnwrap(a.list)
        XCTAssertEqual(list.refs.count, 2)
        XCTAssertEqual(a.blobs, aIDs)
        guard list.refs.count == 2 else { return }
        guard case .full(let p0) = try decoded(store, list.refs[0]), case .full(let p1) = try decoded(store, list.refs[1]) else {
            return XCTFail("parts are not full lists")
        }
        XCTAssertEqual(p0.count, ChunkList.partSize)
        XCTAssertEqual(p1.count, 70_000 - ChunkList.partSize)
        XCTAssertEqual(p0 + p1, aIDs)

        // Exactly partSize ids: one part.
        let exact = try roundTrip(store, entry("/db/exact.sql", Array(aIDs.prefix(ChunkList.partSize))))
        XCTAssertEqual(exact.list?.refs.count, 1)

        // A delta on a two-part base, with changes in both parts and across the seam.
        var bIDs = aIDs
        for i in [5, 40_000, ChunkList.partSize - 1, ChunkList.partSize, 69_999] { bIDs[i] = randomID(&rng) }
        bIDs.removeSubrange(65_000..<65_100)
        let b = try roundTrip(store, entry("/db/dump.sql", bIDs), parent: a)
        XCTAssertEqual(b.blobs, bIDs)
        XCTAssertEqual(b.list?.generation, 1)
        XCTAssertEqual(b.list?.base, list.refs)
        XCTAssertEqual(b.list?.refs.count, 1)
    }

    // MARK: 7. Damage

    /// Writes a manifest whose "/db/dump.sql" record carries `refs` as its
    /// list refs, then reads it: the read must throw, naming the path.
    func assertUnreadable(_ store: MemoryStore, refs: [BlobID], _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        var e = entry("/db/dump.sql", [])
        e.list = ChunkList.Info(refs: refs, blobs: refs, base: [], generation: 0)
        var w = ByteWriter()
        w.raw(ManifestCodec.magic)
        ManifestCodec.encode(ManifestEntry(kind: .directory, path: [0x2f]), into: &w)
        ManifestCodec.encode(e, into: &w)
        ManifestCodec.encode(entry("/db/z", [randomIDForDamage]), into: &w)
        let manifest = store.put(w.bytes)
        var reader = ManifestReader(blobs: [manifest]) { try store.load($0) }
        do {
            let root = try reader.next()
            XCTAssertEqual(root?.path, [0x2f], what, file: file, line: line)
            let got = try reader.next()
            XCTFail("\(what): read an entry of \(got?.blobs.count ?? -1) blobs instead of throwing", file: file, line: line)
        } catch {
            let message = "\(error)"
            XCTAssertTrue(message.contains("/db/dump.sql"), "\(what): error does not name the path: \(message)", file: file, line: line)
        }
    }

    let randomIDForDamage = BlobID(hashing: "z")

    func testDamagedListBlobsMakeTheReaderThrowNamingThePath() throws {
        var rng = SeededRandom(seed: 0xC1_0060)
        let store = MemoryStore()
        let aIDs = randomIDs(&rng, 2000)
        let a = try roundTrip(store, entry("/db/dump.sql", aIDs))
        let full = a.list!.refs[0]
        let fullBytes = try store.load(full)
        let (bIDs, _) = edited(aIDs, &rng, replace: 40, insert: 10, delete: 10)
        let b = try roundTrip(store, entry("/db/dump.sql", bIDs), parent: a)
        let delta = b.list!.refs[0]
        let deltaBytes = try store.load(delta)
        XCTAssertTrue(isDelta(try decoded(store, delta)))
        // Sanity: the undamaged refs read.
        XCTAssertEqual(try ChunkList.resolve([delta]) { try store.load($0) }.0, bIDs)

        // A missing list blob.
        assertUnreadable(store, refs: [randomID(&rng)], "missing list blob")
        // A delta whose base part is missing.
        let orphan = store.put(ChunkList.encodeDelta(generation: 1, base: [randomID(&rng)], total: 1, ops: [.copy(from: 0, count: 1)]))
        assertUnreadable(store, refs: [orphan], "delta with a missing base")
        // Truncated full list and delta, at several cuts.
        for cut in [0, 1, 4, 5, 6, 7, 8, 40, fullBytes.count / 2, fullBytes.count - 32, fullBytes.count - 1] {
            assertUnreadable(store, refs: [store.put(Array(fullBytes.prefix(cut)))], "full list cut to \(cut) bytes")
        }
        for cut in [0, 5, 6, 7, 8, 39, 40, 41, deltaBytes.count / 2, deltaBytes.count - 32, deltaBytes.count - 1] {
            assertUnreadable(store, refs: [store.put(Array(deltaBytes.prefix(cut)))], "delta cut to \(cut) bytes")
        }
        // Trailing bytes.
        assertUnreadable(store, refs: [store.put(fullBytes + [0])], "full list with a trailing byte")
        assertUnreadable(store, refs: [store.put(deltaBytes + [0])], "delta with a trailing byte")
        // A copy run past the end of its base (and one ending just past it).
        let past = store.put(ChunkList.encodeDelta(generation: 1, base: [full], total: 10, ops: [.copy(from: 1995, count: 10)]))
        assertUnreadable(store, refs: [past], "copy run past its base")
        let far = store.put(ChunkList.encodeDelta(generation: 1, base: [full], total: 1, ops: [.copy(from: Int(Int32.max), count: 1)]))
        assertUnreadable(store, refs: [far], "copy run far past its base")
        // A total that does not match the ops.
        let wrongTotal = store.put(ChunkList.encodeDelta(generation: 1, base: [full], total: 11, ops: [.copy(from: 0, count: 10)]))
        assertUnreadable(store, refs: [wrongTotal], "delta total one too many")
        // Wrong magic, wrong version, unknown form.
        for (i, what) in [(0, "magic byte 0"), (3, "magic byte 3"), (4, "version byte"), (5, "form byte")] {
            var bad = fullBytes
            bad[i] = i == 5 ? 7 : bad[i] ^ 0x20
            assertUnreadable(store, refs: [store.put(bad)], "full list with a bad \(what)")
        }
        var badDelta = deltaBytes
        badDelta[0] = UInt8(ascii: "X")
        assertUnreadable(store, refs: [store.put(badDelta)], "delta with a bad magic")
        // A manifest blob (or any non-list blob) given as a list.
        assertUnreadable(store, refs: [store.put(Array("hello, not a chunk list".utf8))], "not a list blob")
        // A delta that is not the record's only ref; a delta as a delta's base.
        assertUnreadable(store, refs: [delta, full], "delta followed by a full part")
        assertUnreadable(store, refs: [full, delta], "full part followed by a delta")
        for (bad, what) in [([delta, full], "a delta and a full part"), ([full, delta], "a full part and a delta")] {
            let ref = store.put(ChunkList.encodeDelta(generation: 2, base: bad, total: 1, ops: [.copy(from: 0, count: 1)]))
            assertUnreadable(store, refs: [ref], "delta on \(what)")
        }
        // Generations must count the chain: base's generation + 1, 1 ... maxGeneration.
        let onDelta = store.put(ChunkList.encodeDelta(generation: 2, base: [delta], total: 1, ops: [.copy(from: 0, count: 1)]))
        XCTAssertEqual(try ChunkList.resolve([onDelta]) { try store.load($0) }.0, [bIDs[0]], "a generation-2 delta on a delta reads")
        for (g, base) in [(1, delta), (3, delta), (0, full), (2, full), (ChunkList.maxGeneration + 1, full), (Int(Int32.max), full)] {
            let ref = store.put(ChunkList.encodeDelta(generation: g, base: [base], total: 1, ops: [.copy(from: 0, count: 1)]))
            assertUnreadable(store, refs: [ref], "delta of generation \(g) on a base of generation \(base == full ? 0 : 1)")
        }
        // Runs holding more ids than the header's total (a decompression bomb): rejected.
        let bomb = store.put(ChunkList.encodeDelta(generation: 1, base: [full], total: 10,
                                                   ops: Array(repeating: .copy(from: 0, count: 2000), count: 1000)))
        assertUnreadable(store, refs: [bomb], "runs of 2,000,000 ids under a total of 10")
        // Base ids of the delta replaced by a damaged full list.
        let damagedBase = store.put(Array(fullBytes.prefix(fullBytes.count - 1)))
        let onDamaged = store.put(ChunkList.encodeDelta(generation: 1, base: [damagedBase], total: 1, ops: [.copy(from: 0, count: 1)]))
        assertUnreadable(store, refs: [onDamaged], "delta on a truncated base")
        // Damage deep in a chain: a chain of 3 deltas whose full list is missing.
        let lost = randomID(&rng)
        var link = store.put(ChunkList.encodeDelta(generation: 1, base: [lost], total: 1, ops: [.copy(from: 0, count: 1)]))
        for g in 2...3 { link = store.put(ChunkList.encodeDelta(generation: g, base: [link], total: 1, ops: [.copy(from: 0, count: 1)])) }
        assertUnreadable(store, refs: [link], "chain whose full list is missing")
    }

    func testDeltaChainsLongerThanMaxGenerationOrCyclicAreRejected() throws {
        var rng = SeededRandom(seed: 0xC1_0064)
        let store = MemoryStore()
        let ids = randomIDs(&rng, 50)
        let full = store.put(ChunkList.encodeFull(ids[...]))
        // A hand-made chain, each delta dropping the first id: generations 1 ... maxGeneration + 1.
        var chain: [BlobID] = []
        var base = full
        for g in 1...(ChunkList.maxGeneration + 1) {
            base = store.put(ChunkList.encodeDelta(generation: g, base: [base], total: ids.count - g, ops: [.copy(from: 1, count: ids.count - g)]))
            chain.append(base)
        }
        let (top, info) = try ChunkList.resolve([chain[ChunkList.maxGeneration - 1]]) { try store.load($0) }
        XCTAssertEqual(top, Array(ids.dropFirst(ChunkList.maxGeneration)), "a chain maxGeneration deep reads")
        XCTAssertEqual(info.generation, ChunkList.maxGeneration)
        XCTAssertEqual(info.blobs, Array(chain.prefix(ChunkList.maxGeneration).reversed()) + [full])
        assertUnreadable(store, refs: [chain[ChunkList.maxGeneration]], "a chain deeper than maxGeneration")

        // Cycles: blobs stored under ids that are not their hash (damage, or a
        // hostile repository) must not make the reader recurse for ever.
        let selfID = randomID(&rng)
        store.blobs[selfID] = ChunkList.encodeDelta(generation: 1, base: [selfID], total: 1, ops: [.copy(from: 0, count: 1)])
        assertUnreadable(store, refs: [selfID], "a delta based on itself")
        let x = randomID(&rng), y = randomID(&rng)
        store.blobs[x] = ChunkList.encodeDelta(generation: 2, base: [y], total: 1, ops: [.copy(from: 0, count: 1)])
        store.blobs[y] = ChunkList.encodeDelta(generation: 1, base: [x], total: 1, ops: [.copy(from: 0, count: 1)])
        assertUnreadable(store, refs: [x], "two deltas based on each other")
    }

    func testEveryTruncationOfAListBlobIsRejected() throws {
        var rng = SeededRandom(seed: 0xC1_0061)
        let store = MemoryStore()
        let base = randomIDs(&rng, 300)
        let baseRef = store.put(ChunkList.encodeFull(base[...]))
        let (new, _) = edited(base, &rng, replace: 30, insert: 10, delete: 10)
        let ops = ChunkList.diff(base: base, new: new).ops
        let full = ChunkList.encodeFull(new[...])
        let delta = ChunkList.encodeDelta(generation: 1, base: [baseRef], total: new.count, ops: ops)
        XCTAssertEqual(try ChunkList.resolve([store.put(delta)]) { try store.load($0) }.0, new)
        XCTAssertEqual(try ChunkList.resolve([store.put(full)]) { try store.load($0) }.0, new)
        for (name, bytes) in [("full", full), ("delta", delta)] {
            for cut in 0..<bytes.count {
                let ref = store.put(Array(bytes.prefix(cut)))
                XCTAssertThrowsError(try ChunkList.resolve([ref]) { try store.load($0) }, "\(name) list cut to \(cut) of \(bytes.count) bytes was read")
            }
        }
    }

    func testMutatedListBlobsThrowOrResolveToTheirHeaderCount() throws {
        // Random byte damage must never trap; whatever still decodes must be
        // self-consistent (its id count equals what the bytes say).
        var rng = SeededRandom(seed: 0xC1_0062)
        let store = MemoryStore()
        let base = randomIDs(&rng, 400)
        let baseRef = store.put(ChunkList.encodeFull(base[...]))
        let (new, _) = edited(base, &rng, replace: 20, insert: 10, delete: 10)
        let delta = ChunkList.encodeDelta(generation: 1, base: [baseRef], total: new.count, ops: ChunkList.diff(base: base, new: new).ops)
        var failed = 0
        for _ in 0..<2000 {
            var bytes = delta
            // Damage the header and op area, not the 32-byte ids (those stay valid by construction).
            for _ in 0..<(1 + rng.below(3)) {
                let i = rng.below(2) == 0 ? rng.below(min(bytes.count, 48)) : rng.below(bytes.count)
                bytes[i] ^= UInt8(1 + rng.below(255))
            }
            let ref = store.put(bytes)
            do {
                let (ids, info) = try ChunkList.resolve([ref]) { try store.load($0) }
                XCTAssertEqual(info.refs, [ref])
                if case .delta(_, _, let total, _) = try ChunkList.decode(bytes, id: ref) { XCTAssertEqual(ids.count, total) }
            } catch {
                failed += 1
            }
        }
        XCTAssertGreaterThan(failed, 200)
    }

    // MARK: 8. diff property

    func testDiffOpsRebuildTheNewListExactly() throws {
        var rng = SeededRandom(seed: 0xC1_0070)
        let store = MemoryStore()
        for round in 0..<200 {
            // A base with runs of a repeated id (zero blocks) and repeats far apart.
            var base: [BlobID] = []
            let n = round < 4 ? [0, 1, 2, 3][round] : 1 + rng.below(3000)
            let zero = randomID(&rng)
            while base.count < n {
                switch rng.below(10) {
                case 0: base += Array(repeating: zero, count: 1 + rng.below(20))
                case 1 where !base.isEmpty: base.append(base[rng.below(base.count)])
                default: base.append(randomID(&rng))
                }
            }
            base = Array(base.prefix(n))
            // New: random edits of base.
            var new = base
            for _ in 0..<rng.below(30) {
                switch rng.below(7) {
                case 0 where !new.isEmpty:   // replace
                    new[rng.below(new.count)] = randomID(&rng)
                case 1:                      // insert a run of new ids
                    let run = (0..<(1 + rng.below(50))).map { _ in randomID(&rng) }
                    new.insert(contentsOf: run, at: rng.below(new.count + 1))
                case 2 where !new.isEmpty:   // delete a run
                    let at = rng.below(new.count); new.removeSubrange(at..<min(new.count, at + 1 + rng.below(100)))
                case 3 where !base.isEmpty:  // insert a copy of a base run elsewhere (moved / duplicated block)
                    let at = rng.below(base.count), len = min(base.count - at, 1 + rng.below(200))
                    new.insert(contentsOf: base[at..<at + len], at: rng.below(new.count + 1))
                case 4:                      // a run of the repeated id
                    new.insert(contentsOf: Array(repeating: zero, count: 1 + rng.below(30)), at: rng.below(new.count + 1))
                case 5 where new.count > 1:  // swap two blocks
                    let i = rng.below(new.count), j = rng.below(new.count)
                    new.swapAt(i, j)
                default: break
                }
            }
            if round == 5 { new = [] }
            if round == 6 { new = base }
            if round == 7 { new = base.reversed() }

            let (ops, inserted) = ChunkList.diff(base: base, new: new)
            let when = "round \(round): base \(base.count) ids, new \(new.count)"
            XCTAssertEqual(apply(ops, to: base), new, "\(when): ops do not rebuild the new list")
            // Every id of base is copied, never inserted; every new id is inserted.
            let baseSet = Set(base)
            var insertedIDs = 0
            var previousWasInsert = false
            for op in ops {
                if case .insert(let ids) = op {
                    insertedIDs += ids.count
                    XCTAssertFalse(previousWasInsert, "\(when): two insert ops in a row")
                    for id in ids { XCTAssertFalse(baseSet.contains(id), "\(when): an id of base was inserted, not copied") }
                    previousWasInsert = true
                } else {
                    previousWasInsert = false
                }
            }
            XCTAssertEqual(inserted, insertedIDs, "\(when): reported insert count is wrong")
            XCTAssertEqual(inserted, new.filter { !baseSet.contains($0) }.count, when)
            if new == base && !base.isEmpty { XCTAssertEqual(ops, [.copy(from: 0, count: base.count)], when) }

            // Through the byte format and the reader.
            let baseRef = store.put(ChunkList.encodeFull(base[...]))
            let deltaRef = store.put(ChunkList.encodeDelta(generation: 1, base: [baseRef], total: new.count, ops: ops))
            let (ids, info) = try ChunkList.resolve([deltaRef]) { try store.load($0) }
            XCTAssertEqual(ids, new, "\(when): resolved delta differs")
            XCTAssertEqual(info.generation, 1)
            XCTAssertEqual(info.base, [baseRef])
        }
    }

    func testStoreChoosesDeltaOrFullListAndResolveAgreesOnRandomHistories() throws {
        // Random histories through ChunkList.store/resolve directly (no manifest).
        var rng = SeededRandom(seed: 0xC1_0071)
        let store = MemoryStore()
        for history in 0..<20 {
            var ids = randomIDs(&rng, 1024 + rng.below(4000))
            var parent: ManifestEntry? = nil
            for day in 0..<10 {
                let refs = try ChunkList.store(ids, parent: parent, store: { store.storeList($0) })
                let (back, info) = try ChunkList.resolve(refs) { try store.load($0) }
                XCTAssertEqual(back, ids, "history \(history) day \(day)")
                XCTAssertEqual(info.refs, refs)
                XCTAssertLessThanOrEqual(info.generation, ChunkList.maxGeneration)
                var e = entry("/x", ids)
                e.list = info
                parent = e
                let share = rng.below(4)
                let changes = share == 0 ? ids.count / 2 : rng.below(ids.count / 20 + 1)
                ids = edited(ids, &rng, replace: changes, insert: rng.below(30), delete: rng.below(30)).ids
            }
        }
    }

    // MARK: Damage that could trap (run in a child process)

    static let probeVariable = "ACCORD_CHUNKLIST_PROBE"

    /// Runs one test of this bundle in a child process (the same xctest
    /// binary, with `probeVariable` set) so a trap fails the test instead of
    /// ending the whole run. Returns (exit status or signal, signaled, output).
    func runInChild(_ test: String) throws -> (status: Int32, signaled: Bool, output: String) {
        let exe = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
        let log = FileManager.default.temporaryDirectory.path + "/accord-chunklist-probe-" + hexString(Sys.randomBytes(6))
        defer { try? FileManager.default.removeItem(atPath: log) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        let argv = [exe, test]
        var env = ProcessInfo.processInfo.environment
        env[Self.probeVariable] = "1"
        let cArgs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        let cEnv: [UnsafeMutablePointer<CChar>?] = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { for p in cArgs + cEnv { free(p) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, exe, &actions, nil, cArgs, cEnv)
        guard rc == 0 else { throw SystemError(errno: rc, operation: "posix_spawn", path: exe) }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let output = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        let signal = status & 0x7f
        return signal != 0 ? (signal, true, output) : ((status >> 8) & 0xff, false, output)
    }

    func testDeltaWithAnAbsurdTotalThrowsInsteadOfTrapping() throws {
        if ProcessInfo.processInfo.environment[Self.probeVariable] != nil {
            // The child: a delta of 10 ids whose header claims Int32.max ids. The
            // header's `total` is only bounded by Int32.max, so it must not be
            // trusted for an allocation (2^31 ids are 64 GiB).
            let store = MemoryStore()
            var rng = SeededRandom(seed: 0xC1_0063)
            let base = randomIDs(&rng, 10)
            let baseRef = store.put(ChunkList.encodeFull(base[...]))
            let ref = store.put(ChunkList.encodeDelta(generation: 1, base: [baseRef], total: Int(Int32.max), ops: [.copy(from: 0, count: 10)]))
            XCTAssertThrowsError(try ChunkList.resolve([ref]) { try store.load($0) })
            return
        }
        let r = try runInChild("AccordCoreTests.ChunkListTests/" + #function.replacingOccurrences(of: "()", with: ""))
        let tail = String(r.output.split(separator: "\n", omittingEmptySubsequences: false)
            .filter { $0.contains("Fatal") || $0.contains("error") || $0.contains("Test Case") }.prefix(12).joined(separator: "\n"))
        XCTAssertFalse(r.signaled, "reading a delta whose header claims Int32.max ids trapped (signal \(r.status)):\n\(tail)")
        XCTAssertTrue(r.signaled || r.status == 0, "child test failed (exit \(r.status)):\n\(tail)")
    }
}
