import Foundation
import XCTest
import AccordCore

/// `accord sync --to /local/dir`: the same protocol through a local `accord serve` child.
final class LocalSyncTests: SyncTestCase {
    func testFirstSyncToLocalDirectoryRestoresTheSourceTreeAndIsPrivate() throws {
        try makeTree(source, seed: 2, randomFiles: 3, randomSize: 400_000)
        let snap = try backupSource()
        let dest = scratch.sub("dest")

        let r = try accordOK(["sync", "-d", sourceRepo, "--to", dest, "--json"])
        let stats = try decodeSync(r)
        XCTAssertEqual(stats.snapshots, 1)
        XCTAssertGreaterThan(stats.blobs, 3)
        XCTAssertLessThanOrEqual(stats.payloadBytes, snap.addedBytes, "the payload is at most what the backup stored")
        XCTAssertGreaterThanOrEqual(stats.wireBytesSent, stats.payloadBytes)
        XCTAssertEqual(snapshotFiles(of: dest), [snap.id])

        try assertRestoreMatchesSource(from: dest, label: "local")

        // The destination repository is private: directories 0700, files 0600.
        var wrong: [String] = []
        let e = FileManager.default.enumerator(atPath: dest)!
        var paths = [dest]
        while let rel = e.nextObject() as? String { paths.append(dest + "/" + rel) }
        for p in paths {
            var st = stat()
            XCTAssertEqual(lstat(p, &st), 0)
            let perm = st.st_mode & 0o7777
            switch st.st_mode & S_IFMT {
            case S_IFDIR where perm != 0o700: wrong.append("dir \(p) \(String(perm, radix: 8))")
            case S_IFREG where perm != 0o600: wrong.append("file \(p) \(String(perm, radix: 8))")
            case S_IFDIR, S_IFREG: break
            default: wrong.append("unexpected \(p)")
            }
        }
        XCTAssertGreaterThan(paths.count, 6)
        XCTAssert(wrong.isEmpty, "the destination repository is not private:\n" + wrong.joined(separator: "\n"))
    }

    func testSecondSyncOfUnchangedRepositorySendsNoBlobs() throws {
        try makeTree(source, seed: 3, randomFiles: 1, randomSize: 300_000)
        try backupSource()
        let dest = scratch.sub("dest")
        try accordOK(["sync", "-d", sourceRepo, "--to", dest, "-q"])
        let again = try decodeSync(try accordOK(["sync", "-d", sourceRepo, "--to", dest, "--json"]))
        XCTAssertEqual(again.snapshots, 0)
        XCTAssertEqual(again.blobs, 0)
        XCTAssertEqual(again.payloadBytes, 0)
        XCTAssertLessThan(again.wireBytesSent + again.wireBytesReceived, 4096)
    }

    /// A `*.sql` file of ~45 dump-profile chunks with rows changed all over
    /// it on day 2: its changed chunks are delta blobs, which sync sends as
    /// such only where the destination holds their bases. (Chunk lists need
    /// 1024 chunks, 256 MB in this profile: the engine's chunk-list tests cut
    /// with the 0.21 profile for that.)
    func testSnapshotsWithChunkListDeltasSyncAndRestoreOnTheDestination() throws {
        func rows(_ n: Int, bump: Set<Int> = []) -> [UInt8] {
            var out: [UInt8] = []
            out.reserveCapacity(n * 100)
            for i in 1...n {
                let balance = bump.contains(i) ? 7 : 0
                out += Array("\(i)\t\(1 + i / 100_000)\t\(balance)\t".utf8) + [UInt8](repeating: 0x20, count: 84) + [0x0a]
            }
            return out
        }
        // A fixed chunker seed: these rows make 38 to 55 chunks across seeds (a sweep of 60), so a random
        // one left "more than 40 deltas" to chance; this one makes 48, the same on every run.
        try initRepository(sourceRepo, chunkerSeed: 0x5EED_0012)
        let dumpFile = source + "/db/dump.sql"
        try FileManager.default.createDirectory(atPath: source + "/db", withIntermediateDirectories: true)
        try writeFile(dumpFile, rows(160_000))   // ~16 MB: 48 chunks of the dump profile with this seed
        let first = try backupSource()
        let dest = scratch.sub("dest")
        let sync1 = try decodeSync(try accordOK(["sync", "-d", sourceRepo, "--to", dest, "--json"]))
        XCTAssertEqual(sync1.snapshots, 1)
        try assertRestoreMatchesSource(from: dest, label: "day1")

        var rng = SeededRandom(seed: 77)
        let bumped = Set((0..<200).map { _ in 1 + rng.int(0..<160_000) })   // 0.125% of the rows
        try writeFile(dumpFile, rows(160_000, bump: bumped))
        let second = try backupSource()
        XCTAssertLessThan(second.addedBytes, first.addedBytes / 10, "day 2 should store the changed chunks as small deltas")
        let sync2 = try decodeSync(try accordOK(["sync", "-d", sourceRepo, "--to", dest, "--json"]))
        XCTAssertEqual(sync2.snapshots, 1, "the day-2 snapshot was not stored on the destination")
        XCTAssertLessThanOrEqual(sync2.payloadBytes, second.addedBytes, "sync sent more than day 2 added")
        XCTAssertEqual(snapshotFiles(of: dest).sorted(), [first.id, second.id].sorted())
        try assertRestoreMatchesSource(from: dest, label: "day2")
        // Day 2's changed chunks are delta blobs on day-1 chunks the destination
        // holds: they travel as stored and stay deltas there.
        let sourceDeltas = try deltaBlobs(sourceRepo), destDeltas = try deltaBlobs(dest)
        XCTAssertGreaterThan(sourceDeltas.count, 40, "day 2 stored too few delta blobs for the test to mean anything")
        XCTAssertEqual(destDeltas, sourceDeltas, "delta blobs whose bases the destination holds must arrive as deltas")

        // A destination that gets day 2 alone lacks the bases: the deltas arrive whole.
        let fresh = scratch.sub("dest-day2-only")
        let sync3 = try decodeSync(try accordOK(["sync", "-d", sourceRepo, "--to", fresh, "--json", second.id]))
        XCTAssertEqual(sync3.snapshots, 1)
        XCTAssertEqual(snapshotFiles(of: fresh), [second.id])
        XCTAssertEqual(try deltaBlobs(fresh), [], "a delta was sent to a destination without its base")
        try assertRestoreMatchesSource(from: fresh, label: "day2 alone")

        // Another repository of format version 1 (--allow-other-repository) takes no deltas at all.
        let v1 = scratch.sub("dest-v1")
        var config = RepositoryConfig.new()
        config.version = 1
        _ = try Repository.initialize(at: v1, config: config)
        let sync4 = try decodeSync(try accordOK(["sync", "-d", sourceRepo, "--to", v1, "--json", "--allow-other-repository"]))
        XCTAssertEqual(sync4.snapshots, 2)
        XCTAssertEqual(try deltaBlobs(v1), [], "a delta blob was sent to a version 1 repository")
        XCTAssertEqual(try Repository.open(at: v1).config.version, 1)
        try assertRestoreMatchesSource(from: v1, label: "version 1 destination")
    }

    /// Ids of the blobs stored as deltas in a repository's index.
    func deltaBlobs(_ repo: String) throws -> Set<BlobID> {
        let r = try Repository.open(at: repo)
        try r.loadIndex()
        var out = Set<BlobID>()
        r.index.forEach { id, l in if l.compression == .delta { out.insert(id) } }
        return out
    }
}
