import Foundation
import XCTest
import AccordCore
import AccordEngine
import AccordRuntime

/// Delta blobs (format version 2) through the engine: a daily dump's changed
/// chunks are stored as copy/insert programs on the parent's chunks they
/// replaced; bases stay stored whole (no chains), survive forget + prune,
/// and a missing base is reported. Uses the dump helpers of `DumpBackupTestCase`.
class DeltaBlobTests: DumpBackupTestCase {
    /// Every blob of the index of `type` (data: content, not the manifest
    /// pieces, which are deltas too) stored as a delta, with the base it names.
    func deltas(_ r: Repository, type: BlobType = .data) throws -> [BlobID: BlobID] {
        var out: [BlobID: BlobID] = [:]
        var locations: [(BlobID, BlobLocation)] = []
        r.index.forEach { id, l in if l.compression == .delta && l.type == type { locations.append((id, l)) } }
        for (id, l) in locations { out[id] = try r.deltaBase(of: id, location: l) }
        return out
    }

    func dumps(_ seed: UInt64, rows: Int, days: Int, share: Double) throws -> [(bytes: [UInt8], file: String)] {
        var rng = SeededRandom(seed: seed)
        var balances = pgbenchRows(&rng, count: rows)
        var out: [(bytes: [UInt8], file: String)] = []
        for day in 1...days {
            if day > 1 { balances = update(balances, share: share, &rng) }
            let bytes = render(balances), file = scratch.sub("day\(day).sql")
            try TreeBuilder.write(Array(file.utf8), bytes)
            out.append((bytes, file))
        }
        return out
    }

    /// Past its first 8 MiB a stream's chunks are hashed and stored on a
    /// helper thread (`ChunkHandoff`) while the reading thread cuts the rest.
    /// A 25 MB dump must give the very chunk list, in order, that one thread
    /// gives (`threads` 1 never hands off), restore byte for byte, and store
    /// its day-2 changes as deltas as a short stream does.
    func testAStreamHashedOnAHelperThreadGivesTheSameChunkListAsOneThread() throws {
        let d = try dumps(0xDE17A_09, rows: 250_000, days: 2, share: 0.004)
        XCTAssertGreaterThan(d[0].bytes.count, 2 * (8 << 20), "test setup: the stream must run well past the hand-off")
        let first = try backupCommand(cat: d[0].file)
        var single = options()
        single.threads = 1
        single.commands = [CommandSource(path: dumpPath, command: "cat '\(d[0].file)'", profile: .dump021)]
        let again = try Backup(repository: try open(), options: single).run()
        let e1 = try entry(first.id, dumpPath), e1Single = try entry(again.id, dumpPath)
        XCTAssertGreaterThan(e1.blobs.count, 3000)
        XCTAssertEqual(e1.blobs, e1Single.blobs, "the helper thread changed the chunk list")
        XCTAssertLessThan(again.snapshot.summary.addedBytes, UInt64(d[0].bytes.count / 100),
                          "the same stream again stored new chunks")
        try assertRestores(first.id, dumpPath, as: d[0].bytes, "day 1")

        let second = try backupCommand(cat: d[1].file)
        let e2 = try entry(second.id, dumpPath)
        let new2 = Set(e2.blobs).subtracting(e1.blobs)
        let count2 = try XCTUnwrap(second.snapshot.summary.addedDeltaBlobs, "day 2 stored no delta blob")
        XCTAssertGreaterThan(Double(count2), 0.8 * Double(new2.count), "only \(count2) of \(new2.count) changed chunks became deltas")
        try assertRestores(second.id, dumpPath, as: d[1].bytes, "day 2")
        try assertCheckPasses("after a stream hashed on a helper thread")
    }

    /// A backup leaves its repository's index sealed (sorted): a sync run on
    /// the same repository next (`accord -a backup -s`) looks up every blob,
    /// and an unsealed entry is found by a linear search.
    func testABackupLeavesTheIndexSealedForWhatRunsNext() throws {
        let d = try dumps(0xDE17A_0A, rows: 20_000, days: 1, share: 0)
        var o = options()
        o.commands = [CommandSource(path: dumpPath, command: "cat '\(d[0].file)'", profile: .dump021)]
        let r = try open()
        let result = try Backup(repository: r, options: o).run()
        XCTAssertGreaterThan(result.snapshot.summary.addedBlobs, 100)
        XCTAssertFalse(r.index.hasUnsealedEntries, "the backup left new blobs unsealed in the index")
        XCTAssertNotNil(r.index.lookup(try entry(result.id, dumpPath).blobs[0]))
    }

    func testChangedDumpChunksAreStoredAsDeltasOnTheChunksTheyReplaced() throws {
        let d = try dumps(0xDE17A_01, rows: 60_000, days: 3, share: 0.004)
        let first = try backupCommand(cat: d[0].file)
        let second = try backupCommand(cat: d[1].file)
        let e1 = try entry(first.id, dumpPath), e2 = try entry(second.id, dumpPath)
        let new2 = Set(e2.blobs).subtracting(e1.blobs)
        let r = try open()
        let stored = try deltas(r)
        XCTAssertEqual(first.snapshot.summary.addedDeltaBlobs, nil, "day 1 has no parent: no deltas")
        let count2 = try XCTUnwrap(second.snapshot.summary.addedDeltaBlobs, "day 2 stored no delta blob")
        XCTAssertEqual(count2, stored.count + (try deltas(r, type: .tree).count), "addedDeltaBlobs counts the content's and the manifest's deltas")
        XCTAssertGreaterThan(Double(count2), 0.8 * Double(new2.count), "only \(count2) of \(new2.count) changed chunks became deltas")
        let day1 = Set(e1.blobs)
        for (blob, base) in stored {
            XCTAssertTrue(new2.contains(blob), "delta blob \(blob.short) is not a new chunk of day 2")
            XCTAssertTrue(day1.contains(base), "delta blob \(blob.short) has a base \(base.short) outside the parent's list")
        }
        try assertRestores(second.id, dumpPath, as: d[1].bytes, "day 2")
        try assertCheckPasses("with delta blobs")

        // Day 3 changes other rows, some in chunks day 2 changed: a delta is
        // then made on that chunk's base, never on the delta itself.
        let third = try backupCommand(cat: d[2].file)
        let all = try deltas(try open())
        XCTAssertGreaterThan(all.count, stored.count)
        for (blob, base) in all {
            XCTAssertNil(all[base], "delta blob \(blob.short) is a delta on delta \(base.short): chains are not allowed")
        }
        try assertRestores(third.id, dumpPath, as: d[2].bytes, "day 3")

        // Forget days 1 and 2 and prune hard: day 3's deltas keep their bases.
        let pruned = try forgetAndPrune([first.id, second.id])
        XCTAssertGreaterThan(pruned.packsDeleted + pruned.packsRepacked, 0, "prune removed nothing: the test proves nothing")
        let after = try open()
        let e3 = try entry(third.id, dumpPath)
        var needed = 0
        for b in Set(e3.blobs) {
            guard let l = after.index.lookup(b) else { XCTFail("prune dropped day 3's blob \(b.short)"); continue }
            if l.compression == .delta {
                let base = try after.deltaBase(of: b, location: l)
                XCTAssertNotNil(after.index.lookup(base), "prune dropped base \(base.short) of day 3's delta blob \(b.short)")
                if !e3.blobs.contains(base) { needed += 1 }
            }
        }
        XCTAssertGreaterThan(needed, 0, "no base lies outside day 3's own chunks: the prune test proves nothing")
        try assertRestores(third.id, dumpPath, as: d[2].bytes, "day 3 after forgetting days 1 and 2")
        try assertCheckPasses("after forgetting days 1 and 2")
    }

    func testDeltasHalveTheDailyGrowthAgainstAVersion1Repository() throws {
        let d = try dumps(0xDE17A_02, rows: 60_000, days: 2, share: 0.004)
        var growth: [Int: UInt64] = [:]
        for version in [1, 2] {
            removeTree(Array(repo.utf8))
            var config = RepositoryConfig.new()
            config.version = version
            _ = try Repository.initialize(at: repo, config: config)
            _ = try backupCommand(cat: d[0].file)
            let second = try backupCommand(cat: d[1].file)
            growth[version] = second.snapshot.summary.addedBytes
            let r = try open()
            XCTAssertEqual(r.config.version, version)
            if version == 1 {
                XCTAssertEqual(try deltas(r), [:], "a version 1 repository got delta blobs")
                XCTAssertNil(second.snapshot.summary.addedDeltaBlobs)
                let config = String(decoding: try TreeBuilder.read(Array((repo + "/config").utf8)), as: UTF8.self)
                XCTAssertTrue(config.contains("\"version\" : 1"), "the config of a version 1 repository changed:\n\(config)")
            }
            try assertRestores(second.id, dumpPath, as: d[1].bytes, "day 2 in version \(version)")
            try assertCheckPasses("version \(version)")
        }
        let v1 = try XCTUnwrap(growth[1]), v2 = try XCTUnwrap(growth[2])
        print("day-2 growth: version 1 \(v1) bytes, version 2 (deltas) \(v2) bytes")
        XCTAssertLessThan(Double(v2), 0.6 * Double(v1), "deltas saved too little: \(v2) bytes against \(v1)")
    }

    func testAMissingBaseIsReportedByCheckAndNamedByRestore() throws {
        let d = try dumps(0xDE17A_03, rows: 60_000, days: 2, share: 0.004)
        _ = try backupCommand(cat: d[0].file)
        let packsDay1 = Set(try open().listPacks())
        let second = try backupCommand(cat: d[1].file)
        XCTAssertNotNil(second.snapshot.summary.addedDeltaBlobs)
        // Lose day 1's packs (they hold every base).
        for p in packsDay1 { try Sys.unlink(try open(index: false).layout.packPath(p)) }
        var o = CheckOptions()
        o.threads = 2
        let report = try Check(repository: try open(index: false), options: o).run()
        XCTAssertTrue(report.errors.contains { $0.contains("is stored as a delta on blob") && $0.contains("which is in no pack") },
                      "check does not name the lost bases:\n\(report.errors.prefix(5).joined(separator: "\n"))")
        // Reading a delta blob whose base is gone names the base.
        let r = try open()
        let lost = try XCTUnwrap(try deltas(r).first, "no delta blob left to read")
        XCTAssertThrowsError(try r.readBlob(lost.key)) { error in
            XCTAssertTrue("\(error)".contains("is stored as a delta on blob \(lost.value.short)"), "\(error)")
        }
    }

    func testPruneLeavesUnusedDeltasOutOfTheIndexAndTheirChunksAreStoredAgain() throws {
        // Day 2 changes rows A (delta blobs Y on day-1 chunks); day 3 changes the
        // same rows again, so no snapshot after it uses Y. Day 4 brings back
        // day 2's dump: its chunks must be stored again, readable, not reused
        // from an index entry whose base prune was free to drop.
        var rng = SeededRandom(seed: 0xDE17A_05)
        let day1 = pgbenchRows(&rng, count: 60_000)
        let day2 = update(day1, share: 0.004, &rng)
        var day3 = day2
        for i in day3.indices where day3[i] != day1[i] { day3[i] += 1 }
        var files: [String] = []
        for (n, rows) in [day1, day2, day3].enumerated() {
            let f = scratch.sub("d\(n + 1).sql")
            try TreeBuilder.write(Array(f.utf8), render(rows))
            files.append(f)
        }
        let s1 = try backupCommand(cat: files[0])
        let s2 = try backupCommand(cat: files[1])
        let y = try deltas(try open())
        XCTAssertGreaterThan(y.count, 50)
        let s3 = try backupCommand(cat: files[2])
        let e3 = Set(try entry(s3.id, dumpPath).blobs)
        let unusedY = Set(y.keys).subtracting(e3)
        XCTAssertGreaterThan(unusedY.count, 50, "day 3 should have replaced day 2's changed chunks")

        try Forget.remove([s1.id, s2.id], from: try open(index: false))
        var o = PruneOptions()
        o.maxUnusedPercent = 100   // keep every pack with a live blob whole: only the index decides
        _ = try Prune(repository: try open(index: false), options: o).run()
        let after = try open()
        for b in unusedY { XCTAssertNil(after.index.lookup(b), "prune kept unused delta blob \(b.short) in the index") }
        for (blob, base) in try deltas(after) {
            let l = try XCTUnwrap(after.index.lookup(base), "indexed delta \(blob.short) lost its base \(base.short)")
            XCTAssertNotEqual(l.compression, .delta)
        }
        try assertCheckPasses("after pruning days 1 and 2")

        let s4 = try backupCommand(cat: files[1])
        XCTAssertGreaterThan(s4.snapshot.summary.addedBlobs, unusedY.count / 2, "day 2's chunks were not stored again")
        try assertRestores(s4.id, dumpPath, as: render(day2), "day 2's dump backed up again after the prune")
        try assertRestores(s3.id, dumpPath, as: render(day3), "day 3")
        try assertCheckPasses("after day 4")
    }

    func testRepairIndexLeavesOutDeltasWhoseBaseIsGone() throws {
        let d = try dumps(0xDE17A_06, rows: 60_000, days: 2, share: 0.004)
        _ = try backupCommand(cat: d[0].file)
        let packsDay1 = Set(try open().listPacks())
        _ = try backupCommand(cat: d[1].file)
        let before = try deltas(try open()), beforeTree = try deltas(try open(), type: .tree)
        XCTAssertGreaterThan(before.count, 50)
        for p in packsDay1 { try Sys.unlink(try open(index: false).layout.packPath(p)) }
        var logged: [String] = []
        let r = try open(index: false)
        _ = try RepairIndex.run(r, log: { logged.append($0) })
        let after = try open()
        XCTAssertEqual(try deltas(after), [:], "repair index kept delta blobs whose bases are gone")
        XCTAssertEqual(try deltas(after, type: .tree), [:], "repair index kept manifest deltas whose bases are gone")
        XCTAssertEqual(logged.filter { $0.contains("left out of the index") }.count, before.count + beforeTree.count, logged.prefix(3).joined(separator: "\n"))
    }

    func testManyPacksReadFromManyThreadsAtOnce() throws {
        // More packs than the descriptor cache holds, read by 4 threads: a
        // descriptor must never be closed under a read in progress.
        var config = newConfig()
        config.packSize = 1 << 16
        removeTree(Array(repo.utf8))
        _ = try Repository.initialize(at: repo, config: config, key: key)
        let root = scratch.sub("many")
        try TreeBuilder.mkdir(Array(root.utf8))
        var rng = SeededRandom(seed: 0xFD)
        for i in 0..<300 { try TreeBuilder.write(Array((root + "/f\(i)").utf8), rng.bytes(70_000)) }
        _ = try backupTree(root)
        let r = try open()
        XCTAssertGreaterThanOrEqual(try r.listPacks().count, 300)
        var ids: [BlobID] = []
        r.index.forEach { id, _ in ids.append(id) }
        let failures = FailureCounter()
        DispatchQueue.concurrentPerform(iterations: 4) { [ids] t in
            var scratch: [UInt8] = [], out: [UInt8] = []
            let inflater = Inflater()
            for round in 0..<3 {
                for (i, id) in ids.enumerated() where (i + round + t) % 2 == 0 {
                    do { try r.readVerified(id, inflater: inflater, scratch: &scratch, into: &out) } catch { failures.add("\(error)") }
                }
            }
        }
        XCTAssertEqual(failures.messages.prefix(3), [], "\(failures.messages.count) concurrent reads failed")
    }
}

/// `@unchecked Sendable`: `messages` grows only under `lock` (and is read after the threads are done).
final class FailureCounter: @unchecked Sendable {
    private let lock = NSLock()
    private(set) var messages: [String] = []
    func add(_ m: String) { lock.withLock { messages.append(m) } }
}
