// Helpers for the AE5 plan tests: the built `accord` binary run as a user
// runs it (STYLE.md item 14), the test environment of scripts/testenv
// (a real PostgreSQL 15, and the fake kubectl/gravity TEST FIXTURES that
// forward `exec … -- pg_dumpall/psql/pg_dump/pg_restore` to it), a storage
// tree to back up, and comparisons of databases, trees and repositories.
import Foundation
import XCTest
import AccordCore
@_exported import AccordTestSupport
import AccordRuntime
#if canImport(Glibc)
import Glibc
#endif

// MARK: Locations

enum PlansTestPaths {
    /// The package root, from this file's path (Tests/AccordPlansTests/…).
    static let packageRoot: String = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    static var testenv: String { packageRoot + "/scripts/testenv" }
    static var fixtures: String { packageRoot + "/Tests/Fixtures" }

    /// The built binary (AccordTestSupport's `AccordBinary`).
    static var accord: String { AccordBinary.path }

    static func requireAccord(file: StaticString = #filePath, line: UInt = #line) throws -> String {
        try AccordBinary.require(file: file, line: line)
    }
}

struct TestSetupError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

// MARK: Running processes

enum ProcessRunner {
    /// Runs `executable args…` to completion in a process group of its own
    /// (killed, with the daemons it started, after `timeout` s).
    static func run(_ executable: String, _ args: [String], environment: [String: String],
                    stdin: String? = nil, timeout: Double = 180) throws -> CommandResult {
        try runProcess(executable, args, environment: environment, stdin: stdin, timeout: timeout, newProcessGroup: true)
    }

    /// Runs a testenv script (bash) and parses the KEY=VALUE lines it prints.
    static func testenv(_ script: String, _ args: [String]) throws -> [String: String] {
        let r = try run("/bin/bash", [PlansTestPaths.testenv + "/" + script] + args,
                        environment: ProcessInfo.processInfo.environment, timeout: 300)
        guard r.status == 0, !r.signaled else {
            throw TestSetupError("scripts/testenv/\(script) \(args.joined(separator: " ")) failed:\n\(r)")
        }
        return parseEnvLines(r.stdout)
    }
}

// MARK: PostgreSQL (real, scripts/testenv/pg-start.sh)

/// The PostgreSQL 15 server of pg-start.sh: AE5-like databases, superuser postgres, trust auth.
final class TestPostgres {
    static let databases = ["anaconda_workspace", "anaconda_deploy", "anaconda_repository", "anaconda_storage"]

    let scratch: ScratchDirectory
    let env: [String: String]
    var dir: String { scratch.sub("pg") }
    var envFile: String { dir + "/env" }
    var bin: String { env["PGBIN"] ?? "/usr/lib/postgresql/15/bin" }

    init() throws {
        scratch = try ScratchDirectory("pg")
        do { env = try ProcessRunner.testenv("pg-start.sh", [scratch.sub("pg")]) } catch {
            scratch.remove()
            throw error
        }
    }

    func stop() {
        _ = try? ProcessRunner.testenv("pg-stop.sh", [dir])
        scratch.remove()
    }

    var clientEnvironment: [String: String] {
        var e = ["PATH": "\(bin):/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/tmp"]
        for k in ["PGHOST", "PGPORT", "PGUSER"] { e[k] = env[k] }
        return e
    }

    /// Runs SQL with psql (unaligned, tuples only, stop on the first error); returns stdout.
    @discardableResult
    func sql(_ database: String, _ statements: String, file: StaticString = #filePath, line: UInt = #line) throws -> String {
        let r = try ProcessRunner.run(bin + "/psql", ["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", database],
                                      environment: clientEnvironment, stdin: statements, timeout: 120)
        guard r.status == 0 else { throw TestSetupError("psql -d \(database) failed:\n\(statements.prefix(500))\n\(r)") }
        return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func count(_ database: String, _ table: String) throws -> Int {
        Int(try sql(database, "select count(*) from \(table);")) ?? -1
    }

    /// `pg_dump` of a database as plain SQL, leaving out the data of `excludingData` tables.
    func dump(_ database: String, excludingData: [String] = []) throws -> String {
        let r = try ProcessRunner.run(bin + "/pg_dump", ["--no-sync", "-d", database] + excludingData.map { "--exclude-table-data=\($0)" },
                                      environment: clientEnvironment, timeout: 120)
        guard r.status == 0 else { throw TestSetupError("pg_dump \(database) failed:\n\(r)") }
        // pg_dump ≥ 15.14 brackets the script with `\restrict KEY` … `\unrestrict KEY`, a random key per run.
        return r.stdout.split(separator: "\n", omittingEmptySubsequences: false)
            .filter { !$0.hasPrefix("\\restrict ") && !$0.hasPrefix("\\unrestrict ") }
            .joined(separator: "\n")
    }

    /// The plain dumps of the AE5 databases. The tables the restore empties by
    /// design (sessions; deployments and, by `cascade`, deployment_tokens) are
    /// compared by schema only.
    func dumpAE5() throws -> [String: String] {
        var out: [String: String] = [:]
        for db in Self.databases {
            let excluded: [String]
            switch db {
            case "anaconda_workspace": excluded = ["sessions"]
            case "anaconda_deploy": excluded = ["deployments", "deployment_tokens"]
            default: excluded = []
            }
            out[db] = try dump(db, excludingData: excluded)
        }
        return out
    }
}

/// Fails once per database whose dump differs, with the first differing lines.
func assertSameDumps(_ expected: [String: String], _ actual: [String: String], _ context: String,
                     file: StaticString = #filePath, line: UInt = #line) {
    for db in expected.keys.sorted() {
        guard let a = actual[db] else { XCTFail("\(context): no dump of \(db)", file: file, line: line); continue }
        if expected[db] != a {
            let el = expected[db]!.split(separator: "\n", omittingEmptySubsequences: false)
            let al = a.split(separator: "\n", omittingEmptySubsequences: false)
            let gone = el.filter { !al.contains($0) }.prefix(8)
            let added = al.filter { !el.contains($0) }.prefix(8)
            XCTFail("\(context): database \(db) differs from the backed-up state\n  missing lines: \(Array(gone))\n  new lines: \(Array(added))",
                    file: file, line: line)
        }
    }
}

// MARK: The fake cluster (TEST FIXTURE) and its call log

/// One call recorded by the fake kubectl/gravity.
struct FakeCall: CustomStringConvertible {
    var tool: String
    var argv: [String]
    var verb: String
    var exit: Int
    var effects: [[String: Any]]
    var cmd: String

    var description: String { "\(cmd) -> exit \(exit)" }

    static let mutatingVerbs: Set<String> = ["apply", "replace", "create", "delete", "scale", "exec", "rollout", "patch", "label", "annotate"]
    var mutates: Bool { Self.mutatingVerbs.contains(verb) }

    /// The tool run by `kubectl exec … -- TOOL …`, if any.
    var execTool: String? {
        guard verb == "exec", let dd = argv.firstIndex(of: "--"), dd + 1 < argv.count else { return nil }
        return URL(fileURLWithPath: argv[dd + 1]).lastPathComponent
    }
}

/// An object the fake kubectl applied/replaced/created.
struct AppliedObject: Equatable, CustomStringConvertible {
    var op: String, kind: String, namespace: String, name: String
    var description: String { "\(op) \(kind) \(namespace)/\(name)" }
}

/// A fresh copy of Tests/Fixtures/ae5-cluster (scripts/testenv/fake-cluster.sh).
final class FakeCluster {
    let env: [String: String]
    var storeDirectory: String { env["FAKE_KUBECTL_DIR"]! }
    var logPath: String { env["FAKE_KUBECTL_LOG"]! }
    var binDirectory: String { env["FAKE_KUBECTL_BIN_DIR"]! }

    init(dir: String, postgres: TestPostgres) throws {
        env = try ProcessRunner.testenv("fake-cluster.sh", [dir, postgres.envFile])
        for k in ["FAKE_KUBECTL_DIR", "FAKE_KUBECTL_LOG", "FAKE_KUBECTL_BIN_DIR", "FAKE_KUBECTL_PG_ENV"] where env[k] == nil {
            throw TestSetupError("fake-cluster.sh printed no \(k)")
        }
    }

    func calls() throws -> [FakeCall] {
        let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
        return try text.split(whereSeparator: \.isNewline).map { line in
            guard let o = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
                throw TestSetupError("fake kubectl log line is not an object: \(line)")
            }
            return FakeCall(tool: o["tool"] as? String ?? "", argv: o["argv"] as? [String] ?? [],
                            verb: o["verb"] as? String ?? "", exit: (o["exit"] as? NSNumber)?.intValue ?? -1,
                            effects: o["effects"] as? [[String: Any]] ?? [], cmd: o["cmd"] as? String ?? "")
        }
    }

    /// Objects stored by apply/replace/create, in call order.
    static func applied(_ calls: [FakeCall]) -> [AppliedObject] {
        calls.filter { ["apply", "replace", "create"].contains($0.verb) }.flatMap { c in
            c.effects.compactMap { e -> AppliedObject? in
                guard let op = e["op"] as? String, ["apply", "replace", "create"].contains(op) else { return nil }
                return AppliedObject(op: op, kind: e["kind"] as? String ?? "?", namespace: e["namespace"] as? String ?? "?",
                                     name: e["name"] as? String ?? "?")
            }
        }
    }

    /// Path of an object in the fake store.
    func objectPath(_ kind: String, _ namespace: String, _ name: String) -> String {
        "\(storeDirectory)/\(kind)/\(namespace)/\(name).yaml"
    }
}

// MARK: Trees

enum Tree {
    static func write(_ path: String, _ text: String, mode: Int = 0o644) throws {
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent,
                                                withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: path)
    }

    static func write(_ path: String, bytes: [UInt8], mode: Int = 0o644) throws {
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent,
                                                withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: path)
    }

    static func read(_ path: String) throws -> [UInt8] { Array(try Data(contentsOf: URL(fileURLWithPath: path))) }

    /// Every node below `root` (the root itself excluded): type, mode, size,
    /// content and file mtimes. Directory mtimes are not compared (a restore
    /// recreates the directories it replaces, and their parents change with it).
    static func list(_ root: String) throws -> TreeListing { try listTree(root, .storage) }
}

/// Every file below a repository: relative path → SHA-256 of its contents.
func repositoryFiles(_ root: String) throws -> [String: String] {
    var out: [String: String] = [:]
    guard let e = FileManager.default.enumerator(atPath: root) else { return out }
    while let rel = e.nextObject() as? String {
        let full = root + "/" + rel
        if (try? Sys.lstat(full))?.isRegular == true { out[rel] = SHA256Hasher.hash(try Tree.read(full)).hex }
    }
    return out
}

// MARK: Snapshots as `accord snapshots list --json` prints them

struct SnapshotInfo {
    var id: String
    var plan: String
    var tags: [String]
    var addedBytes: UInt64
    var addedBlobs: Int
    var addedManifestBytes: UInt64
    var totalBytes: UInt64
}

func parseSnapshotList(_ r: CommandResult, file: StaticString = #filePath, line: UInt = #line) throws -> [SnapshotInfo] {
    guard let array = try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [[String: Any]] else {
        XCTFail("snapshots list --json printed no JSON array:\n\(r)", file: file, line: line)
        throw TestSetupError("no snapshot list")
    }
    return array.map(snapshotInfo)
}

func snapshotInfo(_ o: [String: Any]) -> SnapshotInfo {
    let s = o["summary"] as? [String: Any] ?? [:]
    func u(_ k: String) -> UInt64 { (s[k] as? NSNumber)?.uint64Value ?? 0 }
    return SnapshotInfo(id: o["id"] as? String ?? "", plan: o["plan"] as? String ?? "", tags: o["tags"] as? [String] ?? [],
                        addedBytes: u("addedBytes"), addedBlobs: Int(u("addedBlobs")),
                        addedManifestBytes: u("addedManifestBytes"), totalBytes: u("totalBytes"))
}

func megabytes(_ n: UInt64) -> String { String(format: "%.2f MB", Double(n) / 1_000_000) }
