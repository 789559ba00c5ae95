import AccordCore
import AccordRuntime
import AccordTestSupport
import Foundation
import XCTest

/// An s3: repository through the command line when the server misbehaves: a
/// 503 spell (through `FaultProxy`), the server stopped mid-backup and
/// restarted; and a command that cannot work on a bucket (serve).
final class S3FaultCLITests: AccordTestCase {
    override class func setUp() { super.setUp(); S3Servers.start(self) }
    override class func tearDown() { S3Servers.stop(self); super.tearDown() }

    var server: S3TestServer!
    var prefix = ""
    var proxy: FaultProxy?
    var s3Repo: String { "s3:\(server.scheme)://127.0.0.1:\(server.port)/\(server.bucket)/\(prefix)" }
    var storedRepository: String { server.storage + "/" + server.bucket + "/" + prefix }

    override func setUpWithError() throws {
        try super.setUpWithError()
        server = try S3Servers.server(Self.self)
        prefix = freshPrefix()
        accordEnvironment.merge(server.clientEnvironment) { $1 }
        accordEnvironment["AWS_PROFILE"] = ""
        accordEnvironment["ACCORD_CACHE_DIR"] = scratch.sub("cache")
    }

    override func tearDown() { proxy?.stop(); proxy = nil; super.tearDown() }

    /// Relative path → bytes of every regular file under `dir`.
    func files(under dir: String) throws -> [String: [UInt8]] {
        var out: [String: [UInt8]] = [:]
        for f in Files.regularFiles(under: dir) { out[String(f.dropFirst(dir.count + 1))] = try Files.read(f) }
        return out
    }

    func makeTree(files n: Int, size: Int, seed: UInt64) throws -> String {
        let root = scratch.sub("src")
        try TreeBuilder.mkdir(Array(root.utf8))
        var rng = SeededRandom(seed: seed)
        for i in 0..<n { try TreeBuilder.write(Array((root + "/f\(i)").utf8), rng.bytes(size)) }
        return root
    }

    func testServeOnABucketFailsWithOneClearLine() throws {
        try accordOK(["init", "-d", s3Repo, "--encryption", "none"])
        for args in [["serve", "--repo", s3Repo], ["serve", "-d", s3Repo]] {
            let r = try accord(args)
            XCTAssertFalse(r.ok || r.signaled, "\(r)")
            XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, "one line: \(r.stderr)")
            XCTAssertTrue(r.stderr.contains("must be a local directory, not a bucket") && r.stderr.contains("accord sync --to \(s3Repo)"), r.stderr)
        }
        XCTAssertFalse(Files.exists(scratch.path + "/s3:http:"), "no directory named after the location")
    }

    /// 503 SlowDown answers early and in the middle of a backup: each request
    /// is retried and the backup succeeds, every retry counted in its summary.
    func testABackupSucceedsWhileTheServerAnswers503ForAWhile() throws {
        let root = try makeTree(files: 8, size: 3 << 20, seed: 503)
        try accordOK(["init", "-d", s3Repo, "--encryption", "none"])
        let p = try FaultProxy(upstreamPort: Int(server.port)!)
        proxy = p
        let viaProxy = "s3:http://127.0.0.1:\(p.port)/\(server.bucket)/\(prefix)"
        let slowDown = FaultProxy.Fault.answer(503, headers: ["Retry-After: 0"], body: S3FaultTests.errorXML("SlowDown"))
        p.inject(slowDown, times: 3)
        let watcher = Thread {
            let deadline = Date().addingTimeInterval(60)
            while p.statistics.requests < 10 && Date() < deadline { usleep(2_000) }
            p.inject(slowDown, times: 6)
        }
        watcher.start()
        let r = try accordOK(["backup", "-d", viaProxy, root])
        XCTAssertTrue(r.stdout.contains("snapshot "), r.stdout)
        XCTAssertEqual(p.statistics.faults, 9, "every injected 503 was met")
        let line = try XCTUnwrap(r.stdout.split(separator: "\n").first { $0.hasPrefix("s3: ") }, r.stdout)
        let retried = try XCTUnwrap(Int(line.split(separator: "(")[1].split(separator: " ")[0]), String(line))
        XCTAssertGreaterThanOrEqual(retried, 9, "each 503 was retried: \(line)")
        XCTAssertTrue(try accordOK(["check", "--read-data", "-d", s3Repo]).stdout.contains("no errors found"))
        let target = scratch.sub("restored")
        try accordOK(["restore", "-d", s3Repo, "latest", "--target", target])
        XCTAssertEqual(try files(under: target + root), try files(under: root))
    }

    /// The server stopped once packs have landed: the backup fails with one
    /// clear error (no trap, no snapshot); after a restart `check` passes and
    /// the next backup adopts what landed.
    func testTheServerStoppedMidBackupThenRestarted() throws {
        let root = try makeTree(files: 6, size: 12 << 20, seed: 1617)
        try accordOK(["init", "-d", s3Repo, "--encryption", "none"])
        let running = try start(["backup", "-d", s3Repo, root])
        func packs() -> Set<String> {
            Set(Files.regularFiles(under: storedRepository + "/data").filter { f in
                let name = f.split(separator: "/").last ?? ""
                return name.utf8.count == 64 && name.utf8.allSatisfy { (48...57).contains($0) || (97...102).contains($0) }
            })
        }
        var landed = 0
        let deadline = Date().addingTimeInterval(120)
        while landed < 2 && running.isRunning && Date() < deadline {
            Thread.sleep(forTimeInterval: 0.02)
            landed = packs().count
        }
        guard running.isRunning else { throw XCTSkip("the backup finished before the server could be stopped (\(landed) packs)") }
        server.stopServing()
        let failed = running.finish()
        XCTAssertEqual(server.restart(), 0, "s3-start.sh restarted the server")
        XCTAssertFalse(failed.ok || failed.signaled, "\(failed)")
        let errors = failed.stderr.split(separator: "\n").filter { $0.hasPrefix("Error:") }
        XCTAssertEqual(errors.count, 1, failed.stderr)
        XCTAssertTrue(failed.stderr.contains("127.0.0.1:\(server.port)"), "the error names the server: \(failed.stderr)")
        XCTAssertEqual(Files.regularFiles(under: storedRepository + "/snapshots").count, 0, "no snapshot: the commit point was not reached")
        let before = packs()
        XCTAssertGreaterThan(before.count, 0)

        XCTAssertTrue(try accordOK(["check", "--read-data", "-d", s3Repo]).stdout.contains("no errors found"))
        let next = try accordOK(["backup", "-d", s3Repo, root])
        XCTAssertTrue(next.stderr.contains("left by an interrupted backup"), next.stderr)
        XCTAssertTrue(before.isSubset(of: packs()), "what landed is kept")
        XCTAssertTrue(try accordOK(["check", "--read-data", "-d", s3Repo]).stdout.contains("no errors found"))
        let target = scratch.sub("restored")
        try accordOK(["restore", "-d", s3Repo, "latest", "--target", target])
        XCTAssertEqual(try files(under: target + root), try files(under: root))
    }
}
