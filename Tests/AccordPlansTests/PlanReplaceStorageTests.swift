// The plan restore's replace-storage step, in-process (no cluster): it
// replaces the plan's paths with the snapshot's copies and touches nothing
// above them (issue 13: it used to apply the snapshot's metadata to `/`,
// `/opt` and every ancestor of the storage root), nor anything a symlink
// planted in a replaced path points to.
import Foundation
import XCTest
import AccordCore
import AccordEngine
import AccordPlans
import AccordRuntime

final class PlanReplaceStorageTests: XCTestCase {
    var scratch: ScratchDirectory!

    override func setUpWithError() throws {
        try super.setUpWithError()
        scratch = try ScratchDirectory("replace")
    }

    override func tearDown() {
        scratch?.remove()
        super.tearDown()
    }

    struct Meta: Equatable { var mode: UInt32; var uid: UInt32; var gid: UInt32; var mtime: Int64; var size: UInt64 }

    func meta(_ p: String) throws -> Meta {
        let st = try Sys.lstat(p)
        return Meta(mode: st.mode, uid: st.uid, gid: st.gid, mtime: st.mtimeSec, size: st.isDirectory ? 0 : st.size)
    }

    func write(_ path: String, _ text: String, mode: UInt32 = 0o644) throws {
        let fd = try Sys.open(path, Sys.O_WRONLY | Sys.O_CREAT | Sys.O_TRUNC, mode: mode)
        defer { Sys.close(fd) }
        try Sys.writeAll(fd, Array(text.utf8), path: path)
        try Sys.fchmod(fd, mode: mode, path: path)
    }

    func testReplaceStorageTouchesNoAncestorAndFollowsNoPlantedSymlink() throws {
        XCTAssertTrue(Sys.isRoot, "run as root")
        let st = scratch.sub("st"), storage = st + "/storage", git = storage + "/git", outside = scratch.sub("outside")
        for d in [st, storage, git, git + "/sub", outside] { try Sys.mkdir(d, mode: 0o755); try Sys.chmod(Array(d.utf8), mode: 0o755) }
        try write(git + "/a.txt", "a\n")
        try write(git + "/sub/b.txt", "b\n", mode: 0o600)
        try write(outside + "/precious", "precious\n", mode: 0o640)

        let repository = try Repository.initialize(at: scratch.sub("repo"))
        var bo = BackupOptions()
        bo.paths = [Array(storage.utf8)]
        bo.threads = 2
        let backup = try Backup(repository: repository, options: bo).run()

        // After the backup: the ancestors change (as the DR node's own may
        // differ), the replaced tree changes, and symlinks to outside are planted in it.
        for (p, mode) in [(st, UInt32(0o711)), (storage, UInt32(0o750)), (outside, UInt32(0o750))] {
            try Sys.chmod(Array(p.utf8), mode: mode)
            try Sys.lchown(Array(p.utf8), uid: 4321, gid: 4321)
            try Sys.setTimes(Array(p.utf8), mtimeSec: 2_000_000, mtimeNsec: 0)
        }
        try Sys.unlink(git + "/a.txt")
        try Sys.symlink(target: Array(outside.utf8), at: Array((git + "/evil").utf8))
        try Sys.unlink(git + "/sub/b.txt")
        try Sys.rmdir(Array((git + "/sub").utf8))
        try Sys.symlink(target: Array(outside.utf8), at: Array((git + "/sub").utf8))
        let watched = [st, storage, outside, outside + "/precious"]
        let before = try watched.map(meta)

        let plan = try replaceGitPlan(storage)
        let reopened = try Repository.open(at: scratch.sub("repo"))
        try reopened.loadIndex()
        var o = PlanRestoreOptions()
        o.override = true
        try PlanRestore(plan: plan, repository: reopened, snapshotID: backup.id, snapshot: backup.snapshot, options: o).run()

        var after = try watched.map(meta)
        XCTAssertNotEqual(after[1].mtime, 2_000_000, "test setup: replacing git changes its parent's contents, so its mtime")
        after[1].mtime = before[1].mtime
        XCTAssertEqual(after, before, "ancestors of the replaced path and the planted symlinks' targets must keep owner, mode and (but for git's parent) mtime")
        XCTAssertEqual(try Sys.listDirectory(outside), ["precious"])
        XCTAssertEqual(try Sys.lstat(git + "/sub").isDirectory, true, "the planted symlink is replaced by the snapshot's directory")
        XCTAssertNil(try? Sys.lstat(git + "/evil"), "what was not in the snapshot is gone")
        XCTAssertEqual(try meta(git + "/sub/b.txt").mode & 0o7777, 0o600)
        XCTAssertEqual(try meta(git + "/a.txt").size, 2)
        XCTAssertEqual(try meta(git).mode & 0o7777, 0o755, "the replaced path itself gets the snapshot's metadata")
    }

    /// A hostile snapshot naming `<replaced path>/../../../outside/x` (the
    /// issue's cron.d case, moved into a scratch directory), dated now so it
    /// is the latest: the plan restore refuses it or fails that entry, and
    /// nothing appears outside.
    func testReplaceStorageNeverWritesThroughDotDotInASnapshotPath() throws {
        let st = scratch.sub("st"), storage = st + "/storage", git = storage + "/git", outside = scratch.sub("outside")
        for d in [st, storage, git, outside] { try Sys.mkdir(d, mode: 0o755); try Sys.chmod(Array(d.utf8), mode: 0o755) }
        try write(git + "/live.txt", "live data\n")
        let repository = try Repository.initialize(at: scratch.sub("repo"))
        let sink = BlobSink(repository: repository, threads: 1, level: .default)
        let content = Array("* * * * * root sh -c pwned\n".utf8)
        let blob = try content.withUnsafeBytes { try sink.store(type: .data, data: $0) }
        var w = ByteWriter()
        w.raw(ManifestCodec.magic)
        var paths: [String] = ["/"]
        var prefix = ""
        for c in git.split(separator: "/") { prefix += "/" + c; paths.append(prefix) }
        for p in paths { ManifestCodec.encode(ManifestEntry(kind: .directory, path: Array(p.utf8), mode: 0o777), into: &w) }
        ManifestCodec.encode(ManifestEntry(kind: .file, path: Array((git + "/../../../outside/x").utf8), mode: 0o4777,
                                           size: UInt64(content.count), blobs: [blob]), into: &w)
        let manifest = try w.bytes.withUnsafeBytes { try sink.store(type: .tree, data: $0) }
        _ = try sink.finish()
        let snapshot = Snapshot(time: .now(), host: "hostile", username: "root", plan: "test", tags: [], paths: [storage], sources: [],
                                parent: nil, manifest: [manifest], summary: Snapshot.Summary())
        let id = try repository.saveSnapshot(snapshot)
        let reopened = try Repository.open(at: scratch.sub("repo"))
        try reopened.loadIndex()
        let plan = try replaceGitPlan(storage)
        let before = try [st, storage, outside].map(meta)
        var o = PlanRestoreOptions()
        o.override = true
        XCTAssertThrowsError(try PlanRestore(plan: plan, repository: reopened, snapshotID: id, snapshot: snapshot, options: o).run()) { e in
            XCTAssertTrue("\(e)".contains("outside/x"), "the error names the path: \(e)")
        }
        XCTAssertEqual(try Sys.listDirectory(outside), [], "nothing is written outside the replaced path")
        XCTAssertEqual(try [st, outside].map(meta), [before[0], before[2]])
        XCTAssertEqual(try meta(storage).mode, before[1].mode)
        // Refused before the first step (the snapshot is read whole first), so the live tree is still there.
        XCTAssertEqual(try Sys.listDirectory(git), ["live.txt"], "a refused snapshot must not remove the data it would replace")
    }

    /// A plan whose only restore step replaces `storage`'s git directory.
    func replaceGitPlan(_ storage: String) throws -> Plan {
        try Plan.parse("""
        storage:
          root: \(storage)
          excludes: []
          replace: [git]
        restoreSteps: [replace-storage]
        """, source: scratch.sub("plan.yaml"))
    }
}
