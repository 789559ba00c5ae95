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
    /// A proxy in front of the server, and this test's repository through it.
    func viaProxy() throws -> (FaultProxy, String) {
        let p = try FaultProxy(upstreamPort: Int(server.port)!)
        proxy = p
        return (p, "s3:http://127.0.0.1:\(p.port)/\(server.bucket)/\(prefix)")
    }

    static let configPut: @Sendable (String) -> Bool = { $0.hasPrefix("PUT ") && $0.hasSuffix("/config") }
    static let configGet: @Sendable (String) -> Bool = { $0.hasPrefix("GET ") && $0.hasSuffix("/config") }
    static let indexPut: @Sendable (String) -> Bool = { $0.hasPrefix("PUT ") && $0.contains("/index/") }
    static let lockPut: @Sendable (String) -> Bool = { $0.hasPrefix("PUT ") && $0.contains("/locks/") }

    /// Review 23 M1: two first backups of one empty prefix, both config PUTs
    /// in flight at once (the first held until the second has arrived: a busy
    /// server), the second landing while the first backup commits (held until
    /// the first index PUT arrives, which is held until it is answered). The
    /// first backup's config is gone: it must not report its snapshot saved,
    /// and must take back what it wrote (key, packs, index); the second's
    /// snapshot restores and the repository checks whole.
    func testTwoFirstBackupsRacingOnAnEmptyPrefixNeverReportALostSnapshotSaved() throws {
        _ = try useEncryption()
        accordEnvironment["ACCORD_SCRYPT_N"] = "16384"
        let (p, repo) = try viaProxy()
        p.hold(occurrence: 1, of: Self.configPut) { p.arrived(Self.configPut) >= 2 }
        p.hold(occurrence: 2, of: Self.configPut) { p.arrived(Self.indexPut) >= 1 }
        p.hold(occurrence: 1, of: Self.indexPut) { p.answered(Self.configPut) >= 2 }
        var trees: [String] = []
        for (i, name) in ["srcA", "srcB"].enumerated() {
            let root = scratch.sub(name)
            try TreeBuilder.mkdir(Array(root.utf8))
            var rng = SeededRandom(seed: 2300 + UInt64(i))
            for f in 0..<3 { try TreeBuilder.write(Array((root + "/f\(f)").utf8), rng.bytes(400_000)) }
            trees.append(root)
        }
        let running = try trees.map { try start(["backup", "-d", repo, $0]) }
        let results = running.map { $0.finish() }
        XCTAssertEqual(p.answered(Self.configPut), 2, "both backups wrote a config")
        let saved = results.indices.filter { results[$0].ok }
        XCTAssertEqual(saved.count, 1, "exactly one backup may succeed:\n\(results[0])\n\(results[1])")
        guard let won = saved.first else { return }
        let lost = results[1 - won]
        XCTAssertFalse(lost.signaled, "\(lost)")
        XCTAssertFalse(lost.stdout.contains("saved"), "the losing backup reported a snapshot saved:\n\(lost)")
        XCTAssertTrue(lost.stderr.contains("another process created repository") && lost.stderr.contains("run the backup again"), lost.stderr)

        let listed = try accordOK(["snapshots", "-d", s3Repo])
        XCTAssertTrue(listed.stdout.contains(trees[won]), listed.stdout)
        let check = try accordOK(["check", "--read-data", "-d", s3Repo])
        XCTAssertTrue(check.stdout.contains("no errors found"), "the loser's key, packs and index are gone:\n\(check)")
        let target = scratch.sub("restored")
        try accordOK(["restore", "-d", s3Repo, "latest", "--target", target])
        XCTAssertEqual(try files(under: target + trees[won]), try files(under: trees[won]))
    }

    /// Review 23 M1, `init`: the second config PUT lands after the first
    /// `init` read its own back (held until that GET is answered): the first
    /// sees it replaced when it reads again after settling and fails; only
    /// the repository that stands is reported created.
    func testTwoInitsRacingOnAnEmptyPrefixCreateOneRepository() throws {
        let (p, repo) = try viaProxy()
        p.hold(occurrence: 1, of: Self.configPut) { p.arrived(Self.configPut) >= 2 }
        p.hold(occurrence: 2, of: Self.configPut) { p.answered(Self.configPut) >= 1 && p.answered(Self.configGet) >= 1 }
        let running = (0..<2).map { _ in try? start(["init", "-d", repo, "--encryption", "none"]) }
        let results = running.compactMap { $0?.finish() }
        XCTAssertEqual(results.count, 2)
        let created = results.filter { $0.ok }
        XCTAssertEqual(created.count, 1, "exactly one init may report a repository created:\n\(results.map(\.description).joined(separator: "\n"))")
        let failed = try XCTUnwrap(results.first { !$0.ok })
        XCTAssertFalse(failed.signaled, "\(failed)")
        XCTAssertTrue(failed.stderr.contains("already holds an Accord repository"), failed.stderr)
        let id = try XCTUnwrap(created.first?.stdout.split(separator: " ").dropFirst(3).first, "\(created)")
        let stored = try String(contentsOfFile: storedRepository + "/config", encoding: .utf8)
        XCTAssertTrue(stored.contains("\"id\" : \"\(id)"), "the repository reported created is the one that stands: \(id)\n\(stored)")
    }

    /// Review 23 W8: a backup whose lock cannot be refreshed (every lock PUT
    /// after the first refused) stops after three refresh intervals (shortened
    /// here), naming the lock, with no snapshot; it does not run on for
    /// minutes while others may judge its lock stale.
    func testABackupWhoseLockCannotBeRefreshedStops() throws {
        try accordOK(["init", "-d", s3Repo, "--encryption", "none"])
        let root = try makeTree(files: 2, size: 1000, seed: 8)
        let (p, repo) = try viaProxy()
        p.refuse(from: 2, of: Self.lockPut, with: .answer(403, headers: [], body: S3FaultTests.errorXML("AccessDenied")))
        let started = Date()
        let r = try accord(["backup", "-d", repo, "--command", "/slow=sleep 60; echo x", root],
                           environment: ["ACCORD_LOCK_REFRESH_SECONDS": "0.5"], timeout: 90)
        XCTAssertFalse(r.ok || r.signaled, "\(r)")
        XCTAssertLessThan(Date().timeIntervalSince(started), 30, "it stopped well before the command source ended")
        XCTAssertTrue(r.stderr.contains("could not be refreshed") && r.stderr.contains("stopping `backup`"), r.stderr)
        XCTAssertFalse(r.stdout.contains("saved"), r.stdout)
        XCTAssertEqual(Files.regularFiles(under: storedRepository + "/snapshots").count, 0, "no snapshot")
    }
}
