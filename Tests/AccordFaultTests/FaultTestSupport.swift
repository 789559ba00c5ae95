// Shared helpers for the fault-injection suite: seeded data, scratch
// directories and files, and the test case every CLI test derives from
// (a scratch directory, a repository, and in-process inspection of what a
// command left in it). Trees: SourceTree.swift; the binary: AccordBinary.swift.
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
    /// Compressible, text-like bytes: lowercase words of random letters,
    /// spaces and newlines (about 5 bits of entropy a byte, so deflate has
    /// real work to do and each call gives new content).
    mutating func text(_ n: Int) -> [UInt8] {
        let alphabet = Array("etaoinshrdlucmfwypvbgkqjxz  \n,.e".utf8)   // 32 symbols
        var out = [UInt8](repeating: 0, count: n)
        out.withUnsafeMutableBufferPointer { o in
            alphabet.withUnsafeBufferPointer { a in
                var i = 0
                while i < n {
                    var r = next()
                    var k = 0
                    while k < 12 && i < n { o[i] = a[Int(r & 31)]; r >>= 5; i &+= 1; k &+= 1 }
                }
            }
        }
        return out
    }
}

var slowTestsEnabled: Bool { ProcessInfo.processInfo.environment["ACCORD_SLOW_TESTS"] == "1" }

// MARK: Files

/// A directory under /tmp, removed by `remove()`.
final class ScratchDirectory {
    let path: String

    init(_ label: String) throws {
        path = "/tmp/accord-fault-\(label)-" + hexString(Sys.randomBytes(5))
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    func sub(_ name: String) -> String { path + "/" + name }
    func remove() { try? FileManager.default.removeItem(atPath: path) }
}

enum Files {
    static func write(_ path: String, _ bytes: [UInt8], mode: UInt32 = 0o644) throws {
        let fd = try Sys.open(path, Sys.O_WRONLY | Sys.O_CREAT | Sys.O_TRUNC, mode: mode)
        defer { Sys.close(fd) }
        try Sys.writeAll(fd, bytes, path: path)
        try Sys.fchmod(fd, mode: mode, path: path)
    }

    static func append(_ path: String, _ bytes: [UInt8]) throws {
        let fd = try Sys.open(path, Sys.O_WRONLY | Sys.O_APPEND)
        defer { Sys.close(fd) }
        try Sys.writeAll(fd, bytes, path: path)
    }

    static func read(_ path: String) throws -> [UInt8] { try AtomicFile.read(path) }

    static func size(_ path: String) -> Int { (try? Sys.lstat(path)).map { Int($0.size) } ?? -1 }

    static func exists(_ path: String) -> Bool { (try? Sys.lstat(path)) != nil }

    static func mkdir(_ path: String) throws {
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    /// XORs one byte in place.
    static func flipByte(_ path: String, at offset: Int, xor: UInt8 = 0x5a) throws {
        try AccordTestSupport.flipByte(inFile: path, at: Int64(offset), xor: xor)
    }

    static func truncate(_ path: String, to size: Int) throws {
        let fd = try Sys.open(path, Sys.O_WRONLY)
        defer { Sys.close(fd) }
        try Sys.ftruncate(fd, Int64(size), path: path)
    }

    /// `cp -a`: a byte-for-byte copy of a repository, modes and times kept.
    static func copyTree(_ from: String, to: String) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/cp")
        p.arguments = ["-a", from, to]
        try p.run()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw SystemError(errno: EIO, operation: "cp -a", path: from) }
    }

    /// Every regular file under `dir` (recursively), sorted.
    static func regularFiles(under dir: String) -> [String] {
        guard let e = FileManager.default.enumerator(atPath: dir) else { return [] }
        var out: [String] = []
        while let rel = e.nextObject() as? String {
            let p = dir + "/" + rel
            if let st = try? Sys.lstat(p), st.isRegular { out.append(p) }
        }
        return out.sorted()
    }

    static func bytes(under dir: String) -> UInt64 {
        regularFiles(under: dir).reduce(0) { $0 + UInt64(max(0, size($1))) }
    }
}

// MARK: A test case with a scratch directory and a repository

class FaultTestCase: XCTestCase {
    var scratch: ScratchDirectory!
    var repo: String { scratch.sub("repo") }

    override func setUpWithError() throws {
        try super.setUpWithError()
        guard AccordBinary.isBuilt else {
            XCTFail("accord binary not found: run `swift build --build-tests` or set ACCORD_BIN")
            throw XCTSkip("no accord binary")
        }
        scratch = try ScratchDirectory(String(describing: type(of: self)))
    }

    override func tearDown() {
        scratch?.remove()
        super.tearDown()
    }

    func start(_ args: [String]) throws -> RunningCommand {
        try AccordBinary.start(args, outputDirectory: scratch.path)
    }

    @discardableResult
    func accord(_ args: [String], timeout: Double = 240) throws -> CommandResult {
        try start(args).finish(timeout: timeout)
    }

    @discardableResult
    func accord(_ args: String...) throws -> CommandResult { try accord(args) }

    /// Runs a command that must exit 0.
    @discardableResult
    func accordOK(_ args: [String], file: StaticString = #filePath, line: UInt = #line) throws -> CommandResult {
        let r = try accord(args)
        XCTAssertTrue(r.ok, "\(r)", file: file, line: line)
        return r
    }

    @discardableResult
    func accordOK(_ args: String..., file: StaticString = #filePath, line: UInt = #line) throws -> CommandResult {
        try accordOK(args, file: file, line: line)
    }

    /// `accord check` (no data read) must pass; notes about unindexed packs are allowed.
    @discardableResult
    func assertCheckPasses(_ repository: String? = nil, readData: Bool = false, _ context: String = "",
                           file: StaticString = #filePath, line: UInt = #line) throws -> CommandResult {
        let args = ["check", "-d", repository ?? repo] + (readData ? ["--read-data"] : [])
        let r = try accord(args)
        XCTAssertTrue(r.ok && !r.stderr.contains("error:"), "\(context): check fails:\n\(r)", file: file, line: line)
        return r
    }

    /// `accord backup --json`, which must succeed.
    func backup(_ paths: [String], repository: String? = nil, extra: [String] = [],
                file: StaticString = #filePath, line: UInt = #line) throws -> BackupJSON {
        let args = ["backup", "-d", repository ?? repo, "--json"] + extra + paths
        let r = try accord(args)
        guard r.ok else {
            XCTFail("\(r)", file: file, line: line)
            throw XCTSkip("backup failed")
        }
        return try decodeBackup(r, file: file, line: line)
    }

    func decodeBackup(_ r: CommandResult, file: StaticString = #filePath, line: UInt = #line) throws -> BackupJSON {
        let lastLine = r.stdout.split(separator: "\n").last.map(String.init) ?? ""
        do { return try JSONDecoder().decode(BackupJSON.self, from: Data(lastLine.utf8)) } catch {
            XCTFail("backup --json printed no snapshot JSON (\(error)):\n\(r)", file: file, line: line)
            throw error
        }
    }

    /// Restores a snapshot (all of it, or `includes`) into a fresh directory
    /// and compares the tree under `root` with `expected`.
    func assertRestores(_ snapshot: String, root: String, expected: TreeListing, repository: String? = nil,
                        includes: [String] = [], _ what: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let target = scratch.sub("restore-" + hexString(Sys.randomBytes(4)))
        defer { try? FileManager.default.removeItem(atPath: target) }
        let r = try accord(["restore", "-d", repository ?? repo, snapshot, "--target", target, "-q"] + includes.flatMap { ["--include", $0] })
        guard r.ok else { return XCTFail("\(what): restore fails:\n\(r)", file: file, line: line) }
        var actual = try listTree(target + root)
        var wanted = expected
        if !includes.isEmpty {
            // Compare only the included files (their directories are created but not all restored).
            let rels = Set(includes.map { String($0.dropFirst(root.count + 1)) })
            wanted = wanted.filter { rels.contains($0.key) }
            actual = actual.filter { rels.contains($0.key) }
        }
        assertSameTree(wanted, actual, what, file: file, line: line)
    }

    // MARK: The repository on disk

    /// `accord init`, then (for tests that need many pack boundaries) a
    /// smaller `packSize` written into the config before anything else.
    /// With `chunkerSeed`, chunk boundaries (and, with one thread, pack ids) are the same on every run.
    func initRepository(_ path: String? = nil, packSize: Int? = nil, chunkerSeed: UInt64? = nil) throws {
        let dir = path ?? repo
        try accordOK("init", "-d", dir)
        if packSize != nil || chunkerSeed != nil { try editConfig(repository: dir, packSize: packSize, chunkerSeed: chunkerSeed) }
    }

    func editConfig(repository: String, packSize: Int?, chunkerSeed: UInt64?) throws {
        let configPath = repository + "/config"
        var config = try JSONDecoder().decode(RepositoryConfig.self, from: Data(try Files.read(configPath)))
        if let size = packSize { config.packSize = size }
        if let seed = chunkerSeed { config.chunkerSeed = String(format: "%016llx", seed) }
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        try Files.write(configPath, Array(try e.encode(config)) + [0x0a], mode: 0o600)
    }

    func packFiles(_ repository: String? = nil) -> [String] {
        let data = (repository ?? repo) + "/data"
        var out: [String] = []
        for sub in (try? Sys.listDirectory(data)) ?? [] where sub.count == 2 {
            for name in (try? Sys.listDirectory(data + "/" + sub)) ?? [] where ID(hex: name) != nil { out.append(data + "/" + sub + "/" + name) }
        }
        return out.sorted()
    }

    func packIDs(_ repository: String? = nil) -> Set<PackID> {
        Set(packFiles(repository).compactMap { ID(hex: String($0.split(separator: "/").last!)) })
    }

    func names(in dir: String) -> [String] {
        ((try? Sys.listDirectory(dir)) ?? []).filter { ID(hex: $0) != nil }.sorted()
    }

    func snapshotNames(_ repository: String? = nil) -> [String] { names(in: (repository ?? repo) + "/snapshots") }
    func indexNames(_ repository: String? = nil) -> [String] { names(in: (repository ?? repo) + "/index") }
    func packPath(_ id: PackID, _ repository: String? = nil) -> String {
        (repository ?? repo) + "/data/" + String(id.hex.prefix(2)) + "/" + id.hex
    }

    /// Bytes of packs, index files and snapshots: what prune can reclaim.
    func repositoryBytes(_ repository: String? = nil) -> UInt64 {
        let r = repository ?? repo
        return Files.bytes(under: r + "/data") + Files.bytes(under: r + "/index") + Files.bytes(under: r + "/snapshots")
    }

    /// Opens the repository in-process to inspect it (never to write).
    func openRepository(_ repository: String? = nil) throws -> Repository {
        let r = try Repository.open(at: repository ?? repo)
        try r.loadIndex()
        return r
    }

    func manifestEntries(_ r: Repository, _ snapshot: SnapshotID) throws -> [ManifestEntry] {
        var reader = r.manifestReader(try r.loadSnapshot(snapshot))
        var out: [ManifestEntry] = []
        while let e = try reader.next() { out.append(e) }
        return out
    }

    /// Every blob a snapshot refers to (manifest and content).
    func referencedBlobs(_ r: Repository, _ snapshot: SnapshotID) throws -> Set<BlobID> {
        var out = Set(try r.loadSnapshot(snapshot).manifestIDs)
        for e in try manifestEntries(r, snapshot) { out.formUnion(e.blobs) }
        return out
    }

    /// Blob ids in every readable pack header on disk (indexed or not).
    func blobsInPackHeaders(_ repository: String? = nil) -> [BlobID: UInt32] {
        var out: [BlobID: UInt32] = [:]
        for p in packFiles(repository) {
            for e in (try? PackReader.readHeader(path: p)) ?? [] { out[e.id] = e.storedLength }
        }
        return out
    }

    /// Packs on disk that no index file names.
    func unindexedPacks(_ repository: String? = nil) throws -> [PackID] {
        let r = try openRepository(repository)
        return packIDs(repository).filter { !r.index.containsPack($0) }.sorted()
    }
}
