import Foundation
import XCTest
@testable import AccordCore
import AccordEngine
import AccordTestSupport
import AccordRuntime
#if canImport(Glibc)
import Glibc
#endif

/// A backup reads its parent's manifest with only tree order and blob-count
/// bounds checked (`ManifestReader.Validation.orderAndCounts`, see
/// `ParentCursor`). Against crafted parents (out of order, non-canonical
/// paths, a hard link to nothing, a file below a symlink, a chunk-list bomb,
/// a directory with content, ids the index does not hold) every backup must
/// finish without a trap, warn (naming the snapshot) where the parent breaks
/// a rule it checks, read again what it cannot take from the parent, and
/// write a snapshot that the full reader accepts and that names exactly the
/// content an honest parent gives.
final class HostileParentBackupTests: DumpBackupTestCase {
    func p(_ s: String) -> RawPath { Array(s.utf8) }

    /// Files, a directory, two hard links to one file, a symlink, and a 6 MB
    /// dump streamed by a command (over 1,024 chunks: a chunk list).
    func makeTree() throws -> (root: String, dump: String) {
        let root = scratch.sub("src")
        var rng = SeededRandom(seed: 0x9A7E)
        try TreeBuilder.mkdir(p(root))
        try TreeBuilder.mkdir(p(root + "/sub"))
        for i in 0..<12 { try TreeBuilder.write(p(root + "/sub/f\(i).txt"), rng.bytes(200 + 1000 * i)) }
        try TreeBuilder.write(p(root + "/a.conf"), Array("hello\n".utf8))
        try TreeBuilder.write(p(root + "/big.bin"), rng.bytes(700_000))
        XCTAssertEqual(link(root + "/a.conf", root + "/sub/a-link"), 0)
        XCTAssertEqual(link(root + "/a.conf", root + "/z-link"), 0)
        XCTAssertEqual(symlink("sub", root + "/to-sub"), 0)
        let dump = scratch.sub("dump.bin")
        try TreeBuilder.write(p(dump), rng.bytes(6_000_000))
        return (root, dump)
    }

    func backupOptions(_ root: String, _ dump: String, parent: SnapshotID?) -> BackupOptions {
        var o = options()
        o.paths = [p(root)]
        o.commands = [CommandSource(path: dumpPath, command: "cat '\(dump)'", profile: .dump021)]
        o.parent = parent
        return o
    }

    /// Every entry of a snapshot, through the full validating reader.
    func fullEntries(_ id: SnapshotID) throws -> [ManifestEntry] {
        let r = try open()
        var reader = r.manifestReader(try r.loadSnapshot(id), id: id)
        XCTAssertEqual(reader.validation, .full)
        var out: [ManifestEntry] = []
        while let e = try reader.next() { out.append(e) }
        return out
    }

    /// Stores `entries` (records as given) and `lists` (chunk-list blobs) as
    /// tree blobs and writes a snapshot naming the manifest; returns its id.
    func craft(_ entries: [ManifestEntry], lists: [[UInt8]] = []) throws -> SnapshotID {
        let repository = try open()
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

    /// What a snapshot says of each path, times and inodes aside: equal for
    /// two backups of one unchanged tree, whatever their parents were.
    func contents(_ entries: [ManifestEntry]) -> [String] {
        entries.map { "\($0.kind) \($0.path.displayPath) \($0.size) \($0.linkTarget.displayPath) \($0.blobs.map(\.short))" }
    }

    func testABackupOnAHostileParentNeverTrapsAndWritesTheSnapshotAnHonestParentGives() throws {
        let (root, dump) = try makeTree()
        let first = try Backup(repository: try open(), options: backupOptions(root, dump, parent: nil)).run()
        let real = try fullEntries(first.id)
        let files = real.filter { $0.kind == .file }
        XCTAssertEqual(files.count, 14, "test setup: the tree's regular files")
        XCTAssertEqual(real.filter { $0.kind == .hardlink }.count, 2)
        let stream = try XCTUnwrap(real.first { $0.kind == .stream })
        XCTAssertNotNil(stream.list, "test setup: the dump keeps a chunk list")

        // An honest parent: every file is taken from it, none read.
        let honest = try Backup(repository: try open(), options: backupOptions(root, dump, parent: first.id)).run()
        XCTAssertEqual(honest.snapshot.summary.filesUnchanged, files.count)
        let expected = contents(try fullEntries(honest.id))
        XCTAssertEqual(expected, contents(real))
        XCTAssertEqual(warnings.value, [])

        func replaced(_ path: String, _ change: (inout ManifestEntry) -> Void) -> [ManifestEntry] {
            real.map { e in
                var e = e
                if e.path == p(path) { change(&e) }
                return e
            }
        }
        let big = root + "/big.bin", sub0 = root + "/sub/f0.txt"
        // Records no live path can equal, inserted in tree order among the real ones.
        let junk: [ManifestEntry] = [
            ManifestEntry(kind: .file, path: p("/../../etc/cron.d/x"), size: 6, blobs: [files[0].blobs[0]]),
            ManifestEntry(kind: .file, path: p(root + "/./a.conf"), size: 6, blobs: [files[0].blobs[0]]),
            ManifestEntry(kind: .hardlink, path: p(root + "/h"), linkTarget: p("/etc/shadow")),
            ManifestEntry(kind: .symlink, path: p(root + "/s"), linkTarget: p("/etc")),
            ManifestEntry(kind: .file, path: p(root + "/s/passwd"), mode: 0o104777, size: 6, blobs: [files[0].blobs[0]]),
            ManifestEntry(kind: .file, path: p(root + "/sub//f1.txt"), size: 6, blobs: [files[0].blobs[0]]),
        ]
        let sorted = (real + junk).sorted { ManifestEntry.treeOrder($0.path, $1.path) }

        // The bomb: a delta copying its 65,536-id base 1,024 times, as the dump's list.
        let base = ChunkList.encodeFull(Array(repeating: BlobID(hashing: "base id"), count: ChunkList.partSize)[...])
        let bomb = ChunkList.encodeDelta(generation: 1, base: [BlobID(hashing: base)], total: 1024 * ChunkList.partSize,
                                         ops: Array(repeating: .copy(from: 0, count: ChunkList.partSize), count: 1024))
        var swapped = real
        let i = try XCTUnwrap(swapped.firstIndex { $0.path == p(big) }), j = try XCTUnwrap(swapped.firstIndex { $0.path == p(sub0) })
        swapped.swapAt(i, j)
        let unknown = (0..<files[0].blobs.count).map { BlobID(hashing: "not in the index \($0)") }

        // name, parent records, list blobs, the warning's rule (nil: none), files taken from the parent.
        let cases: [(String, [ManifestEntry], [[UInt8]], String?, ClosedRange<Int>)] = [
            ("out of tree order", swapped, [], "out of tree order", 0...files.count - 2),
            ("paths no walk yields, a hard link to nothing, a setuid file below a symlink", sorted, [], nil, files.count...files.count),
            ("a chunk-list bomb for the dump", replaced(dumpPath) { $0.list = ChunkList.Info(refs: [BlobID(hashing: bomb)], blobs: [], base: [], generation: 0) },
             [base, bomb], "content ids", 0...0),
            ("a directory with content", replaced(sub0) { $0.kind = .directory }, [], "a directory has", 0...files.count - 1),
            ("more ids than the size allows", replaced(root + "/a.conf") { $0.blobs = Array(repeating: $0.blobs[0], count: 5000) }, [],
             "content blobs for a size of 6 bytes", 0...files.count - 1),
            ("ids the index does not hold", replaced(files[0].path.displayPath) { $0.blobs = unknown }, [], nil, files.count - 1...files.count - 1),
        ]
        var last = honest.id
        for (name, entries, lists, rule, taken) in cases {
            warnings.value = []
            let parent = try craft(entries, lists: lists)
            let result: BackupResult
            do { result = try Backup(repository: try open(), options: backupOptions(root, dump, parent: parent)).run() } catch {
                XCTFail("\(name): the backup failed: \(error)")
                continue
            }
            last = result.id
            XCTAssertEqual(result.snapshot.parent, parent.hex, name)
            XCTAssertEqual(contents(try fullEntries(result.id)), expected, "\(name): the new snapshot differs from an honest parent's")
            XCTAssertTrue(taken.contains(result.snapshot.summary.filesUnchanged),
                          "\(name): \(result.snapshot.summary.filesUnchanged) files taken from the parent, expected \(taken)")
            let w = warnings.value
            if let rule {
                XCTAssertEqual(w.count, 1, "\(name): \(w)")
                XCTAssertTrue(w.first?.contains("snapshot \(parent.short) is damaged") ?? false, "\(name): the warning does not name the parent: \(w)")
                XCTAssertTrue(w.first?.contains(rule) ?? false, "\(name): the warning does not name the rule \"\(rule)\": \(w)")
                XCTAssertTrue(w.first?.contains("reading every file") ?? false, "\(name): \(w)")
            } else {
                XCTAssertEqual(w, [], name)
            }
        }
        // The last snapshot restores the tree's bytes.
        try assertRestores(last, root + "/big.bin", as: try TreeBuilder.read(p(root + "/big.bin")), "big.bin")
        try assertRestores(last, dumpPath, as: try TreeBuilder.read(p(dump)), "the dump")
    }
}
