// The cheaper ways a restore takes since confinement cost it ~5% (issue 13):
// the write pass taking the entries the preflight kept instead of reading the
// manifest again, a file created by its name from its parent directory's
// descriptor, the canonical-path check that passes over name bytes at once,
// and the validator's own hash set. Each is checked against the way it
// replaces, which stays in use (a manifest too large to keep, a file whose
// name is taken, a symlink on the way).
import Foundation
import XCTest
@_spi(Testing) @testable import AccordCore
@_spi(Testing) import AccordEngine
import AccordTestSupport
import AccordRuntime

final class RestorePassTests: AccordTestCase {
    /// Small files in several directories (with subdirectories), an empty
    /// file, a multi-chunk file, a hard link, a symlink, a file of another owner.
    func buildTree() throws -> RawPath {
        guard Sys.isRoot else { throw XCTSkip("owners need root") }
        var rng = SeededRandom(seed: 0x5E21)
        let root = Array(scratch.sub("src").utf8)
        try TreeBuilder.mkdir(root)
        for d in 0..<6 {
            let dir = root.appending("d\(d)")
            try TreeBuilder.mkdir(dir)
            for f in 0..<40 { try TreeBuilder.write(dir.appending("f\(f)"), rng.text(100 + rng.below(3000)), mode: f % 3 == 0 ? 0o600 : 0o640) }
            try TreeBuilder.mkdir(dir.appending("sub"))
            try TreeBuilder.write(dir.appending("sub").appending("inner"), rng.bytes(500), mode: 0o4755)
        }
        try TreeBuilder.write(root.appending("empty"), [])
        try TreeBuilder.write(root.appending("big.bin"), rng.bytes(3 << 20))
        try Sys.link(existing: root.appending("d0").appending("f1"), new: root.appending("d5").appending("hard"))
        try Sys.symlink(target: Array("d0/f2".utf8), at: root.appending("link"))
        try Sys.lchown(root.appending("d1").appending("f4"), uid: 1234, gid: 5678)
        try Sys.lchown(root.appending("d2").appending("sub").appending("inner"), uid: 1234, gid: 5678)
        try Sys.chmod(root.appending("d2").appending("sub").appending("inner"), mode: 0o6750)
        return root
    }

    /// Restores the latest snapshot into `target` (library API) with `configure`d options.
    @discardableResult
    func restore(into target: RawPath, file: StaticString = #filePath, line: UInt = #line,
                 _ configure: (inout RestoreOptions) -> Void = { _ in }) throws -> RestoreResult {
        let r = try Repository.open(at: repo)
        guard let (_, snapshot) = try r.openLatestSnapshot(matching: { _ in true }, warn: { _ in }) else {
            XCTFail("no snapshot", file: file, line: line)
            throw CancellationError()
        }
        var o = RestoreOptions(target: target)
        o.threads = 2
        configure(&o)
        let result = try Restore(repository: r, options: o).run(snapshot)
        XCTAssertEqual(result.failed, [], file: file, line: line)
        return result
    }

    /// The write pass gives the same tree whether it takes the preflight's
    /// entries (the default), reads the manifest again from the start
    /// (limit 0), or starts keeping and gives up partway (a limit a few
    /// entries long); a partial restore keeps only the entries it includes.
    func testKeptEntriesAndAManifestReadAgainRestoreTheSameTree() throws {
        let root = try buildTree()
        let source = try listTree(root)
        _ = try backup(root.string)
        var results: [RestoreResult] = []
        for (name, limit) in [("kept", Int?.none), ("read-again", 0), ("gave-up", 4096)] {
            let target = Array(scratch.sub("restored-\(name)").utf8)
            results.append(try restore(into: target) { o in if let limit { o.preflightKeepsBytes = limit } })
            assertSameTree(source, try listTree(target + root), "the tree restored with entries \(name)")
        }
        XCTAssertEqual(Set(results.map(\.files)), [source.values.filter { $0.type == "file" }.count])
        XCTAssertEqual(Set(results.map(\.directories)).count, 1)

        let d0 = root.appending("d0")
        for (name, limit) in [("kept", Int?.none), ("read-again", 0)] {
            let target = Array(scratch.sub("partial-\(name)").utf8)
            try restore(into: target) { o in
                o.includes = [d0, root.appending("d5").appending("hard")]
                if let limit { o.preflightKeepsBytes = limit }
            }
            let restored = try listTree(target + root)
            XCTAssertEqual(Set(restored.keys.filter { !$0.isEmpty }.map { $0.string.split(separator: "/").first.map(String.init) ?? "" }),
                           ["d0", "d5"], "\(name): only the included subtrees (and the ancestors of the link)")
            XCTAssertEqual(try Sys.lstat(target + root.appending("d5").appending("hard")).inode,
                           try Sys.lstat(target + d0.appending("f1")).inode, "\(name): the hard link to an included file is made")
            XCTAssertNil(try? Sys.lstat(target + root.appending("d1")), "\(name): d1 is not included")
        }
    }

    /// Files are created from the descriptor of their parent directory, kept
    /// while siblings follow; a name already taken (a file, a directory, a
    /// planted symlink) takes the full way, which replaces it, and a
    /// directory that is a planted symlink is still never gone through.
    /// With openat2 and with the component-wise fallback.
    func testFilesReplaceWhatIsAtTheirNamesAndNeverFollowAPlantedSymlink() throws {
        let root = try buildTree()
        let source = try listTree(root)
        _ = try backup(root.string)
        let outside = Array(scratch.sub("outside").utf8)
        for fallback in [false, true] {
            Sys.opensBeneathComponentWise = fallback
            defer { Sys.opensBeneathComponentWise = false }
            let target = Array(scratch.sub("target-\(fallback)").utf8)
            removeTree(outside)
            try TreeBuilder.mkdir(outside)
            try restore(into: target)
            // Over the restored tree: every name is taken by the file itself.
            try restore(into: target)
            assertSameTree(source, try listTree(target + root), "restored twice over itself (fallback \(fallback))")
            // Names taken by other things: a directory, a symlink out, a file of other bytes.
            let at = target + root
            try Sys.unlink(at.appending("d3").appending("f7"))
            try TreeBuilder.mkdir(at.appending("d3").appending("f7"))
            try Sys.unlink(at.appending("d3").appending("f8"))
            try Sys.symlink(target: outside.appending("victim"), at: at.appending("d3").appending("f8"))
            try TreeBuilder.write(at.appending("d3").appending("f9"), Array("other".utf8))
            try restore(into: target)
            assertSameTree(source, try listTree(at), "restored over taken names (fallback \(fallback))")
            XCTAssertEqual(try listTree(outside).count, 1, "nothing was made through the planted symlink (fallback \(fallback))")
            // A directory replaced by a symlink out: its files fail, nothing lands outside.
            removeTree(at.appending("d4"))
            try Sys.symlink(target: outside, at: at.appending("d4"))
            let r = try Repository.open(at: repo)
            guard let (_, snapshot) = try r.openLatestSnapshot(matching: { _ in true }, warn: { _ in }) else { return XCTFail("no snapshot") }
            var o = RestoreOptions(target: target)
            o.threads = 2
            let result = try Restore(repository: r, options: o).run(snapshot)
            XCTAssertFalse(result.failed.isEmpty, "entries below a planted symlink fail (fallback \(fallback))")
            XCTAssertTrue(result.failed.allSatisfy { $0.contains("/d4") }, "\(result.failed)")
            XCTAssertEqual(try listTree(outside).count, 1, "nothing was made below the planted directory symlink (fallback \(fallback))")
        }
    }

    /// `beforeReplacing` (where `accord restore` waits for its lock's second
    /// look on a bucket): never called for a restore into a fresh target,
    /// called once (by one of the threads) before the first name in the
    /// target is replaced, and when it throws, the restore stops with
    /// `replaceRefused` and nothing that was there is replaced.
    func testBeforeReplacingRunsOnceBeforeTheFirstReplacementOnly() throws {
        let root = try buildTree()
        let source = try listTree(root)
        _ = try backup(root.string)
        let target = Array(scratch.sub("target").utf8)
        let calls = LockedBox(0)
        try restore(into: target) { o in o.beforeReplacing = { calls.withLock { $0 += 1 } } }
        XCTAssertEqual(calls.withLock { $0 }, 0, "nothing was in the fresh target to replace")
        try restore(into: target) { o in o.beforeReplacing = { calls.withLock { $0 += 1 } } }
        XCTAssertEqual(calls.withLock { $0 }, 1, "called once, before the first of many replacements")
        assertSameTree(source, try listTree(target + root), "restored over itself")

        struct Conflict: Error {}
        let kept = target + root.appending("d3").appending("f9")
        try TreeBuilder.write(kept, Array("the admin's own bytes".utf8))
        let r = try Repository.open(at: repo)
        guard let (_, snapshot) = try r.openLatestSnapshot(matching: { _ in true }, warn: { _ in }) else { return XCTFail("no snapshot") }
        var o = RestoreOptions(target: target)
        o.threads = 2
        let refused = LockedBox(0)
        o.beforeReplacing = { refused.withLock { $0 += 1 }; throw Conflict() }
        let before = try listTree(target + root)
        let reported = LockedBox(0)
        o.onError = { _, _ in reported.withLock { $0 += 1 } }
        XCTAssertThrowsError(try Restore(repository: r, options: o).run(snapshot)) { e in
            guard case RestoreError.replaceRefused(let why) = e else { return XCTFail("\(e)") }
            XCTAssertTrue(why is Conflict, "the check's own error is kept: \(why)")
            XCTAssertTrue("\(e)".contains("stopped before it replaced anything"), "\(e)")
        }
        XCTAssertEqual(refused.withLock { $0 }, 1, "a failure is remembered, not asked again")
        XCTAssertEqual(reported.withLock { $0 }, 0, "the refusal stops the restore instead of failing each path in turn")
        assertSameTree(before, try listTree(target + root), "nothing that was in the target was replaced")
        XCTAssertEqual(try Files.read(kept.string), Array("the admin's own bytes".utf8), "a file that was there is kept")
    }

    /// The check that passes over name bytes at once gives the answer (and
    /// the reason) of the byte-at-a-time scan it replaced, for every path of
    /// up to 6 bytes over "/", ".", "-", NUL and two name bytes.
    func testCanonicalPathCheckMatchesTheByteAtATimeScan() {
        let alphabet: [UInt8] = [0x2f, 0x2e, 0x2d, 0x00, 0x61, 0xff]
        var paths: [RawPath] = [[]]
        var level: [RawPath] = [[]]
        for _ in 1...6 {
            level = level.flatMap { p in alphabet.map { p + [$0] } }
            paths += level
        }
        var valid = 0
        for p in paths {
            let expected = Self.byteAtATimeProblem(p)
            XCTAssertEqual(ManifestEntry.canonicalPathProblem(p), expected, "\(p)")
            if expected == nil { valid += 1 }
        }
        XCTAssertGreaterThan(valid, 100)
        XCTAssertEqual(ManifestEntry.canonicalPathProblem(Array("/a/b.c/..d/...".utf8)), nil)
        XCTAssertEqual(ManifestEntry.canonicalPathProblem(Array("/a/b/../c".utf8)), "has a .. component")
    }

    /// The former `ManifestValidator.pathProblem`, kept as the reference.
    static func byteAtATimeProblem(_ b: RawPath) -> String? {
        guard let first = b.first, first == 0x2f else { return b.isEmpty ? "is empty" : "is not absolute" }
        let n = b.count
        if n == 1 { return nil }
        var start = 1
        var i = 1
        while i <= n {
            let c: UInt8 = i < n ? b[i] : 0x2f
            if c == 0 { return "holds a NUL byte" }
            if c == 0x2f {
                switch i - start {
                case 0: return i == n ? "ends in /" : "has an empty component (//)"
                case 1 where b[start] == 0x2e: return "has a . component"
                case 2 where b[start] == 0x2e && b[start + 1] == 0x2e: return "has a .. component"
                default: break
                }
                start = i + 1
            }
            i += 1
        }
        return nil
    }

    /// The validator's set of file hashes holds what was inserted (0 and 1
    /// included, through growth) and nothing else.
    func testValidatorHashSetHoldsExactlyWhatWasInserted() {
        var set = HashSet64()
        XCTAssertFalse(set.contains(0))
        var rng = SeededRandom(seed: 0x64)
        var inserted: [Int] = [0, 1, -1, Int.min, Int.max]
        for _ in 0..<5000 { inserted.append(Int(bitPattern: UInt(rng.next()))) }
        for (i, v) in inserted.enumerated() {
            set.insert(v)
            set.insert(v)
            if i % 997 == 0 { XCTAssertTrue(inserted[...i].allSatisfy { set.contains($0) }, "after \(i + 1) inserts") }
        }
        XCTAssertTrue(inserted.allSatisfy { set.contains($0) })
        let all = Set(inserted)
        var absent = 0
        for _ in 0..<5000 {
            let v = Int(bitPattern: UInt(rng.next()))
            if !all.contains(v) { XCTAssertFalse(set.contains(v)); absent += 1 }
        }
        XCTAssertGreaterThan(absent, 4900)
        XCTAssertFalse(set.contains(2))
    }
}
