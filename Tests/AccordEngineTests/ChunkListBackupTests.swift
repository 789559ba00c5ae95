import Foundation
import XCTest
import AccordCore
import AccordEngine
import AccordTestSupport
import AccordRuntime

/// Chunk lists end to end, through the engine API: a database dump of
/// thousands of `dump`-profile chunks keeps its id list in list blobs; the
/// next day's dump, with scattered row updates, stores a delta on that list;
/// restore, check and prune (after forgetting the day-1 snapshot, whose full
/// list is the delta's base) all follow the list.
///
/// The dump data, repository and engine helpers are shared with `DeltaBlobTests`
/// through `DumpBackupTestCase`.
class DumpBackupTestCase: XCTestCase {
    var scratch: ScratchDirectory!
    var repo: String { scratch.sub("repo") }
    /// Warnings of the backups (from the walker thread).
    let warnings = LockedBox<[String]>([])
    let dumpPath = "/db/pgbench.sql"
    /// The repository's key: nil for a plain repository; the encrypted
    /// subclasses (EncryptedEngineTests.swift) run every test on a version 3 one.
    class var key: KeySource? { nil }
    var key: KeySource? { Self.key }

    override func setUpWithError() throws {
        try super.setUpWithError()
        if key != nil { setenv(KeyFile.costVariable, "16384", 1) }
        scratch = try ScratchDirectory("chunklist")
        try FixedCutPoints.initialize(at: repo, key: key)
    }

    /// A new config of the kind this class tests (plain, or encrypted when it has a key).
    func newConfig() -> RepositoryConfig { RepositoryConfig.new(encrypted: key != nil) }

    override func tearDown() {
        scratch?.remove()
        super.tearDown()
    }

    // MARK: Data

    /// A pgbench_accounts COPY block: "aid\tbid\tabalance\t<84 spaces>" rows.
    func pgbenchRows(_ rng: inout SeededRandom, count: Int) -> [Int] {
        (0..<count).map { _ in rng.below(20_001) - 10_000 }
    }

    func render(_ balances: [Int]) -> [UInt8] {
        let filler = String(repeating: " ", count: 84)
        var out: [UInt8] = []
        out.reserveCapacity(balances.count * 100 + 200)
        out += Array("COPY public.pgbench_accounts (aid, bid, abalance, filler) FROM stdin;\n".utf8)
        for (i, b) in balances.enumerated() {
            out += Array("\(i + 1)\t\(i / 100_000 + 1)\t\(b)\t\(filler)\n".utf8)
        }
        out += Array("\\.\n".utf8)
        return out
    }

    /// `share` of the rows get a new balance, at random rows.
    func update(_ balances: [Int], share: Double, _ rng: inout SeededRandom) -> [Int] {
        var out = balances
        var changed = Set<Int>()
        let n = Int(Double(balances.count) * share)
        while changed.count < n {
            let i = rng.below(out.count)
            if changed.insert(i).inserted { out[i] += 1 + rng.below(5000) }
        }
        return out
    }

    // MARK: Engine calls

    func open(index: Bool = true) throws -> Repository {
        let r = try Repository.open(at: repo, key: key)
        if index { try r.loadIndex() }
        return r
    }

    func options() -> BackupOptions {
        var o = BackupOptions()
        o.host = "chunklist-test"
        o.threads = 2
        o.onError = { path, error in throw error }
        o.onWarning = { [warnings] w in warnings.withLock { $0.append(w) } }
        return o
    }

    /// Backs up `cat file` as the virtual file `dumpPath` (the small dump profile of 0.21: many chunks from a few MB).
    func backupCommand(cat file: String) throws -> BackupResult {
        var o = options()
        o.commands = [CommandSource(path: dumpPath, command: "cat '\(file)'", profile: .dump021)]
        return try Backup(repository: try open(), options: o).run()
    }

    func backupTree(_ root: String) throws -> BackupResult {
        var o = options()
        o.paths = [Array(root.utf8)]
        o.treeProfile = .dump021
        o.dumpProfile = .dump021
        return try Backup(repository: try open(), options: o).run()
    }

    func entry(_ snapshot: SnapshotID, _ path: String) throws -> ManifestEntry {
        let r = try open()
        var reader = r.manifestReader(try r.loadSnapshot(snapshot))
        let wanted = Array(path.utf8)
        while let e = try reader.next() {
            if e.path == wanted { return e }
        }
        XCTFail("no \(path) in snapshot \(snapshot.short)")
        throw CancellationError()
    }

    /// Restores `snapshot` into a fresh directory; returns the restored bytes of `path`.
    func restored(_ snapshot: SnapshotID, _ path: String, file: StaticString = #filePath, line: UInt = #line) throws -> [UInt8] {
        let r = try open()
        let target = scratch.sub("restore-" + hexString(Sys.randomBytes(4)))
        var o = RestoreOptions(target: Array(target.utf8))
        o.threads = 2
        let result = try Restore(repository: r, options: o).run(try r.loadSnapshot(snapshot))
        XCTAssertEqual(result.failed, [], "restore of \(snapshot.short) failed for some paths", file: file, line: line)
        defer { removeTree(Array(target.utf8)) }
        return try TreeBuilder.read(Array((target + path).utf8))
    }

    func assertRestores(_ snapshot: SnapshotID, _ path: String, as expected: [UInt8], _ what: String,
                        file: StaticString = #filePath, line: UInt = #line) throws {
        let got = try restored(snapshot, path, file: file, line: line)
        XCTAssertEqual(got.count, expected.count, "\(what): restored size differs", file: file, line: line)
        XCTAssertTrue(got == expected, "\(what): restored bytes differ (first difference at byte \(zip(got, expected).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? min(got.count, expected.count)))", file: file, line: line)
    }

    func assertCheckPasses(_ what: String, file: StaticString = #filePath, line: UInt = #line) throws {
        var o = CheckOptions()
        o.readData = true
        o.threads = 2
        let report = try Check(repository: try open(index: false), options: o).run()
        XCTAssertEqual(report.errors, [], "check --read-data \(what)", file: file, line: line)
        XCTAssertGreaterThan(report.snapshots, 0, file: file, line: line)
    }

    func forgetAndPrune(_ ids: [SnapshotID]) throws -> PruneReport {
        try Forget.remove(ids, from: try open(index: false))
        var o = PruneOptions()
        o.maxUnusedPercent = 0    // repack every pack with anything unused: a base wrongly thought unused is gone
        return try Prune(repository: try open(index: false), options: o).run()
    }

}

class ChunkListBackupTests: DumpBackupTestCase {

    func testDumpWithScatteredRowUpdatesStoresADeltaAndSurvivesForgettingItsBase() throws {
        var rng = SeededRandom(seed: 0xC1_B001)
        let rows = 125_000                               // ~12 MB of dump
        let day1 = pgbenchRows(&rng, count: rows)
        let day2 = update(day1, share: 0.005, &rng)
        let bytes1 = render(day1), bytes2 = render(day2)
        XCTAssertGreaterThan(bytes1.count, 11_000_000)
        let file1 = scratch.sub("day1.sql"), file2 = scratch.sub("day2.sql")
        try TreeBuilder.write(Array(file1.utf8), bytes1)
        try TreeBuilder.write(Array(file2.utf8), bytes2)

        let started = Date()
        let first = try backupCommand(cat: file1)
        let second = try backupCommand(cat: file2)
        let s1 = first.snapshot.summary, s2 = second.snapshot.summary
        XCTAssertEqual(second.snapshot.parentID, first.id, "the day-2 backup did not find day 1 as its parent")
        XCTAssertEqual(warnings.value, [])

        // The list: full on day 1, a delta on day 1's full parts on day 2.
        let e1 = try entry(first.id, dumpPath), e2 = try entry(second.id, dumpPath)
        XCTAssertGreaterThan(e1.blobs.count, ChunkList.threshold, "the dump should have more than \(ChunkList.threshold) chunks")
        let l1 = try XCTUnwrap(e1.list, "day 1's \(e1.blobs.count)-chunk list is inline")
        let l2 = try XCTUnwrap(e2.list, "day 2's \(e2.blobs.count)-chunk list is inline")
        XCTAssertEqual(l1.generation, 0)
        XCTAssertEqual(l2.generation, 1, "day 2's list is not a delta")
        XCTAssertEqual(l2.refs.count, 1)
        XCTAssertEqual(l2.base, l1.refs)
        let changedChunks = Set(e2.blobs).subtracting(e1.blobs).count
        print("chunk lists: day 1 \(e1.blobs.count) chunks, day 2 \(e2.blobs.count) chunks, \(changedChunks) new; "
              + "added bytes \(s1.addedBytes) then \(s2.addedBytes) (manifest \(s1.addedManifestBytes) then \(s2.addedManifestBytes))")

        // Day 2 costs the changed chunks, not the dump again nor its whole id list.
        // (0.5% of rows, scattered, touch about a quarter of ~5 KB chunks of ~50
        // rows each: the data cost follows the touched chunks, the list cost
        // their ids only.)
        let touched = Double(changedChunks) / Double(e1.blobs.count)
        let data1 = Double(s1.addedBytes - s1.addedManifestBytes), data2 = Double(s2.addedBytes - s2.addedManifestBytes)
        XCTAssertLessThan(Double(s2.addedBytes), 0.35 * Double(s1.addedBytes),
                          "day 2 added \(s2.addedBytes) bytes, day 1 \(s1.addedBytes)")
        XCTAssertLessThan(data2, 1.3 * touched * data1 + 16_384,
                          "day 2 stored \(Int(data2)) data bytes for \(changedChunks) of \(e1.blobs.count) chunks changed (day 1: \(Int(data1)))")
        let fullListBytes = UInt64(e1.blobs.count * 32)
        XCTAssertGreaterThan(s1.addedManifestBytes, fullListBytes, "day 1 should have stored the full id list")
        XCTAssertLessThan(s2.addedManifestBytes, UInt64(changedChunks * 32) + fullListBytes / 4,
                          "day 2 stored \(s2.addedManifestBytes) manifest/list bytes for \(changedChunks) new chunk ids (full list: \(fullListBytes)): the id list was stored again")

        try assertRestores(first.id, dumpPath, as: bytes1, "day 1")
        try assertRestores(second.id, dumpPath, as: bytes2, "day 2")
        try assertCheckPasses("with both snapshots")

        // Forget day 1 and prune hard: day 1's full list must stay (it is day 2's base).
        try forgetPruneAndAssertChainKept(first.id, chain: l2.blobs, survivor: second.id, restoresTo: bytes2, "day 2 after forgetting day 1")

        // Day 3, after the prune: another 0.5% of rows. A delta on day 2's list
        // (generation 2), whose chain reaches day 1's full list. Then forget
        // day 2 too: day 3 alone must keep the whole chain alive.
        let day3 = update(day2, share: 0.005, &rng)
        let bytes3 = render(day3)
        let file3 = scratch.sub("day3.sql")
        try TreeBuilder.write(Array(file3.utf8), bytes3)
        let third = try backupCommand(cat: file3)
        XCTAssertEqual(third.snapshot.parentID, second.id)
        let l3 = try XCTUnwrap(try entry(third.id, dumpPath).list)
        XCTAssertEqual(l3.generation, 2)
        XCTAssertEqual(l3.base, l2.refs)
        XCTAssertEqual(l3.blobs, l3.refs + l2.blobs)
        XCTAssertLessThan(Double(third.snapshot.summary.addedBytes), 0.35 * Double(s1.addedBytes))
        try assertRestores(third.id, dumpPath, as: bytes3, "day 3")

        try forgetPruneAndAssertChainKept(second.id, chain: l3.blobs, survivor: third.id, restoresTo: bytes3, "day 3 after forgetting days 1 and 2")
        XCTAssertEqual(warnings.value, [])
        print("chunk list engine test took \(String(format: "%.1f", Date().timeIntervalSince(started))) s")
    }

    /// Forgets `forget` and prunes (which must remove something, or the test
    /// proves nothing); `survivor` must be the one snapshot left, every blob of
    /// its chunk list's `chain` still indexed, and it must restore to `bytes`.
    func forgetPruneAndAssertChainKept(_ forget: SnapshotID, chain: [BlobID], survivor: SnapshotID, restoresTo bytes: [UInt8],
                                       _ context: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let pruned = try forgetAndPrune([forget])
        XCTAssertGreaterThan(pruned.packsDeleted + pruned.packsRepacked, 0, "\(context): prune removed nothing", file: file, line: line)
        let afterPrune = try open()
        for b in chain { XCTAssertTrue(afterPrune.index.contains(b), "\(context): prune dropped list blob \(b.short) of the chain", file: file, line: line) }
        XCTAssertEqual(try afterPrune.listSnapshotIDs(), [survivor], context, file: file, line: line)
        try assertRestores(survivor, dumpPath, as: bytes, context)
        try assertCheckPasses(context)
    }

    func testUnchangedDumpFileReusesItsListAndAChangedOneStoresADelta() throws {
        // A file in a tree backed up with the dump profile: day 2 it is
        // unchanged (not read: its list comes from the parent), day 3 changed.
        var rng = SeededRandom(seed: 0xC1_B002)
        let root = scratch.sub("src")
        try TreeBuilder.mkdir(Array(root.utf8))
        let file = root + "/pgbench.sql"
        // 100,000 rows (~10 MB, some 2,400 chunks of ~4 KiB): over the list threshold (1,024)
        // whatever the repository's cut points (60,000 rows once made only 969 chunks, with a random seed).
        let day1 = pgbenchRows(&rng, count: 100_000)
        let bytes1 = render(day1)
        try TreeBuilder.write(Array(file.utf8), bytes1)
        try TreeBuilder.write(Array((root + "/small.txt").utf8), Array("a small file\n".utf8))
        // Removed before day 3: its blob is garbage once days 1 and 2 are forgotten (everything
        // else of day 1 stays in use, as content or as a delta's base).
        try TreeBuilder.write(Array((root + "/gone.bin").utf8), rng.letterText(20_000))

        let first = try backupTree(root)
        let second = try backupTree(root)
        XCTAssertEqual(second.snapshot.parentID, first.id)
        let s1 = first.snapshot.summary, s2 = second.snapshot.summary
        XCTAssertEqual(s2.filesUnchanged, 3, "unchanged files were read again")
        XCTAssertEqual(s2.bytesRead, 0)
        XCTAssertLessThan(Double(s2.addedBytes), 0.01 * Double(s1.addedBytes), "an unchanged tree added \(s2.addedBytes) bytes")
        let e1 = try entry(first.id, file), e2 = try entry(second.id, file)
        XCTAssertGreaterThan(e1.blobs.count, ChunkList.threshold)
        let l1 = try XCTUnwrap(e1.list)
        XCTAssertEqual(e2.blobs, e1.blobs)
        XCTAssertEqual(e2.list, l1, "an unchanged file must reuse its parent's list refs")

        let day3 = update(day1, share: 0.005, &rng)
        let bytes3 = render(day3)
        try TreeBuilder.write(Array(file.utf8), bytes3)
        try Sys.unlink(Array((root + "/gone.bin").utf8))
        let third = try backupTree(root)
        XCTAssertEqual(third.snapshot.parentID, second.id)
        let e3 = try entry(third.id, file)
        let l3 = try XCTUnwrap(e3.list)
        XCTAssertEqual(l3.generation, 1)
        XCTAssertEqual(l3.base, l1.refs)
        XCTAssertEqual(third.snapshot.summary.filesUnchanged, 1)

        try assertCheckPasses("after three backups")
        let pruned = try forgetAndPrune([first.id, second.id])
        XCTAssertGreaterThan(pruned.packsDeleted + pruned.packsRepacked, 0)
        try assertRestores(third.id, file, as: bytes3, "day 3 after forgetting days 1 and 2")
        try assertCheckPasses("after forgetting days 1 and 2")

        // Day 4, file unchanged since day 3 (whose list is a delta): not read, same delta reused.
        let fourth = try backupTree(root)
        XCTAssertEqual(fourth.snapshot.summary.filesUnchanged, 2)
        XCTAssertEqual(try entry(fourth.id, file).list, l3)
        try assertRestores(fourth.id, file, as: bytes3, "day 4")
        XCTAssertEqual(warnings.value, [])
    }

    /// A damaged chunk list loses its one file: restore brings back every
    /// other file and names the lost one; check names it too.
    func testDamagedChunkListLosesOnlyItsFile() throws {
        var rng = SeededRandom(seed: 0xDA_4A6E)
        // 100,000 rows: over the list threshold (1,024 chunks) whatever the repository's cut points.
        let bytes = render(pgbenchRows(&rng, count: 100_000))
        let dump = scratch.sub("dump.sql")
        try TreeBuilder.write(Array(dump.utf8), bytes)
        let tree = scratch.sub("tree")
        try TreeBuilder.mkdir(Array(tree.utf8))
        try TreeBuilder.write(Array((tree + "/keep.txt").utf8), Array("still here\n".utf8))
        var o = options()
        o.paths = [Array(tree.utf8)]
        o.commands = [CommandSource(path: dumpPath, command: "cat '\(dump)'", profile: .dump021)]
        let result = try Backup(repository: try open(), options: o).run()
        let list = try XCTUnwrap(try entry(result.id, dumpPath).list, "the dump's list should be in list blobs")

        // Flip a byte in the middle of the list blob's stored bytes.
        let r = try open()
        let loc = try XCTUnwrap(r.index.lookup(list.refs[0]))
        try flipByte(inFile: r.layout.packPath(r.index.pack(of: loc)), at: Int64(loc.offset) + Int64(loc.storedLength / 2))

        let target = scratch.sub("restore")
        var ro = RestoreOptions(target: Array(target.utf8))
        var errors: [String] = []
        ro.onError = { path, error in errors.append("\(path): \(error)") }
        let restored = try Restore(repository: try open(), options: ro).run(try open().loadSnapshot(result.id))
        XCTAssertEqual(restored.failed, [dumpPath], "only the dump should be lost")
        XCTAssertTrue(errors.first?.contains("chunk list of \(dumpPath)") ?? false, "\(errors)")
        XCTAssertEqual(try TreeBuilder.read(Array((target + tree + "/keep.txt").utf8)), Array("still here\n".utf8))
        XCTAssertNil(try? Sys.lstat(Array((target + dumpPath).utf8)), "no partial dump may be left")

        var co = CheckOptions()
        co.threads = 2
        let report = try Check(repository: try open(index: false), options: co).run()
        XCTAssertTrue(report.errors.contains { $0.contains("chunk list of \(dumpPath)") }, "check: \(report.errors)")
    }
}
