import AccordCore
import AccordRuntime
import AccordTestSupport
import Foundation
import XCTest

/// `accord sync -d s3:… --to USER@NODE:DIR`: a DR copy read out of a bucket
/// and sent over ssh to `accord serve` on a node, both real (rclone serve s3
/// and the sshd of scripts/testenv/sshd-start.sh on loopback), the node's
/// side as README's "Least privilege on the DR node" sets it up.
final class S3SyncToNodeTests: AccordTestCase {
    // nonisolated(unsafe): XCTest runs a class's setUp, tests and tearDown one after another on one thread.
    nonisolated(unsafe) static var sshd: Result<[String: String], Error>?
    static let sshdDirectory = "/tmp/accord-s3synctest-sshd-" + hexString(Sys.randomBytes(5))

    override class func setUp() {
        super.setUp()
        S3Servers.start(self)
        sshd = Result { try startSSHD() }
    }

    override class func tearDown() {
        runScript("sshd-stop.sh", sshdDirectory)
        try? FileManager.default.removeItem(atPath: sshdDirectory)
        S3Servers.stop(self)
        super.tearDown()
    }

    static func startSSHD() throws -> [String: String] {
        guard getuid() == 0 else { throw S3StartError(description: "sshd-start.sh must run as root") }
        let binDir = URL(fileURLWithPath: AccordBinary.path).resolvingSymlinksInPath().deletingLastPathComponent().path
        let (status, output) = runScript("sshd-start.sh", sshdDirectory, ["ACCORD_BIN_DIR": binDir])
        guard status == 0 else { throw S3StartError(description: "sshd-start.sh exited with \(status): \(output.suffix(1500))") }
        return parseEnvLines((try? String(contentsOfFile: sshdDirectory + "/env", encoding: .utf8)) ?? "")
    }

    @discardableResult
    static func runScript(_ script: String, _ dir: String, _ extra: [String: String] = [:]) -> (Int32, String) {
        do {
            let env = ProcessInfo.processInfo.environment.merging(extra) { $1 }
            let r = try runProcess("/bin/bash", [S3TestServer.scripts + "/" + script, dir], environment: env, timeout: 600)
            return (r.signaled ? -1 : r.status, r.output)
        } catch { return (-1, "cannot run \(script): \(error)") }
    }

    var server: S3TestServer!
    var ssh: [String: String] = [:]
    var prefix = ""
    var s3Repo: String { "s3:http://127.0.0.1:\(server.port)/\(server.bucket)/\(prefix)" }

    override func setUpWithError() throws {
        try super.setUpWithError()
        server = try S3Servers.server(Self.self)
        switch Self.sshd {
        case .success(let env)?: ssh = env
        case .failure(let e)?: throw XCTSkip("sshd could not start: \(e)")
        case nil: throw XCTSkip("sshd was not started")
        }
        guard let config = ssh["SSH_CONFIG"], (try? runProcess("/usr/bin/ssh", ["-F", config, "\(ssh["SSH_USER"] ?? "accordsync")@127.0.0.1", "sudo", "-n", "true"], timeout: 10))?.ok == true else {
            throw XCTSkip("ssh with sudo does not work (another test may have removed /etc/sudoers.d/accord-testenv)")
        }
        prefix = freshPrefix()
        accordEnvironment.merge(server.clientEnvironment) { $1 }
        accordEnvironment["AWS_PROFILE"] = ""
        accordEnvironment["ACCORD_CACHE_DIR"] = scratch.sub("cache")
    }

    func testSyncFromABucketToANodeOverSSH() throws {
        let password = try useEncryption(passphrase: "bucket to node")
        let root = scratch.sub("src")
        try TreeBuilder.mkdir(Array(root.utf8))
        var rng = SeededRandom(seed: 23)
        try TreeBuilder.write(Array((root + "/a.bin").utf8), rng.bytes(1_500_000))
        try TreeBuilder.write(Array((root + "/a.txt").utf8), Array("to the node\n".utf8))
        try accordOK(["backup", "-d", s3Repo, "--password-file", password, root])
        let sshOption = "--ssh-option=-F \(ssh["SSH_CONFIG"]!)"

        // A sudo user, a directory of the client's choice.
        let dest = scratch.sub("node-copy")
        let first = try accordOK(["sync", "-d", s3Repo, "--password-file", password, "--to", "\(ssh["SSH_USER"]!)@127.0.0.1:\(dest)", sshOption, "--marker"])
        XCTAssertTrue(first.stdout.contains("synced 1 snapshot(s)"), first.stdout)
        XCTAssertTrue(Files.exists(dest + "/restore"), "--marker places the restore marker on the node")
        let target = scratch.sub("restored")
        try accordOK(["restore", "-d", dest, "--password-file", password, "latest", "--target", target])
        XCTAssertEqual(try Files.read(target + root + "/a.bin"), try Files.read(root + "/a.bin"))
        XCTAssertTrue(try accordOK(["check", "--read-data", "-d", dest, "--password-file", password]).stdout.contains("no errors found"))

        // Only what the node lacks goes the second time.
        try TreeBuilder.write(Array((root + "/b.txt").utf8), Array("second\n".utf8))
        try accordOK(["backup", "-d", s3Repo, "--password-file", password, root])
        let again = try accordOK(["sync", "-d", s3Repo, "--password-file", password, "--to", "\(ssh["SSH_USER"]!)@127.0.0.1:\(dest)", sshOption, "--json"])
        let stats = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(again.stdout.utf8)) as? [String: Any], again.stdout)
        XCTAssertEqual(stats["snapshots"] as? Int, 1)
        XCTAssertLessThan(stats["payloadBytes"] as? Int ?? .max, 500_000, "the 1.5 MB file is not sent again: \(stats)")

        // The least-privilege user: a forced command pins the node's repository.
        let pinned = try XCTUnwrap(ssh["SSH_PINNED_USER"]), pinnedRepo = try XCTUnwrap(ssh["SSH_PINNED_REPO"])
        try accordOK(["sync", "-d", s3Repo, "--password-file", password, "--to", "\(pinned)@127.0.0.1:\(pinnedRepo)", sshOption])
        XCTAssertTrue(try accordOK(["snapshots", "-d", pinnedRepo, "--password-file", password]).stdout.contains("2 snapshot(s)"))
    }
}
