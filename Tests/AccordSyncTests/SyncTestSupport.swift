// Helpers for the sync tests: deterministic trees and the sync test case.
// Scratch directories, the tree comparer and the runner of the built
// `accord` binary (STYLE.md item 14) are in AccordTestSupport.
import Foundation
@_exported import AccordTestSupport
import XCTest
import AccordCore
import AccordRuntime
#if canImport(Glibc)
import Glibc
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
    regularFiles(under: repo + "/data").filter { PackID(hex: ($0 as NSString).lastPathComponent) != nil }
}

func snapshotFiles(of repo: String) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: repo + "/snapshots")) ?? []).filter { SnapshotID(hex: $0) != nil }.sorted()
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

class SyncTestCase: AccordTestCase {
    var source: String { scratch.sub("src") }
    var sourceRepo: String { scratch.sub("src-repo") }

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
        assertSameTree(try listTree(source, .fileSeconds), try listTree(target + source, .fileSeconds), "the tree restored from \(repo)",
                       file: file, line: line)
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
