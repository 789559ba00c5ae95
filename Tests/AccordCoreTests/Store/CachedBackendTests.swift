import AccordRuntime
import AccordTestSupport
import XCTest
@_spi(Testing) @testable import AccordCore

/// `CachedBackend`'s place (review 23 M6): the cache directory is checked
/// once and then used through descriptors, so a folder swapped for a
/// symlink later redirects no delete or write, a FIFO does not hang a read,
/// and a directory of another user's (or one others may write) is refused.
/// The inner backend is a real `LocalBackend`.
final class CachedBackendTests: XCTestCase {
    var root = ""
    var inner: LocalBackend!

    override func setUpWithError() throws {
        var template = Array((NSTemporaryDirectory() + "/accord-cached-XXXXXX").utf8CString)
        guard let dir = mkdtemp(&template) else { throw SystemError(errno: errno, operation: "mkdtemp", path: NSTemporaryDirectory()) }
        root = String(cString: dir)
        let layout = RepositoryLayout(root: root + "/repo")
        _ = try Sys.mkdir(layout.root, mode: 0o700)
        for d in layout.subdirectories { try Sys.mkdir(d, mode: 0o700) }
        inner = LocalBackend(layout: layout)
    }

    override func tearDown() {
        inner = nil
        _ = try? FileManager.default.removeItem(atPath: root)
        super.tearDown()
    }

    func write(_ backend: any Backend, _ kind: ObjectKind, _ text: String) throws -> String {
        let bytes = Array(text.utf8), name = SHA256Hasher.hash(bytes).hex
        try bytes.withUnsafeBytes { try backend.write(kind, name, $0) }
        return name
    }

    func testAFolderSwappedForASymlinkAfterOpeningRedirectsNothing() throws {
        let dir = root + "/cache/id1"
        let cached = try CachedBackend(inner: inner, directory: dir)
        let first = try write(cached, .snapshot, "first")
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/snapshots/" + first))

        let victim = root + "/victim"
        _ = try Sys.mkdir(victim, mode: 0o755)
        try Array("precious".utf8).withUnsafeBytes { b in
            let fd = try Sys.open(victim + "/important.conf", Sys.O_WRONLY | Sys.O_CREAT, mode: 0o644)
            defer { Sys.close(fd) }
            try Sys.writeAll(fd, b)
        }
        try Sys.rename(dir + "/snapshots", dir + "/snapshots.old")
        try Sys.symlink(target: Array(victim.utf8), at: Array((dir + "/snapshots").utf8))

        // Listing deletes cache files the backend does not list; writing stores one.
        try inner.delete(.snapshot, first)
        XCTAssertEqual(try cached.list(.snapshot), [])
        let second = try write(cached, .snapshot, "second")
        XCTAssertEqual(try Sys.listDirectory(victim), ["important.conf"], "nothing deleted or written through the symlink")
        XCTAssertEqual(try Sys.listDirectory(dir + "/snapshots.old"), [second], "the folder opened is the one used")
    }

    func testAFIFOInTheCacheNeitherHangsNorStays() throws {
        let dir = root + "/cache/id2"
        let name = try write(inner, .index, "an index")
        let cached = try CachedBackend(inner: inner, directory: dir)
        XCTAssertEqual(mkfifo(dir + "/index/" + name, 0o600), 0)
        let done = expectation(description: "read returned")
        let box = LockedBox<[UInt8]?>(nil)
        Thread {
            box.value = try? cached.read(.index, name)
            done.fulfill()
        }.start()
        wait(for: [done], timeout: 20)
        XCTAssertEqual(box.value, Array("an index".utf8))
        let st = try Sys.lstat(dir + "/index/" + name)
        XCTAssertEqual(st.mode & 0o170000, 0o100000, "the FIFO was replaced by the object")
    }

    func testAPlaceOfAnotherUsersOrOpenToOthersIsRefused() throws {
        // Open to others: the base.
        let shared = root + "/shared"
        _ = try Sys.mkdir(shared, mode: 0o700)
        try Sys.chmod(Array(shared.utf8), mode: 0o777)
        XCTAssertThrowsError(try CachedBackend(inner: inner, directory: shared + "/id")) { e in
            XCTAssertTrue("\(e)".contains("others may write"), "\(e)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: shared + "/id"), "nothing made in a refused base")

        // A symlinked folder is not followed.
        let base = root + "/base"
        _ = try Sys.mkdir(base, mode: 0o700)
        _ = try Sys.mkdir(base + "/id", mode: 0o700)
        try Sys.symlink(target: Array((root + "/repo/snapshots").utf8), at: Array((base + "/id/snapshots").utf8))
        XCTAssertThrowsError(try CachedBackend(inner: inner, directory: base + "/id"))

        // Another user's: as root, a directory owned by nobody.
        guard geteuid() == 0, let nobody = getpwnam("nobody") else { return }
        let theirs = root + "/theirs"
        _ = try Sys.mkdir(theirs, mode: 0o700)
        try Sys.lchown(Array(theirs.utf8), uid: nobody.pointee.pw_uid, gid: nobody.pointee.pw_gid)
        XCTAssertThrowsError(try CachedBackend(inner: inner, directory: theirs + "/id")) { e in
            XCTAssertTrue("\(e)".contains("owned by uid \(nobody.pointee.pw_uid)"), "\(e)")
        }
        _ = try Sys.mkdir(base + "/id3", mode: 0o700)
        try Sys.lchown(Array((base + "/id3").utf8), uid: nobody.pointee.pw_uid, gid: nobody.pointee.pw_gid)
        XCTAssertThrowsError(try CachedBackend(inner: inner, directory: base + "/id3"))
    }
}

/// Key files are read in one bounded read (no size asked first): one larger
/// than a key file can be is reported, never read whole (review 23 W2).
final class KeyFileReadTests: XCTestCase {
    func testAnOversizedKeyFileIsReportedNotReadWhole() throws {
        var template = Array((NSTemporaryDirectory() + "/accord-keys-XXXXXX").utf8CString)
        guard let dir = mkdtemp(&template) else { throw SystemError(errno: errno, operation: "mkdtemp", path: NSTemporaryDirectory()) }
        let root = String(cString: dir)
        defer { _ = try? FileManager.default.removeItem(atPath: root) }
        let layout = RepositoryLayout(root: root)
        for d in layout.subdirectories + [root + "/keys"] { try Sys.mkdir(d, mode: 0o700) }
        let backend = LocalBackend(layout: layout)
        let big = [UInt8](repeating: 0x7b, count: KeyFile.maxFileSize + 1), small = Array("{}".utf8)
        for bytes in [big, small] { try bytes.withUnsafeBytes { try backend.write(.key, SHA256Hasher.hash($0).hex, $0) } }
        var errors: [String: String] = [:]
        XCTAssertEqual(try Repository.readKeyFiles(backend) { errors[$0] = "\($1)" }.count, 0)
        XCTAssertEqual(errors.count, 2, "\(errors)")
        let bigError = try XCTUnwrap(errors[SHA256Hasher.hash(big).hex])
        XCTAssertTrue(bigError.contains("larger than a key file can be"), bigError)
        let smallError = try XCTUnwrap(errors[SHA256Hasher.hash(small).hex])
        XCTAssertFalse(smallError.contains("larger"), smallError)
    }
}
