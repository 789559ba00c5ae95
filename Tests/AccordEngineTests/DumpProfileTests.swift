import XCTest
import AccordCore
import AccordRuntime
@testable import AccordEngine

/// The default `dump` profile (64/256/1024 KiB chunks, level 6 for chunks
/// level 1 deflates poorly) through the engine: recorded in the snapshot,
/// a small edit of a dump stored as deltas, not whole chunks, prose-like
/// chunks deflated again and row-like ones not, and every day restored.
final class DumpProfileTests: DumpBackupTestCase {
    /// Backs up `cat file` as `dumpPath` with the default command profile.
    func backupDefault(cat file: String, profile: ChunkerProfile = .dump) throws -> BackupResult {
        var o = options()
        o.commands = [CommandSource(path: dumpPath, command: "cat '\(file)'", profile: profile)]
        return try Backup(repository: try open(), options: o).run()
    }

    func write(_ bytes: [UInt8], _ name: String) throws -> String {
        let path = scratch.sub(name)
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    func testTheDefaultDumpProfileAndItsLevelAreRecordedInTheSnapshot() throws {
        XCTAssertEqual(ChunkerProfile.dump, ChunkerProfile(name: "dump", min: 64 << 10, avg: 256 << 10, max: 1 << 20, level: 6))
        XCTAssertNoThrow(try ChunkerProfile.dump.validate())
        var rng = SeededRandom(seed: 0xD0_17)
        let file = try write(render(pgbenchRows(&rng, count: 5_000)), "day1.sql")
        var o = options()
        o.commands = [CommandSource(path: dumpPath, command: "cat '\(file)'")]
        o.paths = [Array(scratch.sub("tree").utf8)]
        try FileManager.default.createDirectory(atPath: scratch.sub("tree"), withIntermediateDirectories: true)
        let result = try Backup(repository: try open(), options: o).run()
        let command = try XCTUnwrap(result.snapshot.sources.first { $0.kind == "command" })
        XCTAssertEqual(command.profile, .dump)
        let path = try XCTUnwrap(result.snapshot.sources.first { $0.kind == "path" })
        XCTAssertEqual(path.profile, .tree)
        XCTAssertEqual(path.dumpProfile, .dumpFile, "*.sql files of a path source are cut with the dump bounds, at the repository's level")
        XCTAssertEqual(ChunkerProfile.dumpFile, ChunkerProfile(name: "dump", min: 64 << 10, avg: 256 << 10, max: 1 << 20))
        // As stored: the level is a key of the profile object, absent where there is none.
        let json = String(decoding: try TreeBuilder.read(Array((repo + "/snapshots/" + result.id.hex).utf8)), as: UTF8.self)
        XCTAssertTrue(json.contains("\"level\" : 6"), json)
        XCTAssertEqual(json.components(separatedBy: "\"level\"").count - 1, 1, "only the command's dump profile carries a level: \(json)")
        // A snapshot of accord 0.21 (no level key) still decodes, to a profile without one.
        let old = json.replacingOccurrences(of: ",\n        \"level\" : 6", with: "")
        XCTAssertFalse(old.contains("\"level\""))
        let decoded = try JSONDecoder().decode(Snapshot.self, from: Data(old.utf8))
        XCTAssertEqual(decoded.sources.first { $0.kind == "command" }?.profile.level, nil)
    }

    /// A few rows changed in a dump of ~12 MB (~45 chunks of 256 KiB): the
    /// changed chunks become deltas of a few dozen bytes, none is stored
    /// whole, and both days restore exactly.
    func testASmallEditOfADumpIsStoredAsDeltasNotWholeChunks() throws {
        var rng = SeededRandom(seed: 0xD0_18)
        let day1 = pgbenchRows(&rng, count: 120_000)
        var day2 = day1
        for i in [7, 40_001, 99_999] { day2[i] += 1234 }   // three rows, far apart
        let d1 = render(day1), d2 = render(day2)
        let first = try backupDefault(cat: try write(d1, "day1.sql"))
        let e1 = try entry(first.id, dumpPath)
        XCTAssertGreaterThan(e1.blobs.count, 20, "a 12 MB dump should give a few dozen chunks")
        XCTAssertLessThan(e1.blobs.count, 120, "chunks of ~256 KiB expected, got \(e1.blobs.count)")
        XCTAssertLessThan(first.snapshot.summary.addedBytes, UInt64(d1.count / 10), "these rows deflate ~15× at level 1")

        let second = try backupDefault(cat: try write(d2, "day2.sql"))
        let e2 = try entry(second.id, dumpPath)
        let new2 = Set(e2.blobs).subtracting(e1.blobs)
        XCTAssertGreaterThan(new2.count, 0)
        XCTAssertLessThanOrEqual(new2.count, 3, "three rows changed, at most three chunks")
        let r = try open()
        for id in new2 {
            let l = try XCTUnwrap(r.index.lookup(id))
            XCTAssertEqual(l.compression, .delta, "changed chunk \(id.short) was stored whole (\(l.storedLength) bytes)")
            XCTAssertLessThan(l.storedLength, 200, "a delta for one changed row should be a few dozen bytes")
        }
        // The count includes the manifest's pieces stored as deltas.
        let manifestDeltas = try r.loadSnapshot(second.id).manifestIDs.filter { r.index.lookup($0)?.compression == .delta }.count
        XCTAssertEqual(second.snapshot.summary.addedDeltaBlobs, new2.count + manifestDeltas)
        XCTAssertLessThan(second.snapshot.summary.addedBytes - second.snapshot.summary.addedManifestBytes, 600)
        try assertRestores(first.id, dumpPath, as: d1, "day 1")
        try assertRestores(second.id, dumpPath, as: d2, "day 2")
        try assertCheckPasses("after two days of the default dump profile")
    }

    /// Rows changed all over the dump, so that every chunk changes: nothing
    /// matches the parent to put a count of chunks back in step after a cut
    /// point moved, so the base is found by offset; nearly every chunk must
    /// still become a delta.
    func testRowsChangedEverywhereStillBecomeDeltas() throws {
        var rng = SeededRandom(seed: 0xD0_19)
        let day1 = pgbenchRows(&rng, count: 120_000)
        let day2 = update(day1, share: 0.004, &rng)   // 480 rows over ~45 chunks
        let d1 = render(day1), d2 = render(day2)
        let first = try backupDefault(cat: try write(d1, "day1.sql"))
        let second = try backupDefault(cat: try write(d2, "day2.sql"))
        let e1 = try entry(first.id, dumpPath), e2 = try entry(second.id, dumpPath)
        let new2 = Set(e2.blobs).subtracting(e1.blobs)
        XCTAssertGreaterThan(Double(new2.count), 0.8 * Double(e2.blobs.count), "the rows should touch nearly every chunk")
        let deltas = try XCTUnwrap(second.snapshot.summary.addedDeltaBlobs, "no delta blob on day 2")
        XCTAssertGreaterThanOrEqual(Double(deltas), 0.9 * Double(new2.count), "only \(deltas) of \(new2.count) changed chunks became deltas")
        XCTAssertLessThan(second.snapshot.summary.addedBytes, first.snapshot.summary.addedBytes / 10)
        try assertRestores(second.id, dumpPath, as: d2, "day 2")
    }

    /// What PostgreSQL's dump shows after `UPDATE`s that move their rows:
    /// rows gone from all over the table and new versions at its end. Every
    /// chunk loses a few rows, so offsets drift further with each one and no
    /// chunk matches the parent; each changed chunk must still find the
    /// chunk it replaced as its base.
    func testRowsMovedFromAllOverToTheEndStillBecomeDeltas() throws {
        var rng = SeededRandom(seed: 0xD0_1B)
        let balances = pgbenchRows(&rng, count: 120_000)
        var moved = Set<Int>()
        while moved.count < 600 { moved.insert(rng.below(balances.count)) }
        func rows(_ order: [Int], _ balance: (Int) -> Int) -> [UInt8] {
            var out = Array("COPY public.pgbench_accounts (aid, bid, abalance, filler) FROM stdin;\n".utf8)
            for i in order { out += Array("\(i + 1)\t1\t\(balance(i))\t\(String(repeating: " ", count: 84))\n".utf8) }
            return out + Array("\\.\n".utf8)
        }
        let d1 = rows(Array(balances.indices)) { balances[$0] }
        let d2 = rows(balances.indices.filter { !moved.contains($0) } + moved.sorted()) { moved.contains($0) ? balances[$0] + 7 : balances[$0] }
        let first = try backupDefault(cat: try write(d1, "day1.sql"))
        let second = try backupDefault(cat: try write(d2, "day2.sql"))
        let e1 = try entry(first.id, dumpPath), e2 = try entry(second.id, dumpPath)
        let new2 = Set(e2.blobs).subtracting(e1.blobs)
        XCTAssertGreaterThan(Double(new2.count), 0.8 * Double(e2.blobs.count), "the moves should touch nearly every chunk")
        let deltas = try XCTUnwrap(second.snapshot.summary.addedDeltaBlobs, "no delta blob on day 2")
        XCTAssertGreaterThanOrEqual(Double(deltas), 0.9 * Double(new2.count), "only \(deltas) of \(new2.count) changed chunks became deltas")
        try assertRestores(second.id, dumpPath, as: d2, "day 2")
    }

    /// Words drawn from a small vocabulary deflate ~3×: level 6 stores them
    /// smaller than level 1. pgbench rows deflate ~30× at level 1 and are not
    /// deflated again: the same bytes with or without the profile's level.
    func testPoorlyCompressedChunksAreDeflatedAgainAtTheProfilesLevel() throws {
        var rng = SeededRandom(seed: 0xD0_1A)
        let letters = Array("etaoinshrdlucmfwyp".utf8)
        let vocabulary = (0..<2_000).map { _ in (0..<(3 + rng.below(8))).map { _ in letters[rng.below(letters.count)] } }
        var prose: [UInt8] = []
        while prose.count < 3 << 20 { prose += vocabulary[rng.below(vocabulary.count)] + Array((rng.below(12) == 0 ? ".\n" : " ").utf8) }
        var rows: [UInt8] = []
        for aid in 1...40_000 { rows += Array("\(aid)\t1\t0\t\(String(repeating: " ", count: 84))\n".utf8) }
        var o = options()
        o.commands = [CommandSource(path: "/db/notes.sql", command: "cat '\(try write(prose, "notes.sql"))'"),
                      CommandSource(path: "/db/rows.sql", command: "cat '\(try write(rows, "rows.sql"))'")]
        // Prose of the same words as a file in a tree (other bytes: the
        // command's chunks would be stored once): dump bounds, the repository's level.
        var treeProse: [UInt8] = []
        while treeProse.count < 3 << 20 { treeProse += vocabulary[rng.below(vocabulary.count)] + Array((rng.below(12) == 0 ? ".\n" : " ").utf8) }
        try FileManager.default.createDirectory(atPath: scratch.sub("tree"), withIntermediateDirectories: true)
        let treeFile = scratch.sub("tree") + "/notes.sql"
        try Data(treeProse).write(to: URL(fileURLWithPath: treeFile))
        o.paths = [Array(scratch.sub("tree").utf8)]
        let result = try Backup(repository: try open(), options: o).run()
        let r = try open()
        let level1 = Deflater(level: .default)
        var out: [UInt8] = []
        /// (stored, what level 1 makes of them) for each chunk of `path`.
        func sizes(_ path: String, _ bytes: [UInt8]) throws -> [(stored: UInt32, level1: Int, raw: Int)] {
            var at = 0
            return try entry(result.id, path).blobs.map { id in
                let l = try XCTUnwrap(r.index.lookup(id))
                let chunk = Array(bytes[at..<at + Int(l.rawLength)])
                at += Int(l.rawLength)
                XCTAssertEqual(chunk.withUnsafeBytes { level1.compress($0, into: &out) }, .zlib)
                return (l.storedLength, out.count, chunk.count)
            }
        }
        let text = try sizes("/db/notes.sql", prose)
        XCTAssertGreaterThan(text.count, 5)
        for (i, c) in text.enumerated() {
            XCTAssertGreaterThan(c.level1 * ChunkerProfile.recompressRatio, c.raw, "prose chunk \(i) deflates too well for this test")
            XCTAssertLessThan(Int(c.stored), c.level1, "prose chunk \(i) was not deflated again at level 6")
        }
        let textStored = text.reduce(0) { $0 + Int($1.stored) }, textLevel1 = text.reduce(0) { $0 + $1.level1 }
        XCTAssertLessThan(Double(textStored), 0.97 * Double(textLevel1), "level 6 should store prose ~10% smaller than level 1")
        for (i, c) in try sizes("/db/rows.sql", rows).enumerated() {
            XCTAssertLessThan(c.level1 * ChunkerProfile.recompressRatio, c.raw, "rows chunk \(i) deflates too poorly for this test")
            XCTAssertEqual(Int(c.stored), c.level1, "rows chunk \(i), which level 1 shrinks 30×, was deflated again")
        }
        let inTree = try sizes(treeFile, treeProse)
        XCTAssertGreaterThan(inTree.count, 5, "a .sql file in a tree is cut with the dump bounds (~256 KiB chunks)")
        for (i, c) in inTree.enumerated() {
            XCTAssertGreaterThan(c.level1 * ChunkerProfile.recompressRatio, c.raw, "prose chunk \(i) of the tree deflates too well for this test")
            XCTAssertEqual(Int(c.stored), c.level1, "prose chunk \(i) of a .sql file in a tree was deflated again")
        }
        try assertRestores(result.id, "/db/notes.sql", as: prose, "prose at level 6")
        try assertRestores(result.id, "/db/rows.sql", as: rows, "rows")
        try assertRestores(result.id, treeFile, as: treeProse, "prose of a tree's .sql file")
    }
}
