// The test case every command-line test derives from (a scratch directory,
// a repository, the built `accord` run as a user runs it, and in-process
// inspection of what a command left in it), and the file helpers they share.
// Trees: Trees.swift and SourceTree.swift; the binary: AccordProcess.swift.
import Foundation
import AccordRuntime
import XCTest
import AccordCore
#if canImport(Glibc)
import Glibc
#endif

// MARK: Deterministic data

extension SeededRandom {
    /// Compressible, text-like bytes: lowercase words of random letters,
    /// spaces and newlines (about 5 bits of entropy a byte, so deflate has
    /// real work to do and each call gives new content). `SourceTree`'s text.
    public mutating func letterText(_ n: Int) -> [UInt8] {
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

public var slowTestsEnabled: Bool { ProcessInfo.processInfo.environment["ACCORD_SLOW_TESTS"] == "1" }

// MARK: Files

public enum Files {
    public static func write(_ path: String, _ bytes: [UInt8], mode: UInt32 = 0o644) throws {
        let fd = try Sys.open(path, Sys.O_WRONLY | Sys.O_CREAT | Sys.O_TRUNC, mode: mode)
        defer { Sys.close(fd) }
        try Sys.writeAll(fd, bytes, path: path)
        try Sys.fchmod(fd, mode: mode, path: path)
    }

    public static func append(_ path: String, _ bytes: [UInt8]) throws {
        let fd = try Sys.open(path, Sys.O_WRONLY | Sys.O_APPEND)
        defer { Sys.close(fd) }
        try Sys.writeAll(fd, bytes, path: path)
    }

    public static func read(_ path: String) throws -> [UInt8] { try AtomicFile.read(path) }

    public static func size(_ path: String) -> Int { (try? Sys.lstat(path)).map { Int($0.size) } ?? -1 }

    public static func exists(_ path: String) -> Bool { (try? Sys.lstat(path)) != nil }

    public static func mkdir(_ path: String) throws {
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    /// XORs one byte in place.
    public static func flipByte(_ path: String, at offset: Int, xor: UInt8 = 0x5a) throws {
        try AccordTestSupport.flipByte(inFile: path, at: Int64(offset), xor: xor)
    }

    public static func truncate(_ path: String, to size: Int) throws {
        let fd = try Sys.open(path, Sys.O_WRONLY)
        defer { Sys.close(fd) }
        try Sys.ftruncate(fd, Int64(size), path: path)
    }

    /// `cp -a`: a byte-for-byte copy of a repository, modes and times kept.
    public static func copyTree(_ from: String, to: String) throws {
        let r = try runProcess("/bin/cp", ["-a", from, to])
        guard r.ok else { throw SystemError(errno: EIO, operation: "cp -a (\(r.stderr))", path: from) }
    }

    /// Every regular file under `dir` (recursively), sorted.
    public static func regularFiles(under dir: String) -> [String] {
        guard let e = FileManager.default.enumerator(atPath: dir) else { return [] }
        var out: [String] = []
        while let rel = e.nextObject() as? String {
            let p = dir + "/" + rel
            if let st = try? Sys.lstat(p), st.isRegular { out.append(p) }
        }
        return out.sorted()
    }

    public static func bytes(under dir: String) -> UInt64 {
        regularFiles(under: dir).reduce(0) { $0 + UInt64(max(0, size($1))) }
    }
}

// MARK: The binary with a scratch directory for its output

/// `AccordBinary` for callers that hold a scratch directory (the engine suite's spelling).
public enum AccordCLI {
    public static var binary: String? { AccordBinary.isBuilt ? AccordBinary.path : nil }

    public static func requireBinary(file: StaticString = #filePath, line: UInt = #line) throws -> String {
        try AccordBinary.require(file: file, line: line)
    }

    public static func start(_ args: [String], asUser: (uid: UInt32, gid: UInt32)? = nil, cwd: String? = nil,
                             openFileLimit: Int? = nil, scratch: ScratchDirectory) throws -> RunningCommand {
        try AccordBinary.start(args, outputDirectory: scratch.path, asUser: asUser, cwd: cwd, openFileLimit: openFileLimit)
    }

    public static func finish(_ child: RunningCommand, timeout: Double = 180) -> CommandResult { child.finish(timeout: timeout) }

    @discardableResult
    public static func run(_ args: [String], asUser: (uid: UInt32, gid: UInt32)? = nil, cwd: String? = nil,
                           openFileLimit: Int? = nil, scratch: ScratchDirectory, timeout: Double = 180) throws -> CommandResult {
        finish(try start(args, asUser: asUser, cwd: cwd, openFileLimit: openFileLimit, scratch: scratch), timeout: timeout)
    }
}

/// What `accord backup --json` prints.
public struct BackupJSON: Decodable {
    public var id: String
    public var paths: [String]
    public var summary: Snapshot.Summary
}

/// The snapshot JSON of `backup --json` (all of stdout).
public func decodeBackupJSON(_ r: CommandResult, file: StaticString = #filePath, line: UInt = #line) throws -> BackupJSON {
    do { return try JSONDecoder().decode(BackupJSON.self, from: Data(r.stdoutBytes)) } catch {
        XCTFail("backup --json printed no snapshot JSON (\(error)):\n\(r)", file: file, line: line)
        throw error
    }
}

// MARK: A test case with a scratch directory and a repository

/// The base of every test that runs the binary: a scratch directory per
/// test (removed after it), a repository path in it, and the runners.
open class AccordTestCase: XCTestCase {
    public var scratch: ScratchDirectory!
    public var repo: String { scratch.sub("repo") }

    open override func setUpWithError() throws {
        try super.setUpWithError()
        _ = try AccordBinary.require()
        scratch = try ScratchDirectory(String(describing: type(of: self)))
    }

    open override func tearDown() {
        scratch?.remove()
        super.tearDown()
    }

    /// Added to the environment of every accord this test starts (`useEncryption` fills it).
    public var accordEnvironment: [String: String] = [:]

    public func start(_ args: [String], environment: [String: String] = [:]) throws -> RunningCommand {
        try AccordBinary.start(args, outputDirectory: scratch.path, environment: accordEnvironment.merging(environment) { $1 })
    }

    @discardableResult
    public func accord(_ args: [String], asUser: (uid: UInt32, gid: UInt32)? = nil, cwd: String? = nil,
                       environment: [String: String] = [:], timeout: Double = 240) throws -> CommandResult {
        try AccordBinary.run(args, outputDirectory: scratch.path, environment: accordEnvironment.merging(environment) { $1 },
                             asUser: asUser, cwd: cwd, timeout: timeout)
    }

    // MARK: Encrypted repositories

    /// The passphrase `useEncryption` writes unless given another.
    public static let testPassphrase = "correct horse battery staple"

    /// Makes every accord this test starts create encrypted repositories and
    /// open them with a password file (0600, in the scratch directory) holding
    /// `passphrase`, and new key files cheap (scrypt N = 2^14). Returns the file.
    @discardableResult
    public func useEncryption(passphrase: String = AccordTestCase.testPassphrase) throws -> String {
        let file = try writePasswordFile(passphrase)
        accordEnvironment["ACCORD_ENCRYPTION"] = "aes-256-gcm"
        accordEnvironment["ACCORD_PASSWORD_FILE"] = file
        accordEnvironment["ACCORD_SCRYPT_N"] = "16384"
        return file
    }

    /// A new password file (mode 0600 unless given) holding `passphrase` and a newline.
    public func writePasswordFile(_ passphrase: String, mode: UInt32 = 0o600) throws -> String {
        let file = scratch.sub("password-" + hexString(Sys.randomBytes(4)))
        try Files.write(file, Array((passphrase + "\n").utf8), mode: mode)
        return file
    }

    @discardableResult
    public func accord(_ args: String..., asUser: (uid: UInt32, gid: UInt32)? = nil, cwd: String? = nil) throws -> CommandResult {
        try accord(args, asUser: asUser, cwd: cwd)
    }

    /// Runs a command that must succeed (exit 0, no signal), failing the test with its output otherwise.
    @discardableResult
    public func accordOK(_ args: [String], environment: [String: String] = [:], timeout: Double = 240,
                         file: StaticString = #filePath, line: UInt = #line) throws -> CommandResult {
        let r = try accord(args, environment: environment, timeout: timeout)
        XCTAssertTrue(r.ok, "accord \(args.joined(separator: " ")) failed:\n\(r)", file: file, line: line)
        return r
    }

    @discardableResult
    public func accordOK(_ args: String..., file: StaticString = #filePath, line: UInt = #line) throws -> CommandResult {
        try accordOK(args, file: file, line: line)
    }

    /// `accord backup --json -d repo paths…`, which must succeed; returns the snapshot (all of stdout is its JSON).
    public func backup(_ paths: String..., extra: [String] = [], file: StaticString = #filePath, line: UInt = #line) throws -> BackupJSON {
        let args = ["backup", "-d", repo, "--json"] + extra + paths
        let r = try accord(args)
        XCTAssertEqual(r.status, 0, "accord \(args.joined(separator: " ")) failed:\n\(r)", file: file, line: line)
        return try decodeBackupJSON(r, file: file, line: line)
    }

    /// The manifest entries of a snapshot (latest by default).
    public func manifestEntries(_ repository: Repository, snapshot: SnapshotID? = nil) throws -> [ManifestEntry] {
        try manifestEntries(repository, try snapshot ?? repository.resolveSnapshot("latest"))
    }

    public func snapshotFiles() -> [String] {
        ((try? Sys.listDirectory(repo + "/snapshots")) ?? []).filter { SnapshotID(hex: $0) != nil }
    }

    /// Snapshot file names of `repo`, sorted (the sync suite's spelling of `snapshotNames`).
    public func snapshotFiles(of repo: String) -> [String] { snapshotNames(repo) }

    /// Complete pack files of `repo` (a pack appears under data/ after its rename), sorted.
    public func packFiles(of repo: String) -> [String] { packFiles(repo) }

    /// `accord check` (no data read) must pass; notes about unindexed packs are allowed.
    @discardableResult
    public func assertCheckPasses(_ repository: String? = nil, readData: Bool = false, _ context: String = "",
                           file: StaticString = #filePath, line: UInt = #line) throws -> CommandResult {
        let args = ["check", "-d", repository ?? repo] + (readData ? ["--read-data"] : [])
        let r = try accord(args)
        XCTAssertTrue(r.ok && !r.stderr.contains("error:"), "\(context): check fails:\n\(r)", file: file, line: line)
        return r
    }

    /// `accord backup --json`, which must succeed; its last line of output is the snapshot.
    public func backup(_ paths: [String], repository: String? = nil, extra: [String] = [],
                file: StaticString = #filePath, line: UInt = #line) throws -> BackupJSON {
        let args = ["backup", "-d", repository ?? repo, "--json"] + extra + paths
        let r = try accord(args)
        guard r.ok else {
            XCTFail("\(r)", file: file, line: line)
            throw XCTSkip("backup failed")
        }
        return try decodeBackup(r, file: file, line: line)
    }

    public func decodeBackup(_ r: CommandResult, file: StaticString = #filePath, line: UInt = #line) throws -> BackupJSON {
        let lastLine = r.stdout.split(separator: "\n").last.map(String.init) ?? ""
        do { return try JSONDecoder().decode(BackupJSON.self, from: Data(lastLine.utf8)) } catch {
            XCTFail("backup --json printed no snapshot JSON (\(error)):\n\(r)", file: file, line: line)
            throw error
        }
    }

    /// Restores a snapshot (all of it, or `includes`) into a fresh directory
    /// and compares the tree under `root` with `expected`.
    public func assertRestores(_ snapshot: String, root: String, expected: TreeListing, repository: String? = nil,
                        includes: [String] = [], _ what: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let target = scratch.sub("restore-" + hexString(Sys.randomBytes(4)))
        defer { try? FileManager.default.removeItem(atPath: target) }
        let r = try accord(["restore", "-d", repository ?? repo, snapshot, "--target", target, "-q"] + includes.flatMap { ["--include", $0] })
        guard r.ok else { return XCTFail("\(what): restore fails:\n\(r)", file: file, line: line) }
        var actual = try listTree(target + root, .modesTimesAndContent)
        var wanted = expected
        if !includes.isEmpty {
            // Compare only the included files (their directories are created but not all restored).
            let rels = Set(includes.map { Array($0.utf8.dropFirst(root.utf8.count + 1)) })
            wanted = wanted.filter { rels.contains($0.key) }
            actual = actual.filter { rels.contains($0.key) }
        }
        assertSameTree(wanted, actual, what, file: file, line: line)
    }

    // MARK: The repository on disk

    /// `accord init`, then (for tests that need many pack boundaries) a
    /// smaller `packSize` written into the config before anything else.
    /// With `chunkerSeed`, chunk boundaries (and, with one thread, pack ids) are the same on every run.
    public func initRepository(_ path: String? = nil, packSize: Int? = nil, chunkerSeed: UInt64? = nil) throws {
        let dir = path ?? repo
        try accordOK("init", "-d", dir)
        if packSize != nil || chunkerSeed != nil { try editConfig(repository: dir, packSize: packSize, chunkerSeed: chunkerSeed) }
    }

    public func editConfig(repository: String, packSize: Int?, chunkerSeed: UInt64?) throws {
        let configPath = repository + "/config"
        var config = try JSONDecoder().decode(RepositoryConfig.self, from: Data(try Files.read(configPath)))
        if let size = packSize { config.packSize = size }
        if let seed = chunkerSeed { config.chunkerSeed = String(format: "%016llx", seed) }
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        try Files.write(configPath, Array(try e.encode(config)) + [0x0a], mode: 0o600)
    }

    public func packFiles(_ repository: String? = nil) -> [String] {
        let data = (repository ?? repo) + "/data"
        var out: [String] = []
        for sub in (try? Sys.listDirectory(data)) ?? [] where sub.count == 2 {
            for name in (try? Sys.listDirectory(data + "/" + sub)) ?? [] where PackID(hex: name) != nil { out.append(data + "/" + sub + "/" + name) }
        }
        return out.sorted()
    }

    public func packIDs(_ repository: String? = nil) -> Set<PackID> {
        Set(packFiles(repository).compactMap { PackID(hex: String($0.split(separator: "/").last!)) })
    }

    /// Object names (64 lowercase hex digits) in `dir`, whichever kind it holds.
    public func names(in dir: String) -> [String] {
        ((try? Sys.listDirectory(dir)) ?? []).filter { ID(hex: $0) != nil }.sorted()
    }

    public func snapshotNames(_ repository: String? = nil) -> [String] { names(in: (repository ?? repo) + "/snapshots") }
    public func indexNames(_ repository: String? = nil) -> [String] { names(in: (repository ?? repo) + "/index") }
    public func packPath(_ id: PackID, _ repository: String? = nil) -> String {
        (repository ?? repo) + "/data/" + String(id.hex.prefix(2)) + "/" + id.hex
    }

    /// Bytes of packs, index files and snapshots: what prune can reclaim.
    public func repositoryBytes(_ repository: String? = nil) -> UInt64 {
        let r = repository ?? repo
        return Files.bytes(under: r + "/data") + Files.bytes(under: r + "/index") + Files.bytes(under: r + "/snapshots")
    }

    /// Opens the repository in-process to inspect it (never to write).
    public func openRepository(_ repository: String? = nil) throws -> Repository {
        let r = try Repository.open(at: repository ?? repo)
        try r.loadIndex()
        return r
    }

    public func manifestEntries(_ r: Repository, _ snapshot: SnapshotID) throws -> [ManifestEntry] {
        var reader = r.manifestReader(try r.loadSnapshot(snapshot))
        var out: [ManifestEntry] = []
        while let e = try reader.next() { out.append(e) }
        return out
    }

    /// Every blob a snapshot refers to (manifest and content).
    public func referencedBlobs(_ r: Repository, _ snapshot: SnapshotID) throws -> Set<BlobID> {
        var out = Set(try r.loadSnapshot(snapshot).manifestIDs)
        for e in try manifestEntries(r, snapshot) { out.formUnion(e.blobs) }
        return out
    }

    /// Blob ids in every readable pack header on disk (indexed or not).
    public func blobsInPackHeaders(_ repository: String? = nil) -> [BlobID: UInt32] {
        var out: [BlobID: UInt32] = [:]
        for p in packFiles(repository) {
            for e in (try? PackReader.readHeader(path: p)) ?? [] { out[e.id] = e.storedLength }
        }
        return out
    }

    /// Packs on disk that no index file names.
    public func unindexedPacks(_ repository: String? = nil) throws -> [PackID] {
        let r = try openRepository(repository)
        return packIDs(repository).filter { !r.index.containsPack($0) }.sorted()
    }
}
