import Foundation
import XCTest
import AccordCore
import AccordTestSupport

/// Sync of the deltas a changed tree file gets (issue 17): a destination that
/// holds the parent snapshot gets them as deltas; one that lacks their bases
/// (the child synced alone, or the parent forgotten and pruned at the source,
/// where prune keeps the bases outside any snapshot) gets them whole, and
/// restores and checks either way.
class FileDeltaSyncTests: SyncTestCase {
    var smallFile: String { source + "/src/module.swift" }
    var largeFile: String { source + "/data/big.csv" }

    func rows(_ rng: inout SeededRandom, from: Int, count: Int) -> [UInt8] {
        var out: [UInt8] = []
        for i in from..<from + count {
            out += Array("\(i),2026-\(1 + rng.int(0..<12))-\(1 + rng.int(0..<28)),\(rng.int(0..<1_000_000)),code\(rng.int(0..<100_000))\n".utf8)
        }
        return out
    }

    func testDeltasOfChangedFilesSyncAsDeltasWhereTheBaseIsAndWholeWhereItIsNot() throws {
        var rng = SeededRandom(seed: 0xF11E_5)
        // Cut points the same on every run (a fixed seed, or for the encrypted variant a fixed master key).
        let encrypted = accordEnvironment["ACCORD_ENCRYPTION"] == "aes-256-gcm"
        try FixedCutPoints.initialize(at: sourceRepo, key: encrypted ? .fixed(Array(AccordTestCase.testPassphrase.utf8)) : nil)
        try FileManager.default.createDirectory(atPath: source + "/src", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: source + "/data", withIntermediateDirectories: true)
        var lines = (0..<150).map { "    let value\($0) = repository.index.lookup(blob\($0)) // line \($0)\n" }
        var csv = rows(&rng, from: 0, count: 70_000)   // ~2.6 MB: a few tree chunks
        try writeFile(smallFile, Array(lines.joined().utf8))
        try writeFile(largeFile, csv)
        try writeFile(source + "/data/same.txt", Array(String(repeating: "unchanged\n", count: 500).utf8))
        let first = try backupSource()
        let dest = scratch.sub("dest")
        XCTAssertEqual(try decodeSync(try accordOK(["sync", "-d", sourceRepo, "--to", dest, "--json"])).snapshots, 1)

        lines[70] = "    let edited = 42 // changed on day 2\n"
        let middle = (csv[..<(csv.count / 2)].lastIndex(of: 0x0a) ?? -1) + 1   // the start of a row
        csv.insert(contentsOf: rows(&rng, from: 1_000_000, count: 100), at: middle)
        try writeFile(smallFile, Array(lines.joined().utf8))
        try writeFile(largeFile, csv)
        let second = try backupSource()
        let sourceDeltas = try sealedDeltaBlobs(sourceRepo)
        XCTAssertGreaterThanOrEqual(sourceDeltas.count, 2, "day 2 stored too few deltas (the small file and the CSV's changed chunk)")
        XCTAssertLessThan(second.addedBytes, first.addedBytes / 5, "day 2 stored too much for two small edits")
        // The manifest's changed piece is a delta too: it travels by the same rules.
        XCTAssertFalse(try sealedDeltaBlobs(sourceRepo, type: .tree).isEmpty, "day 2's manifest has no delta piece")

        // The destination holds day 1, so every base: the deltas travel as they are.
        let sync2 = try decodeSync(try accordOK(["sync", "-d", sourceRepo, "--to", dest, "--json"]))
        XCTAssertEqual(sync2.snapshots, 1)
        XCTAssertLessThanOrEqual(sync2.payloadBytes, second.addedBytes, "sync sent more than day 2 stored")
        XCTAssertEqual(try sealedDeltaBlobs(dest), sourceDeltas, "deltas whose bases the destination holds must arrive as deltas")
        try assertRestoreMatchesSource(from: dest, label: "day2")

        // A destination that gets day 2 alone lacks the bases: the deltas arrive whole.
        let alone = scratch.sub("dest-day2-only")
        let sync3 = try decodeSync(try accordOK(["sync", "-d", sourceRepo, "--to", alone, "--json", second.id]))
        XCTAssertEqual(sync3.snapshots, 1)
        XCTAssertEqual(try sealedDeltaBlobs(alone), [], "a delta was sent to a destination without its base")
        try assertRestoreMatchesSource(from: alone, label: "day2-alone")

        // Day 1 forgotten and pruned at the source: its chunks stay there only as
        // bases, in no snapshot; a new destination still gets a complete day 2.
        try accordOK(["forget", "-d", sourceRepo, "--keep-last", "1"])
        try accordOK(["prune", "-d", sourceRepo])
        XCTAssertEqual(try sealedDeltaBlobs(sourceRepo), sourceDeltas, "prune dropped day 2's deltas")
        let check = try accord(["check", "--read-data", "-d", sourceRepo])
        XCTAssert(check.ok && check.stdout.contains("no errors found"), "check after forgetting the bases' snapshot:\n\(check)")
        let later = scratch.sub("dest-after-prune")
        let sync4 = try decodeSync(try accordOK(["sync", "-d", sourceRepo, "--to", later, "--json"]))
        XCTAssertEqual(sync4.snapshots, 1)
        XCTAssertEqual(snapshotFiles(of: later), [second.id])
        XCTAssertEqual(try sealedDeltaBlobs(later), [], "a delta was sent without its base")
        try assertRestoreMatchesSource(from: later, label: "after-prune")
    }
}

/// The same with an encrypted source: sealed deltas, their bases checked by the destination without the key.
final class EncryptedFileDeltaSyncTests: FileDeltaSyncTests {
    override func setUpWithError() throws {
        try super.setUpWithError()
        try useEncryption()
    }

    override func testDeltasOfChangedFilesSyncAsDeltasWhereTheBaseIsAndWholeWhereItIsNot() throws {
        try super.testDeltasOfChangedFilesSyncAsDeltasWhereTheBaseIsAndWholeWhereItIsNot()
    }
}
