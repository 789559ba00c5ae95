import Foundation
import XCTest
import AccordCore
import AccordRuntime

/// Backup then restore through the command line; the restored tree must
/// match the source in content and in every attribute a restore promises.
final class RoundTripTests: AccordTestCase {
    /// Builds a tree with every kind of entry Accord backs up. Returns its root.
    func buildEveryKindTree() throws -> (root: RawPath, sparse: RawPath, hardlinks: [RawPath]) {
        guard Sys.isRoot else { throw XCTSkip("owners and mode-000 entries need root") }
        var rng = SeededRandom(seed: 0xACC0_0001)
        let root = Array(scratch.sub("src").utf8)
        try TreeBuilder.mkdir(root)
        // Regular files: empty, multi-chunk random, compressible, sparse.
        try TreeBuilder.write(root.appending("empty.txt"), [])
        try TreeBuilder.write(root.appending("big.bin"), rng.bytes(3 << 20 + 123))
        try TreeBuilder.write(root.appending("text.txt"), rng.text(1 << 20))
        let sparse = root.appending("sparse.img")
        try TreeBuilder.writeSparse(sparse, size: 17 << 20, pieces: [(0, rng.bytes(64 << 10)), ((17 << 20) - 100, rng.bytes(100))])
        // Awkward names: spaces, newline, leading dash, bytes that are not UTF-8.
        try TreeBuilder.write(root.appending("with space.txt"), rng.bytes(1000))
        try TreeBuilder.write(root.appending("new\nline"), rng.bytes(10))
        try TreeBuilder.write(root.appending("-rf"), Array("not an option".utf8))
        try TreeBuilder.write(root.appending(raw: [0x66, 0xff, 0xfe, 0x2e, 0x62, 0x69, 0x6e]), rng.bytes(3000))
        let latin1Dir = root.appending(raw: [0xe9, 0x74, 0xe9])   // "été" in Latin-1
        try TreeBuilder.mkdir(latin1Dir)
        try TreeBuilder.write(latin1Dir.appending("inner \u{1F600}.txt"), rng.text(500))
        // Directories: empty, nested, sticky world-writable, read-only, mode 000 with content.
        try TreeBuilder.mkdir(root.appending("empty-dir"))
        try TreeBuilder.mkdir(root.appending("nested"))
        try TreeBuilder.mkdir(root.appending("nested/a"))
        try TreeBuilder.mkdir(root.appending("nested/a/b"))
        try TreeBuilder.write(root.appending("nested/a/b/deep.txt"), rng.text(4000))
        try TreeBuilder.mkdir(root.appending("sticky"), mode: 0o1777)
        try TreeBuilder.write(root.appending("sticky/tmpfile"), rng.bytes(5))
        // Modes on files.
        try TreeBuilder.write(root.appending("setuid-tool"), rng.bytes(100), mode: 0o4755)
        try TreeBuilder.write(root.appending("no-permissions"), rng.bytes(100), mode: 0o000)
        // Owners (tests run as root): a file, a set-id file (chown must not clear its bits), a directory, a symlink.
        try TreeBuilder.write(root.appending("owned"), rng.bytes(50), mode: 0o640)
        try Sys.lchown(root.appending("owned"), uid: 1234, gid: 5678)
        try TreeBuilder.write(root.appending("owned-setid"), rng.bytes(50))
        try Sys.lchown(root.appending("owned-setid"), uid: 1234, gid: 5678)
        try Sys.chmod(root.appending("owned-setid"), mode: 0o6750)
        try TreeBuilder.mkdir(root.appending("owned-dir"), mode: 0o750)
        try Sys.lchown(root.appending("owned-dir"), uid: 1234, gid: 5678)
        // Symlinks: relative, to a directory, dangling with a non-UTF-8 target, owned.
        try Sys.symlink(target: Array("big.bin".utf8), at: root.appending("link-rel"))
        try Sys.symlink(target: Array("nested/a".utf8), at: root.appending("link-dir"))
        try Sys.symlink(target: Array("/nonexistent/accord/target-".utf8) + [0xff], at: root.appending("link-dangling"))
        try Sys.symlink(target: Array("owned".utf8), at: root.appending("owned-dir/owned-link"))
        try Sys.lchown(root.appending("owned-dir/owned-link"), uid: 1234, gid: 5678)
        // Hard links: three names of one inode in three directories.
        let hardlinks = [root.appending("hard1"), root.appending("nested/hard2"), latin1Dir.appending("hard3")]
        try TreeBuilder.write(hardlinks[0], rng.bytes(70_000), mode: 0o600)
        try Sys.link(existing: hardlinks[0], new: hardlinks[1])
        try Sys.link(existing: hardlinks[0], new: hardlinks[2])
        // Extended attributes, where the filesystem has them.
        try? Sys.setXattr(root.appending("text.txt"), name: Array("user.accord.test".utf8), value: [0, 1, 2, 0xff])
        // Read-only directory and mode-000 directory, each with a file (root writes through).
        try TreeBuilder.mkdir(root.appending("readonly-dir"))
        try TreeBuilder.write(root.appending("readonly-dir/file"), rng.bytes(10))
        try Sys.chmod(root.appending("readonly-dir"), mode: 0o555)
        try TreeBuilder.mkdir(root.appending("locked-dir"))
        try TreeBuilder.write(root.appending("locked-dir/inner.txt"), rng.bytes(10))
        try Sys.chmod(root.appending("locked-dir"), mode: 0o000)

        // Times last (creating entries changes directory mtimes), deepest first, with nanoseconds.
        let listing = try listTree(root)
        var i: Int64 = 0
        for rel in listing.keys.sorted(by: ManifestEntry.treeOrder).reversed() {
            let path = rel.isEmpty ? root : root + [0x2f] + rel
            i += 1
            try Sys.setTimes(path, mtimeSec: 1_600_000_000 + i * 1_000, mtimeNsec: 123_456_000 + i)
        }
        try Sys.setTimes(root.appending("empty.txt"), mtimeSec: -86_400 * 365, mtimeNsec: 999_999_999)
        return (root, sparse, hardlinks)
    }

    func testRoundTripPreservesEveryKindOfEntry() throws {
        let (root, sparse, hardlinks) = try buildEveryKindTree()
        let source = try listTree(root)
        let result = try backup(root.string)
        XCTAssertEqual(result.summary.errors, [])
        XCTAssertEqual(result.summary.otherSkipped, 0)
        let check = try accordOK("check", "-d", repo, "--read-data")
        XCTAssertTrue(check.stdout.contains("no errors found"), "\(check)")

        let target = scratch.sub("restored")
        try accordOK("restore", "-d", repo, "latest", "--target", target)
        let restoredRoot = Array(target.utf8) + root
        assertSameTree(source, try listTree(restoredRoot))

        // Hard links come back as one inode with three names.
        let inodes = try hardlinks.map { try Sys.lstat(Array(target.utf8) + $0) }
        XCTAssertEqual(Set(inodes.map(\.inode)).count, 1, "hard links were restored as separate files")
        XCTAssertEqual(inodes.first?.nlink, 3)

        // The sparse file stays sparse (when the source was).
        let src = try Sys.lstat(sparse), dst = try Sys.lstat(Array(target.utf8) + sparse)
        XCTAssertEqual(dst.size, src.size)
        if src.blocks * 512 < Int64(src.size) {
            XCTAssertLessThan(dst.blocks * 512, Int64(dst.size),
                              "restored sparse file uses \(dst.blocks * 512) bytes of disk for \(dst.size) bytes: holes were filled")
        }
    }

    /// With 1 MiB average (8 MiB max) chunks, a chunk holding a little data
    /// is mostly zeros: restore must leave those zeros as holes too, not
    /// only the chunks that are entirely zero.
    func testRestoreKeepsHolesNextToDataInTheSameChunk() throws {
        var rng = SeededRandom(seed: 0x5BA5)
        let root = Array(scratch.sub("src").utf8)
        try TreeBuilder.mkdir(root)
        let image = root.appending("disk.img")
        try TreeBuilder.writeSparse(image, size: 24 << 20, pieces: [(0, rng.bytes(4096)), (9 << 20, rng.bytes(4096)),
                                                                      ((24 << 20) - 4096, rng.bytes(4096))])
        let src = try Sys.lstat(image)
        guard src.blocks * 512 < 1 << 20 else { throw XCTSkip("the filesystem under \(scratch.path) does not keep holes") }
        _ = try backup(root.string)
        let target = scratch.sub("restored")
        try accordOK("restore", "-d", repo, "latest", "--target", target)
        let restored = Array(target.utf8) + image
        let dst = try Sys.lstat(restored)
        XCTAssertEqual(try TreeBuilder.hash(restored), try TreeBuilder.hash(image))
        XCTAssertLessThan(dst.blocks * 512, 4 << 20,
                          "12 KiB of data in a 24 MiB sparse file (\(src.blocks * 512) bytes on disk) was restored using \(dst.blocks * 512) bytes of disk")
    }

    /// More files than the process may hold open (backup and restore run
    /// with `ulimit -n 256`), spread over more than one pack, some identical.
    func testThousandsOfSmallFilesRoundTripUnderALowOpenFileLimit() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/prlimit") else { throw XCTSkip("needs prlimit") }
        var rng = SeededRandom(seed: 0x3000)
        let root = Array(scratch.sub("src").utf8)
        try TreeBuilder.mkdir(root)
        let shared = rng.bytes(700)
        for d in 0..<25 {
            let dir = root.appending("d\(d)")
            try TreeBuilder.mkdir(dir)
            for f in 0..<100 {
                let size = 1 + Int(rng.next() % 3000)
                try TreeBuilder.write(dir.appending("f\(f)"), f % 10 == 0 ? shared : rng.bytes(size))
            }
        }
        try TreeBuilder.write(root.appending("big.bin"), rng.bytes(20 << 20))   // pushes the small files into more than one pack
        let source = try listTree(root)
        let b = try AccordCLI.run(["backup", "-d", repo, "--json", root.string], openFileLimit: 256, scratch: scratch)
        XCTAssertEqual(b.status, 0, "\(b)")
        XCTAssertEqual(try decodeBackupJSON(b).summary.files, 2501)
        XCTAssertGreaterThan(packFiles().count, 1, "test setup: the files should span packs")
        let target = scratch.sub("restored")
        let r = try AccordCLI.run(["restore", "-d", repo, "latest", "--target", target], openFileLimit: 256, scratch: scratch)
        XCTAssertEqual(r.status, 0, "restore with 256 open files allowed failed:\n\(r)")
        assertSameTree(source, try listTree(Array(target.utf8) + root))
    }

    /// The walker keeps one directory descriptor open per level, down to
    /// `Backup.maxDescriptorDepth` (64), and walks deeper levels by path. A
    /// 200-level chain under `ulimit -n 128` fails if every level holds one.
    func testATreeDeeperThanTheDescriptorWalkRoundTripsUnderALowOpenFileLimit() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/prlimit") else { throw XCTSkip("needs prlimit") }
        var rng = SeededRandom(seed: 0x3001)
        let root = Array(scratch.sub("src").utf8)
        try TreeBuilder.mkdir(root)
        var dir = root
        for level in 0..<200 {
            dir = dir.appending("d")
            try TreeBuilder.mkdir(dir)
            if level % 50 == 49 {
                try TreeBuilder.write(dir.appending("f"), rng.bytes(3000))
                try Sys.symlink(target: Array("f".utf8), at: dir.appending("l"))
            }
        }
        let source = try listTree(root)
        for run in 1...2 {   // the second run finds every file unchanged, deep ones by path
            let b = try AccordCLI.run(["backup", "-d", repo, "--json", root.string], openFileLimit: 128, scratch: scratch)
            XCTAssertEqual(b.status, 0, "backup \(run) of a 200-level tree with 128 open files allowed failed:\n\(b)")
            let s = try decodeBackupJSON(b).summary
            XCTAssertEqual(s.files, 4)
            XCTAssertEqual(s.directories, 201 + root.filter { $0 == 0x2f }.count)   // the chain, the root and its ancestors
            XCTAssertEqual(s.symlinks, 4)
            XCTAssertEqual(s.filesUnchanged, run == 1 ? 0 : 4)
        }
        let target = scratch.sub("restored")
        _ = try accordOK("restore", "-d", repo, "latest", "--target", target)
        assertSameTree(source, try listTree(Array(target.utf8) + root))
    }

    /// A file whose blobs all lie in one pack is made, written and finished
    /// by the thread restoring that pack. Twenty files of one multi-chunk
    /// content interleave their writes there, so the thread's descriptor
    /// cache (16) lets files go and opens them again mid-file; a second
    /// restore into the same target meets every file already there.
    func testFilesSharingChunksRestoreWholeWhenTheirWritesInterleave() throws {
        var rng = SeededRandom(seed: 0x5010)
        let root = Array(scratch.sub("src").utf8)
        try TreeBuilder.mkdir(root)
        let shared = rng.bytes(3 << 20)
        for i in 0..<20 { try TreeBuilder.write(root.appending("copy\(i).bin"), shared, mode: 0o640) }
        try TreeBuilder.write(root.appending("small.txt"), rng.text(5000))
        try Sys.setTimes(root.appending("copy7.bin"), mtimeSec: 1_500_000_000, mtimeNsec: 42)
        try Sys.setTimes(root, mtimeSec: 1_500_000_100, mtimeNsec: 0)
        let source = try listTree(root)
        _ = try backup(root.string)
        let entries = try manifestEntries(try openRepository())
        let copy = try XCTUnwrap(entries.first { $0.path == root.appending("copy0.bin") })
        XCTAssertGreaterThanOrEqual(copy.blobs.count, 2, "test setup: the shared content should be several chunks")
        let target = scratch.sub("restored")
        let restored = Array(target.utf8) + root
        try accordOK("restore", "-d", repo, "latest", "--target", target)
        assertSameTree(source, try listTree(restored))

        try TreeBuilder.write(restored.appending("copy3.bin"), Array("stale".utf8))
        try Sys.chmod(restored.appending("small.txt"), mode: 0o400)
        try accordOK("restore", "-d", repo, "latest", "--target", target)
        assertSameTree(source, try listTree(restored))
    }

    /// A restore writes files a segment (8,192 files) at a time, so its memory
    /// does not grow with the tree: 9,000 files make two segments, with a
    /// hard link in the second to a file of the first.
    func testMoreFilesThanOneRestoreSegmentRoundTrip() throws {
        var rng = SeededRandom(seed: 0x5E6)
        let root = Array(scratch.sub("src").utf8)
        try TreeBuilder.mkdir(root)
        for d in 0..<30 {
            let dir = root.appending("d\(d)")
            try TreeBuilder.mkdir(dir)
            for f in 0..<300 {
                let path = dir.appending("f\(f)")
                try TreeBuilder.write(path, rng.bytes(1 + Int(rng.next() % 200)), mode: f % 3 == 0 ? 0o600 : 0o644)
                try Sys.setTimes(path, mtimeSec: 1_600_000_000 + Int64(d * 300 + f), mtimeNsec: 0)
            }
            try Sys.setTimes(dir, mtimeSec: 1_600_100_000 + Int64(d), mtimeNsec: 0)
        }
        try TreeBuilder.mkdir(root.appending("z"))
        try Sys.link(existing: root.appending("d0/f1"), new: root.appending("z/link"))
        try Sys.setTimes(root.appending("z"), mtimeSec: 1_600_200_000, mtimeNsec: 0)
        try Sys.setTimes(root, mtimeSec: 1_600_300_000, mtimeNsec: 0)
        let source = try listTree(root)
        XCTAssertEqual(try backup(root.string).summary.files, 9001)
        let target = scratch.sub("restored")
        try accordOK("restore", "-d", repo, "latest", "--target", target)
        assertSameTree(source, try listTree(Array(target.utf8) + root))
    }

    func testDumpWritesOneFileExactly() throws {
        var rng = SeededRandom(seed: 7)
        let root = Array(scratch.sub("src").utf8)
        try TreeBuilder.mkdir(root)
        let content = rng.bytes(3 << 20) + rng.text(100_000)
        try TreeBuilder.write(root.appending("f.bin"), content)
        _ = try backup(root.string)
        let r = try accordOK("dump", "-d", repo, "latest", root.appending("f.bin").string)
        XCTAssertEqual(r.stdoutBytes.count, content.count)
        XCTAssertTrue(r.stdoutBytes == content, "dump output differs from the file")
    }

    func testIncludeRestoresOnlyThatSubtree() throws {
        let root = Array(scratch.sub("src").utf8)
        try TreeBuilder.mkdir(root)
        try TreeBuilder.mkdir(root.appending("keep"))
        try TreeBuilder.write(root.appending("keep/a.txt"), Array("a".utf8))
        try TreeBuilder.mkdir(root.appending("skip"))
        try TreeBuilder.write(root.appending("skip/b.txt"), Array("b".utf8))
        _ = try backup(root.string)
        let target = scratch.sub("restored")
        try accordOK("restore", "-d", repo, "latest", "--target", target, "--include", root.appending("keep").string)
        let restored = Array(target.utf8) + root
        XCTAssertEqual(try TreeBuilder.read(restored.appending("keep/a.txt")), Array("a".utf8))
        XCTAssertNil(try? Sys.lstat(restored.appending("skip/b.txt")), "--include restored a path outside it")
    }

    func testSocketsAndFIFOsAreSkippedWithAWarning() throws {
        let root = scratch.sub("src")
        try TreeBuilder.mkdir(Array(root.utf8))
        try TreeBuilder.write(Array((root + "/regular.txt").utf8), Array("kept".utf8))
        try TreeBuilder.mkfifo(Array((root + "/fifo").utf8))
        try TreeBuilder.makeSocket(root + "/sock")
        let r = try accord("backup", "-d", repo, "--json", root)
        XCTAssertEqual(r.status, 0, "skipping special files is not an error:\n\(r)")
        let summary = try decodeBackupJSON(r).summary
        XCTAssertEqual(summary.otherSkipped, 2)
        XCTAssertEqual(summary.errors, [])
        XCTAssertEqual(summary.files, 1)
        for name in ["fifo", "sock"] {
            XCTAssertTrue(r.stderr.contains("skipping \(root)/\(name)"), "no warning names \(name):\n\(r)")
        }
        let ls = try accordOK("ls", "-d", repo, "latest")
        XCTAssertTrue(ls.stdout.contains("\(root)/regular.txt"), ls.stdout)
        XCTAssertFalse(ls.stdout.contains("\(root)/fifo"), ls.stdout)
        XCTAssertFalse(ls.stdout.contains("\(root)/sock"), ls.stdout)
    }

    /// Root reads everything, so the unreadable file is made for an
    /// unprivileged user: `accord` runs as nobody on a tree where one file
    /// has mode 000, with the repository in a directory nobody owns.
    func testUnreadableFileIsSkippedNamedAndExitsWithCode3() throws {
        guard Sys.isRoot, FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv") else {
            throw XCTSkip("needs root and setpriv to run accord as another user")
        }
        let nobody: (uid: UInt32, gid: UInt32) = (65534, 65534)
        let root = scratch.sub("src")
        try TreeBuilder.mkdir(Array(root.utf8))
        try TreeBuilder.write(Array((root + "/public.txt").utf8), Array("everyone may read this".utf8))
        let secret = root + "/secret.txt"
        try TreeBuilder.write(Array(secret.utf8), Array("nobody may read this".utf8), mode: 0o000)
        let home = scratch.sub("nobody-home")
        try TreeBuilder.mkdir(Array(home.utf8))
        try Sys.lchown(Array(home.utf8), uid: nobody.uid, gid: nobody.gid)
        let repository = home + "/repo"

        let r = try accord("backup", "-d", repository, "--json", root, asUser: nobody)
        XCTAssertFalse(r.signaled, "\(r)")
        XCTAssertEqual(r.status, 3, "a backup that skipped an unreadable file must exit 3:\n\(r)")
        XCTAssertTrue(r.stderr.contains(secret), "the warning does not name the unreadable file:\n\(r)")
        let printed = try decodeBackupJSON(r)
        XCTAssertEqual(printed.summary.errors, [secret])

        // The stored snapshot says so too, and holds the readable file only.
        let list = try accordOK("snapshots", "list", "-d", repository, "--json")
        let all = try JSONDecoder().decode([BackupJSON].self, from: Data(list.stdoutBytes))
        XCTAssertEqual(all.count, 1)
        XCTAssertEqual(all.first?.summary.errors, [secret])
        let ls = try accordOK("ls", "-d", repository, "latest")
        XCTAssertTrue(ls.stdout.contains(root + "/public.txt"), ls.stdout)
        XCTAssertFalse(ls.stdout.contains(secret), ls.stdout)
    }

    func testRelativeSourcePathIsRecordedAsAbsolute() throws {
        let root = scratch.sub("src")
        try TreeBuilder.mkdir(Array(root.utf8))
        try TreeBuilder.write(Array((root + "/f").utf8), Array("x".utf8))
        let r = try accord("backup", "-d", repo, "--json", "src/", cwd: scratch.path)
        XCTAssertEqual(r.status, 0, "\(r)")
        XCTAssertEqual(try decodeBackupJSON(r).paths, [root])
    }
}
