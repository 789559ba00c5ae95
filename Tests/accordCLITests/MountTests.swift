import Foundation
import XCTest
import AccordCore
import AccordRuntime
import AccordTestSupport

/// `accord mount` (issue 18): a snapshot browsed through a real FUSE mount
/// reads back as the tree that was backed up (types, modes, owners, mtimes to
/// the nanosecond, sizes, symlinks, hard links, user xattrs, every byte);
/// reads at any offset of a multi-blob file; `all` with snapshots/<id> and
/// latest, from an encrypted repository; unmounting (fusermount3 -u, SIGTERM)
/// ends the process with status 0.
final class MountTests: AccordTestCase {
    var src: String { scratch.sub("src") }
    var mnt: String { scratch.sub("mnt") }
    var xattrsSet = false

    override func setUpWithError() throws {
        try super.setUpWithError()
        guard access("/dev/fuse", R_OK | W_OK) == 0 else {
            throw XCTSkip("/dev/fuse is absent or not usable here (\(String(cString: strerror(errno)))): accord mount cannot be tested without it")
        }
        // Not a skip: `make deps` installs fuse3, and a missing install step must show.
        guard access("/usr/bin/fusermount3", X_OK) == 0 else {
            XCTFail("fusermount3 is not installed: `make deps` installs fuse3")
            throw XCTSkip("no fusermount3")
        }
        try Files.mkdir(mnt)
    }

    /// Is `dir` a mount point now (/proc/self/mountinfo's fifth field)?
    func isMounted(_ dir: String) -> Bool {
        let info = (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? ""
        return info.split(separator: "\n").contains { $0.split(separator: " ").dropFirst(4).first.map(String.init) == dir }
    }

    /// Starts `accord mount … mnt` and waits until the mount is in place (or the process ends, failing the test).
    func mount(_ args: [String]) throws -> RunningCommand {
        let child = try start(["mount"] + args + [mnt])
        addTeardownBlock { [mnt] in
            if child.isRunning { _ = try? runProcess("/usr/bin/fusermount3", ["-u", "-z", mnt]); child.kill(SIGKILL); _ = child.finish(timeout: 30) }
        }
        let deadline = Date().addingTimeInterval(120)
        while !isMounted(mnt) {
            guard child.isRunning, Date() < deadline else {
                XCTFail("accord mount did not mount \(mnt):\n\(child.finish(timeout: 5))")
                throw XCTSkip("not mounted")
            }
            usleep(20_000)
        }
        return child
    }

    func pread(_ path: String, offset: Int, count: Int) throws -> [UInt8] {
        let fd = try Sys.open(path, O_RDONLY)
        defer { close(fd) }
        var out = [UInt8](repeating: 0, count: count)
        let n = out.withUnsafeMutableBytes { Glibc.pread(fd, $0.baseAddress, count, off_t(offset)) }
        XCTAssertEqual(n, count, "pread \(path) at \(offset): \(String(cString: strerror(errno)))")
        return Array(out.prefix(max(n, 0)))
    }

    /// A tree with one of each thing a mount shows.
    func makeTree() throws -> [UInt8] {
        var rng = SeededRandom(seed: 1818)
        try Files.mkdir(src)
        try Files.mkdir(src + "/sub")
        try Files.mkdir(src + "/private")
        XCTAssertEqual(chmod(src + "/private", 0o700), 0)
        var big = [UInt8](repeating: 0, count: 6 << 20)
        for i in stride(from: 0, to: big.count, by: 8) { let v = rng.next(); for k in 0..<8 { big[i + k] = UInt8(truncatingIfNeeded: v >> (8 * k)) } }
        try Files.write(src + "/big.bin", big)
        try Files.write(src + "/sub/notes.txt", rng.letterText(10_000), mode: 0o640)
        try Files.write(src + "/run.sh", Array("#!/bin/sh\necho hi\n".utf8), mode: 0o755)
        try Files.write(src + "/empty", [])
        try Files.write(src + "/private/secret", Array("only root\n".utf8), mode: 0o600)
        XCTAssertEqual(chown(src + "/sub/notes.txt", 1234, 5678), 0)
        XCTAssertEqual(link(src + "/sub/notes.txt", src + "/sub/notes-again.txt"), 0)
        try FileManager.default.createSymbolicLink(atPath: src + "/link", withDestinationPath: "sub/notes.txt")
        try FileManager.default.createSymbolicLink(atPath: src + "/dangling", withDestinationPath: "/nowhere/at all")
        // Where the file system has no user xattrs the listing simply has none to compare.
        xattrsSet = (try? Sys.setXattr(Array((src + "/run.sh").utf8), name: Array("user.accord.mount".utf8), value: [0, 1, 2, 0xff])) != nil
        return big
    }

    func testMountedSnapshotReadsBackAsTheTreeBackedUp() throws {
        let big = try makeTree()
        let expected = try listTree(src, .everything)
        if xattrsSet { XCTAssertEqual(expected[Array("run.sh".utf8)]?.userXattrs.count, 1, "the xattr is in the listing compared") }
        XCTAssertEqual(expected[Array("sub/notes-again.txt".utf8)]?.nlink, 2, "the hard link is in the listing compared")
        let id = try backup(src).id
        let repository = try openRepository()
        let entry = try XCTUnwrap(try manifestEntries(repository).first { $0.path == Array((src + "/big.bin").utf8) })
        XCTAssertGreaterThan(entry.blobs.count, 2, "the test needs a file of several blobs")
        let firstEnd = Int(try XCTUnwrap(repository.index.lookup(entry.blobs[0])).rawLength)

        let child = try mount(["-d", repo, String(id.prefix(10))])
        // Parents of the backed-up path are there, read-only directories.
        XCTAssertEqual(try Sys.lstat(Array((mnt + "/tmp").utf8)).isDirectory, true)
        XCTAssertEqual(try listTree(mnt + src, .everything), expected)
        // Random reads: inside the second blob, across the first boundary, at the very end, past it.
        let mid = big.count / 2 + 12_345
        XCTAssertEqual(try pread(mnt + src + "/big.bin", offset: mid, count: 200_000), Array(big[mid..<(mid + 200_000)]))
        XCTAssertEqual(try pread(mnt + src + "/big.bin", offset: firstEnd - 1000, count: 5000), Array(big[(firstEnd - 1000)..<(firstEnd + 4000)]))
        XCTAssertEqual(try pread(mnt + src + "/big.bin", offset: big.count - 7, count: 7), Array(big.suffix(7)))
        let fd = try Sys.open(mnt + src + "/big.bin", O_RDONLY)
        var byte: UInt8 = 0
        XCTAssertEqual(Glibc.pread(fd, &byte, 1, off_t(big.count)), 0, "a read past the end gives nothing")
        close(fd)
        XCTAssertEqual(try Sys.readlink(Array((mnt + src + "/dangling").utf8)), Array("/nowhere/at all".utf8))
        // Read-only: nothing can be made or changed.
        XCTAssertEqual(open(mnt + src + "/new", O_WRONLY | O_CREAT, 0o644), -1)
        XCTAssertEqual(errno, EROFS)
        XCTAssertEqual(open(mnt + src + "/run.sh", O_WRONLY), -1)
        XCTAssertEqual(errno, EROFS)

        let u = try runProcess("/usr/bin/fusermount3", ["-u", mnt])
        XCTAssertTrue(u.ok, "\(u)")
        let r = child.finish(timeout: 60)
        XCTAssertTrue(r.ok, "accord mount after fusermount3 -u:\n\(r)")
        XCTAssertTrue(r.stdout.contains("mounted read-only on \(mnt)"), "\(r)")
        XCTAssertFalse(isMounted(mnt))
    }

    /// A damaged blob (hostile or rotten) is an I/O error for the reads that
    /// touch it, named on stderr; the rest of the file and the mount go on.
    func testDamagedBlobIsAnIOErrorForItsBytesOnly() throws {
        let big = try makeTree()
        _ = try backup(src)
        let repository = try openRepository()
        let entry = try XCTUnwrap(try manifestEntries(repository).first { $0.path == Array((src + "/big.bin").utf8) })
        XCTAssertGreaterThan(entry.blobs.count, 2, "the test needs a file of several blobs")
        let first = try XCTUnwrap(repository.index.lookup(entry.blobs[0])), second = try XCTUnwrap(repository.index.lookup(entry.blobs[1]))
        try Files.flipByte(packPath(repository.index.pack(of: second)), at: Int(second.offset + second.storedLength / 2))

        let child = try mount(["-d", repo, "latest"])
        let file = mnt + src + "/big.bin"
        XCTAssertEqual(try pread(file, offset: 100, count: 1000), Array(big[100..<1100]), "the first blob still reads")
        let fd = try Sys.open(file, O_RDONLY)
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = buffer.withUnsafeMutableBytes { Glibc.pread(fd, $0.baseAddress, 4096, off_t(first.rawLength) + 10) }
        let readErrno = errno
        close(fd)
        XCTAssertEqual(n, -1, "a read of the damaged blob fails")
        XCTAssertEqual(readErrno, EIO)
        XCTAssertTrue(child.isRunning, "the mount survives a damaged blob")
        XCTAssertEqual(try Files.read(mnt + src + "/run.sh"), Array("#!/bin/sh\necho hi\n".utf8))

        XCTAssertTrue(try runProcess("/usr/bin/fusermount3", ["-u", mnt]).ok)
        let r = child.finish(timeout: 60)
        XCTAssertTrue(r.ok, "\(r)")
        XCTAssertTrue(r.stderr.contains("big.bin") && r.stderr.contains(entry.blobs[1].hex), "the damaged blob and its file are named:\n\(r)")
    }

    func testMountAllOfAnEncryptedRepositoryShowsEachSnapshotAndLatest() throws {
        try useEncryption()
        try Files.mkdir(src)
        try Files.write(src + "/file", Array("first version\n".utf8))
        let first = try backup(src).id
        try Files.write(src + "/file", Array("second, longer version\n".utf8))
        let second = try backup(src).id
        let ids = snapshotFiles().sorted()
        XCTAssertEqual(ids.count, 2)

        let child = try mount(["-d", repo, "all"])
        XCTAssertEqual(try Sys.listDirectory(mnt).sorted(), ["latest", "snapshots"])
        XCTAssertEqual(try Sys.listDirectory(mnt + "/snapshots").sorted(), ids)
        let latest = String(decoding: try Sys.readlink(Array((mnt + "/latest").utf8)), as: UTF8.self)
        XCTAssertTrue(latest.hasPrefix("snapshots/" + second), latest)
        let old = try XCTUnwrap(ids.first { $0.hasPrefix(first) })
        XCTAssertEqual(try Files.read(mnt + "/snapshots/" + old + src + "/file"), Array("first version\n".utf8))
        XCTAssertEqual(try Files.read(mnt + "/latest" + src + "/file"), Array("second, longer version\n".utf8))
        XCTAssertFalse(Files.exists(mnt + "/snapshots/0000000000000000"), "an unknown id is not there")
        XCTAssertEqual(try Files.read(mnt + "/snapshots/" + old.prefix(8) + src + "/file"), Array("first version\n".utf8), "a short id works in a path")

        child.kill(SIGTERM)
        let r = child.finish(timeout: 60)
        XCTAssertTrue(r.ok, "accord mount after SIGTERM:\n\(r)")
        XCTAssertFalse(isMounted(mnt))
    }

    /// `all` with one snapshot whose manifest is damaged: that snapshot's
    /// directory is an I/O error, named once on stderr; the others browse.
    func testDamagedManifestHidesOnlyItsSnapshot() throws {
        try Files.mkdir(src)
        try Files.write(src + "/file", Array("one\n".utf8))
        let first = try backup(src).id
        // Another source, so the second snapshot has no parent: its manifest is not a delta on the damaged piece.
        let other = src + "-other"
        try Files.mkdir(other)
        try Files.write(other + "/file", Array("two\n".utf8))
        _ = try backup(other)
        let repository = try openRepository()
        let (id, s) = try repository.openSnapshot(first)
        let manifest = try XCTUnwrap(s.manifestIDs.first)
        let l = try XCTUnwrap(repository.index.lookup(manifest))
        try Files.flipByte(packPath(repository.index.pack(of: l)), at: Int(l.offset + l.storedLength / 2))

        let child = try mount(["-d", repo, "all"])
        XCTAssertThrowsError(try Sys.listDirectory(mnt + "/snapshots/" + id.hex), "the damaged snapshot cannot be listed")
        XCTAssertEqual(try Files.read(mnt + "/latest" + other + "/file"), Array("two\n".utf8))
        XCTAssertTrue(try runProcess("/usr/bin/fusermount3", ["-u", mnt]).ok)
        let r = child.finish(timeout: 60)
        XCTAssertTrue(r.ok, "\(r)")
        XCTAssertTrue(r.stderr.contains("snapshot \(id.short) cannot be read"), "\(r)")
    }

    /// More snapshots than a mount keeps trees of (`MountFilesystem.treeLimit`,
    /// 8): each reads right, and so does the first again after it was dropped.
    func testManySnapshotsEachReadRightAfterTreesAreDropped() throws {
        try Files.mkdir(src)
        var ids: [String] = []
        for i in 0..<10 {
            try Files.write(src + "/file", Array("version \(i)\n".utf8))
            ids.append(try backup(src).id)
        }
        let full = snapshotFiles()
        let child = try mount(["-d", repo, "all"])
        for i in [Int](0..<10) + [0, 9, 1] {
            let hex = try XCTUnwrap(full.first { $0.hasPrefix(ids[i]) })
            XCTAssertEqual(try Files.read(mnt + "/snapshots/" + hex + src + "/file"), Array("version \(i)\n".utf8), "snapshot \(i)")
        }
        child.kill(SIGINT)
        let r = child.finish(timeout: 60)
        XCTAssertTrue(r.ok, "accord mount after SIGINT:\n\(r)")
        XCTAssertFalse(isMounted(mnt))
    }

    func testMountRefusesWhatItCannotMount() throws {
        try Files.mkdir(src)
        try Files.write(src + "/file", Array("x".utf8))
        _ = try backup(src)
        let notDir = try accord("mount", "-d", repo, "latest", src + "/file")
        XCTAssertEqual(notDir.status, 1, "\(notDir)")
        XCTAssertTrue(notDir.stderr.contains("is not a directory"), "\(notDir)")
        let unknown = try accord("mount", "-d", repo, "abcdef12", mnt)
        XCTAssertEqual(unknown.status, 1, "\(unknown)")
        XCTAssertFalse(isMounted(mnt))
    }
}
