import Foundation
import XCTest
import AccordCore

/// Prune on a damaged copy of the corruption matrix's repository: it must
/// refuse (naming the damage) or keep every blob a snapshot still needs —
/// never delete the last good copy of anything.
final class PruneOnDamageTests: CorruptionMatrixTestCase {
    /// A blob may be stored in two packs (FORMAT.md: concurrent backups, sync).
    /// When the pack prune would keep it from is missing, prune must keep the
    /// copy that exists (or refuse), never delete the last good copy.
    func testPruneNeverDeletesTheLastGoodCopyOfABlobWhosePackIsMissing() throws {
        let b = try freshCopy()
        // A second pack holding S2's new random file again (as a concurrent backup could write it),
        // made so that its id sorts after the original pack's.
        let original = try Files.read(packPath(b.s2OnlyPack))
        let entry = try XCTUnwrap(try PackReader.readHeader(path: packPath(b.s2OnlyPack)).first { $0.id == b.s2OnlyBlob })
        let stored = Array(original[Int(entry.offset)..<Int(entry.offset + entry.storedLength)])
        let repository = try Repository.open(at: repo)
        var duplicate: PackID = .zero
        var attempt = 0
        repeat {
            let w = try PackWriter(layout: repository.layout)
            try stored.withUnsafeBytes { try w.add(id: entry.id, type: entry.type, compression: entry.compression, rawLength: Int(entry.rawLength), stored: $0) }
            let filler = Array("unused filler \(attempt)".utf8)
            try filler.withUnsafeBytes { try w.add(id: BlobID(hashing: $0), type: .data, compression: .none, rawLength: filler.count, stored: $0) }
            let id = try w.finish()
            if id > b.s2OnlyPack { try repository.writeIndex(IndexFile(packs: [.init(id: id, blobs: w.entries)])); duplicate = id } else { try FileManager.default.removeItem(atPath: packPath(id)) }
            attempt += 1
        } while duplicate == .zero
        try assertCheckPasses(nil, readData: true, "with a duplicate pack")

        try FileManager.default.removeItem(atPath: packPath(b.s2OnlyPack))
        try assertCheckFails(["pack \(b.s2OnlyPack.hex) is missing"], "pack deleted while a duplicate of its blob exists")
        try assertRestores(b.s2, root: b.tree.root, expected: b.l2, "S2 from the duplicate before prune")

        let prune = try accord("prune", "-d", repo, "--max-unused", "0%")
        XCTAssertFalse(prune.signaled)
        let duplicateSurvives = Files.exists(packPath(duplicate))
        record("pack deleted while another pack holds a copy of its blob, then prune",
               "exit \(prune.status); the copy \(duplicateSurvives ? "survives" : "was DELETED")")
        // With --max-unused 0% prune may repack the duplicate (moving the blob to a new pack):
        // what must hold is that the blob still exists, i.e. S2 restores right after prune.
        if prune.ok { try assertRestores(b.s2, root: b.tree.root, expected: b.l2, "S2 right after prune (blob \(b.s2OnlyBlob.short) kept or repacked)") }
        // Whatever prune did, S2 must still restore: the data existed.
        try accordOK("repair", "index", "-d", repo)
        try assertRestores(b.s2, root: b.tree.root, expected: b.l2, "S2 after prune and repair index")
    }

    func testPruneRefusesOnADamagedRepositoryAndDeletesNothing() throws {
        let base0 = try makeBase()
        let damages: [(String, (Base) throws -> Void, [String])] = [
            ("pack deleted", { b in try FileManager.default.removeItem(atPath: self.packPath(b.s2OnlyPack)) }, ["missing"]),
            ("pack deleted and the index repaired", { b in
                try FileManager.default.removeItem(atPath: self.packPath(b.s2OnlyPack))
                try self.accordOK("repair", "index", "-d", self.repo) }, ["missing", base0.s2OnlyBlob.short]),
            ("manifest blob corrupt", { b in
                try Files.flipByte(self.packPath(b.s2ManifestPack), at: Int(b.s2ManifestLocation.offset + b.s2ManifestLocation.storedLength / 2)) },
             ["prune refuses"]),
            ("index file corrupt", { b in try Files.flipByte(self.repo + "/index/" + b.s1Index, at: 20) }, ["repair index"]),
            ("snapshot file corrupt", { b in try Files.flipByte(self.repo + "/snapshots/" + b.s2, at: 40) }, ["prune refuses"]),
        ]
        for (fault, damage, words) in damages {
            let b = try freshCopy()
            try accordOK("forget", "-d", repo, b.s1)   // gives prune something to delete
            try damage(b)
            let packs = packFiles(), index = indexNames()
            let r = try accord("prune", "-d", repo, "--max-unused", "0%")
            XCTAssertFalse(r.ok || r.signaled, "\(fault): prune ran on a damaged repository:\n\(r)")
            for w in words where !r.stderr.contains(w) { XCTFail("\(fault): prune does not say \"\(w)\":\n\(r)") }
            XCTAssertFalse(r.stderr.contains(String(repeating: "0", count: 64)), "\(fault): prune's error names the all-zero pack id:\n\(r)")
            XCTAssertEqual(packFiles(), packs, "\(fault): prune deleted packs")
            XCTAssertEqual(indexNames(), index, "\(fault): prune changed the index")
            record("\(fault), then prune", "exit \(r.status): \(r.stderr.split(separator: "\n").first?.prefix(150) ?? "")")
        }
    }

    /// `repair index` tells damage (the pack's bytes came and are bad: its blobs
    /// are lost) from a failure to read (here a pack that reads as EISDIR, as a
    /// server's 503 storm or a timeout would on a bucket): on the latter it stops
    /// and replaces nothing, so a healthy repository's index is never emptied.
    func testRepairIndexStopsWithoutChangingTheIndexWhenAPackCannotBeRead() throws {
        let b = try freshCopy()
        let indexDir = repo + "/index"
        let before = try FileManager.default.contentsOfDirectory(atPath: indexDir).sorted()
        let pack = packPath(b.s2OnlyPack)
        let bytes = try Files.read(pack)
        try FileManager.default.removeItem(atPath: pack)
        try FileManager.default.createDirectory(atPath: pack, withIntermediateDirectories: false)
        let r = try accord("repair", "index", "-d", repo)
        XCTAssertFalse(r.ok || r.signaled, "\(r)")
        XCTAssertTrue(r.stderr.contains("could not read pack \(b.s2OnlyPack)") && r.stderr.contains("the index was not changed"), r.stderr)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: indexDir).sorted(), before, "repair replaced index files")

        // Damage (a truncated pack) is still repaired around: its blobs are lost, the rest indexed.
        try FileManager.default.removeItem(atPath: pack)
        try Files.write(pack, Array(bytes.prefix(100)))
        let repaired = try accord("repair", "index", "-d", repo)
        XCTAssertEqual(repaired.status, 1, "a lost pack is reported by the exit status: \(repaired)")
        XCTAssertTrue(repaired.stdout.contains("rebuilt the index") && repaired.stderr.contains("pack \(b.s2OnlyPack) is unreadable") && repaired.stderr.contains("its blobs are lost"), repaired.stderr)
        try assertRestores(b.s1, root: b.tree.root, expected: b.l1, "S1 after repairing around a truncated pack")
    }
}
