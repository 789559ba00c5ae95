import AccordCore
import AccordRuntime
import AccordTestSupport
@_spi(Testing) import AccordS3
import Foundation
import XCTest

/// Virtual-hosted style through the command line (`--s3-bucket-lookup dns`,
/// `ACCORD_S3_BUCKET_LOOKUP`) against an `rclone serve s3` that answers only
/// that style (`--force-path-style=false`: the bucket is the Host's first
/// label). It is reached as `BUCKET.localhost:PORT`, which libcurl resolves
/// to loopback itself (RFC 6761): no DNS, no /etc/hosts entry.
final class S3VirtualHostedTests: AccordTestCase {
    override class func setUp() { super.setUp(); S3Servers.start(self, virtualHosted: true) }
    override class func tearDown() { S3Servers.stop(self); super.tearDown() }

    var server: S3TestServer!
    var prefix = ""
    var s3Repo: String { "s3:http://localhost:\(server.port)/\(server.bucket)/\(prefix)" }
    var storedRepository: String { server.storage + "/" + server.bucket + "/" + prefix }

    override func setUpWithError() throws {
        try super.setUpWithError()
        server = try S3Servers.server(Self.self)
        XCTAssertEqual(server.env["S3_BUCKET_LOOKUP"], "dns")
        prefix = freshPrefix()
        accordEnvironment.merge(server.clientEnvironment) { $1 }
        accordEnvironment["AWS_PROFILE"] = ""
        accordEnvironment["ACCORD_CACHE_DIR"] = scratch.sub("cache")
        accordEnvironment["ACCORD_S3_BUCKET_LOOKUP"] = ""
    }

    func testARepositoryWorksVirtualHostedAndPathStyleIsRefusedByTheServer() throws {
        let root = scratch.sub("src")
        try TreeBuilder.mkdir(Array(root.utf8))
        var rng = SeededRandom(seed: 3)
        try TreeBuilder.write(Array((root + "/data.bin").utf8), rng.bytes(2_000_000))
        try TreeBuilder.write(Array((root + "/small.txt").utf8), Array("virtual host\n".utf8))

        try accordOK(["init", "-d", s3Repo, "--s3-bucket-lookup", "dns", "--encryption", "none"])
        XCTAssertTrue(Files.exists(storedRepository + "/config"), "the config is under the bucket the Host named, at the same key as path style")
        let backup = try accordOK(["backup", "-d", s3Repo, root], environment: ["ACCORD_S3_BUCKET_LOOKUP": "dns"])
        XCTAssertTrue(backup.stdout.contains("s3: "), backup.stdout)
        XCTAssertGreaterThan(Files.regularFiles(under: storedRepository + "/data").count, 0)
        XCTAssertEqual(Files.regularFiles(under: storedRepository + "/locks").count, 0, "the lock object is removed")
        let target = scratch.sub("restored")
        try accordOK(["restore", "-d", s3Repo, "--s3-bucket-lookup", "dns", "latest", "--target", target])
        XCTAssertEqual(try Files.read(target + root + "/data.bin"), try Files.read(root + "/data.bin"))
        let check = try accordOK(["check", "--read-data", "-d", s3Repo, "--s3-bucket-lookup", "dns", "--no-cache"])
        XCTAssertTrue(check.stdout.contains("no errors found"), check.stdout)

        // The option wins over the variable; path style (auto's choice for localhost:PORT) reaches
        // the bucket "localhost" on this server, which does not exist: one clear error.
        for (args, env) in [(["--s3-bucket-lookup", "path"], ["ACCORD_S3_BUCKET_LOOKUP": "dns"]), ([], [:])] {
            let r = try accord(["snapshots", "-d", s3Repo] + args, environment: env)
            XCTAssertFalse(r.ok || r.signaled, "\(r)")
            XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, "one error line: \(r.stderr)")
            XCTAssertTrue(r.stderr.contains("does not exist"), r.stderr)
        }
        XCTAssertTrue(try accordOK(["snapshots", "-d", s3Repo, "--s3-bucket-lookup", "dns"], environment: ["ACCORD_S3_BUCKET_LOOKUP": "path"])
            .stdout.contains("1 snapshot(s)"))

        // Refused before any request: a bad word, and dns with an IP host.
        let word = try accord(["snapshots", "-d", s3Repo], environment: ["ACCORD_S3_BUCKET_LOOKUP": "vhost"])
        XCTAssertFalse(word.ok || word.signaled, "\(word)")
        XCTAssertTrue(word.stderr.contains("ACCORD_S3_BUCKET_LOOKUP=vhost is not one of auto|path|dns"), word.stderr)
        let option = try accord(["snapshots", "-d", s3Repo, "--s3-bucket-lookup", "vhost"])
        XCTAssertFalse(option.ok || option.signaled, "\(option)")
        XCTAssertTrue(option.stderr.contains("auto") && option.stderr.contains("dns"), option.stderr)
        let ip = try accord(["snapshots", "-d", "s3:http://127.0.0.1:\(server.port)/\(server.bucket)/\(prefix)", "--s3-bucket-lookup", "dns"])
        XCTAssertFalse(ip.ok || ip.signaled, "\(ip)")
        XCTAssertTrue(ip.stderr.contains("is an IP address"), ip.stderr)
        XCTAssertFalse(Files.exists(server.storage + "/localhost"), "no bucket is created")
    }
}
