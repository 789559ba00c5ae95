// Shared helpers for the engine and command-line tests: temporary
// directories, trees built with raw (byte) names through `Sys`, a listing
// that compares two trees attribute by attribute, and a runner for the
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
    /// Compressible, text-like bytes: words from a small vocabulary.
    mutating func text(_ n: Int) -> [UInt8] {
        let words: [[UInt8]] = ["backup", "restore", "chunk", "pack", "index", "manifest", "snapshot", "anaconda",
                                "storage", "postgres", "the", "a", "of", "to", "and", "deduplicated", "\n"].map { Array(($0 + " ").utf8) }
        var out = [UInt8](repeating: 0, count: n + 16)
        var i = 0
        out.withUnsafeMutableBufferPointer { o in
            while i < n {
                var r = next()
                for _ in 0..<8 where i < n {
                    for b in words[Int(r & 0xf) % words.count] { o[i] = b; i &+= 1 }
                    r >>= 8
                }
            }
        }
        return Array(out.prefix(n))
    }
}

/// Fast, non-reproducible bytes from the kernel (for bulk data whose exact value never matters).
func kernelRandomBytes(_ n: Int) -> [UInt8] { Sys.randomBytes(n) }

// MARK: Paths

extension Array where Element == UInt8 {
    /// `self + "/" + name`.
    func appending(_ name: String) -> RawPath { self + [0x2f] + Array(name.utf8) }
    func appending(raw name: RawPath) -> RawPath { self + [0x2f] + name }
    var string: String { String(decoding: self, as: UTF8.self) }
}

/// A directory under the system temporary directory, removed by `remove()`
/// (also when it holds mode-000 directories or names that are not UTF-8).
final class TempDirectory {
    let path: String
    var raw: RawPath { Array(path.utf8) }

    init(_ label: String) throws {
        let base = FileManager.default.temporaryDirectory.path
        path = (base.hasSuffix("/") ? String(base.dropLast()) : base) + "/accord-test-\(label)-" + hexString(Sys.randomBytes(6))
        try Sys.mkdir(path, mode: 0o755)
        try Sys.chmod(raw, mode: 0o755)
    }

    func sub(_ name: String) -> String { path + "/" + name }

    func remove() { removeTree(raw) }
}

/// `rm -rf` over raw paths.
func removeTree(_ path: RawPath) {
    guard let st = try? Sys.lstat(path) else { return }
    if st.isDirectory {
        try? Sys.chmod(path, mode: 0o700)
        for name in (try? Sys.listDirectory(path)) ?? [] { removeTree(path.appending(raw: name)) }
        try? Sys.rmdir(path)
    } else {
        try? Sys.unlink(path)
    }
}

// MARK: Building trees

enum TreeBuilder {
    static func mkdir(_ path: RawPath, mode: UInt32 = 0o755) throws {
        try Sys.mkdir(path, mode: 0o755)
        try Sys.chmod(path, mode: mode)
    }

    static func write(_ path: RawPath, _ bytes: [UInt8], mode: UInt32 = 0o644) throws {
        let fd = try Sys.open(path, Sys.O_WRONLY | Sys.O_CREAT | Sys.O_TRUNC, mode: 0o600)
        defer { Sys.close(fd) }
        try Sys.writeAll(fd, bytes, path: path.string)
        try Sys.fchmod(fd, mode: mode, path: path.string)
    }

    /// A file of `size` bytes that is all hole except `pieces` (offset, bytes).
    static func writeSparse(_ path: RawPath, size: Int64, pieces: [(Int64, [UInt8])]) throws {
        let fd = try Sys.open(path, Sys.O_WRONLY | Sys.O_CREAT | Sys.O_TRUNC, mode: 0o644)
        defer { Sys.close(fd) }
        try Sys.ftruncate(fd, size, path: path.string)
        for (offset, bytes) in pieces {
            try bytes.withUnsafeBytes { try Sys.pwriteAll(fd, $0, offset, path: path.string) }
        }
    }

    static func read(_ path: RawPath) throws -> [UInt8] {
        let fd = try Sys.open(path, Sys.O_RDONLY)
        defer { Sys.close(fd) }
        let size = Int(try Sys.fstat(fd, path: path.string).size)
        var out = [UInt8](repeating: 0, count: size)
        let n = try out.withUnsafeMutableBytes { try Sys.preadFully(fd, $0.baseAddress!, size, 0, path: path.string) }
        if n < size { out.removeLast(size - n) }
        return out
    }

    /// SHA-256 of a file's content, streamed.
    static func hash(_ path: RawPath) throws -> ID {
        let fd = try Sys.open(path, Sys.O_RDONLY)
        defer { Sys.close(fd) }
        let hasher = SHA256Hasher()
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let n = try buffer.withUnsafeMutableBytes { try Sys.read(fd, $0.baseAddress!, $0.count, path: path.string) }
            if n == 0 { return hasher.finalize() }
            buffer.withUnsafeBytes { hasher.update(data: UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
        }
    }

    static func mkfifo(_ path: RawPath) throws {
        var c = path; c.append(0)
        let r = c.withUnsafeBufferPointer { $0.withMemoryRebound(to: CChar.self) { Glibc.mkfifo($0.baseAddress!, 0o644) } }
        if r != 0 { throw SystemError(errno: errno, operation: "mkfifo", path: path.string) }
    }

    /// Binds a unix socket at `path` and closes it: the socket file stays.
    static func makeSocket(_ path: String) throws {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw SystemError(errno: errno, operation: "socket", path: path) }
        defer { close(fd) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else {
            throw SystemError(errno: ENAMETOOLONG, operation: "bind", path: path)
        }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
            raw[bytes.count] = 0
        }
        let r = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        if r != 0 { throw SystemError(errno: errno, operation: "bind", path: path) }
    }
}

// MARK: Comparing trees

/// Everything a restore must reproduce about one path.
struct NodeInfo: Equatable, CustomStringConvertible {
    var type: String
    var permissions: UInt32
    var uid: UInt32
    var gid: UInt32
    var size: UInt64
    var mtimeSec: Int64
    var mtimeNsec: Int64
    var linkTarget: RawPath?
    var contentID: ID?
    /// Regular files: the link count, and the first path (tree order) of the
    /// same inode, so two trees agree on which names share an inode.
    var nlink: UInt64?
    var hardlinkGroup: RawPath?
    /// Only `user.*` attributes (security.* ones depend on the host).
    var userXattrs: [String]

    var description: String {
        var s = "\(type) \(String(permissions, radix: 8)) \(uid):\(gid) size \(size) mtime \(mtimeSec).\(mtimeNsec)"
        if let t = linkTarget { s += " -> \(t.string)" }
        if let c = contentID { s += " content \(c.short)" }
        if let n = nlink { s += " nlink \(n)" }
        if let g = hardlinkGroup { s += " same inode as \(g.string)" }
        if !userXattrs.isEmpty { s += " xattrs \(userXattrs)" }
        return s
    }
}

/// Lists a tree: relative raw path ("" is the root itself) → what it is.
func listTree(_ root: RawPath) throws -> [RawPath: NodeInfo] {
    var out: [RawPath: NodeInfo] = [:]
    var inodes: [UInt64: [RawPath]] = [:]
    func visit(_ rel: RawPath) throws {
        let path = rel.isEmpty ? root : root + [0x2f] + rel
        let st = try Sys.lstat(path)
        var info = NodeInfo(type: "other", permissions: st.permissions, uid: st.uid, gid: st.gid, size: 0,
                            mtimeSec: st.mtimeSec, mtimeNsec: st.mtimeNsec, userXattrs: [])
        info.userXattrs = ((try? Sys.listXattrs(path)) ?? [])
            .filter { $0.name.starts(with: Array("user.".utf8)) }
            .map { $0.name.string + "=" + hexString($0.value) }
        if st.isDirectory {
            info.type = "directory"
            out[rel] = info
            for name in try Sys.listDirectory(path) { try visit(rel.isEmpty ? name : rel + [0x2f] + name) }
            return
        } else if st.isSymlink {
            info.type = "symlink"
            info.linkTarget = try Sys.readlink(path)
        } else if st.isRegular {
            info.type = "file"
            info.size = st.size
            info.contentID = try TreeBuilder.hash(path)
            info.nlink = st.nlink
            if st.nlink > 1 { inodes[st.inode, default: []].append(rel) }
        }
        out[rel] = info
    }
    try visit([])
    for (_, names) in inodes {
        let first = names.min(by: ManifestEntry.treeOrder)!
        for n in names { out[n]!.hardlinkGroup = first }
    }
    return out
}

/// Fails once per path that differs, naming it and both descriptions.
func assertSameTree(_ expected: [RawPath: NodeInfo], _ actual: [RawPath: NodeInfo],
                    file: StaticString = #filePath, line: UInt = #line) {
    for key in Set(expected.keys).union(actual.keys).sorted(by: ManifestEntry.treeOrder) {
        let name = key.isEmpty ? "(root)" : key.string.debugDescription
        switch (expected[key], actual[key]) {
        case let (e?, a?):
            XCTAssertEqual(e, a, "restored \(name) differs:\n  source:   \(e)\n  restored: \(a)", file: file, line: line)
        case (_?, nil):
            XCTFail("\(name) is missing from the restored tree", file: file, line: line)
        case (nil, _?):
            XCTFail("\(name) was restored but is not in the source", file: file, line: line)
        default: break
        }
    }
}

// MARK: Running the binary

struct CommandResult: CustomStringConvertible {
    var status: Int32
    /// True when the process died of a signal (a crash, or our SIGKILL); `status` is the signal.
    var signaled: Bool
    var stdoutBytes: [UInt8]
    var stderr: String
    var stdout: String { String(decoding: stdoutBytes, as: UTF8.self) }
    var description: String {
        "\(signaled ? "killed by signal" : "exit status") \(status)\n--- stdout ---\n\(stdout.prefix(4000))\n--- stderr ---\n\(stderr.prefix(4000))"
    }
}

/// A child process started with `posix_spawn` and reaped with `waitpid` by
/// us alone. (Foundation's `Process` was seen to miss the exit of a child
/// that crashed, leaving the test waiting on a zombie.)
final class Child {
    let pid: pid_t
    let stdoutPath: String
    let stderrPath: String
    private(set) var exitStatus: Int32?
    private(set) var exitSignal: Int32?

    init(pid: pid_t, stdoutPath: String, stderrPath: String) {
        self.pid = pid; self.stdoutPath = stdoutPath; self.stderrPath = stderrPath
    }

    /// Reaps the child if it has ended; true while it runs.
    var isRunning: Bool {
        if exitStatus != nil || exitSignal != nil { return false }
        var status: Int32 = 0
        let r = waitpid(pid, &status, WNOHANG)
        if r == 0 { return true }
        if r < 0 { exitStatus = -1; return false }   // not our child any more: treat as gone
        let sig = status & 0x7f
        if sig == 0 { exitStatus = (status >> 8) & 0xff } else if sig != 0x7f { exitSignal = sig } else { return true }
        return false
    }

    func kill(_ signal: Int32) { if isRunning { _ = Glibc.kill(pid, signal) } }
}

/// glibc ≥ 2.34's `posix_spawn_file_actions_addclosefrom_np`, which the Glibc
/// module does not export (its header guards it with `__USE_MISC`).
@_silgen_name("posix_spawn_file_actions_addclosefrom_np")
private func spawnActionsCloseFrom(_ actions: UnsafeMutablePointer<posix_spawn_file_actions_t>, _ from: Int32) -> Int32

/// Starts `executable args…`; stdout and stderr go to files, stdin is /dev/null.
func spawn(_ executable: String, _ args: [String], cwd: String? = nil, stdout: String, stderr: String) throws -> Child {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, stdout, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    posix_spawn_file_actions_addopen(&actions, 2, stderr, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    // The child starts with stdio only, as from a shell or cron: what the test
    // process holds (the harness's sockets, pipes of earlier tests) is not
    // accord's, and under `prlimit --nofile` it would count against accord's
    // limit (a full run once failed the 128-descriptor walk test that way).
    _ = spawnActionsCloseFrom(&actions, 3)
    var argv = [executable] + args
    if let dir = cwd { argv = ["/usr/bin/env", "--chdir=" + dir] + argv }
    var env = ProcessInfo.processInfo.environment
    env.removeValue(forKey: "ACCORD_REPOSITORY")
    let cArgs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
    let cEnv: [UnsafeMutablePointer<CChar>?] = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
    defer { for p in cArgs + cEnv { free(p) } }
    var pid: pid_t = 0
    let rc = posix_spawn(&pid, argv[0], &actions, nil, cArgs, cEnv)
    guard rc == 0 else { throw SystemError(errno: rc, operation: "posix_spawn", path: argv[0]) }
    return Child(pid: pid, stdoutPath: stdout, stderrPath: stderr)
}

enum AccordCLI {
    /// The `accord` binary: $ACCORD_BIN, else next to the test bundle, else `<package>/.build/debug/accord`.
    static let binary: String? = {
        if let b = ProcessInfo.processInfo.environment["ACCORD_BIN"], !b.isEmpty { return b }
        var candidates: [String] = []
        candidates.append(Bundle.main.bundleURL.appendingPathComponent("accord").path)
        candidates.append(Bundle.main.bundleURL.deletingLastPathComponent().appendingPathComponent("accord").path)
        if let exe = Bundle.main.executableURL { candidates.append(exe.deletingLastPathComponent().appendingPathComponent("accord").path) }
        let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        candidates.append(packageRoot.appendingPathComponent(".build/debug/accord").path)
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) }
    }()

    static func requireBinary(file: StaticString = #filePath, line: UInt = #line) throws -> String {
        guard let b = binary else {
            XCTFail("accord binary not found: run `swift build --build-tests` or set ACCORD_BIN", file: file, line: line)
            throw XCTSkip("no accord binary")
        }
        return b
    }

    /// Starts `accord args…` with stdout and stderr going to files in `scratch`.
    /// With `asUser`, runs it through `setpriv` as that uid/gid.
    /// With `openFileLimit`, runs it under `prlimit --nofile`.
    static func start(_ args: [String], asUser: (uid: UInt32, gid: UInt32)? = nil, cwd: String? = nil,
                      openFileLimit: Int? = nil, scratch: TempDirectory) throws -> Child {
        let bin = try requireBinary()
        let tag = hexString(Sys.randomBytes(4))
        let out = scratch.sub("stdout-\(tag)"), err = scratch.sub("stderr-\(tag)")
        if let n = openFileLimit {
            return try spawn("/usr/bin/prlimit", ["--nofile=\(n):\(n)", "--", bin] + args, cwd: cwd, stdout: out, stderr: err)
        }
        if let u = asUser {
            return try spawn("/usr/bin/setpriv", ["--reuid=\(u.uid)", "--regid=\(u.gid)", "--clear-groups", "--", bin] + args,
                             cwd: cwd, stdout: out, stderr: err)
        }
        return try spawn(bin, args, cwd: cwd, stdout: out, stderr: err)
    }

    /// Waits (at most `timeout` seconds, then kills) and collects the output.
    static func finish(_ child: Child, timeout: Double = 180) -> CommandResult {
        let deadline = Date().addingTimeInterval(timeout)
        while child.isRunning && Date() < deadline { usleep(1000) }
        if child.isRunning {
            child.kill(SIGKILL)
            while child.isRunning { usleep(1000) }
        }
        let o = (try? Data(contentsOf: URL(fileURLWithPath: child.stdoutPath))).map { Array($0) } ?? []
        let e = (try? Data(contentsOf: URL(fileURLWithPath: child.stderrPath))).map { String(decoding: $0, as: UTF8.self) } ?? ""
        try? FileManager.default.removeItem(atPath: child.stdoutPath)
        try? FileManager.default.removeItem(atPath: child.stderrPath)
        return CommandResult(status: child.exitSignal ?? child.exitStatus ?? -1, signaled: child.exitSignal != nil,
                             stdoutBytes: o, stderr: e)
    }

    /// Runs `accord args…` to completion.
    @discardableResult
    static func run(_ args: [String], asUser: (uid: UInt32, gid: UInt32)? = nil, cwd: String? = nil,
                    openFileLimit: Int? = nil, scratch: TempDirectory, timeout: Double = 180) throws -> CommandResult {
        finish(try start(args, asUser: asUser, cwd: cwd, openFileLimit: openFileLimit, scratch: scratch), timeout: timeout)
    }
}

/// What `accord backup --json` prints.
struct BackupJSON: Decodable {
    var id: String
    var paths: [String]
    var summary: Snapshot.Summary
}

func decodeBackupJSON(_ r: CommandResult, file: StaticString = #filePath, line: UInt = #line) throws -> BackupJSON {
    do { return try JSONDecoder().decode(BackupJSON.self, from: Data(r.stdoutBytes)) } catch {
        XCTFail("backup --json printed no snapshot JSON (\(error)):\n\(r)", file: file, line: line)
        throw error
    }
}

// MARK: A test case with a scratch directory and a repository

class AccordTestCase: XCTestCase {
    var scratch: TempDirectory!
    var repo: String { scratch.sub("repo") }

    override func setUpWithError() throws {
        try super.setUpWithError()
        _ = try AccordCLI.requireBinary()
        scratch = try TempDirectory(String(describing: type(of: self)))
    }

    override func tearDown() {
        scratch?.remove()
        super.tearDown()
    }

    @discardableResult
    func accord(_ args: String..., asUser: (uid: UInt32, gid: UInt32)? = nil, cwd: String? = nil) throws -> CommandResult {
        try AccordCLI.run(args, asUser: asUser, cwd: cwd, scratch: scratch)
    }

    /// Runs a command that must succeed (exit 0), failing the test with its output otherwise.
    @discardableResult
    func accordOK(_ args: String..., file: StaticString = #filePath, line: UInt = #line) throws -> CommandResult {
        let r = try AccordCLI.run(args, scratch: scratch)
        XCTAssertEqual(r.status, 0, "accord \(args.joined(separator: " ")) failed:\n\(r)", file: file, line: line)
        XCTAssertFalse(r.signaled, "accord \(args.joined(separator: " ")) crashed:\n\(r)", file: file, line: line)
        return r
    }

    /// `accord backup --json -d repo paths…`, which must succeed; returns the snapshot summary.
    func backup(_ paths: String..., extra: [String] = [], file: StaticString = #filePath, line: UInt = #line) throws -> BackupJSON {
        let args = ["backup", "-d", repo, "--json"] + extra + paths
        let r = try AccordCLI.run(args, scratch: scratch)
        XCTAssertEqual(r.status, 0, "accord \(args.joined(separator: " ")) failed:\n\(r)", file: file, line: line)
        return try decodeBackupJSON(r, file: file, line: line)
    }

    /// Opens the repository in-process (read side only) to inspect what a command wrote.
    func openRepository() throws -> Repository {
        let r = try Repository.open(at: repo)
        try r.loadIndex()
        return r
    }

    /// The manifest entries of a snapshot (latest by default).
    func manifestEntries(_ repository: Repository, snapshot: SnapshotID? = nil) throws -> [ManifestEntry] {
        let id = try snapshot ?? repository.resolveSnapshot("latest")
        var reader = repository.manifestReader(try repository.loadSnapshot(id))
        var out: [ManifestEntry] = []
        while let e = try reader.next() { out.append(e) }
        return out
    }

    func packFiles() throws -> [String] {
        var out: [String] = []
        let data = repo + "/data"
        for sub in (try? Sys.listDirectory(data)) ?? [] {
            for name in try Sys.listDirectory(data + "/" + sub) where ID(hex: name) != nil { out.append(data + "/" + sub + "/" + name) }
        }
        return out.sorted()
    }

    func snapshotFiles() -> [String] {
        ((try? Sys.listDirectory(repo + "/snapshots")) ?? []).filter { ID(hex: $0) != nil }
    }
}
