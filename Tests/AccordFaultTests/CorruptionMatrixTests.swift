import Foundation
import XCTest
import AccordCore
import AccordRuntime

/// One damage at a time to a copy of a small two-snapshot repository: a
/// pack, an index file, a snapshot file, a manifest blob, the config.
/// `check` must name each precisely and exit non-zero; what is not damaged
/// must still restore; `repair index` must recover from a lost index.
/// The base repository and the assertions are shared with `PruneOnDamageTests`.
class CorruptionMatrixTestCase: AccordTestCase {
    /// The repository every test copies, built once.
    struct Base {
        var dir: String
        var repo: String
        var tree: SourceTree
        var s1: String, s2: String
        var l1: TreeListing, l2: TreeListing
        /// A pack holding only data blobs that S2 added (its new random file).
        var s2OnlyPack: PackID
        var s2OnlyFile: String
        var s2OnlyBlob: BlobID
        var s2OnlyLocation: (offset: UInt32, storedLength: UInt32)
        /// S2's manifest blob (not shared with S1) and where it is stored.
        var s2Manifest: BlobID
        var s2ManifestPack: PackID
        var s2ManifestLocation: (offset: UInt32, storedLength: UInt32)
        /// The index file written by the first backup.
        var s1Index: String
    }

    // nonisolated(unsafe): XCTest runs a class's tests and tearDown one after another
    // on one thread, so these are never touched by two threads at once.
    nonisolated(unsafe) static var base: Base?
    nonisolated(unsafe) static var outcomes: [(String, String)] = []

    override class func tearDown() {
        if let b = base { try? FileManager.default.removeItem(atPath: b.dir) }
        base = nil
        if !outcomes.isEmpty {
            print("corruption matrix (fault → outcome):\n" + outcomes.map { "  \($0.0) → \($0.1)" }.joined(separator: "\n"))
            outcomes = []   // each subclass prints its own
        }
        super.tearDown()
    }

    func record(_ fault: String, _ outcome: String) { Self.outcomes.append((fault, outcome)) }

    func makeBase() throws -> Base {
        if let b = Self.base { return b }
        // The tests delete or damage the pack of S2's new random file and expect
        // that file alone to be lost. Two compressor threads fill the packs, so now and
        // then the rewritten text file's blob lands in the same pack (valid, but not the
        // setup the tests describe): then the base is built again.
        for attempt in 1...8 {
            let b = try makeBaseOnce()
            if try PackReader.readHeader(path: packPath(b.s2OnlyPack, b.repo)).count == 1 || attempt == 8 {
                Self.base = b
                return b
            }
            try? FileManager.default.removeItem(atPath: b.dir)
        }
        fatalError("unreachable")
    }

    func makeBaseOnce() throws -> Base {
        let dir = try ScratchDirectory("CorruptionBase").path
        let baseRepo = dir + "/repo"
        var rng = SeededRandom(seed: 0xC0_22)
        let tree = try SourceTree(root: dir + "/src", rng: &rng, randomFiles: 4, randomSize: 150_000, textFiles: 4, textSize: 30_000, smallFiles: 6)
        try initRepository(baseRepo, packSize: 1 << 16)
        let b1 = try backup([tree.root], repository: baseRepo, extra: ["--threads", "1"])
        let l1 = try tree.listing()
        let s1Index = try XCTUnwrap(indexNames(baseRepo).first)
        // S2's own random file is a new path, not a rewrite of one S1 has: a
        // rewritten file's chunk is first tried as a delta on its old version
        // (reading that, scanning it), which delays it behind the manifest
        // blob, and both then share a pack every time.
        let s2File = tree.root + "/s2-random.bin"
        try Files.write(s2File, rng.bytes(150_000))
        try Files.write(tree.textFiles[0], rng.text(30_000))
        let b2 = try backup([tree.root], repository: baseRepo, extra: ["--threads", "1"])
        let l2 = try tree.listing()

        let r = try openRepository(baseRepo)
        let id1 = try XCTUnwrap(SnapshotID(hex: b1.id)), id2 = try XCTUnwrap(SnapshotID(hex: b2.id))
        let blobs1 = try referencedBlobs(r, id1)
        let entries2 = try manifestEntries(r, id2)
        var s2Only = Set<BlobID>()
        for e in entries2 { s2Only.formUnion(e.blobs) }
        s2Only.subtract(blobs1)
        // The pack of the new random file's first blob must hold nothing else S1 or a manifest needs.
        let fileEntry = try XCTUnwrap(entries2.first { $0.path.displayPath == s2File })
        let blob = try XCTUnwrap(fileEntry.blobs.first)
        let loc = try XCTUnwrap(r.index.lookup(blob))
        let pack = r.index.pack(of: loc)
        let packBlobs = try PackReader.readHeader(path: packPath(pack, baseRepo))
        XCTAssertTrue(packBlobs.allSatisfy { $0.type == .data && s2Only.contains($0.id) },
                      "test setup: the pack of \(s2File) also holds blobs S1 or a manifest needs")
        let manifest2 = try r.loadSnapshot(id2).manifestIDs
        XCTAssertEqual(manifest2.count, 1, "test setup: S2's manifest should be one blob")
        let m = try XCTUnwrap(manifest2.first)
        XCTAssertFalse(try r.loadSnapshot(id1).manifestIDs.contains(m))
        let mloc = try XCTUnwrap(r.index.lookup(m))
        let b = Base(dir: dir, repo: baseRepo, tree: tree, s1: b1.id, s2: b2.id, l1: l1, l2: l2,
                     s2OnlyPack: pack, s2OnlyFile: s2File, s2OnlyBlob: blob, s2OnlyLocation: (loc.offset, loc.storedLength),
                     s2Manifest: m, s2ManifestPack: r.index.pack(of: mloc), s2ManifestLocation: (mloc.offset, mloc.storedLength),
                     s1Index: s1Index)
        return b
    }

    /// A fresh copy of the base repository at `repo`.
    @discardableResult
    func freshCopy() throws -> Base {
        let b = try makeBase()
        try? FileManager.default.removeItem(atPath: repo)
        try Files.copyTree(b.repo, to: repo)
        return b
    }

    /// `check` must fail (exit 1, no crash) and say each of `words` on stderr.
    @discardableResult
    func assertCheckFails(_ words: [String], readData: Bool = false, _ fault: String,
                          file: StaticString = #filePath, line: UInt = #line) throws -> CommandResult {
        let r = try accord(["check", "-d", repo] + (readData ? ["--read-data"] : []))
        XCTAssertFalse(r.signaled, "\(fault): check crashed:\n\(r)", file: file, line: line)
        XCTAssertEqual(r.status, 1, "\(fault): check did not fail:\n\(r)", file: file, line: line)
        for w in words where !r.stderr.contains(w) {
            XCTFail("\(fault): check does not say \"\(w)\":\n\(r)", file: file, line: line)
        }
        let first = r.stderr.split(separator: "\n").first.map(String.init) ?? ""
        record(fault + (readData ? " (check --read-data)" : " (check)"), "exit \(r.status): \(first.prefix(150))")
        return r
    }

    func assertRestoreFails(_ snapshot: String, naming words: [String], _ fault: String,
                            file: StaticString = #filePath, line: UInt = #line) throws {
        let target = scratch.sub("failed-restore")
        defer { try? FileManager.default.removeItem(atPath: target) }
        let r = try accord("restore", "-d", repo, snapshot, "--target", target, "-q")
        XCTAssertFalse(r.signaled, "\(fault): restore crashed:\n\(r)", file: file, line: line)
        XCTAssertNotEqual(r.status, 0, "\(fault): restore of damaged data succeeded:\n\(r)", file: file, line: line)
        for w in words where !r.stderr.contains(w) {
            XCTFail("\(fault): restore does not say \"\(w)\":\n\(r)", file: file, line: line)
        }
    }

}

final class CorruptionMatrixTests: CorruptionMatrixTestCase {
    // MARK: Packs

    func testDeletedPackIsReportedAsMissingAndEverythingElseRestores() throws {
        let b = try freshCopy()
        try FileManager.default.removeItem(atPath: packPath(b.s2OnlyPack))
        try assertCheckFails(["pack \(b.s2OnlyPack.hex) is missing"], "pack deleted")
        try assertRestores(b.s1, root: b.tree.root, expected: b.l1, "S1 with another snapshot's pack deleted")
        // S2: every other file restores; the lost one is named.
        let target = scratch.sub("partial")
        let r = try accord("restore", "-d", repo, b.s2, "--target", target, "-q")
        XCTAssertEqual(r.status, 1, "\(r)")
        XCTAssertTrue(r.stderr.contains(b.s2OnlyFile), "restore does not name the lost file:\n\(r)")
        var expected = b.l2
        let lost = String(b.s2OnlyFile.dropFirst(b.tree.root.count + 1))
        expected.removeValue(forKey: Array(lost.utf8))
        var actual = try listTree(target + b.tree.root, .modesTimesAndContent)
        actual.removeValue(forKey: Array(lost.utf8))
        assertSameTree(expected, actual, "S2 without the lost file")
        record("pack deleted (restore of the snapshot using it)", "exit 1, names \(lost); the other files restore")
    }

    func testTruncatedPackIsReportedAsDamaged() throws {
        for cut in [7, 5] {
            let b = try freshCopy()
            let path = packPath(b.s2OnlyPack)
            let size = cut == 7 ? Files.size(path) - 7 : 5
            try Files.truncate(path, to: size)
            try assertCheckFails(["pack \(b.s2OnlyPack.hex) is damaged", "truncated"], "pack truncated to \(size) bytes")
            try assertCheckFails([b.s2OnlyPack.hex, "truncated"], readData: true, "pack truncated to \(size) bytes")
            try assertRestores(b.s1, root: b.tree.root, expected: b.l1, "S1 with a truncated pack of S2")
            if cut == 7 {
                // Only the header went: the blob bytes the index points at are intact and verified on read.
                try assertRestores(b.s2, root: b.tree.root, expected: b.l2, "S2 from a pack that lost its header")
                record("pack lost its last 7 bytes (restore)", "exit 0: blobs before the header are intact and verified")
            } else {
                try assertRestoreFails(b.s2, naming: [b.s2OnlyFile], "pack truncated to 5 bytes")
            }
        }
    }

    func testFlippedByteInABlobIsFoundByReadDataAndRestoreNamesTheFile() throws {
        let b = try freshCopy()
        try Files.flipByte(packPath(b.s2OnlyPack), at: Int(b.s2OnlyLocation.offset + b.s2OnlyLocation.storedLength / 2))
        // A structural check reads no blob content: this damage is invisible to it (by design).
        let quick = try accord("check", "-d", repo)
        record("byte flipped in a data blob (check)", "exit \(quick.status): not detected without --read-data (by design)")
        try assertCheckFails(["pack \(b.s2OnlyPack.hex): content does not match its name",
                              "blob \(b.s2OnlyBlob.hex) at offset \(b.s2OnlyLocation.offset) is corrupt (hash mismatch"],
                             readData: true, "byte flipped in a data blob")
        let subset = try accord("check", "-d", repo, "--read-data-subset", "100%")
        XCTAssertEqual(subset.status, 1, "\(subset)")
        try assertRestoreFails(b.s2, naming: [b.s2OnlyFile], "byte flipped in a data blob")
        try assertRestores(b.s1, root: b.tree.root, expected: b.l1, "S1 with a corrupt blob of S2")
        let dump = try accord("dump", "-d", repo, b.s2, b.s2OnlyFile)
        XCTAssertNotEqual(dump.status, 0, "dump of a corrupt file succeeded")
        XCTAssertFalse(dump.signaled)
    }

    func testDamagedPackHeaderIsReported() throws {
        let b = try freshCopy()
        let path = packPath(b.s2OnlyPack)
        try Files.flipByte(path, at: Files.size(path) - 12 - 10)   // inside the last header entry's id
        try assertCheckFails(["pack \(b.s2OnlyPack.hex) is damaged", "header checksum mismatch"], "pack header byte flipped")
        try assertRestores(b.s1, root: b.tree.root, expected: b.l1, "S1 with a damaged pack header of S2")
    }

    func testPackUnderAWrongNameIsANoteWithoutReadDataAndAnErrorWithIt() throws {
        let b = try freshCopy()
        var hex = Array(b.s2OnlyPack.hex)
        hex[63] = hex[63] == "0" ? "1" : "0"
        let wrong = String(hex)
        try Files.write(repo + "/data/" + wrong.prefix(2) + "/" + wrong, try Files.read(packPath(b.s2OnlyPack)), mode: 0o600)
        let quick = try accord("check", "-d", repo)
        XCTAssertTrue(quick.ok, "\(quick)")
        XCTAssertTrue(quick.stdout.contains("pack \(wrong) is not in the index"), "\(quick)")
        record("copy of a pack under a wrong name (check)", "exit 0, note: not in the index")
        try assertCheckFails(["pack \(wrong): content does not match its name"], readData: true, "copy of a pack under a wrong name")
    }

    // MARK: Manifest

    func testCorruptManifestBlobMakesOnlyItsSnapshotUnreadable() throws {
        let b = try freshCopy()
        try Files.flipByte(packPath(b.s2ManifestPack), at: Int(b.s2ManifestLocation.offset + b.s2ManifestLocation.storedLength / 2))
        try assertCheckFails(["snapshot \(b.s2.prefix(8)): manifest is unreadable", b.s2Manifest.hex, "corrupt"], "byte flipped in S2's manifest blob")
        try assertRestores(b.s1, root: b.tree.root, expected: b.l1, "S1 with S2's manifest corrupt")
        try assertRestoreFails(b.s2, naming: ["corrupt"], "manifest blob corrupt")
        let ls = try accord("ls", "-d", repo, b.s2)
        XCTAssertNotEqual(ls.status, 0)
        XCTAssertFalse(ls.signaled)
        // A backup whose parent's manifest is unreadable reads every file and still succeeds.
        let next = try accord("backup", "-d", repo, "--json", b.tree.root)
        XCTAssertTrue(next.ok || next.status == 3, "a backup after a corrupt parent manifest fails:\n\(next)")
    }

    // MARK: Index

    func testCorruptOrTruncatedIndexFileIsReportedAndRepairIndexRebuildsIt() throws {
        for damage in ["byte flipped", "truncated"] {
            let b = try freshCopy()
            let path = repo + "/index/" + b.s1Index
            if damage == "truncated" { try Files.truncate(path, to: Files.size(path) / 2) } else { try Files.flipByte(path, at: 20) }
            try assertCheckFails(["index file \(path) is corrupt", "accord repair index"], "index file \(damage)")
            let backup = try accord("backup", "-d", repo, b.tree.root)
            XCTAssertEqual(backup.status, 1, "a backup over a corrupt index must stop:\n\(backup)")
            XCTAssertTrue(backup.stderr.contains("repair index"), "\(backup)")

            let repair = try accordOK("repair", "index", "-d", repo)
            XCTAssertTrue(repair.stdout.contains("rebuilt the index"), "\(repair)")
            let check = try assertCheckPasses(nil, readData: true, "after repair index (\(damage) index)")
            XCTAssertFalse(check.stdout.contains("not in the index"), "repair index left packs unindexed:\n\(check)")
            try assertRestores(b.s1, root: b.tree.root, expected: b.l1, "S1 after repair index")
            try assertRestores(b.s2, root: b.tree.root, expected: b.l2, "S2 after repair index")
            record("index file \(damage), then `repair index`", "exit 0; check --read-data passes; S1 and S2 restore")
        }
    }

    func testDeletedIndexFileIsReportedAndRepairIndexRebuildsIt() throws {
        let b = try freshCopy()
        try FileManager.default.removeItem(atPath: repo + "/index/" + b.s1Index)
        try assertCheckFails(["missing from the index", "accord repair index"], "index file deleted")
        let restore = try accord("restore", "-d", repo, b.s1, "--target", scratch.sub("x"), "-q")
        XCTAssertNotEqual(restore.status, 0, "\(restore)")
        XCTAssertFalse(restore.signaled)
        try accordOK("repair", "index", "-d", repo)
        try assertCheckPasses(nil, readData: true, "after repair index (index deleted)")
        try assertRestores(b.s1, root: b.tree.root, expected: b.l1, "S1 after repair index")
        try assertRestores(b.s2, root: b.tree.root, expected: b.l2, "S2 after repair index")
        record("index file deleted, then `repair index`", "exit 0; check --read-data passes; S1 and S2 restore")
    }

    func testIndexEntryThatDisagreesWithThePackHeaderIsReported() throws {
        let b = try freshCopy()
        // A well-formed index file (named by its hash) whose first entry has a wrong offset.
        let old = repo + "/index/" + b.s1Index
        var index = try Files.read(old).withUnsafeBytes { try IndexFile.decode($0) }
        let pack = index.packs[0].id
        let blob = index.packs[0].blobs[0].id
        index.packs[0].blobs[0].offset += 1
        let bytes = index.encode()
        try Files.write(repo + "/index/" + IndexID(hashing: bytes).hex, bytes, mode: 0o600)
        try FileManager.default.removeItem(atPath: old)
        try assertCheckFails(["pack \(pack.hex): blob \(blob.hex) is listed in the index but not at that place in the pack header"],
                             "index entry with a wrong offset")
        try accordOK("repair", "index", "-d", repo)
        try assertCheckPasses(nil, readData: true, "after repair index (wrong offset)")
    }

    func testRepairIndexWithADamagedPackRebuildsTheRestAndNamesWhatIsLost() throws {
        let b = try freshCopy()
        let path = packPath(b.s2OnlyPack)
        try Files.flipByte(path, at: Files.size(path) - 12 - 10)
        for name in indexNames() { try FileManager.default.removeItem(atPath: repo + "/index/" + name) }
        let repair = try accord("repair", "index", "-d", repo)
        XCTAssertEqual(repair.status, 1, "repair index must fail when a pack is unreadable:\n\(repair)")
        XCTAssertTrue(repair.stderr.contains("pack \(b.s2OnlyPack.hex) is unreadable"), "\(repair)")
        record("all index files deleted + one pack header damaged, `repair index`", "exit 1, names the unreadable pack; the rest is indexed")
        try assertRestores(b.s1, root: b.tree.root, expected: b.l1, "S1 after a partial repair")
        try assertCheckFails(["pack \(b.s2OnlyPack.hex) is not in the index and its header is unreadable"], "damaged pack after repair index")
    }

    // MARK: Snapshots

    func testCorruptSnapshotFileIsReportedAndOtherSnapshotsRestore() throws {
        for damage in ["byte flipped", "truncated"] {
            let b = try freshCopy()
            let path = repo + "/snapshots/" + b.s2
            if damage == "truncated" { try Files.truncate(path, to: Files.size(path) / 2) } else { try Files.flipByte(path, at: 40) }
            try assertCheckFails(["snapshot \(b.s2)", "is corrupt (content does not match its name)"], "snapshot file \(damage)")
            try assertRestores(b.s1, root: b.tree.root, expected: b.l1, "S1 with S2's file \(damage)")
            try assertRestoreFails(b.s2, naming: ["is corrupt"], "snapshot file \(damage)")
        }
    }

    /// In a disaster, `restore latest` must not silently restore an older
    /// snapshot because the newest one is unreadable: it must fail or warn.
    func testRestoreLatestDoesNotSilentlySkipACorruptNewestSnapshot() throws {
        let b = try freshCopy()
        try Files.flipByte(repo + "/snapshots/" + b.s2, at: 40)
        let target = scratch.sub("latest")
        let r = try accord("restore", "-d", repo, "latest", "--target", target)
        record("newest snapshot file corrupt, `restore latest`",
               "exit \(r.status); " + (r.stderr.isEmpty ? "silently restored the older snapshot S1" : "stderr: \(r.stderr.prefix(120))"))
        XCTAssertTrue(!r.ok || r.stderr.contains(b.s2.prefix(8)) || r.stderr.contains("unreadable") || r.stderr.contains("corrupt"),
                      "restore latest restored the older snapshot \(b.s1.prefix(8)) without a word about the unreadable newest one \(b.s2.prefix(8)):\n\(r)")
    }

    func testSnapshotWithAValidNameButBadContentIsReported() throws {
        let b = try freshCopy()
        let good = try Files.read(repo + "/snapshots/" + b.s2)
        let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(good)) as? [String: Any])
        let variants: [(String, [String: Any]?, [UInt8]?, String)] = [
            ("snapshot of format version 2", { var j = json; j["version"] = 2; return j }(), nil, "unknown version 2"),
            ("snapshot with a malformed manifest id", { var j = json; j["manifest"] = ["xyz"]; return j }(), nil, "bad manifest id"),
            ("snapshot naming a manifest blob no pack holds", { var j = json; j["manifest"] = [String(repeating: "ab", count: 32)]; return j }(), nil,
             "manifest blobs are missing from the index"),
            ("snapshot that is not JSON", nil, Array("not json at all\n".utf8), "not valid snapshot JSON"),
        ]
        for (fault, object, raw, words) in variants {
            try freshCopy()
            let bytes = try raw ?? Array(JSONSerialization.data(withJSONObject: object!, options: [.sortedKeys, .prettyPrinted])) + [0x0a]
            let name = SnapshotID(hashing: bytes).hex
            try Files.write(repo + "/snapshots/" + name, bytes, mode: 0o600)
            try assertCheckFails([name.prefix(8).description, words], fault)
            try assertRestores(b.s2, root: b.tree.root, expected: b.l2, "S2 beside a \(fault)")
        }
    }

    func testDeletedSnapshotIsIndistinguishableFromForget() throws {
        let b = try freshCopy()
        try FileManager.default.removeItem(atPath: repo + "/snapshots/" + b.s2)
        let r = try assertCheckPasses(nil, "snapshot file deleted")
        record("snapshot file deleted (check)", "exit \(r.status): not an error (same as forget; its data becomes prunable)")
        try assertRestores(b.s1, root: b.tree.root, expected: b.l1, "S1 with S2 deleted")
    }

    // MARK: Config

    func testDamagedConfigStopsEveryCommandWithAClearMessageAndIsNeverOverwritten() throws {
        let cases: [(String, (String) throws -> Void, String)] = [
            ("config byte flipped", { try Files.flipByte($0, at: 0) }, "repository config"),
            ("config truncated to 0 bytes", { try Files.truncate($0, to: 0) }, "is unreadable"),
            ("config of format version 4", { p in
                let s = String(decoding: try Files.read(p), as: UTF8.self).replacingOccurrences(of: "\"version\" : 2", with: "\"version\" : 4")
                try Files.write(p, Array(s.utf8), mode: 0o600) }, "has format version 4; this accord reads versions 1-3: use a newer accord"),
            ("config with packSize 100", { p in
                let s = String(decoding: try Files.read(p), as: UTF8.self).replacingOccurrences(of: "\"packSize\" : 65536", with: "\"packSize\" : 100")
                try Files.write(p, Array(s.utf8), mode: 0o600) }, "packSize 100"),
            ("config deleted", { try FileManager.default.removeItem(atPath: $0) }, "is not an Accord repository (no config file)"),
        ]
        for (fault, damage, words) in cases {
            let b = try freshCopy()
            let configPath = repo + "/config"
            try damage(configPath)
            let damaged = try? Files.read(configPath)
            try assertCheckFails([words], fault)
            for args in [["restore", "-d", repo, b.s1, "--target", scratch.sub("t")], ["backup", "-d", repo, b.tree.root],
                         ["snapshots", "list", "-d", repo], ["prune", "-d", repo]] {
                let r = try accord(args)
                XCTAssertFalse(r.ok || r.signaled, "\(fault): `accord \(args[0])` did not fail cleanly:\n\(r)")
                XCTAssertTrue(r.stderr.contains(words), "\(fault): `accord \(args[0])` does not say \"\(words)\":\n\(r)")
            }
            XCTAssertEqual(try? Files.read(configPath), damaged, "\(fault): a command rewrote the config")
            XCTAssertEqual(snapshotNames(), [b.s1, b.s2].sorted(), "\(fault): snapshots changed")
        }
    }

    // MARK: Leftovers and strays

    func testStrayFilesAndAnUnreadableLockAreIgnored() throws {
        let b = try freshCopy()
        try Files.write(repo + "/tmp/pack-0123456789abcdef.tmp", Array(repeating: 7, count: 5000))
        try Files.mkdir(repo + "/data/zz")
        try Files.write(repo + "/data/zz/README", Array("not a pack".utf8))
        let sub = String(b.s2OnlyPack.hex.prefix(2))
        try Files.write(repo + "/data/\(sub)/not-a-pack", Array("x".utf8))
        try Files.write(repo + "/index/README.txt", Array("x".utf8))
        try Files.write(repo + "/snapshots/notes", Array("x".utf8))
        try Files.write(repo + "/locks/0123456789abcdef0123456789abcdef", Array("{ garbage".utf8))
        let r = try assertCheckPasses(nil, readData: true, "stray files")
        XCTAssertTrue(r.stderr.contains("is unreadable"), "an unreadable lock should be reported:\n\(r)")
        record("stray files in tmp/, data/, index/, snapshots/ + a garbage lock", "check exit 0 (warning about the lock)")
        try assertRestores(b.s2, root: b.tree.root, expected: b.l2, "S2 beside stray files")
    }
}
