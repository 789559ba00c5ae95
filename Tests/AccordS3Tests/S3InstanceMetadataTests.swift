import AccordCore
import AccordRuntime
@testable import AccordS3
import AccordTestSupport
import Foundation
import XCTest

/// Credentials from a cloud instance's metadata service, only when asked for
/// (`ACCORD_S3_CREDENTIALS=instance-metadata`). The service itself cannot
/// run here (it lives at 169.254.169.254 on a cloud instance, and no test may
/// reach any address but loopback): `scripts/testenv/imds-standin.py` is a
/// STAND-IN for it on loopback, handing out the real S3 test server's
/// credentials, which the server (`rclone serve s3`) checks on every request.
final class S3InstanceMetadataTests: AccordTestCase {
    override class func setUp() { super.setUp(); S3Servers.start(self) }
    override class func tearDown() { S3Servers.stop(self); super.tearDown() }

    var server: S3TestServer!
    var prefix = ""
    var s3Repo: String { "s3:\(server.scheme)://127.0.0.1:\(server.port)/\(server.bucket)/\(prefix)" }
    var standIn: Process?
    var log: String { scratch.sub("imds.log") }

    override func setUpWithError() throws {
        try super.setUpWithError()
        server = try S3Servers.server(Self.self)
        prefix = freshPrefix()
        // No credentials anywhere but the metadata service.
        accordEnvironment["AWS_ACCESS_KEY_ID"] = ""
        accordEnvironment["AWS_SECRET_ACCESS_KEY"] = ""
        accordEnvironment["AWS_PROFILE"] = ""
        accordEnvironment["AWS_SHARED_CREDENTIALS_FILE"] = scratch.sub("no-credentials-file")
        accordEnvironment["AWS_REGION"] = "us-east-1"
        accordEnvironment["ACCORD_CACHE_DIR"] = scratch.sub("cache")
    }

    override func tearDown() {
        standIn?.terminate()
        standIn?.waitUntilExit()
        super.tearDown()
    }

    /// Starts the stand-in (`mode`, credentials valid for `ttl` seconds) and points accord at it.
    func startStandIn(mode: String = "normal", ttl: Int = 3600, key: String? = nil, extra: [String: String] = [:]) throws {
        let portFile = scratch.sub("imds.port")
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", AccordBinary.packageRoot + "/scripts/testenv/imds-standin.py", portFile, log]
        p.environment = ProcessInfo.processInfo.environment.merging([
            "IMDS_KEY": key ?? server.clientEnvironment["AWS_ACCESS_KEY_ID"]!,
            "IMDS_SECRET": server.clientEnvironment["AWS_SECRET_ACCESS_KEY"]!,
            "IMDS_TTL": String(ttl), "IMDS_MODE": mode,
        ].merging(extra) { $1 }) { $1 }
        try p.run()
        standIn = p
        let deadline = Date(timeIntervalSinceNow: 20)
        while !Files.exists(portFile) {
            guard Date() < deadline, p.isRunning else { throw S3StartError(description: "the metadata stand-in did not start") }
            usleep(20_000)
        }
        let port = String(decoding: try Files.read(portFile), as: UTF8.self)
        accordEnvironment["ACCORD_S3_METADATA_ENDPOINT"] = "http://127.0.0.1:" + port
    }

    /// The requests the stand-in saw, as "METHOD path token|no-token".
    func requests() -> [String] {
        guard let b = try? Files.read(log) else { return [] }
        return String(decoding: b, as: UTF8.self).split(separator: "\n").map(String.init)
    }
    var credentialFetches: Int { requests().filter { $0.hasPrefix("GET /latest/meta-data/iam/security-credentials/accord-backup-role") }.count }

    func makeTree() throws -> String {
        let root = scratch.sub("src")
        try TreeBuilder.mkdir(Array(root.utf8))
        var rng = SeededRandom(seed: 1605)
        try TreeBuilder.write(Array((root + "/data.bin").utf8), rng.letterText(400_000))
        try TreeBuilder.write(Array((root + "/small.txt").utf8), Array("from an instance role\n".utf8))
        return root
    }

    /// Not asked for: the service is never contacted, and the error says where
    /// credentials were looked for. Asked for: a session token first (IMDSv2),
    /// then the role and its credentials, which the S3 server accepts for a
    /// whole init, backup, restore round.
    func testCredentialsComeFromTheMetadataServiceOnlyWhenAskedFor() throws {
        try startStandIn()
        let root = try makeTree()
        let refused = try accord(["init", "-d", s3Repo, "--encryption", "none"])
        XCTAssertFalse(refused.ok, "init without credentials succeeded: \(refused)")
        XCTAssertTrue(refused.stderr.contains("no S3 credentials"), refused.stderr)
        XCTAssertEqual(requests(), [], "the metadata service was reached without being asked for")

        accordEnvironment["ACCORD_S3_CREDENTIALS"] = "instance-metadata"
        for args in [["init", "-d", s3Repo, "--encryption", "none"], ["backup", "-d", s3Repo, root]] {
            let r = try accord(args)
            XCTAssertTrue(r.ok, "\(args[0]) with instance-metadata credentials: \(r)")
        }
        let target = scratch.sub("restored")
        let restore = try accord(["restore", "-d", s3Repo, "latest", "--target", target])
        XCTAssertTrue(restore.ok, "\(restore)")
        XCTAssertEqual(try Files.read(target + root + "/small.txt"), Array("from an instance role\n".utf8))
        let seen = requests()
        XCTAssertEqual(seen.first, "PUT /latest/api/token no-token", "IMDSv2 starts with a session token: \(seen)")
        XCTAssertTrue(seen.filter { $0.hasPrefix("GET") }.allSatisfy { $0.hasSuffix(" token") }, "a GET without the session token: \(seen)")
        XCTAssertEqual(credentialFetches, 3, "one fetch per command (init, backup, restore): \(seen)")
    }

    /// Credentials close to their expiry are fetched again at most once a
    /// minute, not for every request: a command shorter than that fetches once.
    func testCredentialsCloseToTheirExpiryAreNotFetchedForEveryRequest() throws {
        try startStandIn(ttl: 120)
        accordEnvironment["ACCORD_S3_CREDENTIALS"] = "instance-metadata"
        let r = try accord(["init", "-d", s3Repo, "--encryption", "none"])
        XCTAssertTrue(r.ok, "\(r)")
        let b = try accord(["backup", "-d", s3Repo, try makeTree()])
        XCTAssertTrue(b.ok, "\(b)")
        XCTAssertEqual(credentialFetches, 2, "one fetch per command: \(requests())")
    }

    /// The source itself (in this process): credentials are fetched again
    /// when due; a service that fails for a moment is tried again; one that
    /// keeps failing leaves the credentials it gave last in use until they
    /// are about to expire, and then the error is said.
    func testRefreshIsRetriedAndAFailedRefreshKeepsValidCredentials() throws {
        let modeFile = scratch.sub("imds.mode")
        try Files.write(modeFile, Array("normal".utf8))
        // 600 s: exactly the refresh margin, so every call is due once the minimum interval allows.
        try startStandIn(ttl: 600, extra: ["IMDS_MODE_FILE": modeFile, "IMDS_KEY_AS_IS": "0"])
        let curl = try CurlLibrary.shared.get().api
        let saved = S3CredentialSource.minimumInterval
        S3CredentialSource.forgetCached()
        defer { S3CredentialSource.minimumInterval = saved; S3CredentialSource.forgetCached() }
        func source() throws -> S3CredentialSource {
            try S3CredentialSource.from([S3CredentialSource.variable: "instance-metadata",
                                         S3CredentialSource.endpointVariable: accordEnvironment["ACCORD_S3_METADATA_ENDPOINT"]!])
        }
        let s = try source()
        let first = try s.current(curl: curl)
        XCTAssertTrue(first.accessKeyID.hasSuffix("N1"), first.accessKeyID)
        XCTAssertEqual(try s.current(curl: curl).accessKeyID, first.accessKeyID, "fetched again within the minimum interval")

        S3CredentialSource.minimumInterval = 0
        S3CredentialSource.forgetCached()
        let second = try s.current(curl: curl)
        XCTAssertTrue(second.accessKeyID.hasSuffix("N2"), second.accessKeyID)
        usleep(10_000)
        let third = try s.current(curl: curl)
        XCTAssertTrue(third.accessKeyID.hasSuffix("N3"), "due credentials were not fetched again: \(third.accessKeyID)")
        try Files.write(modeFile, Array("flaky-2".utf8))
        let retried = try s.current(curl: curl)
        XCTAssertEqual(String(decoding: try Files.read(modeFile), as: UTF8.self), "normal", "the two failures were not both met")
        XCTAssertTrue(retried.accessKeyID.hasSuffix("N4"), "a refresh failing twice was not tried a third time: \(retried.accessKeyID)")

        try Files.write(modeFile, Array("fail".utf8))
        XCTAssertEqual(try s.current(curl: curl).accessKeyID, retried.accessKeyID, "a failed refresh did not keep the valid credentials")

        // Credentials about to expire (20 s) are not kept past a failed refresh: the error is said.
        standIn?.terminate(); standIn?.waitUntilExit()
        try? FileManager.default.removeItem(atPath: scratch.sub("imds.port"))
        try Files.write(modeFile, Array("normal".utf8))
        try startStandIn(ttl: 20, extra: ["IMDS_MODE_FILE": modeFile, "IMDS_KEY_AS_IS": "0"])
        S3CredentialSource.forgetCached()
        let short = try source()
        _ = try short.current(curl: curl)
        try Files.write(modeFile, Array("fail".utf8))
        XCTAssertThrowsError(try short.current(curl: curl)) { e in
            XCTAssertTrue("\(e)".contains("HTTP 503"), "\(e)")
        }
    }

    /// A role the S3 server does not know, no role, and hostile answers each
    /// give one clear error and a non-zero exit.
    func testBadAnswersGiveOneClearError() throws {
        accordEnvironment["ACCORD_S3_CREDENTIALS"] = "instance-metadata"
        for (mode, key, expect) in [("no-role", nil, "no IAM role"), ("bad-json", nil, "not a JSON document"),
                                    ("huge", nil, "over 65536 bytes"), ("normal", "WRONGKEY", "denied")] as [(String, String?, String)] {
            standIn?.terminate()
            standIn?.waitUntilExit()
            try? FileManager.default.removeItem(atPath: scratch.sub("imds.port"))
            try startStandIn(mode: mode, key: key)
            let r = try accord(["init", "-d", s3Repo, "--encryption", "none"])
            XCTAssertFalse(r.ok, "\(mode): init succeeded")
            XCTAssertTrue(r.stderr.contains(expect), "\(mode): the error does not say \"\(expect)\": \(r.stderr)")
            XCTAssertFalse(r.stderr.contains("Fatal error"), "\(mode): a trap: \(r.stderr)")
        }
        accordEnvironment["ACCORD_S3_CREDENTIALS"] = "imds"
        let r = try accord(["snapshots", "-d", s3Repo])
        XCTAssertFalse(r.ok)
        XCTAssertTrue(r.stderr.contains("instance-metadata"), "an unknown source is not named with the choices: \(r.stderr)")
    }
}
