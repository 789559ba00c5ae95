// Hostile snapshots (issue 13, item 2): manifests written record by record,
// with no validation, then restored as root. Each test lists a zone around
// the target (a precious tree beside it, the target's parents) before the
// restore, and after it asserts that nothing there changed: names, bytes,
// modes, owners, times, link counts. The restore may refuse (a validating
// manifest reader, or the restore's own first pass) or stay inside its
// target; both are accepted, reaching outside never is. Library cases run
// six times: with openat2, with the component-wise fallback, and with openat2
// and the manifest read again by the write pass, each with
// the validating manifest reader and without it (`skipsManifestValidationForTests`),
// so the restore layer (its first pass, `RestoreTarget`, the hard-link
// rule) is shown to confine a hostile entry on its own, not only behind
// the reader that would refuse it.
import Foundation
import XCTest
@_spi(Testing) import AccordCore
@_spi(Testing) @testable import AccordEngine
import AccordTestSupport
import AccordRuntime
#if canImport(Glibc)
import Glibc
#endif

final class HostileRestoreTests: AccordTestCase {
    var repository: Repository!
    /// scratch/zone: `outside/` (precious), `w/t` (the target) and `w/sibling`.
    var zone: RawPath { Array(scratch.sub("zone").utf8) }
    /// The target's parent, relative to the zone.
    static let w = Array("w".utf8)
    var outside: RawPath { zone.appending("outside") }
    var target: RawPath { zone.appending("w").appending("t") }

    override func setUpWithError() throws {
        try super.setUpWithError()
        XCTAssertTrue(Sys.isRoot, "hostile-restore tests run as root (chown and setuid modes must be tried)")
        repository = try Repository.initialize(at: repo)
        try TreeBuilder.mkdir(zone, mode: 0o755)
        try TreeBuilder.mkdir(zone.appending("w"), mode: 0o755)
        // A sibling of the target: `/../sibling` in a snapshot would reach it.
        try TreeBuilder.write(zone.appending("w").appending("sibling"), Array("sibling\n".utf8), mode: 0o644)
        try TreeBuilder.mkdir(outside, mode: 0o750)
        try TreeBuilder.write(outside.appending("file"), Array("precious\n".utf8), mode: 0o640)
        try TreeBuilder.mkdir(outside.appending("dir"), mode: 0o755)
        try TreeBuilder.write(outside.appending("dir").appending("inner"), Array("inner\n".utf8), mode: 0o600)
        for p in [outside.appending("file"), outside.appending("dir").appending("inner"), outside.appending("dir"), outside,
                  zone.appending("w").appending("sibling"), zone.appending("w")] {
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

    /// The zone as listed, less the target and what is below it (the
    /// restore's own). The target's parent `w` and its other entries are in it.
    func zoneState() throws -> [RawPath: NodeInfo] {
        let t = Array("w/t".utf8)
        return try listTree(zone).filter { !ManifestEntry.isWithin($0.key, t) }
    }

    /// Asserts the zone is as `before` listed it, byte for byte and mode for
    /// mode. One exemption: when the target did not exist before and does
    /// now, the restore made it in `w`, so `w`'s mtime (only) may have moved.
    func assertZoneUnchanged(_ before: [RawPath: NodeInfo], targetExisted: Bool, _ what: String = "",
                             file: StaticString = #filePath, line: UInt = #line) throws {
        var after = try zoneState()
        if !targetExisted, inTarget("") != nil, let b = before[Self.w], var a = after[Self.w] {
            (a.mtimeSec, a.mtimeNsec) = (b.mtimeSec, b.mtimeNsec)
            after[Self.w] = a
        }
        if !what.isEmpty && before != after { XCTFail("\(what): the zone outside the target changed", file: file, line: line) }
        assertSameTree(before, after, file: file, line: line)
    }

    struct Outcome {
        /// The manifest was read through the validating reader (false: the
        /// restore layer alone stood between the entries and the zone).
        var validated = true
        /// The target as listed before the restore (nil: it did not exist).
        var targetBefore: [RawPath: NodeInfo]?
        /// The restore as a whole was refused.
        var refused: Error?
        var result: RestoreResult?
        /// Entries that failed, with their errors.
        var failures: [(path: String, error: String)] = []
        var failedPaths: [String] { failures.map(\.path) }
    }

    /// Restores (library API) into the target six ways: with openat2 and
    /// with the component-wise fallback, and with openat2 when the write pass
    /// reads the manifest again instead of taking the preflight's entries
    /// (`preflightKeepsBytes` 0), each through the validating manifest
    /// reader and with it bypassed; each time from a fresh target made by
    /// `prepare`, asserting the zone unchanged. `check` looks at each outcome.
    func restoreBothWays(_ snapshot: Snapshot, _ repo: Repository, options: (inout RestoreOptions) -> Void = { _ in },
                         prepare: () throws -> Void = {}, file: StaticString = #filePath, line: UInt = #line,
                         check: (Outcome, String) throws -> Void) throws {
        for validated in [true, false] {
            for (fallback, rereads) in [(false, false), (true, false), (false, true)] {
                removeTree(target)
                try prepare()
                let targetExisted = inTarget("") != nil
                let before = try zoneState()
                Sys.opensBeneathComponentWise = fallback
                defer { Sys.opensBeneathComponentWise = false }
                var outcome = Outcome(validated: validated, targetBefore: targetExisted ? try listTree(target) : nil)
                var o = RestoreOptions(target: target)
                o.threads = 2
                o.skipsManifestValidationForTests = !validated
                if rereads { o.preflightKeepsBytes = 0 }   // the write pass reads the manifest again
                var failures: [(String, String)] = []
                o.onError = { p, e in failures.append((p, "\(e)")) }
                options(&o)
                do { outcome.result = try Restore(repository: repo, options: o).run(snapshot) } catch { outcome.refused = error }
                outcome.failures = failures
                Sys.opensBeneathComponentWise = false
                let mode = (fallback ? "component-wise openat" : "openat2") + (validated ? ", validating reader" : ", reader NOT validating")
                    + (rereads ? ", manifest read again" : "")
                try assertZoneUnchanged(before, targetExisted: targetExisted, mode, file: file, line: line)
                try check(outcome, mode)
            }
        }
    }

    /// What is at `relative` in the target (nil: nothing).
    func inTarget(_ relative: String) -> FileStatus? { try? Sys.lstat(target + [0x2f] + Array(relative.utf8)) }

    /// Asserts the restore was refused as a whole, with a message naming
    /// `path` (quoted), before anything was written: through the validating
    /// reader by a `ManifestError`, without it by the restore's own first pass.
    func assertRefused(_ o: Outcome, _ mode: String, naming path: String, file: StaticString = #filePath, line: UInt = #line) {
        guard let e = o.refused else {
            return XCTFail("\(mode): this snapshot must be refused as a whole; restored \(String(describing: o.result)), failures \(o.failures)",
                           file: file, line: line)
        }
        if o.validated {
            XCTAssertTrue(e is ManifestError, "\(mode): the validating reader refuses it: \(e)", file: file, line: line)
        } else {
            XCTAssertTrue(e is RestoreError, "\(mode): the restore's first pass refuses it: \(e)", file: file, line: line)
        }
        XCTAssertTrue("\(e)".contains("\"\(path)\""), "\(mode): the error should name \(path): \(e)", file: file, line: line)
        if let t = o.targetBefore {
            XCTAssertEqual(try? listTree(target), t, "\(mode): a refused restore writes nothing in its target", file: file, line: line)
        } else {
            XCTAssertNil(inTarget(""), "\(mode): a refused restore must not even make its target", file: file, line: line)
        }
    }

    /// With the validating reader: refused, naming `path` (the first record it
    /// rejects). Without it: not refused as a whole (the restore layer is what
    /// is tested, entry by entry). Returns whether the restore layer ran.
    func restoreLayerRan(_ o: Outcome, _ mode: String, readerRefuses path: String, file: StaticString = #filePath, line: UInt = #line) -> Bool {
        if o.validated {
            assertRefused(o, mode, naming: path, file: file, line: line)
            return false
        }
        XCTAssertNil(o.refused, "\(mode): the restore layer confines these entries one by one", file: file, line: line)
        return o.refused == nil
    }

    // MARK: Paths that leave the target

    func testDotDotPathIsRefusedBeforeAnythingIsWritten() throws {
        let (_, s, r) = try craft([dir("/"), file("/a", "first entry\n", mode: 0o644), file("/../../x")])
        try restoreBothWays(s, r) { o, mode in assertRefused(o, mode, naming: "/../../x") }
        XCTAssertNil(try? Sys.lstat(zone.appending("x")))
    }

    /// `/../sibling`: one level up is the target's parent `w`; the sibling
    /// there keeps its bytes and mode and nothing new appears beside it.
    func testDotDotToTheTargetsSiblingIsRefused() throws {
        let (_, s, r) = try craft([dir("/"), file("/../sibling", "overwritten\n"), file("/../new")])
        try restoreBothWays(s, r) { o, mode in assertRefused(o, mode, naming: "/../sibling") }
    }

    func testRelativePathIsRefused() throws {
        let (_, s, r) = try craft([dir("/"), file("x", mode: 0o644), file("../../outside/file")])
        try restoreBothWays(s, r) { o, mode in assertRefused(o, mode, naming: "x") }
    }

    func testHardLinkWithDotDotTargetIsRefused() throws {
        let (_, s, r) = try craft([dir("/"), file("/f", mode: 0o644), hardlink("/h", to: "/../../outside/file")])
        try restoreBothWays(s, r) { o, mode in assertRefused(o, mode, naming: o.validated ? "/h" : "/../../outside/file") }
    }

    /// A hard link naming a file outside the snapshot by its absolute path
    /// (canonical, so only the link step can stop it): the link is not made
    /// (or the whole restore is refused), and the outside file keeps its link count.
    func testHardLinkToAFileOutsideTheSnapshotIsNotMade() throws {
        let outsideFile = outside.appending("file").string
        let (_, s, r) = try craft([dir("/"), file("/f", mode: 0o644), hardlink("/h", to: outsideFile)])
        try restoreBothWays(s, r) { o, mode in
            guard restoreLayerRan(o, mode, readerRefuses: "/h") else { return }
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
            guard restoreLayerRan(o, mode, readerRefuses: "/h1") else { return }
            XCTAssertEqual(Set(o.failedPaths), ["/h1", "/h2"], "\(mode): \(o.failures)")
            XCTAssertTrue(o.failures.allSatisfy { $0.error.contains("not a file this restore made") }, "\(mode): \(o.failures)")
            XCTAssertNil(inTarget("h1"), "\(mode)"); XCTAssertNil(inTarget("h2"), "\(mode)")
        }
    }

    /// The target already holds a hard link of a file outside it (`planted`,
    /// same inode as outside/file). A snapshot hard link naming `/planted`
    /// would add a name to that outside inode (its link count is watched):
    /// only files this run restored may be linked to. The `/f` link is made.
    func testHardLinkToAFileAlreadyInTheTargetIsNotMade() throws {
        let (_, s, r) = try craft([dir("/"), file("/f", mode: 0o644), hardlink("/g", to: "/f"), hardlink("/h", to: "/planted")])
        try restoreBothWays(s, r, prepare: {
            try TreeBuilder.mkdir(target, mode: 0o755)
            try Sys.link(existing: outside.appending("file"), new: target.appending("planted"))
        }) { o, mode in
            guard restoreLayerRan(o, mode, readerRefuses: "/h") else { return }
            XCTAssertEqual(o.failedPaths, ["/h"], "\(mode): only the link to the planted file fails: \(o.failures)")
            XCTAssertTrue(o.failures.first?.error.contains("not a file this restore made") ?? false, "\(mode): \(o.failures)")
            XCTAssertNil(inTarget("h"), "\(mode)")
            XCTAssertEqual(inTarget("g")?.nlink, 2, "\(mode): the link to the restored /f is made")
            XCTAssertEqual(inTarget("planted")?.nlink, 2, "\(mode): the outside inode gained no name")
        }
    }

    // MARK: Symlinks the snapshot makes

    func testFileBelowASymlinkEntryStaysInside() throws {
        let (_, s, r) = try craft([dir("/"), symlink("/s", to: outside.string), file("/s/file"), file("/s/dir/inner"), dir("/s/newdir")])
        try restoreBothWays(s, r) { o, mode in
            guard restoreLayerRan(o, mode, readerRefuses: "/s/file") else { return }
            XCTAssertEqual(Set(o.failedPaths), ["/s/file", "/s/dir/inner", "/s/newdir"], "\(mode): \(o.failures)")
            XCTAssertTrue(o.failures.allSatisfy { $0.error.contains("symlink") }, "\(mode): the errors should say a symlink is in the way: \(o.failures)")
            XCTAssertEqual(inTarget("s")?.isSymlink, true, "\(mode): the symlink itself is made, inside the target")
        }
    }

    func testSymlinkAtTheRootLeavesTheTargetADirectory() throws {
        let (_, s, r) = try craft([symlink("/", to: outside.string), file("/file"), file("/dir/inner")])
        try restoreBothWays(s, r) { o, mode in
            guard restoreLayerRan(o, mode, readerRefuses: "/") else { return }
            XCTAssertEqual(o.failedPaths, ["/"], "\(mode): \(o.failures)")
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
            guard restoreLayerRan(o, mode, readerRefuses: "/d") else { return }
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
        let (_, s, r) = try craft([dir("/"), dir("/d", mode: 0o777), file("/d/file"), file("/d/new"), file("/f", "replaced\n", mode: 0o4777),
                                   file("/g", "also\n", mode: 0o4777)])
        try restoreBothWays(s, r, prepare: {
            try TreeBuilder.mkdir(target, mode: 0o755)
            try Sys.symlink(target: outside, at: target.appending("d"))
            try Sys.symlink(target: outside.appending("file"), at: target.appending("f"))
            try Sys.symlink(target: outside.appending("dir").appending("inner"), at: target.appending("g"))
        }) { o, mode in
            XCTAssertNil(o.refused, "\(mode): a valid snapshot over a hostile target is restored entry by entry")
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
            XCTAssertNil(o.refused, "\(mode): a valid snapshot over a hostile target is restored entry by entry")
            XCTAssertEqual(Set(o.failedPaths), ["/a/b/c", "/a/b/dir/inner"], "\(mode): \(o.failures)")
            XCTAssertTrue(o.failures.allSatisfy { $0.error.contains("symlink") }, "\(mode): \(o.failures)")
            XCTAssertEqual(inTarget("a/b")?.isSymlink, true, "\(mode): the planted symlink is left as it was")
        }
    }

    /// A symlink the snapshot makes pointing inside the target (`/s` ->
    /// `real`) is not gone through either: what the snapshot puts below it
    /// fails, and nothing lands in `real` by that route.
    func testSymlinkWithinTheTargetIsNotFollowed() throws {
        let (_, s, r) = try craft([dir("/"), dir("/real", mode: 0o755), symlink("/s", to: "real"), file("/s/x"), dir("/s/sub")])
        try restoreBothWays(s, r) { o, mode in
            guard restoreLayerRan(o, mode, readerRefuses: "/s/x") else { return }
            XCTAssertEqual(Set(o.failedPaths), ["/s/x", "/s/sub"], "\(mode): \(o.failures)")
            XCTAssertTrue(o.failures.allSatisfy { $0.error.contains("symlink") }, "\(mode): \(o.failures)")
            XCTAssertNil(inTarget("real/x"), "\(mode): nothing written through the symlink")
            XCTAssertNil(inTarget("real/sub"), "\(mode): nothing made through the symlink")
        }
    }

    /// The same with the symlink planted in the target (`l` -> `real`) and a
    /// valid snapshot that has `/l` as a directory: nothing below `l` goes to `real`.
    func testPlantedSymlinkWithinTheTargetIsNotFollowed() throws {
        let (_, s, r) = try craft([dir("/"), dir("/l", mode: 0o755), dir("/l/sub"), file("/l/x"), dir("/real", mode: 0o755)])
        try restoreBothWays(s, r, prepare: {
            try TreeBuilder.mkdir(target, mode: 0o755)
            try TreeBuilder.mkdir(target.appending("real"), mode: 0o755)
            try Sys.symlink(target: Array("real".utf8), at: target.appending("l"))
        }) { o, mode in
            XCTAssertNil(o.refused, "\(mode): a valid snapshot over a hostile target is restored entry by entry")
            XCTAssertEqual(Set(o.failedPaths), ["/l", "/l/x", "/l/sub"], "\(mode): \(o.failures)")
            XCTAssertNil(inTarget("real/x"), "\(mode): nothing written through the planted symlink")
            XCTAssertNil(inTarget("real/sub"), "\(mode): nothing made through the planted symlink")
            XCTAssertEqual(inTarget("l")?.isSymlink, true, "\(mode)")
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
        try assertZoneUnchanged(before, targetExisted: false)
    }

    func testAbsentTargetIsMadeWithMode700() throws {
        let (_, s, r) = try craft([dir("/", mode: 0o755), file("/f", mode: 0o644)])
        let before = try zoneState()
        var o = RestoreOptions(target: target.appending("deeper"))
        o.threads = 1
        let res = try Restore(repository: r, options: o).run(s)
        XCTAssertEqual(res.failed, [])
        try assertZoneUnchanged(before, targetExisted: false)
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
            XCTAssertNil(o.refused, "\(mode): only the file whose sizes disagree fails")
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
        try assertZoneUnchanged(before, targetExisted: false)
        XCTAssertNil(inTarget(""), "nothing was written, not even the target")
    }

    func testBinaryRestoreOverPlantedSymlinksStaysInside() throws {
        // A valid manifest (the binary always validates): the hostility is in the target.
        let (id, _, _) = try craft([dir("/"), dir("/d"), file("/d/x"), file("/f", "mine\n", mode: 0o4777), symlink("/s", to: outside.string)])
        try TreeBuilder.mkdir(target, mode: 0o755)
        try Sys.symlink(target: outside, at: target.appending("d"))
        try Sys.symlink(target: outside.appending("file"), at: target.appending("f"))
        let before = try zoneState()
        let res = try accord("restore", "-d", repo, id.hex, "--target", target.string)
        XCTAssertFalse(res.signaled, "\(res)")
        try assertZoneUnchanged(before, targetExisted: true)
        XCTAssertEqual(res.status, 1, "only the entries at and below the planted directory symlink fail:\n\(res)")
        XCTAssertTrue(res.stderr.contains("symlink"), "\(res)")
        XCTAssertEqual(inTarget("d")?.isSymlink, true, "the planted directory symlink is left alone")
        XCTAssertEqual(inTarget("f")?.isRegular, true, "the planted file symlink is replaced by the file")
        XCTAssertEqual(inTarget("f")?.permissions, 0o4777)
        XCTAssertEqual(inTarget("s")?.isSymlink, true, "the snapshot's own symlink is made, inside the target")
    }

    func testBinaryRefusesTargetNamingAFile() throws {
        let (id, _, _) = try craft([dir("/"), file("/f")])
        let victim = zone.appending("victim")
        try TreeBuilder.write(victim, Array("victim\n".utf8), mode: 0o644)
        let before = try zoneState()
        let res = try accord("restore", "-d", repo, id.hex, "--target", victim.string)
        XCTAssertNotEqual(res.status, 0, "\(res)")
        XCTAssertTrue(res.stderr.contains("not a directory"), "\(res)")
        try assertZoneUnchanged(before, targetExisted: false)
    }
}
