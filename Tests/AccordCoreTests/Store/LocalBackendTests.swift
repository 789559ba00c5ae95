import AccordRuntime
import XCTest
@_spi(Testing) import AccordCore

/// What `LocalBackend` promises beyond the `Backend` contract: its files'
/// modes, nothing left in `tmp/` by a failed write, stray files not listed.
final class LocalBackendTests: XCTestCase {
    var root = ""
    var backend: LocalBackend!

    override func setUpWithError() throws {
        var template = Array((NSTemporaryDirectory() + "/accord-local-XXXXXX").utf8CString)
        guard let dir = mkdtemp(&template) else { throw SystemError(errno: errno, operation: "mkdtemp", path: NSTemporaryDirectory()) }
        root = String(cString: dir)
        let layout = RepositoryLayout(root: root)
        for d in layout.subdirectories { try Sys.mkdir(d, mode: 0o700) }
        backend = LocalBackend(layout: layout)
    }

    override func tearDown() {
        backend = nil
        _ = try? FileManager.default.removeItem(atPath: root)
        super.tearDown()
    }

    func testFilesArePrivateAndAFailedWriteLeavesNoTemporaryFile() throws {
        let bytes: [UInt8] = [1, 2, 3]
        let name = SHA256Hasher.hash(bytes).hex
        struct Crash: Error {}
        backend.faultBeforeCommit { _, _ in throw Crash() }
        XCTAssertThrowsError(try bytes.withUnsafeBytes { try backend.write(.pack, name, $0) })
        XCTAssertEqual(try Sys.listDirectory(backend.layout.tmpDirectory), [], "the staged file was left in tmp/")
        backend.faultBeforeCommit(nil)
        try bytes.withUnsafeBytes { try backend.write(.pack, name, $0) }
        let path = try backend.path(.pack, name)
        XCTAssertEqual(try Sys.lstat(path).mode & 0o777, 0o600)
        XCTAssertEqual(try Sys.lstat((path as NSString).deletingLastPathComponent).mode & 0o777, 0o700)
    }

    func testStrayFilesAreNotListed() throws {
        let bytes: [UInt8] = [9]
        let name = SHA256Hasher.hash(bytes).hex
        try bytes.withUnsafeBytes { try backend.write(.index, name, $0) }
        try bytes.withUnsafeBytes { try backend.write(.pack, name, $0) }
        let layout = backend.layout
        try AtomicFile.write(bytes, to: layout.indexDirectory + "/" + name.uppercased(), tmpDirectory: layout.tmpDirectory)
        try AtomicFile.write(bytes, to: layout.indexDirectory + "/0123.tmp", tmpDirectory: layout.tmpDirectory)
        // A pack file in a directory its name does not start with is not that pack.
        let other = name.hasPrefix("00") ? "01" : "00"
        _ = try Sys.mkdir(layout.dataDirectory + "/" + other, mode: 0o700)
        try AtomicFile.write(bytes, to: layout.dataDirectory + "/" + other + "/" + name, tmpDirectory: layout.tmpDirectory)
        XCTAssertEqual(try backend.list(.index), [name])
        XCTAssertEqual(try backend.list(.pack), [name])
    }
}
