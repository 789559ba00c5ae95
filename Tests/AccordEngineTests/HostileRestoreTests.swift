// Hostile snapshots (issue 13, item 2): manifests written record by record,
// with no validation, then restored as root. Each test lists a zone around
// the target (a precious tree beside it, the target's parents) before the
// restore, and after it asserts that nothing there changed: names, bytes,
// modes, owners, times, link counts. The restore may refuse (a validating
// manifest reader, or the restore's own first pass) or stay inside its
// target; both are accepted, reaching outside never is. Library cases run
// twice: with openat2 and with the component-wise fallback.
import Foundation
import XCTest
import AccordCore
@testable import AccordEngine
import AccordTestSupport
#if canImport(Glibc)
import Glibc
#endif

final class HostileRestoreTests: AccordTestCase {
    var repository: Repository!
    /// scratch/zone: `outside/` (precious) and `w/t` (the target).
    var zone: RawPath { Array(scratch.sub("zone").utf8) }
    var outside: RawPath { zone.appending("outside") }
    var target: RawPath { zone.appending("w").appending("t") }

    override func setUpWithError() throws {
        try super.setUpWithError()
        XCTAssertTrue(Sys.isRoot, "hostile-restore tests run as root (chown and setuid modes must be tried)")
        repository = try Repository.initialize(at: repo)
        try TreeBuilder.mkdir(zone, mode: 0o755)
        try TreeBuilder.mkdir(zone.appending("w"), mode: 0o755)
        try TreeBuilder.mkdir(outside, mode: 0o750)
        try TreeBuilder.write(outside.appending("file"), Array("precious\n".utf8), mode: 0o640)
        try TreeBuilder.mkdir(outside.appending("dir"), mode: 0o755)
        try TreeBuilder.write(outside.appending("dir").appending("inner"), Array("inner\n".utf8), mode: 0o600)
        for p in [outside.appending("file"), outside.appending("dir").appending("inner"), outside.appending("dir"), outside] {
            try Sys.lchown(p, uid: 4321, gid: 4321)
            try Sys.setTimes(p, mtimeSec: 1_000_000, mtimeNsec: 5)
        }
    }

    override func tearDown() {
        Sys.opensBeneathComponentWise = false
        super.tearDown()
    }

    // MARK: Crafting snapshots

    /// An entry and, for a file, its content (stored as one data blob; the
    /// entry's size is the content's unless `size` says otherwise).
    struct Record {
        var entry: ManifestEntry
        var content: [UInt8]?
        var size: UInt64?
    }

    static let hostileXattr = [ManifestEntry.Xattr(name: Array("user.hostile".utf8), value: [0x31])]

    func dir(_ path: String, mode: UInt32 = 0o777) -> Record {
        Record(entry: ManifestEntry(kind: .directory, path: Array(path.utf8), mode: mode, uid: 0, gid: 0, mtimeSec: 12345, xattrs: Self.hostileXattr))
    }

    func file(_ path: String, _ content: String = "pwned\n", mode: UInt32 = 0o4777, size: UInt64? = nil) -> Record {
        Record(entry: ManifestEntry(kind: .file, path: Array(path.utf8), mode: mode, uid: 0, gid: 0, mtimeSec: 12345, xattrs: Self.hostileXattr),
               content: Array(content.utf8), size: size)
    }

    func symlink(_ path: String, to link: String) -> Record {
        Record(entry: ManifestEntry(kind: .symlink, path: Array(path.utf8), mode: 0o777, uid: 0, gid: 0, mtimeSec: 12345, linkTarget: Array(link.utf8)))
    }

    func hardlink(_ path: String, to existing: String) -> Record {
        Record(entry: ManifestEntry(kind: .hardlink, path: Array(path.utf8), mode: 0o4777, uid: 0, gid: 0, mtimeSec: 12345, linkTarget: Array(existing.utf8)))
    }

    /// Stores `records` as a snapshot exactly as given (raw manifest records,
    /// in the given order, no validation) and returns its id and the reopened repository.
    func craft(_ records: [Record]) throws -> (SnapshotID, Snapshot, Repository) {
        let sink = BlobSink(repository: repository, threads: 1, level: .default)
        var w = ByteWriter()
        w.raw(ManifestCodec.magic)
        for var r in records {
            if let c = r.content {
                let id = try c.withUnsafeBytes { try sink.store(type: .data, data: $0) }
                r.entry.blobs = [id]
                r.entry.size = r.size ?? UInt64(c.count)
            }
            ManifestCodec.encode(r.entry, into: &w)
        }
        let manifest = try w.bytes.withUnsafeBytes { try sink.store(type: .tree, data: $0) }
        _ = try sink.finish()
        let s = Snapshot(time: .now(), host: "hostile", username: "root", plan: "paths", tags: [], paths: ["/"], sources: [],
                         parent: nil, manifest: [manifest], summary: Snapshot.Summary())
        let id = try repository.saveSnapshot(s)
        let reopened = try Repository.open(at: repo)
        try reopened.loadIndex()
        return (id, s, reopened)
    }

    // MARK: Observing the zone

    /// The zone as listed, less the target and its parent `w` (the restore's own).
    func zoneState() throws -> [RawPath: NodeInfo] {
        let w = Array("w".utf8)
        return try listTree(zone).filter { !ManifestEntry.isWithin($0.key, w) }
    }

    struct Outcome {
        /// The restore as a whole was refused.
        var refused: Error?
        var result: RestoreResult?
        /// Entries that failed, with their errors.
        var failures: [(path: String, error: String)] = []
        var failedPaths: [String] { failures.map(\.path) }
    }

    /// Restores (library API) into the target, once with openat2 and once
    /// with the component-wise fallback, each time from a fresh target made
    /// by `prepare`, asserting the zone unchanged; `check` looks at each outcome.
    func restoreBothWays(_ snapshot: Snapshot, _ repo: Repository, options: (inout RestoreOptions) -> Void = { _ in },
                         prepare: () throws -> Void = {}, file: StaticString = #filePath, line: UInt = #line,
                         check: (Outcome, String) throws -> Void) throws {
        for fallback in [false, true] {
            removeTree(target)
            try prepare()
            let before = try zoneState()
            Sys.opensBeneathComponentWise = fallback
            defer { Sys.opensBeneathComponentWise = false }
            var outcome = Outcome()
            var o = RestoreOptions(target: target)
            o.threads = 2
            var failures: [(String, String)] = []
            o.onError = { p, e in failures.append((p, "\(e)")) }
            options(&o)
            do { outcome.result = try Restore(repository: repo, options: o).run(snapshot) } catch { outcome.refused = error }
            outcome.failures = failures
            Sys.opensBeneathComponentWise = false
            let mode = fallback ? "component-wise openat" : "openat2"
            assertSameTree(before, try zoneState(), file: file, line: line)
            try check(outcome, mode)
        }
    }

    /// What is at `relative` in the target (nil: nothing).
    func inTarget(_ relative: String) -> FileStatus? { try? Sys.lstat(target + [0x2f] + Array(relative.utf8)) }

    /// Asserts the restore was refused with a message naming `fragment`, or (a
    /// validating reader's refusal) at least refused.
    func assertRefused(_ o: Outcome, _ mode: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertNotNil(o.refused, "\(mode): a snapshot with a path outside its target must be refused; restored \(String(describing: o.result))",
                        file: file, line: line)
        XCTAssertNil(inTarget(""), "\(mode): a refused restore must not even make its target", file: file, line: line)
    }

    // MARK: Paths that leave the target

    func testDotDotPathIsRefusedBeforeAnythingIsWritten() throws {
        let (_, s, r) = try craft([dir("/"), file("/a", "first entry\n", mode: 0o644), file("/../../x")])
        try restoreBothWays(s, r) { o, mode in
            assertRefused(o, mode)
            if let e = o.refused as? RestoreError { XCTAssertTrue("\(e)".contains("/../../x"), "\(mode): the error should name the path: \(e)") }
        }
        XCTAssertNil(try? Sys.lstat(zone.appending("x")))
    }

    func testRelativePathIsRefused() throws {
        let (_, s, r) = try craft([dir("/"), file("x", mode: 0o644), file("../../outside/file")])
        try restoreBothWays(s, r) { o, mode in assertRefused(o, mode) }
    }

    func testHardLinkWithDotDotTargetIsRefused() throws {
        let (_, s, r) = try craft([dir("/"), file("/f", mode: 0o644), hardlink("/h", to: "/../../outside/file")])
        try restoreBothWays(s, r) { o, mode in assertRefused(o, mode) }
    }

    /// A hard link naming a file outside the snapshot by its absolute path
    /// (canonical, so only the link step can stop it): the link is not made
    /// (or the whole restore is refused), and the outside file keeps its link count.
    func testHardLinkToAFileOutsideTheSnapshotIsNotMade() throws {
        let outsideFile = outside.appending("file").string
        let (_, s, r) = try craft([dir("/"), file("/f", mode: 0o644), hardlink("/h", to: outsideFile)])
        try restoreBothWays(s, r) { o, mode in
            if o.refused != nil { return }
            XCTAssertEqual(o.failedPaths, ["/h"], "\(mode): only the link fails: \(o.failures)")
            XCTAssertTrue(o.failures.first?.error.contains("not a file this restore made") ?? false, "\(mode): \(o.failures)")
            XCTAssertNil(inTarget("h"), "\(mode)")
            XCTAssertEqual(inTarget("f")?.isRegular, true, "\(mode): the snapshot's own file is restored")
        }
    }

    /// A hard link to a directory of the snapshot, or to a symlink it made, is not made either.
    func testHardLinkToADirectoryOrSymlinkIsNotMade() throws {
        let (_, s, r) = try craft([dir("/"), dir("/d", mode: 0o755), symlink("/l", to: outside.string),
                                   hardlink("/h1", to: "/d"), hardlink("/h2", to: "/l")])
        try restoreBothWays(s, r) { o, mode in
            if o.refused != nil { return }
            XCTAssertEqual(Set(o.failedPaths), ["/h1", "/h2"], "\(mode): \(o.failures)")
            XCTAssertNil(inTarget("h1")); XCTAssertNil(inTarget("h2"))
        }
    }

    // MARK: Symlinks the snapshot makes

    func testFileBelowASymlinkEntryStaysInside() throws {
        let (_, s, r) = try craft([dir("/"), symlink("/s", to: outside.string), file("/s/file"), file("/s/dir/inner"), dir("/s/newdir")])
        try restoreBothWays(s, r) { o, mode in
            if o.refused != nil { return }
            XCTAssertEqual(Set(o.failedPaths), ["/s/file", "/s/dir/inner", "/s/newdir"], "\(mode): \(o.failures)")
            XCTAssertTrue(o.failures.allSatisfy { $0.error.contains("symlink") }, "\(mode): the errors should say a symlink is in the way: \(o.failures)")
            XCTAssertEqual(inTarget("s")?.isSymlink, true, "\(mode): the symlink itself is made, inside the target")
        }
    }

    func testSymlinkAtTheRootLeavesTheTargetADirectory() throws {
        let (_, s, r) = try craft([symlink("/", to: outside.string), file("/file"), file("/dir/inner")])
        try restoreBothWays(s, r) { o, mode in
            if o.refused != nil { return }
            XCTAssertTrue(o.failedPaths.contains("/"), "\(mode): \(o.failures)")
            XCTAssertEqual(inTarget("")?.isDirectory, true, "\(mode): the target stays a directory")
            XCTAssertEqual(inTarget("file")?.isRegular, true, "\(mode): what follows lands inside the target")
        }
    }

    /// A directory, then a symlink of the same path, then a setuid file below
    /// it: the symlink replaces the (empty) directory inside the target, the
    /// file below it fails, and the directory's metadata goes nowhere.
    func testDirectoryThenSymlinkOfTheSamePathThenSetuidFileBelow() throws {
        let (_, s, r) = try craft([dir("/"), dir("/d"), symlink("/d", to: outside.string), file("/d/file", mode: 0o4777),
                                   file("/d/dir/inner", mode: 0o4777)])
        try restoreBothWays(s, r) { o, mode in
            if o.refused != nil { return }
            XCTAssertTrue(o.failedPaths.contains("/d/file"), "\(mode): \(o.failures)")
            XCTAssertTrue(o.failedPaths.contains("/d/dir/inner"), "\(mode): \(o.failures)")
            XCTAssertEqual(inTarget("d")?.isSymlink, true, "\(mode)")
        }
    }

    // MARK: Symlinks planted in the target (a restore over an existing tree)

    /// The target exists and holds symlinks pointing outside where the
    /// snapshot has a directory and a file. The directory's symlink is
    /// neither followed nor replaced (nothing below it is restored); the
    /// file's is replaced by the file; no metadata goes through either.
    func testSymlinksPlantedInTheTargetAreNeverFollowed() throws {
        let (_, s, r) = try craft([dir("/"), dir("/d", mode: 0o777), file("/d/new"), file("/d/file"), file("/f", "replaced\n", mode: 0o4777),
                                   file("/g", "also\n", mode: 0o4777)])
        try restoreBothWays(s, r, prepare: {
            try TreeBuilder.mkdir(target, mode: 0o755)
            try Sys.symlink(target: outside, at: target.appending("d"))
            try Sys.symlink(target: outside.appending("file"), at: target.appending("f"))
            try Sys.symlink(target: outside.appending("dir").appending("inner"), at: target.appending("g"))
        }) { o, mode in
            if o.refused != nil { return }
            XCTAssertEqual(Set(o.failedPaths), ["/d", "/d/new", "/d/file"], "\(mode): \(o.failures)")
            XCTAssertEqual(inTarget("d")?.isSymlink, true, "\(mode): the planted directory symlink is left alone")
            XCTAssertEqual(inTarget("f")?.isRegular, true, "\(mode): the planted file symlink is replaced by the file")
            XCTAssertEqual(try TreeBuilder.read(target.appending("f")), Array("replaced\n".utf8))
            XCTAssertEqual(inTarget("f")?.permissions, 0o4777, "\(mode): metadata lands on the restored file")
        }
    }

    /// A symlink planted deeper, in a parent of restored files (`a/b` -> outside).
    func testSymlinkPlantedAsAParentIsNeverFollowed() throws {
        let (_, s, r) = try craft([dir("/"), dir("/a", mode: 0o755), file("/a/b/c"), file("/a/b/dir/inner")])
        try restoreBothWays(s, r, prepare: {
            try TreeBuilder.mkdir(target, mode: 0o755)
            try TreeBuilder.mkdir(target.appending("a"), mode: 0o755)
            try Sys.symlink(target: outside, at: target.appending("a").appending("b"))
        }) { o, mode in
            if o.refused != nil { return }
            XCTAssertEqual(Set(o.failedPaths), ["/a/b/c", "/a/b/dir/inner"], "\(mode): \(o.failures)")
        }
    }

    // MARK: The target itself

    func testTargetNamingAFileIsRefusedAndTheFileUntouched() throws {
        let (_, s, r) = try craft([dir("/"), file("/f")])
        let victim = zone.appending("victim")
        try TreeBuilder.write(victim, Array("victim\n".utf8), mode: 0o644)
        let before = try zoneState()
        var o = RestoreOptions(target: victim)
        o.threads = 1
        XCTAssertThrowsError(try Restore(repository: r, options: o).run(s)) { e in
            XCTAssertTrue("\(e)".contains("is not a directory"), "\(e)")
            XCTAssertTrue("\(e)".contains(victim.string), "\(e)")
        }
        assertSameTree(before, try zoneState())
    }

    func testAbsentTargetIsMadeWithMode700() throws {
        let (_, s, r) = try craft([dir("/", mode: 0o755), file("/f", mode: 0o644)])
        var o = RestoreOptions(target: target.appending("deeper"))
        o.threads = 1
        let res = try Restore(repository: r, options: o).run(s)
        XCTAssertEqual(res.failed, [])
        XCTAssertEqual(try Sys.lstat(target).permissions, 0o700, "a missing parent of the target is made 0700")
        XCTAssertEqual(try Sys.lstat(target.appending("deeper")).permissions, 0o755, "the snapshot's root entry gives the target its mode")
        XCTAssertEqual(try TreeBuilder.read(target.appending("deeper").appending("f")), Array("pwned\n".utf8))
    }

    // MARK: Sizes

    /// The blobs' lengths (from the index) do not add up to the entry's size:
    /// the file fails with a clear error and the old file at its path is not touched.
    func testFileWhoseBlobsDoNotAddUpToItsSizeIsNotWritten() throws {
        let (_, s, r) = try craft([dir("/", mode: 0o755), file("/f", "five\n", mode: 0o644, size: 1 << 20), file("/ok", "fine\n", mode: 0o644)])
        try restoreBothWays(s, r, prepare: {
            try TreeBuilder.mkdir(target, mode: 0o755)
            try TreeBuilder.write(target.appending("f"), Array("old contents\n".utf8), mode: 0o600)
        }) { o, mode in
            if o.refused != nil { return }
            XCTAssertEqual(o.failedPaths, ["/f"], "\(mode): \(o.failures)")
            XCTAssertTrue(o.failures.first?.error.contains("add up to 5 bytes but the snapshot records 1048576") ?? false, "\(mode): \(o.failures)")
            XCTAssertEqual(try TreeBuilder.read(target.appending("f")), Array("old contents\n".utf8), "\(mode): nothing written to it")
            XCTAssertEqual(inTarget("f")?.permissions, 0o600, "\(mode)")
            XCTAssertEqual(try TreeBuilder.read(target.appending("ok")), Array("fine\n".utf8), "\(mode)")
        }
    }

    // MARK: The binary

    func testBinaryRefusesDotDotSnapshotAndLeavesTheZoneAlone() throws {
        let (id, _, _) = try craft([dir("/"), file("/a", mode: 0o644), file("/../../x"), hardlink("/h", to: "/../../outside/file")])
        let before = try zoneState()
        let res = try accord("restore", "-d", repo, id.hex, "--target", target.string)
        XCTAssertNotEqual(res.status, 0, "\(res)")
        XCTAssertFalse(res.signaled, "\(res)")
        XCTAssertTrue(res.stderr.contains("/../../x"), "the error names the path:\n\(res)")
        assertSameTree(before, try zoneState())
        XCTAssertNil(inTarget(""), "nothing was written, not even the target")
    }

    func testBinaryRestoreOverPlantedSymlinksStaysInside() throws {
        let (id, _, _) = try craft([dir("/"), symlink("/s", to: outside.string), file("/s/file"), dir("/d"), file("/d/x"), file("/f", "mine\n", mode: 0o4777)])
        try TreeBuilder.mkdir(target, mode: 0o755)
        try Sys.symlink(target: outside, at: target.appending("d"))
        try Sys.symlink(target: outside.appending("file"), at: target.appending("f"))
        let before = try zoneState()
        let res = try accord("restore", "-d", repo, id.hex, "--target", target.string)
        XCTAssertFalse(res.signaled, "\(res)")
        assertSameTree(before, try zoneState())
        if res.status != 0 && !res.stderr.contains("cannot restore") { return }   // refused as a whole
        XCTAssertEqual(res.status, 1, "\(res)")
        XCTAssertTrue(res.stderr.contains("symlink"), "\(res)")
        XCTAssertEqual(inTarget("f")?.isRegular, true)
    }

    func testBinaryRefusesTargetNamingAFile() throws {
        let (id, _, _) = try craft([dir("/"), file("/f")])
        let victim = zone.appending("victim")
        try TreeBuilder.write(victim, Array("victim\n".utf8), mode: 0o644)
        let before = try zoneState()
        let res = try accord("restore", "-d", repo, id.hex, "--target", victim.string)
        XCTAssertNotEqual(res.status, 0, "\(res)")
        XCTAssertTrue(res.stderr.contains("not a directory"), "\(res)")
        assertSameTree(before, try zoneState())
    }
}
