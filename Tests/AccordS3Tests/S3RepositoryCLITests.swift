import AccordCore
import AccordRuntime
import AccordTestSupport
@_spi(Testing) import AccordS3
import Foundation
import XCTest

/// A repository in a bucket through the command line, as a user runs it:
/// `-d s3:http://127.0.0.1:PORT/BUCKET/PREFIX` against the real S3 server
/// (`rclone serve s3`, scripts/testenv/s3-start.sh), credentials from the
/// environment only.
final class S3RepositoryCLITests: AccordTestCase {
    override class func setUp() { super.setUp(); S3Servers.start(self) }
    override class func tearDown() { S3Servers.stop(self); super.tearDown() }

    var server: S3TestServer!
    var prefix = ""
    var s3Repo: String { "s3:\(server.scheme)://127.0.0.1:\(server.port)/\(server.bucket)/\(prefix)" }
    /// Where rclone keeps this repository's objects (files under its storage directory).
    var storedRepository: String { server.storage + "/" + server.bucket + "/" + prefix }

    override func setUpWithError() throws {
        try super.setUpWithError()
        server = try S3Servers.server(Self.self)
        prefix = freshPrefix()
        accordEnvironment.merge(server.clientEnvironment) { $1 }
        accordEnvironment["AWS_PROFILE"] = ""
        accordEnvironment["ACCORD_SCRYPT_N"] = "16384"
        accordEnvironment["ACCORD_CACHE_DIR"] = scratch.sub("cache")
    }

    func makeTree() throws -> String {
        let root = scratch.sub("src")
        try TreeBuilder.mkdir(Array(root.utf8))
        try TreeBuilder.mkdir(Array((root + "/sub").utf8))
        var rng = SeededRandom(seed: 16)
        try TreeBuilder.write(Array((root + "/sub/data.bin").utf8), rng.letterText(3_000_000))
        try TreeBuilder.write(Array((root + "/small.txt").utf8), Array("a small file\n".utf8))
        try TreeBuilder.write(Array((root + "/empty").utf8), [])
        return root
    }

    /// Relative path → bytes of every regular file under `dir`.
    func files(under dir: String) throws -> [String: [UInt8]] {
        var out: [String: [UInt8]] = [:]
        for f in Files.regularFiles(under: dir) { out[String(f.dropFirst(dir.count + 1))] = try Files.read(f) }
        return out
    }

    func testRoundTripOfAnEncryptedRepositoryInABucket() throws {
        let password = try writePasswordFile("s3 round trip passphrase")
        let root = try makeTree()
        let cwd = scratch.sub("cwd")
        try Files.mkdir(cwd)
        let p = ["--password-file", password]
        func run(_ args: [String]) throws -> CommandResult {
            let r = try accord(args, cwd: cwd)
            XCTAssertTrue(r.ok, "\(r)")
            return r
        }
        let initOut = try run(["init", "-d", s3Repo, "--encryption", "aes-256-gcm"] + p)
        XCTAssertTrue(initOut.stdout.contains("created encrypted"), initOut.stdout)
        XCTAssertTrue(Files.exists(storedRepository + "/config"), "the config is an object under the prefix")
        XCTAssertEqual(Files.regularFiles(under: storedRepository + "/keys").count, 1, "one key object")

        let first = try run(["backup", "-d", s3Repo] + p + [root])
        XCTAssertTrue(first.stdout.contains("snapshot "), first.stdout)
        let firstPacks = Set(Files.regularFiles(under: storedRepository + "/data"))
        XCTAssertGreaterThan(firstPacks.count, 0)
        XCTAssertEqual(Files.regularFiles(under: storedRepository + "/index").count, 1)
        XCTAssertEqual(Files.regularFiles(under: storedRepository + "/locks").count, 0, "the lock object is removed on release")
        XCTAssertFalse(try files(under: storedRepository).values.contains { $0.count > 64 && String(decoding: $0, as: UTF8.self).contains("a small file") },
                       "nothing is stored in plaintext")

        let snaps = try run(["snapshots", "-d", s3Repo] + p)
        XCTAssertTrue(snaps.stdout.contains("1 snapshot(s)"), snaps.stdout)
        let ls = try run(["ls", "-d", s3Repo] + p + ["latest"])
        XCTAssertTrue(ls.stdout.contains(root + "/sub/data.bin") && ls.stdout.contains(root + "/small.txt"), ls.stdout)

        let target = scratch.sub("restored")
        _ = try run(["restore", "-d", s3Repo] + p + ["latest", "--target", target])
        XCTAssertEqual(try files(under: target + root), try files(under: root), "restored byte for byte")

        let check = try run(["check", "--read-data", "-d", s3Repo] + p)
        XCTAssertTrue(check.stdout.contains("no errors found"), check.stdout)

        // No file changed: no content is read or stored. (The ancestors' metadata is recorded too, and
        // /tmp changes under other tests, so a small metadata pack may come; never a data pack.)
        let second = try run(["backup", "-d", s3Repo] + p + [root])
        XCTAssertTrue(second.stdout.contains("read 0 B") && second.stdout.contains("(3 files unchanged)"), second.stdout)
        let newPacks = Set(Files.regularFiles(under: storedRepository + "/data")).subtracting(firstPacks)
        XCTAssertLessThanOrEqual(newPacks.count, 1, "a no-change backup adds at most its metadata pack")
        for f in newPacks { XCTAssertLessThan(Files.size(f), 64 << 10, "only metadata is new: \(f)") }
        let requests = try XCTUnwrap(second.stdout.split(separator: "\n").first { $0.hasPrefix("s3: ") }, second.stdout)
        let count = try XCTUnwrap(Int(requests.split(separator: " ")[1]), String(requests))
        XCTAssertLessThan(count, 60, "a no-change backup makes a handful of requests: \(requests)")
        print("no-change backup on s3: \(requests)")

        _ = try run(["forget", "-d", s3Repo] + p + ["--keep-last", "1"])
        _ = try run(["prune", "-d", s3Repo] + p)
        let after = try run(["snapshots", "-d", s3Repo] + p)
        XCTAssertTrue(after.stdout.contains("1 snapshot(s)"), after.stdout)
        XCTAssertTrue(try run(["check", "--read-data", "-d", s3Repo] + p).stdout.contains("no errors found"))
        let again = scratch.sub("restored-again")
        _ = try run(["restore", "-d", s3Repo] + p + ["latest", "--target", again])
        XCTAssertEqual(try files(under: again + root), try files(under: root), "restored byte for byte after prune")

        XCTAssertEqual(try Sys.listDirectory(cwd), [], "nothing local is made for an s3: repository")
        XCTAssertFalse(Files.exists("s3:http:"), "no directory named after the location")
    }

    func testAWrongSecretIsOneClearError() throws {
        XCTAssertTrue(try accord(["init", "-d", s3Repo, "--encryption", "none"]).ok)
        let r = try accord(["snapshots", "-d", s3Repo], environment: ["AWS_SECRET_ACCESS_KEY": "not-the-secret-at-all"])
        XCTAssertFalse(r.ok || r.signaled, "\(r)")
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, "one error line: \(r.stderr)")
        XCTAssertTrue(r.stderr.contains("denied") && r.stderr.contains("AWS_SECRET_ACCESS_KEY") && r.stderr.contains(server.bucket), r.stderr)
        XCTAssertFalse(r.output.contains("not-the-secret-at-all"), "the secret is never printed")
    }

    func testAMissingBucketIsOneClearError() throws {
        let missing = "s3:http://127.0.0.1:\(server.port)/no-such-bucket-16/\(prefix)"
        for args in [["init", "-d", missing, "--encryption", "none"], ["snapshots", "-d", missing], ["backup", "-d", missing, try makeTree()]] {
            let r = try accord(args)
            XCTAssertFalse(r.ok || r.signaled, "\(r)")
            XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, "one error line: \(r.stderr)")
            XCTAssertTrue(r.stderr.contains("bucket no-such-bucket-16 does not exist"), r.stderr)
        }
        XCTAssertFalse(Files.exists(server.storage + "/no-such-bucket-16"), "accord never creates a bucket")
    }

    func testAnUnsupportedCommandSaysSoAndAMissingRepositoryIsNamed() throws {
        let r = try accord(["snapshots", "-d", s3Repo])
        XCTAssertFalse(r.ok || r.signaled, "\(r)")
        XCTAssertTrue(r.stderr.contains("is not an Accord repository"), r.stderr)
    }

    /// A plan on a bucket: its backup places the `restore` marker as the
    /// object PREFIX/restore, its restore (under an exclusive lock object)
    /// refuses without the marker, replaces the plan's storage directory with
    /// the snapshot's copy, and removes the marker. (A plan of files only: the
    /// AE5 plans' Kubernetes and PostgreSQL steps are AccordPlansTests'.)
    func testAPlanBacksUpToAndRestoresFromABucket() throws {
        let storage = scratch.sub("storage")
        try TreeBuilder.mkdir(Array(storage.utf8))
        try TreeBuilder.mkdir(Array((storage + "/data").utf8))
        var rng = SeededRandom(seed: 1616)
        try TreeBuilder.write(Array((storage + "/data/a.bin").utf8), rng.bytes(300_000))
        try TreeBuilder.write(Array((storage + "/data/notes.txt").utf8), Array("kept by the plan\n".utf8))
        let planFile = scratch.sub("plan.yaml")
        try TreeBuilder.write(Array(planFile.utf8), Array("""
            base: ae5
            name: files-on-s3
            storage: {root: \(storage), excludes: [], replace: [data]}
            dumps: []
            objects: []
            restoreSteps: [check-marker, replace-storage, remove-marker]

            """.utf8))
        let marker = storedRepository + "/restore"
        try accordOK(["init", "-d", s3Repo, "--encryption", "none"])
        try accordOK(["backup", "-d", s3Repo, "--plan", planFile])
        XCTAssertTrue(Files.exists(marker), "the plan's backup placed the marker object")
        XCTAssertEqual(try Files.read(marker), [], "an empty object")

        let original = try files(under: storage)
        try TreeBuilder.write(Array((storage + "/data/notes.txt").utf8), Array("changed since\n".utf8))
        try TreeBuilder.write(Array((storage + "/data/new.txt").utf8), Array("not in the snapshot\n".utf8))
        try accordOK(["restore", "-d", s3Repo, "--plan", planFile])
        XCTAssertEqual(try files(under: storage), original, "the storage directory is the snapshot's again")
        XCTAssertFalse(Files.exists(marker), "the restore removed the marker")
        XCTAssertEqual(Files.regularFiles(under: storedRepository + "/locks"), [], "its lock object is gone")

        let again = try accord(["restore", "-d", s3Repo, "--plan", planFile])
        XCTAssertFalse(again.ok || again.signaled, "\(again)")
        XCTAssertTrue(again.stderr.contains("no `restore` marker"), again.stderr)

        // A DR copy in another prefix: `sync --to s3:… --marker` places the marker there, and the plan restores from it.
        let copyPrefix = freshPrefix()
        let copy = "s3:\(server.scheme)://127.0.0.1:\(server.port)/\(server.bucket)/\(copyPrefix)"
        try accordOK(["sync", "-d", s3Repo, "--to", copy, "--marker"])
        let copyMarker = server.storage + "/" + server.bucket + "/" + copyPrefix + "/restore"
        XCTAssertTrue(Files.exists(copyMarker), "sync --marker placed the marker in the copy")
        try TreeBuilder.write(Array((storage + "/data/notes.txt").utf8), Array("changed again\n".utf8))
        try accordOK(["restore", "-d", copy, "--plan", planFile])
        XCTAssertEqual(try files(under: storage), original, "restored from the DR copy in the bucket")
        XCTAssertFalse(Files.exists(copyMarker))

        // `-a backup -n NODE` sends to the same directory on the node: no such thing for a bucket.
        let pushed = try accord(["-a", "backup", "-d", s3Repo, "-u", "dr", "-n", "dr-node"])
        XCTAssertFalse(pushed.ok || pushed.signaled, "\(pushed)")
        XCTAssertTrue(pushed.stderr.contains("is a bucket") && pushed.stderr.contains("--to USER@NODE:DIR --marker"), pushed.stderr)
    }

    /// `accord sync --to s3:…`: a local encrypted repository copied into a
    /// bucket without serve; the copy restores byte for byte with the key,
    /// checks without it, and a second sync copies nothing.
    func testSyncCopiesALocalRepositoryIntoABucket() throws {
        let password = try useEncryption(passphrase: "sync to a bucket")
        let root = try makeTree()
        _ = try backup(root)
        let first = try accordOK(["sync", "-d", repo, "--to", s3Repo])
        XCTAssertTrue(first.stdout.contains("synced to \(s3Repo): 1 snapshot(s)"), first.stdout)
        XCTAssertEqual(try files(under: storedRepository), try files(under: repo).filter { !$0.key.hasPrefix("locks/") && !$0.key.hasPrefix("tmp/") },
                       "the copy holds the same objects, byte for byte, under the same names")

        let target = scratch.sub("from-bucket")
        try accordOK(["restore", "-d", s3Repo, "--password-file", password, "latest", "--target", target])
        XCTAssertEqual(try files(under: target + root), try files(under: root))
        let keyless = try accordOK(["check", "--without-key", "--read-data", "-d", s3Repo], environment: ["ACCORD_PASSWORD_FILE": ""])
        XCTAssertTrue(keyless.stdout.contains("no errors found"), keyless.stdout)

        let again = try accordOK(["sync", "-d", repo, "--to", s3Repo])
        XCTAssertTrue(again.stdout.contains("0 snapshot(s), 0 pack(s), 0 index file(s), 0 key file(s)"), again.stdout)
        try TreeBuilder.write(Array((root + "/new.txt").utf8), Array("new\n".utf8))
        _ = try backup(root)
        let third = try accordOK(["sync", "-d", repo, "--to", s3Repo])
        XCTAssertTrue(third.stdout.contains("1 snapshot(s), 1 pack(s), 1 index file(s), 0 key file(s)"), third.stdout)

        // Back out of the bucket: to a local directory (through a local serve), and to another prefix (no serve).
        let local = scratch.sub("back-home")
        try accordOK(["sync", "-d", s3Repo, "--password-file", password, "--to", local])
        XCTAssertTrue(try accordOK(["snapshots", "-d", local, "--password-file", password]).stdout.contains("2 snapshot(s)"))
        let second = "s3:\(server.scheme)://127.0.0.1:\(server.port)/\(server.bucket)/\(freshPrefix())"
        try accordOK(["sync", "-d", s3Repo, "--password-file", password, "--to", second])
        XCTAssertTrue(try accordOK(["check", "--read-data", "-d", second, "--password-file", password]).stdout.contains("no errors found"))

        try accordOK(["init", "-d", scratch.sub("other")])
        let refused = try accord(["sync", "-d", scratch.sub("other"), "--to", s3Repo])
        XCTAssertFalse(refused.ok || refused.signaled, "\(refused)")
        XCTAssertTrue(refused.stderr.contains("give another destination"), refused.stderr)
    }

    /// A backup killed once packs have landed: nothing partial is visible, the
    /// repository checks clean, and the next backup indexes what landed and
    /// stores no data again (packs → index → snapshot, as on disk).
    func testABackupKilledMidwayLeavesARepositoryTheNextBackupReuses() throws {
        let root = scratch.sub("big")
        try TreeBuilder.mkdir(Array(root.utf8))
        var rng = SeededRandom(seed: 1616)
        for i in 0..<6 { try TreeBuilder.write(Array((root + "/f\(i)").utf8), rng.bytes(12 << 20)) }
        try accordOK(["init", "-d", s3Repo, "--encryption", "none"])
        let running = try start(["backup", "-d", s3Repo, root])
        // Packs whole under their names (rclone keeps an upload under another name until it is complete).
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
        running.kill()
        let killed = running.finish()
        guard killed.signaled else { throw XCTSkip("the backup finished before it could be killed (\(landed) packs): \(killed)") }
        XCTAssertEqual(Files.regularFiles(under: storedRepository + "/snapshots").count, 0, "no snapshot: the commit point was not reached")
        let before = packs()
        XCTAssertGreaterThan(before.count, 0)
        XCTAssertEqual(Files.regularFiles(under: storedRepository + "/index").count, 0, "killed before its index was written")

        XCTAssertEqual(Files.regularFiles(under: storedRepository + "/locks").count, 1, "the killed backup's lock object")
        let check = try accordOK(["check", "--read-data", "-d", s3Repo])
        XCTAssertTrue(check.stdout.contains("no errors found"), check.stdout)
        XCTAssertFalse(check.stderr.contains("ignoring stale"), "the killed backup's lock object (this host's, its process gone) is taken over: \(check.stderr)")
        XCTAssertEqual(Files.regularFiles(under: storedRepository + "/locks").count, 0, "and removed on release")
        let next = try accordOK(["backup", "-d", s3Repo, root])
        XCTAssertTrue(next.stderr.contains("left by an interrupted backup"), next.stderr)
        XCTAssertTrue(before.isSubset(of: packs()), "what landed is kept")
        XCTAssertTrue(try accordOK(["check", "--read-data", "-d", s3Repo]).stdout.contains("no errors found"))
        let target = scratch.sub("restored-big")
        try accordOK(["restore", "-d", s3Repo, "latest", "--target", target])
        XCTAssertEqual(try files(under: target + root), try files(under: root))
    }

    /// A shared lock object of another live process (a stand-in `sleep`): an
    /// exclusive command fails at once naming it, waits with --retry-lock,
    /// and once that process is gone the lock is stale and ignored.
    func testALockHeldByAnotherProcessHoldsOffAnExclusiveCommand() throws {
        XCTAssertTrue(try accord(["init", "-d", s3Repo, "--encryption", "none"]).ok)
        XCTAssertTrue(try accord(["backup", "-d", s3Repo, try makeTree()]).ok)
        let holder = try startProcess("/bin/sleep", ["120"])
        defer { holder.kill() }
        let backend = try S3Backend(try server.location(prefix: prefix), environment: server.clientEnvironment)
        let info = LockInfo(exclusive: false, host: Sys.hostname, pid: holder.pid, username: "test", command: "backup", time: .now(),
                            machineID: LockInfo.localMachineID)
        try Array(try JSONEncoder().encode(info)).withUnsafeBytes { try backend.write(.lock, "held-by-another", $0) }

        let r = try accord(["prune", "-d", s3Repo])
        XCTAssertFalse(r.ok || r.signaled, "\(r)")
        XCTAssertTrue(r.stderr.contains("is held by a shared lock by `backup` (pid \(holder.pid)"), r.stderr)
        let waited = try accord(["forget", "-d", s3Repo, "--keep-last", "1", "--retry-lock", "2s"])
        XCTAssertFalse(waited.ok || waited.signaled, "\(waited)")
        XCTAssertTrue(waited.output.contains("waiting up to") && waited.stderr.contains("waited 2 s"), waited.output)
        XCTAssertEqual(try backend.list(.lock), ["held-by-another"], "the failed commands withdrew their own locks")
        XCTAssertTrue(try accord(["snapshots", "-d", s3Repo]).ok, "a shared lock does not conflict with another shared one")

        holder.kill()
        _ = holder.finish()
        let pruned = try accord(["prune", "-d", s3Repo])
        XCTAssertTrue(pruned.ok, "\(pruned)")
        XCTAssertTrue(pruned.stderr.contains("ignoring stale"), pruned.stderr)
        let unlock = try accord(["unlock", "-d", s3Repo])
        XCTAssertTrue(unlock.ok && unlock.stdout.contains("removed"), "\(unlock)")
        XCTAssertEqual(try backend.list(.lock), [])
    }
}
