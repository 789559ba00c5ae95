// Helpers for the sync tests: scratch directories, deterministic trees, a
// tree listing that compares a restore with its source, and a runner for the
// built `accord` binary (STYLE.md item 14: the CLI is tested as users run it).
import Foundation
@_exported import AccordTestSupport
import XCTest
import AccordCore
#if canImport(Glibc)
import Glibc
import AccordRuntime
#endif

// MARK: Deterministic data

extension SeededRandom {
    /// Compressible, text-like lines.
    mutating func text(_ n: Int) -> [UInt8] {
        let words = ["sync", "pack", "blob", "snapshot", "restore", "the", "of", "node", "anaconda", "wire"].map { Array($0.utf8) }
        var out: [UInt8] = []
        out.reserveCapacity(n + 16)
        var col = 0
        while out.count < n {
            let w = words[Int(next() % UInt64(words.count))]
            out.append(contentsOf: w)
            col += w.count + 1
            if col > 70 { out.append(0x0a); col = 0 } else { out.append(0x20) }
        }
        return Array(out.prefix(n))
    }
}

// MARK: Files

/// A directory under /tmp (mode 0755, so the ssh test users can reach files in it), removed by `remove()`.
final class ScratchDirectory {
    let path: String

    init(_ label: String) throws {
        path = "/tmp/accord-synctest-\(label)-" + hexString(Sys.randomBytes(5))
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        chmod(path, 0o755)
    }

    func sub(_ name: String) -> String { path + "/" + name }

    func remove() { try? FileManager.default.removeItem(atPath: path) }
}

func writeFile(_ path: String, _ bytes: [UInt8], mode: mode_t = 0o644) throws {
    let dir = (path as NSString).deletingLastPathComponent
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    try Data(bytes).write(to: URL(fileURLWithPath: path))
    chmod(path, mode)
}

func appendToFile(_ path: String, _ bytes: [UInt8]) throws {
    let h = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
    defer { try? h.close() }
    try h.seekToEnd()
    try h.write(contentsOf: Data(bytes))
}

func readFile(_ path: String) throws -> [UInt8] { Array(try Data(contentsOf: URL(fileURLWithPath: path))) }

/// Every regular file below `root` (recursively), sorted.
func regularFiles(under root: String) -> [String] {
    guard let e = FileManager.default.enumerator(atPath: root) else { return [] }
    var out: [String] = []
    while let rel = e.nextObject() as? String {
        var st = stat()
        if lstat(root + "/" + rel, &st) == 0, st.st_mode & S_IFMT == S_IFREG { out.append(root + "/" + rel) }
    }
    return out.sorted()
}

func fileSize(_ path: String) -> UInt64 {
    var st = stat()
    return lstat(path, &st) == 0 ? UInt64(st.st_size) : 0
}

/// Pack files of a repository (`data/XX/<64 hex>`), complete ones only: a pack appears there after its rename.
func packFiles(of repo: String) -> [String] {
    regularFiles(under: repo + "/data").filter { ID(hex: ($0 as NSString).lastPathComponent) != nil }
}

func snapshotFiles(of repo: String) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: repo + "/snapshots")) ?? []).filter { ID(hex: $0) != nil }.sorted()
}

/// A port on 127.0.0.1 that nothing listens on (bound, read, closed).
func closedLoopbackPort() -> UInt16 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    addr.sin_port = 0
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
    _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
    return UInt16(bigEndian: addr.sin_port)
}

// MARK: Trees

/// A test tree: a few kinds of entry, `randomFiles` × `randomSize` incompressible
/// bytes, and `docs/notes.txt`, the small text file the tests append to.
@discardableResult
func makeTree(_ root: String, seed: UInt64, randomFiles: Int, randomSize: Int) throws -> UInt64 {
    var rng = SeededRandom(seed: seed)
    var total: UInt64 = 0
    func put(_ rel: String, _ bytes: [UInt8], mode: mode_t = 0o644) throws {
        try writeFile(root + "/" + rel, bytes, mode: mode)
        total += UInt64(bytes.count)
    }
    for i in 0..<randomFiles { try put("data/part\(i).bin", rng.bytes(randomSize)) }
    try put("docs/notes.txt", rng.text(120_000))
    try put("docs/log.txt", rng.text(600_000))
    try put("docs/private.key", rng.bytes(3000), mode: 0o600)
    try put("empty", [])
    try FileManager.default.createDirectory(atPath: root + "/deep/er/still", withIntermediateDirectories: true)
    try put("deep/er/still/leaf.txt", Array("leaf\n".utf8))
    try FileManager.default.createSymbolicLink(atPath: root + "/docs/link", withDestinationPath: "notes.txt")
    return total
}

struct NodeInfo: Equatable, CustomStringConvertible {
    var type: String
    var permissions: UInt32
    var size: UInt64
    var mtime: Int64
    var link: String?
    var content: String?
    var description: String {
        "\(type) \(String(permissions, radix: 8)) size \(size) mtime \(mtime)" + (link.map { " -> \($0)" } ?? "") + (content.map { " sha256 \($0.prefix(12))" } ?? "")
    }
}

/// Relative path → what a restore must reproduce.
func listTree(_ root: String) throws -> [String: NodeInfo] {
    var out: [String: NodeInfo] = [:]
    func visit(_ rel: String) throws {
        let path = rel.isEmpty ? root : root + "/" + rel
        var st = stat()
        guard lstat(path, &st) == 0 else { throw SystemError(errno: errno, operation: "lstat", path: path) }
        var info = NodeInfo(type: "other", permissions: UInt32(st.st_mode) & 0o7777, size: 0, mtime: Int64(st.st_mtim.tv_sec), link: nil, content: nil)
        switch st.st_mode & S_IFMT {
        case S_IFDIR:
            info.type = "directory"
            info.mtime = 0  // a directory's mtime changes while its children are restored; not compared
            out[rel] = info
            for name in try FileManager.default.contentsOfDirectory(atPath: path) { try visit(rel.isEmpty ? name : rel + "/" + name) }
            return
        case S_IFLNK:
            info.type = "symlink"
            info.link = try FileManager.default.destinationOfSymbolicLink(atPath: path)
        case S_IFREG:
            info.type = "file"
            info.size = UInt64(st.st_size)
            info.content = SHA256Hasher.hash(try readFile(path)).hex
        default: break
        }
        out[rel] = info
    }
    try visit("")
    return out
}

func assertSameTree(_ expected: [String: NodeInfo], _ actual: [String: NodeInfo], _ what: String,
                    file: StaticString = #filePath, line: UInt = #line) {
    var problems: [String] = []
    for key in Set(expected.keys).union(actual.keys).sorted() {
        switch (expected[key], actual[key]) {
        case let (e?, a?) where e != a: problems.append("\(key.isEmpty ? "(root)" : key): source \(e), restored \(a)")
        case (_?, nil): problems.append("\(key) is missing")
        case (nil, _?): problems.append("\(key) is extra")
        default: break
        }
    }
    XCTAssert(problems.isEmpty, "\(what) differs from the source:\n  " + problems.prefix(20).joined(separator: "\n  "), file: file, line: line)
}

// CommandResult, RunningCommand and AccordBinary are in AccordTestSupport.

/// What `accord sync --json` prints.
struct SyncJSON: Decodable {
    var snapshots: Int
    var blobs: Int
    var payloadBytes: UInt64
    var wireBytesSent: UInt64
    var wireBytesReceived: UInt64
    var seconds: Double
}

// MARK: The base test case

class SyncTestCase: XCTestCase {
    var scratch: ScratchDirectory!
    var source: String { scratch.sub("src") }
    var sourceRepo: String { scratch.sub("src-repo") }

    override func setUpWithError() throws {
        try super.setUpWithError()
        guard AccordBinary.isBuilt else {
            XCTFail("accord binary not found at \(AccordBinary.path): run `swift build --build-tests` or set ACCORD_BIN")
            throw XCTSkip("no accord binary")
        }
        scratch = try ScratchDirectory(String(describing: type(of: self)).lowercased())
    }

    override func tearDown() {
        scratch?.remove()
        super.tearDown()
    }

    func start(_ args: [String]) throws -> RunningCommand {
        try AccordBinary.start(args, outputDirectory: scratch.path)
    }

    @discardableResult
    func accord(_ args: [String], timeout: Double = 120) throws -> CommandResult {
        try start(args).finish(timeout: timeout)
    }

    /// Runs a command that must succeed, failing the test with its output otherwise.
    @discardableResult
    func accordOK(_ args: [String], timeout: Double = 120, file: StaticString = #filePath, line: UInt = #line) throws -> CommandResult {
        let r = try accord(args, timeout: timeout)
        XCTAssert(r.ok, "command failed:\n\(r)", file: file, line: line)
        return r
    }

    /// Backs up `source` into `sourceRepo`; returns the new snapshot's id and addedBytes.
    @discardableResult
    func backupSource(file: StaticString = #filePath, line: UInt = #line) throws -> (id: String, addedBytes: UInt64) {
        let r = try accordOK(["backup", "-d", sourceRepo, "-q", source], file: file, line: line)
        // A failed backup or an unreadable list is a failure of the test, never a skip.
        return try XCTUnwrap(try sourceSnapshots().last, "no snapshot after the backup:\n\(r)", file: file, line: line)
    }

    /// `snapshots list --json` of the source repository: (id, summary.addedBytes), oldest first.
    func sourceSnapshots() throws -> [(id: String, addedBytes: UInt64)] {
        let r = try accordOK(["snapshots", "list", "-d", sourceRepo, "--json"])
        let list = (try JSONSerialization.jsonObject(with: Data(r.stdout.utf8))) as? [[String: Any]] ?? []
        return list.map { s in
            let summary = s["summary"] as? [String: Any] ?? [:]
            return (s["id"] as? String ?? "", (summary["addedBytes"] as? NSNumber)?.uint64Value ?? 0)
        }
    }

    func decodeSync(_ r: CommandResult, file: StaticString = #filePath, line: UInt = #line) throws -> SyncJSON {
        do { return try JSONDecoder().decode(SyncJSON.self, from: Data(r.stdout.utf8)) } catch {
            XCTFail("sync --json printed no statistics (\(error)):\n\(r)", file: file, line: line)
            throw error
        }
    }

    /// `check --read-data` passes on `repo`, and `restore latest` from it equals the source tree.
    func assertRestoreMatchesSource(from repo: String, label: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let check = try accord(["check", "--read-data", "-d", repo])
        XCTAssert(check.ok && check.stdout.contains("no errors found"), "check --read-data on the destination failed:\n\(check)", file: file, line: line)
        let target = scratch.sub("restored-\(label)")
        try accordOK(["restore", "-d", repo, "latest", "--target", target, "-q"], file: file, line: line)
        assertSameTree(try listTree(source), try listTree(target + source), "the tree restored from \(repo)", file: file, line: line)
        try? FileManager.default.removeItem(atPath: target)
    }

    /// Waits until no process holds a lock on `repo` (the destination's `accord serve` has ended).
    func waitForUnlocked(_ repo: String, timeout: Double = 10) {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let locks = (try? FileManager.default.contentsOfDirectory(atPath: repo + "/locks")) ?? []
            if locks.isEmpty { return }
            usleep(20_000)
        }
    }
}
