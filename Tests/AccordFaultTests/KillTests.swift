import Foundation
import XCTest
import AccordCore
import AccordRuntime
#if canImport(Glibc)
import Glibc
#endif

/// `kill -9` at seeded random moments of a backup, a prune and a sync
/// (FORMAT.md, "Write order" and "Crashes and leftovers"): afterwards `check`
/// passes, every committed snapshot restores identically, and the next run
/// completes and reuses what the killed one wrote.
final class KillTests: AccordTestCase {
    /// What a repository holds, to describe where a kill landed.
    struct State {
        var packs: Set<PackID>, index: Set<String>, snapshots: Set<String>, tmp: Int
    }

    func state(_ repository: String? = nil) -> State {
        let r = repository ?? repo
        return State(packs: packIDs(r), index: Set(indexNames(r)), snapshots: Set(snapshotNames(r)),
                     tmp: ((try? Sys.listDirectory(r + "/tmp")) ?? []).count)
    }

    func describe(_ before: State, _ after: State) -> String {
        let newPacks = after.packs.subtracting(before.packs).count, gone = before.packs.subtracting(after.packs).count
        let newIndex = after.index.subtracting(before.index).count, goneIndex = before.index.subtracting(after.index).count
        let newSnaps = after.snapshots.subtracting(before.snapshots).count
        var parts = ["+\(newPacks) packs"]
        if gone > 0 { parts.append("-\(gone) packs") }
        parts.append("+\(newIndex) index")
        if goneIndex > 0 { parts.append("-\(goneIndex) index") }
        parts.append("+\(newSnaps) snapshots")
        parts.append("\(after.tmp) in tmp/")
        return parts.joined(separator: ", ")
    }

    // MARK: Backup

    func testBackupKilledAtTwentyRandomMomentsNeverBreaksTheRepositoryAndTheNextBackupReusesItsPacks() throws {
        let kills = slowTestsEnabled ? 60 : 20
        let seed: UInt64 = 0x6B11_0001
        var rng = SeededRandom(seed: seed)
        // 32 MB of random and 12 MB of text; each round rewrites 3 random and 3 text files
        // (12 MB of new data, half of it to compress), so a round's backup runs most of a second.
        let tree = try SourceTree(root: scratch.sub("src"), rng: &rng, randomFiles: 16, randomSize: 2_000_000, textFiles: 6, textSize: 2_000_000)
        func changeTree() throws {
            try tree.rewriteRandomFiles(3, rng: &rng)
            try tree.rewriteTextFiles(3, rng: &rng)
        }
        try initRepository(packSize: 2 << 20)
        let first = try backup([tree.root])
        let firstListing = try tree.listing()
        var committed: [String: TreeListing] = [first.id: firstListing]

        // One uninterrupted round measures how long a round's backup runs.
        try changeTree()
        let t0 = Date()
        let measured = try backup([tree.root])
        let duration = Date().timeIntervalSince(t0)
        committed[measured.id] = try tree.listing()
        print("kill test: seed \(String(seed, radix: 16)), a round's backup adds \(measured.summary.addedBytes) bytes in \(String(format: "%.2f", duration)) s")

        var table: [String] = []
        var reusedFromLeftovers = 0, roundsWithLeftovers = 0
        for k in 0..<kills {
            try changeTree()
            let listing = try tree.listing()
            let before = state()
            // Even rounds kill anywhere; rounds 1, 5, … aim at the end of the run (last pack, index,
            // snapshot; some complete); rounds 3, 7, … (each followed by a checked backup) aim mid-run,
            // after packs and before the index, so that backup has leftovers to adopt. A completed
            // round adopts what the round before left, so only those mid-run kills test reuse
            // reliably on a loaded machine (where a late kill often lands after the commit).
            let delay: Double
            switch k % 4 {
            case 1: delay = rng.double((0.8 * duration)...(1.4 * duration))
            case 3: delay = rng.double((0.3 * duration)...(0.7 * duration))
            default: delay = rng.double(0...(1.2 * duration))
            }
            let cmd = try start(["backup", "-d", repo, "--json", tree.root])
            sleepSeconds(delay)
            if cmd.isRunning { cmd.kill() }
            let r = cmd.finish()
            XCTAssertTrue(r.ok || (r.signaled && r.status == SIGKILL), "kill \(k): the backup neither completed nor died of our SIGKILL:\n\(r)")
            let after = state()
            let newSnapshots = after.snapshots.subtracting(before.snapshots)
            XCTAssertLessThanOrEqual(newSnapshots.count, 1)
            for s in newSnapshots { committed[s] = listing }
            table.append(String(format: "%2d  %.3f s  %@  %@", k, delay, r.ok ? "completed" : "killed   ", describe(before, after)))

            try assertCheckPasses(nil, "kill \(k) at \(String(format: "%.3f", delay)) s")

            if k % 4 == 3 || k == kills - 1 {
                // The next backup completes, adopts the killed one's packs and stores only what no pack holds.
                let onDisk = blobsInPackHeaders()
                let leftovers = try unindexedPacks()
                var leftoverBlobs = Set<BlobID>()
                for p in leftovers { for e in try PackReader.readHeader(path: packPath(p)) { leftoverBlobs.insert(e.id) } }
                let b = try backup([tree.root])
                committed[b.id] = listing
                let repository = try openRepository()
                let refs = try referencedBlobs(repository, try XCTUnwrap(SnapshotID(hex: b.id)))
                let expectedNew = refs.subtracting(onDisk.keys)
                XCTAssertEqual(b.summary.addedBlobs, expectedNew.count,
                               "kill \(k): the next backup stored \(b.summary.addedBlobs) blobs, but only \(expectedNew.count) of the \(refs.count) it needs were in no pack (\(leftovers.count) unindexed packs were left)")
                XCTAssertLessThan(b.summary.addedBytes, b.summary.totalBytes)
                XCTAssertEqual(try unindexedPacks(), [], "kill \(k): the next backup did not index the packs the killed one left")
                let reused = refs.intersection(leftoverBlobs).count
                if !leftovers.isEmpty { roundsWithLeftovers += 1 }
                reusedFromLeftovers += reused
                table.append("    next backup: \(b.summary.addedBlobs) new blobs, \(reused) reused from \(leftovers.count) packs the killed runs left")
                try assertRestores(b.id, root: tree.root, expected: listing, includes: Array(tree.randomFiles.prefix(3)) + [tree.textFiles[0]],
                                   "kill \(k): sample of the next backup")
            }
            if k % 4 == 1 {
                // The first snapshot's files that later rounds rewrote live in its own packs: restore a sample.
                let sample = [tree.randomFiles[k % tree.randomFiles.count], tree.textFiles[k % tree.textFiles.count]]
                try assertRestores(first.id, root: tree.root, expected: firstListing, includes: sample, "kill \(k): sample of the first snapshot")
            }
        }
        print("kill points (round, delay, outcome, what the repository gained):\n" + table.joined(separator: "\n"))
        XCTAssertGreaterThan(reusedFromLeftovers, 0,
                             "no later backup reused a pack left by a killed one (\(roundsWithLeftovers) rounds left packs): the kill points missed the pack-writing phase")
        // Every snapshot ever committed is intact.
        XCTAssertEqual(Set(snapshotNames()), Set(committed.keys))
        try assertRestores(first.id, root: tree.root, expected: firstListing, "after all kills: the first snapshot")
        let check = try accord("check", "-d", repo, "--read-data-subset", slowTestsEnabled ? "100%" : "25%")
        XCTAssertTrue(check.ok && !check.stderr.contains("error:"), "after all kills:\n\(check)")
        let latest = try openRepository().resolveSnapshot("latest").hex
        try assertRestores(latest, root: tree.root, expected: try XCTUnwrap(committed[latest]), "the latest snapshot after all kills")
    }

    // MARK: Prune

    func testPruneKilledWhileRepackingLeavesEverySnapshotRestorable() throws {
        let kills = slowTestsEnabled ? 15 : 6
        var rng = SeededRandom(seed: 0x6B11_0002)
        let tree = try SourceTree(root: scratch.sub("src"), rng: &rng, randomFiles: 10, randomSize: 1_000_000, textFiles: 4, textSize: 500_000)
        let base = scratch.sub("base")
        // A fixed chunker seed and one thread: the same packs (and pack ids) on every run.
        try initRepository(base, packSize: 2 << 20, chunkerSeed: 0x5EED_0002)
        var snaps: [(id: String, listing: TreeListing)] = []
        for round in 0..<4 {
            if round > 0 { try tree.rewriteRandomFiles(3, rng: &rng); try tree.appendText(50_000, rng: &rng) }
            snaps.append((try backup([tree.root], repository: base, extra: ["--threads", "1"]).id, try tree.listing()))
        }
        // Forget the two oldest: their packs are partly live, so prune --max-unused 0% repacks most of them.
        try accordOK("forget", "-d", base, snaps[0].id, snaps[1].id)
        let kept = Array(snaps.suffix(2))

        // An uninterrupted prune on a copy measures the duration.
        try Files.copyTree(base, to: repo)
        let full = try accordOK("prune", "-d", repo, "--max-unused", "0%")
        print("prune kill test: an uninterrupted prune ran \(String(format: "%.2f", full.seconds)) s: \(full.stdout.split(separator: "\n").last ?? "")")
        try FileManager.default.removeItem(atPath: repo)

        var table: [String] = []
        for k in 0..<kills {
            try Files.copyTree(base, to: repo)
            defer { try? FileManager.default.removeItem(atPath: repo) }
            let before = state()
            // Every other kill aims at the end: new index written, old index files and packs being deleted.
            let delay = k % 2 == 0 ? rng.double(0.02...(1.1 * full.seconds)) : rng.double((0.8 * full.seconds)...(1.05 * full.seconds))
            let cmd = try start(["prune", "-d", repo, "--max-unused", "0%"])
            sleepSeconds(delay)
            if cmd.isRunning { cmd.kill() }
            let r = cmd.finish()
            XCTAssertTrue(r.ok || (r.signaled && r.status == SIGKILL), "prune kill \(k):\n\(r)")
            let after = state()
            table.append(String(format: "%2d  %.3f s  %@  %@", k, delay, r.ok ? "completed" : "killed   ", describe(before, after)))

            try assertCheckPasses(nil, "prune killed at \(String(format: "%.3f", delay)) s")
            XCTAssertEqual(Set(snapshotNames()), Set(kept.map(\.id)), "prune kill \(k): snapshots changed")
            // Every kept snapshot restores (a sample of files; all of them on the last round).
            let sample = k == kills - 1 ? [] : [tree.randomFiles[k % 10], tree.randomFiles[(k + 5) % 10], tree.textFiles[k % 4]]
            try assertRestores(kept[1].id, root: tree.root, expected: kept[1].listing, includes: sample, "prune kill \(k): newest snapshot")
            try assertRestores(kept[0].id, root: tree.root, expected: kept[0].listing, includes: sample, "prune kill \(k): older snapshot")
            // A prune run again completes and leaves a clean repository.
            if k % 2 == 1 || k == kills - 1 {
                try accordOK("prune", "-d", repo, "--max-unused", "0%")
                XCTAssertEqual(try unindexedPacks(), [], "prune kill \(k): the rerun left unindexed packs")
                try assertCheckPasses(nil, readData: true, "prune kill \(k): after the rerun")
                try assertRestores(kept[0].id, root: tree.root, expected: kept[0].listing, includes: sample, "prune kill \(k): older snapshot after the rerun")
            }
        }
        print("prune kill points (round, delay, outcome, change):\n" + table.joined(separator: "\n"))
    }

    /// The state a prune killed after writing its new packs (step 1) and
    /// before writing its index leaves: the repacked copies sit in data/,
    /// named in no index. A second prune must keep every live blob. (A rerun
    /// repacks the same blobs into a byte-identical pack, i.e. the same pack
    /// id as the leftover it has just decided to delete as unused.)
    func testPruneAfterAPruneKilledBeforeItsIndexKeepsEveryLiveBlob() throws {
        for attempt in 0..<10 {
            var rng = SeededRandom(seed: 0x6B11_0010 &+ UInt64(attempt))
            // Files under the chunker's minimum are one blob each, and one thread stores them in
            // walk order: the packs, and so the pack ids, depend only on the seed.
            let dir = scratch.sub("attempt\(attempt)")
            let tree = try SourceTree(root: dir + "/src", rng: &rng, randomFiles: 8, randomSize: 200_000, textFiles: 1, textSize: 20_000, smallFiles: 2)
            let base = dir + "/base"
            try initRepository(base, packSize: 1 << 20)
            var last = ""
            for round in 0..<3 {
                if round > 0 { try tree.rewriteRandomFiles(3 - round + 1, rng: &rng) }
                last = try backup([tree.root], repository: base, extra: ["--threads", "1"]).id
            }
            let listing = try tree.listing()
            try accordOK("forget", "-d", base, "--keep-last", "1")
            let completed = dir + "/completed"
            try Files.copyTree(base, to: completed)
            try accordOK("prune", "-d", completed, "--max-unused", "0%")
            let old = packIDs(base)
            let new = packIDs(completed).subtracting(old)
            var blobsOf: [PackID: Set<BlobID>] = [:]
            for p in old { blobsOf[p] = Set(try PackReader.readHeader(path: packPath(p, base)).map(\.id)) }
            for p in new { blobsOf[p] = Set(try PackReader.readHeader(path: packPath(p, completed)).map(\.id)) }
            // The case that matters: every blob of a leftover pack also lies in an old pack that sorts first.
            let shadowed = new.filter { x in blobsOf[x]!.allSatisfy { b in old.contains { $0 < x && blobsOf[$0]!.contains(b) } } }
            guard !shadowed.isEmpty else { try? FileManager.default.removeItem(atPath: dir); continue }

            try Files.copyTree(base, to: repo)
            for p in new {
                try Files.mkdir(repo + "/data/" + p.hex.prefix(2))
                try Files.write(packPath(p, repo), try Files.read(packPath(p, completed)), mode: 0o600)
            }
            try assertCheckPasses(nil, "a prune killed before its index (attempt \(attempt))")
            let r = try accordOK("prune", "-d", repo, "--max-unused", "0%")
            let lost = shadowed.filter { !Files.exists(packPath($0)) }
            print("prune after a prune killed before its index (seed attempt \(attempt)): \(new.count) leftover pack(s), \(shadowed.count) shadowed; "
                  + "after the second prune \(lost.count) of them are gone: \(r.stdout.split(separator: "\n").last ?? "")")
            try assertCheckPasses(nil, readData: true, "after the second prune")
            try assertRestores(last, root: tree.root, expected: listing, "the kept snapshot after the second prune")
            return
        }
        throw XCTSkip("no seed gave a leftover pack whose blobs all sort after an old copy")
    }

    /// FORMAT.md's table of prune crashes, state by state, built exactly from
    /// a completed prune: after its new index (old index files still there),
    /// after deleting the old index files (old packs still there), and midway
    /// through deleting packs. Each passes `check`, restores, and a second
    /// prune cleans it up. (After the new packs only: the test above.)
    func testPruneInterruptedAfterEachLaterStepLeavesARepositoryTheNextPruneCleansUp() throws {
        var rng = SeededRandom(seed: 0x6B11_0020)
        let tree = try SourceTree(root: scratch.sub("src"), rng: &rng, randomFiles: 8, randomSize: 200_000, textFiles: 1, textSize: 20_000, smallFiles: 2)
        let base = scratch.sub("base")
        try initRepository(base, packSize: 1 << 20, chunkerSeed: 0x5EED_0020)
        var last = ""
        for round in 0..<3 {
            if round > 0 { try tree.rewriteRandomFiles(3, rng: &rng) }
            last = try backup([tree.root], repository: base, extra: ["--threads", "1"]).id
        }
        let listing = try tree.listing()
        try accordOK("forget", "-d", base, "--keep-last", "1")
        let completed = scratch.sub("completed")
        try Files.copyTree(base, to: completed)
        try accordOK("prune", "-d", completed, "--max-unused", "0%")
        let oldPacks = packIDs(base), newPacks = packIDs(completed).subtracting(oldPacks)
        let deleted = oldPacks.subtracting(packIDs(completed)).sorted()
        let newIndex = try XCTUnwrap(indexNames(completed).first)
        XCTAssertFalse(deleted.isEmpty, "test setup: prune deleted nothing")

        func copyPack(_ p: PackID, from: String) throws {
            try Files.mkdir(repo + "/data/" + p.hex.prefix(2))
            try Files.write(packPath(p, repo), try Files.read(packPath(p, from)), mode: 0o600)
        }
        let states: [(String, () throws -> Void)] = [
            ("new packs and new index written, old index files not yet deleted", {
                try Files.copyTree(base, to: self.repo)
                for p in newPacks { try copyPack(p, from: completed) }
                try Files.write(self.repo + "/index/" + newIndex, try Files.read(completed + "/index/" + newIndex), mode: 0o600) }),
            ("old index files deleted, no pack deleted yet", {
                try Files.copyTree(completed, to: self.repo)
                for p in deleted { try copyPack(p, from: base) } }),
            ("half of the dead packs deleted", {
                try Files.copyTree(completed, to: self.repo)
                for p in deleted.prefix(deleted.count / 2) { try copyPack(p, from: base) } }),
        ]
        for (state, build) in states {
            try? FileManager.default.removeItem(atPath: repo)
            try build()
            try assertCheckPasses(nil, "prune interrupted: \(state)")
            try assertRestores(last, root: tree.root, expected: listing, "prune interrupted: \(state)")
            try accordOK("prune", "-d", repo, "--max-unused", "0%")
            try assertCheckPasses(nil, readData: true, "the next prune after: \(state)")
            XCTAssertEqual(try unindexedPacks(), [], "the next prune after \(state) left unindexed packs")
            try assertRestores(last, root: tree.root, expected: listing, "after the next prune (\(state))")
        }
    }

    // MARK: Sync

    func testSyncKilledOnEitherSideLeavesACheckableDestinationAndTheRerunSendsOnlyWhatIsMissing() throws {
        let rounds = slowTestsEnabled ? 12 : 4
        var rng = SeededRandom(seed: 0x6B11_0003)
        let tree = try SourceTree(root: scratch.sub("src"), rng: &rng, randomFiles: 10, randomSize: 1_500_000, textFiles: 2, textSize: 1_000_000)
        try initRepository(packSize: 2 << 20)
        var committed: [String: TreeListing] = [:]
        committed[try backup([tree.root]).id] = try tree.listing()
        let dest = scratch.sub("dest")

        // An uninterrupted sync to a throwaway destination measures the duration.
        let probe = try accordOK("sync", "-d", repo, "--to", scratch.sub("probe"), "--json")
        try FileManager.default.removeItem(atPath: scratch.sub("probe"))
        let duration = probe.seconds

        var table: [String] = []
        for k in 0..<rounds {
            // New data every round, so every sync has something to transfer.
            try tree.rewriteRandomFiles(5, rng: &rng)
            committed[try backup([tree.root]).id] = try tree.listing()
            let before = state(dest)
            let killServer = k % 2 == 1
            let delay = rng.double(0.05...(0.9 * duration))
            let cmd = try start(["sync", "-d", repo, "--to", dest])
            var victim = cmd.pid
            if killServer {
                let deadline = Date().addingTimeInterval(10)
                while cmd.isRunning, Date() < deadline, childProcesses(of: cmd.pid).isEmpty { usleep(1000) }
                victim = childProcesses(of: cmd.pid).first ?? cmd.pid
            }
            let server = childProcesses(of: cmd.pid).first
            sleepSeconds(delay)
            if cmd.isRunning && Sys.processExists(victim) { Glibc.kill(victim, SIGKILL) }
            let r = cmd.finish()
            // The serve child of a killed client sees end of input and exits.
            if let s = server { let end = Date().addingTimeInterval(10); while Sys.processExists(s) && Date() < end { usleep(2000) } }
            if killServer {
                XCTAssertFalse(r.signaled, "round \(k): the client crashed when its server was killed:\n\(r)")
                if !r.ok { XCTAssertTrue(r.stderr.contains("serve") || r.stderr.contains("connection") || r.stderr.contains("ended"),
                                         "round \(k): the client's error does not say the destination went away:\n\(r)") }
            }
            let after = state(dest)
            table.append(String(format: "%2d  kill %@ at %.3f s  %@  %@", k, killServer ? "serve " : "client", delay,
                                r.ok ? "completed" : "interrupted", describe(before, after)))
            if Files.exists(dest + "/config") {
                try assertCheckPasses(dest, "sync round \(k), \(killServer ? "server" : "client") killed at \(String(format: "%.3f", delay)) s")
            }
            for s in after.snapshots { XCTAssertNotNil(committed[s], "round \(k): the destination holds a snapshot the source never had") }
        }

        // The rerun completes and sends exactly the blobs the destination lacks (what arrived before is not resent).
        let source = try openRepository()
        var needed = Set<BlobID>()
        for id in try source.listSnapshotIDs() { needed.formUnion(try referencedBlobs(source, id)) }
        let atDest = blobsInPackHeaders(dest)
        let missing = needed.subtracting(atDest.keys)
        let rerun = try accordOK("sync", "-d", repo, "--to", dest, "--json")
        let stats = try JSONSerialization.jsonObject(with: Data(rerun.stdout.utf8)) as? [String: Any]
        let sent = (stats?["blobs"] as? Int) ?? -1
        table.append("final sync: \(sent) blobs sent; \(needed.count) needed, \(needed.count - missing.count) already at the destination")
        print("sync kill points (round, victim, delay, outcome, destination change):\n" + table.joined(separator: "\n"))
        XCTAssertEqual(sent, missing.count, "the resumed sync sent \(sent) blobs; the destination lacked \(missing.count) of \(needed.count)")
        XCTAssertGreaterThan(needed.count - missing.count, 0)
        XCTAssertEqual(Set(snapshotNames(dest)), Set(committed.keys))
        try assertCheckPasses(dest, readData: true, "destination after the final sync")
        XCTAssertEqual(try unindexedPacks(dest), [])
        let latest = try openRepository().resolveSnapshot("latest").hex
        try assertRestores(latest, root: tree.root, expected: try XCTUnwrap(committed[latest]), repository: dest, "latest snapshot from the destination")
        let again = try accordOK("sync", "-d", repo, "--to", dest, "--json")
        XCTAssertTrue(again.stdout.contains("\"blobs\":0"), "a second sync sent blobs again:\n\(again)")
    }
}
