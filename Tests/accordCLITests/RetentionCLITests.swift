import Foundation
import XCTest
import AccordTestSupport
import AccordCore
import AccordRuntime

/// `accord forget` and `accord prune` as a user runs them: which snapshots
/// go, what space comes back, and that what is kept still restores.
final class RetentionCLITests: AccordTestCase {
    /// Backs up `count` versions of a tree, rewriting `changePerRound` random files between them.
    func history(_ count: Int, seed: UInt64, randomFiles: Int = 6, randomSize: Int = 400_000, changePerRound: Int = 3,
                 packSize: Int? = nil) throws -> (tree: SourceTree, snapshots: [(id: String, listing: TreeListing, added: UInt64)]) {
        var rng = SeededRandom(seed: seed)
        let tree = try SourceTree(root: scratch.sub("src"), rng: &rng, randomFiles: randomFiles, randomSize: randomSize, textFiles: 3, textSize: 200_000)
        try initRepository(packSize: packSize)
        var out: [(String, TreeListing, UInt64)] = []
        for round in 0..<count {
            if round > 0 { try tree.rewriteRandomFiles(changePerRound, rng: &rng); try tree.appendText(5000, rng: &rng) }
            let b = try backup([tree.root])
            out.append((b.id, try tree.listing(), b.summary.addedBytes))
        }
        return (tree, out)
    }

    func lines(_ r: CommandResult, prefix: String) -> [String] {
        r.stdout.split(separator: "\n").map(String.init).filter { $0.hasPrefix(prefix) }
    }

    func testForgetKeepLastDryRunRemovesNothingThenForgetRemovesTheOldest() throws {
        let (_, snaps) = try history(4, seed: 1, randomSize: 100_000)
        let packsBefore = packFiles()

        let dry = try accordOK("forget", "-d", repo, "--keep-last", "2", "--dry-run")
        XCTAssertEqual(lines(dry, prefix: "remove ").count, 2, "\(dry)")
        XCTAssertEqual(lines(dry, prefix: "keep ").count, 2, "\(dry)")
        XCTAssertTrue(dry.stdout.contains("dry run: 2 snapshot(s) would be removed"), "\(dry)")
        XCTAssertEqual(snapshotNames().count, 4, "--dry-run removed snapshots")

        let r = try accordOK("forget", "-d", repo, "--keep-last", "2")
        XCTAssertTrue(r.stdout.contains("removed 2 snapshot(s)"), "\(r)")
        XCTAssertEqual(snapshotNames(), snaps.suffix(2).map(\.id).sorted(), "keep-last 2 must keep the two newest")
        XCTAssertEqual(packFiles(), packsBefore, "forget must not touch packs (prune does)")
        try assertCheckPasses(nil, "after forget")
    }

    func testForgetByIDPrefixRemovesExactlyThatSnapshotAndRejectsUnknownOnes() throws {
        let (_, snaps) = try history(3, seed: 2, randomSize: 50_000)
        let r = try accordOK("forget", "-d", repo, String(snaps[1].id.prefix(10)))
        XCTAssertTrue(r.stdout.contains("remove \(snaps[1].id.prefix(8)) (named)"), "\(r)")
        XCTAssertEqual(snapshotNames(), [snaps[0].id, snaps[2].id].sorted())

        let unknown = try accord("forget", "-d", repo, "0123456789abcdef")
        XCTAssertFalse(unknown.ok, "forget of an unknown id succeeded:\n\(unknown)")
        XCTAssertFalse(unknown.signaled)
        XCTAssertTrue(unknown.stderr.contains("no snapshot 0123456789abcdef"), "\(unknown)")
        // One unknown id among good ones removes nothing.
        let mixed = try accord("forget", "-d", repo, snaps[0].id, "fedcba98")
        XCTAssertFalse(mixed.ok, "\(mixed)")
        XCTAssertEqual(snapshotNames().count, 2, "a failed forget removed snapshots")

        let nothing = try accord("forget", "-d", repo)
        XCTAssertEqual(nothing.status, 64, "forget with no rule and no id must be a usage error:\n\(nothing)")
        XCTAssertTrue(nothing.stderr.contains("nothing to forget"), "\(nothing)")
    }

    func testPreRestoreSnapshotSurvivesEveryPolicyUntilNamed() throws {
        var rng = SeededRandom(seed: 3)
        let tree = try SourceTree(root: scratch.sub("src"), rng: &rng, randomFiles: 2, randomSize: 30_000, textFiles: 1, textSize: 10_000)
        try initRepository()
        let safety = try backup([tree.root], extra: ["--tag", "pre-restore"])
        try tree.rewriteRandomFiles(1, rng: &rng)
        _ = try backup([tree.root])
        try tree.rewriteRandomFiles(1, rng: &rng)
        let newest = try backup([tree.root])

        let r = try accordOK("forget", "-d", repo, "--keep-last", "1")
        XCTAssertTrue(r.stdout.contains("keep   \(safety.id.prefix(8))") && r.stdout.contains("pre-restore"), "\(r)")
        XCTAssertEqual(snapshotNames(), [safety.id, newest.id].sorted())

        let other = try accordOK("forget", "-d", repo, "--keep-last", "1", "--plan", "no-such-plan")
        XCTAssertTrue(other.stdout.contains("removed 0 snapshot(s)"), "--plan must leave other plans alone:\n\(other)")

        try accordOK("forget", "-d", repo, safety.id)
        XCTAssertEqual(snapshotNames(), [newest.id], "a pre-restore snapshot named explicitly must go")
    }

    /// The figure quoted in the report: several backups of a changing tree,
    /// then `forget --keep-last 1 --prune`.
    func testForgetKeepLastOneWithPruneReclaimsSpaceAndTheKeptSnapshotRestoresIdentically() throws {
        let (tree, snaps) = try history(5, seed: 4, randomFiles: 8, randomSize: 1_000_000, changePerRound: 4)
        let before = repositoryBytes()
        let live = snaps.last!

        let r = try accordOK("forget", "-d", repo, "--keep-last", "1", "--prune")
        let after = repositoryBytes()
        print("space reclaimed by forget --keep-last 1 --prune after 5 backups of a \(Files.bytes(under: tree.root)) byte tree "
              + "(4 of 8 random 1 MB files rewritten per backup): before \(before) bytes, after \(after) bytes, "
              + "reclaimed \(before - after) bytes (\(String(format: "%.1f", Double(before - after) * 100 / Double(before)))%)")
        XCTAssertTrue(r.stdout.contains("freed"), "\(r)")
        XCTAssertEqual(snapshotNames(), [live.id])
        // What is left is the live data, plus at most 10 % unused (prune's default --max-unused) and headers.
        let repository = try openRepository()
        let liveBytes = try referencedBlobs(repository, try XCTUnwrap(SnapshotID(hex: live.id))).reduce(UInt64(0)) {
            $0 + UInt64(repository.index.lookup($1)?.storedLength ?? 0)
        }
        XCTAssertLessThan(after, before / 2, "prune reclaimed too little: \(before) → \(after)")
        XCTAssertLessThanOrEqual(after, UInt64(Double(liveBytes) / 0.9) + 65536, "live data is \(liveBytes) bytes")
        XCTAssertEqual(try unindexedPacks(), [])
        XCTAssertTrue((try? Sys.listDirectory(repo + "/tmp"))?.isEmpty ?? true, "prune leaves tmp/ empty")

        try assertCheckPasses(nil, readData: true, "after forget --prune")
        try assertRestores(live.id, root: tree.root, expected: live.listing, "the kept snapshot after forget --prune")
    }

    func testPruneRepacksPartlyUsedPacksOnlyWhenTheirUnusedShareExceedsMaxUnused() throws {
        // S1 stores f0…f7 in one pack; S2 and S3 each replace two files. With S1 and S2
        // forgotten, S1's pack is half used and S2's pack only loses its manifest blob.
        let (tree, snaps) = try history(3, seed: 5, randomFiles: 8, randomSize: 300_000, changePerRound: 2)
        try accordOK("forget", "-d", repo, snaps[0].id, snaps[1].id)
        let packs0 = packIDs(), index0 = indexNames()

        let dry = try accordOK("prune", "-d", repo, "--max-unused", "0%", "--dry-run")
        XCTAssertTrue(dry.stdout.contains("would free"), "\(dry)")
        XCTAssertEqual(packIDs(), packs0, "prune --dry-run changed packs")
        XCTAssertEqual(indexNames(), index0, "prune --dry-run changed the index")

        let lenient = try accordOK("prune", "-d", repo, "--max-unused", "60%")
        XCTAssertTrue(lenient.stdout.contains("0 repacked"), "a 50 %-used pack was repacked at --max-unused 60%:\n\(lenient)")
        XCTAssertEqual(packIDs(), packs0, "prune at 60 % deleted a pack that still holds live data")
        try assertCheckPasses(nil, "after prune --max-unused 60%")

        let bytes1 = repositoryBytes()
        let strict = try accordOK("prune", "-d", repo, "--max-unused", "0%")
        let repacked = strict.stdout.range(of: #"(\d+) repacked into (\d+)"#, options: .regularExpression).map { String(strict.stdout[$0]) } ?? ""
        XCTAssertFalse(repacked.isEmpty || repacked.hasPrefix("0 "), "prune --max-unused 0% repacked nothing:\n\(strict)")
        let bytes2 = repositoryBytes()
        print("prune --max-unused 0% (\(repacked)): \(bytes1) → \(bytes2) bytes")
        XCTAssertLessThan(bytes2, bytes1)
        XCTAssertFalse(packIDs().isSuperset(of: packs0), "the partly used packs are still there after repacking")
        try assertCheckPasses(nil, readData: true, "after repacking")
        try assertRestores(snaps[2].id, root: tree.root, expected: snaps[2].listing, "the kept snapshot after repacking")

        // A second prune finds nothing to do.
        let again = try accordOK("prune", "-d", repo, "--max-unused", "0%")
        XCTAssertTrue(again.stdout.contains("freed 0"), "\(again)")
    }
}
