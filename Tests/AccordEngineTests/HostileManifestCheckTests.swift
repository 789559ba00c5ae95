import Foundation
import XCTest
@testable import AccordCore
import AccordEngine
import AccordRuntime
#if canImport(Glibc)
import Glibc
#endif

/// A repository holding a real backup plus crafted snapshots whose manifests
/// break FORMAT.md's validity rules (raw records stored as tree blobs, a
/// snapshot file naming them): `check` reports each crafted snapshot as
/// damaged, naming it and the rule, and fails; `prune` refuses and deletes
/// nothing; a real backup's manifest (hard links, symlinks, a command
/// stream with a chunk list, then a delta of it) passes.
final class HostileManifestCheckTests: AccordTestCase {
    func p(_ s: String) -> RawPath { Array(s.utf8) }

    /// A tree with directories, files, two hard links to one file, symlinks
    /// (one dangling, one to a directory) and a file with a newline in its name.
    func makeTree() throws -> String {
        let root = scratch.sub("src")
        let fm = FileManager.default
        try fm.createDirectory(atPath: root + "/etc/sub", withIntermediateDirectories: true)
        try Data("hello\n".utf8).write(to: URL(fileURLWithPath: root + "/etc/a.conf"))
        var rng = SeededRandom(seed: 0x4057)
        try Data(rng.bytes(300_000)).write(to: URL(fileURLWithPath: root + "/etc/sub/blob.bin"))
        try Data("x".utf8).write(to: URL(fileURLWithPath: root + "/etc/new\nline"))
        XCTAssertEqual(link(root + "/etc/a.conf", root + "/etc/sub/a-link"), 0)
        XCTAssertEqual(link(root + "/etc/a.conf", root + "/z-link"), 0)
        try fm.createSymbolicLink(atPath: root + "/etc/to-sub", withDestinationPath: "sub")
        try fm.createSymbolicLink(atPath: root + "/dangling", withDestinationPath: "../../nowhere")
        // The dump a command source streams: ~6 MB cut by the dump profile, over 1,024 chunks.
        try Data(rng.bytes(6_000_000)).write(to: URL(fileURLWithPath: scratch.sub("dump.bin")))
        return root
    }

    /// Stores `manifest` (records as given) and `lists` (chunk-list blobs) as
    /// tree blobs and writes a snapshot naming the manifest; returns its id.
    func craft(_ entries: [ManifestEntry], lists: [[UInt8]] = []) throws -> SnapshotID {
        let repository = try Repository.open(at: repo)
        try repository.loadIndex()
        let sink = BlobSink(repository: repository, threads: 1, level: .default)
        for l in lists { _ = try l.withUnsafeBytes { try sink.store(type: .tree, data: $0) } }
        var w = ByteWriter()
        w.raw(ManifestCodec.magic)
        for e in entries { ManifestCodec.encode(e, into: &w) }
        let manifest = try w.bytes.withUnsafeBytes { try sink.store(type: .tree, data: $0) }
        _ = try sink.finish()
        return try repository.saveSnapshot(Snapshot(time: .now(), host: "crafted", username: "root", plan: "", tags: [],
                                                    paths: ["/"], sources: [], parent: nil, manifest: [manifest], summary: .init()))
    }

    func testARealBackupPassesAndCraftedManifestsAreDamagedForCheckAndPrune() throws {
        let root = try makeTree()
        try accordOK("init", "-d", repo)
        // The dump is cut with the 0.21 profile (4 KiB chunks): 6 MB then
        // give the chunk list (1024 ids or more) this test reads back; the
        // default profile would need 256 MB. (The engine: the CLI has no
        // option for a profile.)
        func backupWithDump() throws -> Snapshot.Made {
            var o = BackupOptions()
            o.paths = [p(root)]
            o.commands = [CommandSource(path: "/db/dump.sql", command: "cat '\(scratch.sub("dump.bin"))'", profile: .dump021)]
            o.threads = 2
            o.onError = { _, error in throw error }
            let r = try Repository.open(at: repo)
            try r.loadIndex()
            return Snapshot.Made(id: try Backup(repository: r, options: o).run().id.hex)
        }
        let first = try backupWithDump()
        // The next day: a few bytes of the dump change, so its chunk list is stored as a delta.
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: scratch.sub("dump.bin"))))
        for k in stride(from: 100_000, to: 6_000_000, by: 1_000_000) { bytes[k] ^= 0xff }
        try Data(bytes).write(to: URL(fileURLWithPath: scratch.sub("dump.bin")))
        let second = try backupWithDump()

        // The real manifests read through the validating reader, with every kind in them.
        let repository = try openRepository()
        for (id, generation) in [(first.id, 0), (second.id, 1)] {
            let entries = try manifestEntries(repository, snapshot: SnapshotID(hex: id))
            let kinds = Set(entries.map(\.kind))
            XCTAssertEqual(kinds, [.directory, .file, .symlink, .hardlink, .stream], "snapshot \(id)")
            XCTAssertEqual(entries.filter { $0.kind == .hardlink }.map(\.linkTarget.displayPath), [root + "/etc/a.conf", root + "/etc/a.conf"])
            let stream = try XCTUnwrap(entries.first { $0.kind == .stream })
            XCTAssertGreaterThanOrEqual(stream.blobs.count, ChunkList.threshold, "the dump keeps a chunk list")
            XCTAssertEqual(stream.list?.generation, generation, "snapshot \(id): list generation")
        }
        try accordOK("check", "-d", repo)

        // Crafted snapshots, one per rule.
        let store = Array(repeating: BlobID(hashing: "base id"), count: ChunkList.partSize)
        let base = ChunkList.encodeFull(store[...])
        let baseID = BlobID(hashing: base)
        let bomb = ChunkList.encodeDelta(generation: 1, base: [baseID], total: 1024 * ChunkList.partSize,
                                         ops: Array(repeating: .copy(from: 0, count: ChunkList.partSize), count: 1024))
        var bombEntry = ManifestEntry(kind: .stream, path: p("/db.sql"), mode: 0o600, size: 1 << 40)
        bombEntry.list = ChunkList.Info(refs: [BlobID(hashing: bomb)], blobs: [], base: [], generation: 0)
        let dir = { (s: String) in ManifestEntry(kind: .directory, path: self.p(s), mode: 0o755) }
        let cases: [(String, [ManifestEntry], [[UInt8]], String)] = [
            ("dot-dot", [dir("/"), ManifestEntry(kind: .file, path: p("/../../etc/cron.d/x"))], [], "has a .. component"),
            ("below a symlink", [dir("/"), ManifestEntry(kind: .symlink, path: p("/a"), linkTarget: p("/etc")),
                                 ManifestEntry(kind: .file, path: p("/a/passwd"))], [], "which is a symlink"),
            ("hard link outside", [dir("/"), ManifestEntry(kind: .hardlink, path: p("/h"), linkTarget: p("/etc/shadow"))], [],
             "not an earlier regular file"),
            ("directory then symlink", [dir("/"), dir("/etc"), ManifestEntry(kind: .symlink, path: p("/etc"), linkTarget: p("/"))], [],
             "appears twice"),
            ("delta bomb", [dir("/"), bombEntry], [base, bomb], "more than the \(ChunkList.maxIDs) content ids"),
        ]
        var crafted: [(String, SnapshotID, String)] = []
        for (name, entries, lists, rule) in cases { crafted.append((name, try craft(entries, lists: lists), rule)) }

        let check = try accord("check", "-d", repo)
        XCTAssertFalse(check.status == 0 || check.signaled, "check passed a repository with crafted manifests:\n\(check)")
        for (name, id, rule) in crafted {
            let line = check.stderr.split(separator: "\n").first { $0.contains("snapshot \(id.short) is damaged") }
            XCTAssertNotNil(line, "\(name): check does not report snapshot \(id.short) as damaged:\n\(check)")
            XCTAssertTrue(line?.contains(rule) ?? false, "\(name): check does not name the rule \"\(rule)\":\n\(check)")
        }
        for real in [first.id, second.id] {
            XCTAssertFalse(check.stderr.contains(String(real.prefix(8))), "check reports the real snapshot \(real):\n\(check)")
        }

        // prune refuses while any snapshot's manifest is invalid, and deletes nothing.
        try accordOK("forget", "-d", repo, first.id)   // gives prune something it would delete
        let packs = packFiles()
        let index = try Sys.listDirectory(repo + "/index").sorted()
        let prune = try accord("prune", "-d", repo, "--max-unused", "0%")
        XCTAssertFalse(prune.status == 0 || prune.signaled, "prune ran on a repository with crafted manifests:\n\(prune)")
        XCTAssertTrue(prune.stderr.contains("prune refuses"), "\(prune)")
        XCTAssertTrue(prune.stderr.contains("is damaged: its manifest is invalid"), "\(prune)")
        XCTAssertTrue(crafted.contains { prune.stderr.contains("snapshot \($0.1.short)") }, "prune does not name the snapshot:\n\(prune)")
        XCTAssertEqual(packFiles(), packs, "prune deleted packs")
        XCTAssertEqual(try Sys.listDirectory(repo + "/index").sorted(), index, "prune changed the index")

        print("check on crafted manifests:\n\(check.stderr)\nprune:\n\(prune.stderr)")

        // Once the crafted snapshots are forgotten, check and prune pass again.
        for (_, id, _) in crafted { try accordOK("forget", "-d", repo, id.hex) }
        try accordOK("prune", "-d", repo)
        try accordOK("check", "-d", repo)
        XCTAssertEqual(try manifestEntries(try openRepository(), snapshot: SnapshotID(hex: second.id)).filter { $0.kind == .stream }.count, 1)
    }

    /// A hard link whose first path cannot be read would name a path with no
    /// record (FORMAT.md, "Validity" rule 4): backup leaves such links out and
    /// lists them as unreadable, so the snapshot stays valid and checkable.
    func testHardLinksToAnUnreadableFileAreLeftOutAndTheSnapshotIsValid() throws {
        guard Sys.isRoot, FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv") else {
            throw XCTSkip("needs root and setpriv to run accord as another user")
        }
        let nobody: (uid: UInt32, gid: UInt32) = (65534, 65534)
        let root = scratch.sub("src")
        try TreeBuilder.mkdir(Array(root.utf8))
        try TreeBuilder.mkdir(Array((root + "/sub").utf8))
        try TreeBuilder.write(Array((root + "/public.txt").utf8), Array("everyone may read this".utf8))
        try TreeBuilder.write(Array((root + "/secret.txt").utf8), Array("nobody may read this".utf8), mode: 0o000)
        XCTAssertEqual(link(root + "/secret.txt", root + "/secret-2"), 0)
        XCTAssertEqual(link(root + "/secret.txt", root + "/sub/secret-3"), 0)
        XCTAssertEqual(link(root + "/public.txt", root + "/sub/public-2"), 0)
        let home = scratch.sub("nobody-home")
        try TreeBuilder.mkdir(Array(home.utf8))
        try Sys.lchown(Array(home.utf8), uid: nobody.uid, gid: nobody.gid)
        let repository = home + "/repo"

        let r = try accord("backup", "-d", repository, "--json", root, asUser: nobody)
        XCTAssertEqual(r.status, 3, "a backup that skipped unreadable files must exit 3:\n\(r)")
        XCTAssertEqual(Set(try decodeBackupJSON(r).summary.errors), [root + "/secret.txt", root + "/secret-2", root + "/sub/secret-3"])
        let opened = try Repository.open(at: repository)
        try opened.loadIndex()
        let entries = try manifestEntries(opened)
        XCTAssertEqual(entries.filter { $0.kind == .hardlink }.map(\.path.displayPath), [root + "/sub/public-2"],
                       "only the hard link to the readable file is kept")
        XCTAssertFalse(entries.contains { $0.path.displayPath.contains("secret") })
        let check = try accord("check", "-d", repository, asUser: nobody)
        XCTAssertEqual(check.status, 0, "\(check)")
    }
}

private extension Snapshot {
    /// A snapshot made by the engine, named as the CLI's `backup --json` names it.
    struct Made { var id: String }
}
