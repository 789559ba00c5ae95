import AccordCore
import AccordRuntime
import AccordTestSupport
@_spi(Testing) import AccordS3
import Foundation
import XCTest

/// The README's "DR copy in a bucket": production syncs into a bucket with
/// credentials that may put, get and list but not delete (a `FaultProxy` in
/// front of the real server answers every DELETE 403 AccessDenied, as S3
/// does for a policy without s3:DeleteObject); the DR node restores from it.
final class S3DRBucketTests: AccordTestCase {
    override class func setUp() { super.setUp(); S3Servers.start(self) }
    override class func tearDown() { S3Servers.stop(self); super.tearDown() }

    var server: S3TestServer!
    var prefix = ""
    var proxy: FaultProxy!
    /// Through the proxy: the DR copy's credentials, which cannot delete.
    var bucketRepo: String { "s3:http://127.0.0.1:\(proxy.port)/\(server.bucket)/\(prefix)" }
    /// Straight to the server: an administrator's credentials, which can.
    var adminRepo: String { "s3:http://127.0.0.1:\(server.port)/\(server.bucket)/\(prefix)" }
    var storedRepository: String { server.storage + "/" + server.bucket + "/" + prefix }

    override func setUpWithError() throws {
        try super.setUpWithError()
        server = try S3Servers.server(Self.self)
        prefix = freshPrefix()
        proxy = try FaultProxy(upstreamPort: Int(server.port)!)
        proxy.inject(.answer(403, headers: ["Content-Type: application/xml"], body: denied), method: "DELETE")
        accordEnvironment.merge(server.clientEnvironment) { $1 }
        accordEnvironment["AWS_PROFILE"] = ""
        accordEnvironment["ACCORD_CACHE_DIR"] = scratch.sub("cache")
    }

    override func tearDown() { proxy?.stop(); proxy = nil; super.tearDown() }

    let denied = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"

    /// The `released` key of a lock object as stored.
    func released(_ path: String) throws -> Bool? {
        try JSONDecoder().decode(LockInfo.self, from: Data(try Files.read(path))).released
    }

    func files(under dir: String) throws -> [String: [UInt8]] {
        var out: [String: [UInt8]] = [:]
        for f in Files.regularFiles(under: dir) { out[String(f.dropFirst(dir.count + 1))] = try Files.read(f) }
        return out
    }

    /// A plan restore with credentials that may not delete: the data is
    /// restored, but the `restore` marker cannot be removed, so the restore
    /// fails, naming the marker (else the next plan restore would take it for
    /// a new backup and replace live data again).
    func testAPlanRestoreThatCannotRemoveTheMarkerFails() throws {
        let storage = scratch.sub("storage")
        try TreeBuilder.mkdir(Array(storage.utf8))
        try TreeBuilder.mkdir(Array((storage + "/data").utf8))
        try TreeBuilder.write(Array((storage + "/data/a.txt").utf8), Array("as backed up\n".utf8))
        let planFile = scratch.sub("plan.yaml")
        try TreeBuilder.write(Array(planFile.utf8), Array("base: ae5\nname: files\nstorage: {root: \(storage), excludes: [], replace: [data]}\ndumps: []\nobjects: []\nrestoreSteps: [check-marker, replace-storage, remove-marker]\n".utf8))
        try accordOK(["init", "-d", adminRepo, "--encryption", "none"])
        try accordOK(["backup", "-d", adminRepo, "--plan", planFile])
        try TreeBuilder.write(Array((storage + "/data/a.txt").utf8), Array("changed\n".utf8))
        let r = try accord(["restore", "-d", bucketRepo, "--plan", planFile])
        XCTAssertFalse(r.ok || r.signaled, "\(r)")
        XCTAssertTrue(r.stderr.contains("the steps before remove-marker ran, but the `restore` marker") && r.stderr.contains("could not be removed"), r.stderr)
        XCTAssertEqual(try Files.read(storage + "/data/a.txt"), Array("as backed up\n".utf8), "the data was restored")
        XCTAssertTrue(Files.exists(storedRepository + "/restore"), "the marker is still there")

        // The bucket failing when asked for the marker: its error, not "no marker … --override".
        proxy.refuse(from: 1, of: { $0.hasPrefix("HEAD ") && $0.hasSuffix("/restore") },
                     with: .answer(403, headers: ["Content-Type: application/xml"], body: denied))
        let asked = try accord(["restore", "-d", bucketRepo, "--plan", planFile])
        XCTAssertFalse(asked.ok || asked.signaled, "\(asked)")
        XCTAssertFalse(asked.stderr.contains("--override"), asked.stderr)
        XCTAssertTrue(asked.stderr.contains("AccessDenied") || asked.stderr.contains("403"), asked.stderr)

        // Any object at the marker's key counts, whatever its size (only its existence matters): an admin's note there
        // is a marker, not an error. Put through S3 with the admin's rights, so the server knows its new size.
        let admin = try S3Backend(try server.location(prefix: prefix), environment: server.clientEnvironment)
        try Array(repeating: UInt8(ascii: "n"), count: 4096).withUnsafeBytes { try admin.write(.marker, "restore", $0) }
        try TreeBuilder.write(Array((storage + "/data/a.txt").utf8), Array("changed again\n".utf8))
        let noted = try accord(["restore", "-d", adminRepo, "--plan", planFile])
        XCTAssertTrue(noted.ok, "\(noted)")
        XCTAssertEqual(try Files.read(storage + "/data/a.txt"), Array("as backed up\n".utf8), "restored on a 4 KiB marker")
        XCTAssertThrowsError(try admin.size(.marker, "restore"), "the marker was consumed")
    }

    /// Production backs up locally and syncs into the bucket; the DR node
    /// restores, checks and copies from it with the same rights; retention
    /// needs credentials that may delete. Lock objects that cannot be deleted
    /// do not pile up: each host takes its own leftover over.
    func testADRCopyInABucketWithCredentialsThatCannotDelete() throws {
        let password = try useEncryption(passphrase: "dr bucket")
        let root = scratch.sub("src")
        try TreeBuilder.mkdir(Array(root.utf8))
        var rng = SeededRandom(seed: 7)
        try TreeBuilder.write(Array((root + "/a.bin").utf8), rng.bytes(1_000_000))
        _ = try backup(root)
        let locks = { Files.regularFiles(under: self.storedRepository + "/locks") }

        // Production's credentials as the README's drop-in gives them: a 0600 file named by AWS_SHARED_CREDENTIALS_FILE.
        let credentials = scratch.sub("s3-dr.credentials")
        try TreeBuilder.write(Array(credentials.utf8), Array("[default]\naws_access_key_id = \(server.env["AWS_ACCESS_KEY_ID"]!)\naws_secret_access_key = \(server.env["AWS_SECRET_ACCESS_KEY"]!)\n".utf8))
        XCTAssertEqual(chmod(credentials, 0o600), 0)
        let first = try accordOK(["sync", "-d", repo, "--to", bucketRepo],
                                 environment: ["AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_SHARED_CREDENTIALS_FILE": credentials])
        XCTAssertTrue(first.stdout.contains("synced to \(bucketRepo): 1 snapshot(s), 1 pack(s), 1 index file(s), 1 key file(s)"), first.stdout)
        XCTAssertTrue(first.stderr.contains("is left in place, marked released: these credentials may not delete (AccessDenied)"), first.stderr)
        XCTAssertEqual(first.stderr.split(separator: "\n").count, 1, "one warning: \(first.stderr)")
        XCTAssertEqual(locks().count, 1, "the sync's lock object stays")
        let leftover = locks()
        XCTAssertEqual(try released(leftover[0]), true, "marked released, so no host waits for it")

        try TreeBuilder.write(Array((root + "/b.bin").utf8), rng.bytes(100_000))
        _ = try backup(root)
        let second = try accordOK(["sync", "-d", repo, "--to", bucketRepo])
        XCTAssertTrue(second.stdout.contains("1 snapshot(s), 1 pack(s), 1 index file(s), 0 key file(s)"), second.stdout)
        XCTAssertFalse(second.stderr.contains("ignoring stale"), "the leftover is taken over, not warned about: \(second.stderr)")
        // (A leftover is taken over only when it is written within 0.5 s of the listing that found
        // it, so a machine under heavy load may write a second object now and then: at most one more.)
        XCTAssertTrue(Set(locks()).isSuperset(of: leftover) && locks().count <= 2, "the next accord took the same object over: \(locks())")

        // On the DR node: restore, a keyed check and a local copy, with the same credentials.
        let target = scratch.sub("restored")
        try accordOK(["restore", "-d", bucketRepo, "--password-file", password, "latest", "--target", target])
        XCTAssertEqual(try files(under: target + root), try files(under: root), "restored byte for byte")
        XCTAssertTrue(try accordOK(["check", "--read-data", "-d", bucketRepo, "--password-file", password]).stdout.contains("no errors found"))
        let local = scratch.sub("dr-local")
        try accordOK(["sync", "-d", bucketRepo, "--password-file", password, "--to", local])
        XCTAssertTrue(try accordOK(["snapshots", "-d", local, "--password-file", password]).stdout.contains("2 snapshot(s)"))
        XCTAssertLessThanOrEqual(locks().count, 2, "five commands later, no pile of lock objects: \(locks())")
        XCTAssertTrue(try accordOK(["snapshots", "-d", bucketRepo, "--password-file", password]).stdout.contains("2 snapshot(s)"))
        XCTAssertTrue(try accordOK(["ls", "-d", bucketRepo, "--password-file", password, "latest"]).stdout.contains(root + "/b.bin"))
        XCTAssertEqual(try accordOK(["dump", "-d", bucketRepo, "--password-file", password, "latest", root + "/b.bin"]).stdoutBytes,
                       try Files.read(root + "/b.bin"))
        XCTAssertTrue(try accordOK(["check", "--without-key", "--read-data", "-d", bucketRepo], environment: ["ACCORD_PASSWORD_FILE": ""])
            .stdout.contains("no errors found"))
        let other = scratch.sub("other-src")
        try TreeBuilder.mkdir(Array(other.utf8))
        try TreeBuilder.write(Array((other + "/c.txt").utf8), Array("backed up straight into the bucket\n".utf8))
        try accordOK(["backup", "-d", bucketRepo, "--password-file", password, other])
        XCTAssertTrue(try accordOK(["snapshots", "-d", bucketRepo, "--password-file", password]).stdout.contains("3 snapshot(s)"))
        XCTAssertLessThanOrEqual(locks().count, 2, "still no pile: \(locks())")
        for l in locks() { XCTAssertEqual(try released(l), true, l) }

        // Read-only credentials (no PUT either): a restore and a check go on without a lock.
        proxy.inject(.answer(403, headers: ["Content-Type: application/xml"], body: denied), method: "PUT")
        let readOnly = try accordOK(["restore", "-d", bucketRepo, "--password-file", password, "latest", "--target", scratch.sub("ro")])
        XCTAssertTrue(readOnly.stderr.contains("continuing without a lock"), readOnly.stderr)
        XCTAssertTrue(try accordOK(["check", "-d", bucketRepo, "--password-file", password]).stdout.contains("no errors found"))
        let roCopy = scratch.sub("dr-ro")
        let roSync = try accordOK(["sync", "-d", bucketRepo, "--password-file", password, "--to", roCopy, "--marker"])
        XCTAssertTrue(roSync.stderr.contains("continuing without a lock"), roSync.stderr)
        XCTAssertTrue(Files.exists(roCopy + "/restore"), "the marker for `accord -a restore` on the DR node")
        XCTAssertTrue(try accordOK(["snapshots", "-d", roCopy, "--password-file", password]).stdout.contains("3 snapshot(s)"))
        proxy.inject(nil, method: "PUT")

        // Retention cannot run with these credentials: one clear error naming what is needed, nothing removed.
        let keyID = try XCTUnwrap(Files.regularFiles(under: storedRepository + "/keys").first.map { String($0.split(separator: "/").last!) })
        try accordOK(["key", "add", "-d", bucketRepo, "--password-file", password, "--new-password-file", try writePasswordFile("another")])
        for args in [["forget", "--keep-last", "1"], ["forget", "--keep-last", "1", "--prune"], ["prune"], ["unlock", "--all"],
                     ["repair", "index"], ["key", "remove", String(keyID.prefix(8))]] {
            let n = args[0] == "repair" || args[0] == "key" ? 2 : 1
            let r = try accord(Array(args.prefix(n)) + ["-d", bucketRepo, "--password-file", try writePasswordFile("another")] + args.dropFirst(n))
            XCTAssertFalse(r.ok || r.signaled, "\(r)")
            XCTAssertTrue(r.stderr.contains("these credentials may not delete") && r.stderr.contains("s3:DeleteObject"), r.stderr)
        }
        // An exclusive lock never takes a leftover over, so each denied command left its own, marked released.
        XCTAssertGreaterThan(locks().count, 1)
        for l in locks() { XCTAssertEqual(try released(l), true, l) }

        // An administrator's credentials (which may delete) remove them and run retention.
        let unlock = try accordOK(["unlock", "-d", adminRepo])
        XCTAssertTrue(unlock.stdout.contains("removed") && unlock.stdout.contains("released by its accord"), unlock.stdout)
        XCTAssertEqual(locks(), [])
        XCTAssertTrue(try accordOK(["snapshots", "-d", adminRepo, "--password-file", password]).stdout.contains("3 snapshot(s)"))
        XCTAssertTrue(try accordOK(["check", "--read-data", "-d", adminRepo, "--password-file", password]).stdout.contains("no errors found"),
                      "a denied forget or prune leaves a repository that checks clean")
        try accordOK(["forget", "-d", adminRepo, "--password-file", password, "--keep-last", "1", "--prune"])
        XCTAssertTrue(try accordOK(["snapshots", "-d", bucketRepo, "--password-file", password]).stdout.contains("1 snapshot(s)"))
        XCTAssertTrue(try accordOK(["check", "--read-data", "-d", bucketRepo, "--password-file", password]).stdout.contains("no errors found"))
    }

    /// From a bucket to a node, the DR directory must be named: there is no
    /// directory of the source's name to default to.
    func testSyncFromABucketToANodeNeedsItsDirectory() throws {
        try accordOK(["init", "-d", adminRepo, "--encryption", "none"])
        for to in ["root@dr-node", "dr-node", "root@dr-node:"] {
            let r = try accord(["sync", "-d", adminRepo, "--to", to])
            XCTAssertFalse(r.ok || r.signaled, "\(r)")
            XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, "one line: \(r.stderr)")
            XCTAssertTrue(r.stderr.contains("is a bucket, so the destination's directory must be given: --to \(to.hasSuffix(":") ? String(to.dropLast()) : to):DIR"), r.stderr)
        }
    }
}
