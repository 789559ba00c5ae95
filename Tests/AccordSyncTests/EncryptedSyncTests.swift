// Sync of an encrypted repository (format version 3, protocol 2): the
// destination's `accord serve` holds it without the key and still checks
// what it is sent; the copy opens, checks and restores with the key.
import Foundation
import XCTest
import AccordCore
import AccordSync
import AccordRuntime

extension SyncTestCase {
    /// The source's passphrase as a library key source.
    var testKey: KeySource { .fixed(Array(AccordTestCase.testPassphrase.utf8), description: "the test passphrase") }

    /// Names of the key files (`keys/`), sorted.
    func keyNames(_ repo: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: repo + "/keys")) ?? []).sorted()
    }

    /// Every blob the repository's index files list: id → stored length (opened without the key).
    func indexedBlobs(_ repo: String) throws -> [BlobID: UInt32] {
        let r = try Repository.open(at: repo, withoutKey: true)
        var out: [BlobID: UInt32] = [:]
        for id in try r.listIndexFiles() {
            for p in try r.readIndexFile(id).packs { for b in p.blobs { out[b.id] = b.storedLength } }
        }
        return out
    }

    /// Ids of the blobs stored as deltas in a repository's index files.
    /// `type`: only blobs of this type (`.tree`: manifest pieces), else all.
    func sealedDeltaBlobs(_ repo: String, type: BlobType? = nil) throws -> Set<BlobID> {
        let r = try Repository.open(at: repo, withoutKey: true)
        var out = Set<BlobID>()
        for id in try r.listIndexFiles() {
            for p in try r.readIndexFile(id).packs {
                for b in p.blobs where b.compression == .delta && (type == nil || b.type == type) { out.insert(b.id) }
            }
        }
        return out
    }

    /// The nonce of every stored blob of every pack (bytes 0..<12 of a sealed
    /// blob, 32..<44 of a sealed delta), read from the packs themselves.
    func storedNonces(_ repo: String) throws -> [(nonce: [UInt8], blob: BlobID, pack: PackID)] {
        let r = try Repository.open(at: repo, withoutKey: true)
        var out: [([UInt8], BlobID, PackID)] = []
        for pack in try r.listPacks() {
            let bytes = try r.readPack(pack)
            for e in try r.readPackHeader(pack) {
                let start = Int(e.offset) + (e.compression == .delta ? 32 : 0)
                out.append((Array(bytes[start..<start + 12]), e.id, pack))
            }
        }
        return out
    }
}

/// `accord sync --to DIR` of an encrypted repository, through the CLI.
final class EncryptedLocalSyncTests: SyncTestCase {
    override func setUpWithError() throws {
        try super.setUpWithError()
        try useEncryption()
    }

    func testEncryptedRepositorySyncsWithItsKeysAndOnlyNewBlobsAfterwards() throws {
        try makeTree(source, seed: 21, randomFiles: 3, randomSize: 300_000)
        try backupSource()
        try accordOK(["key", "add", "-d", sourceRepo, "--new-password-file", try writePasswordFile("a second passphrase")])
        XCTAssertEqual(keyNames(sourceRepo).count, 2)
        let dest = scratch.sub("dest")
        let first = try decodeSync(try accordOK(["sync", "-d", sourceRepo, "--to", dest, "--json"]))
        XCTAssertEqual(first.snapshots, 1)

        // The copy is the same encrypted repository, with every key file, and holds no plaintext config.
        XCTAssertEqual(keyNames(dest), keyNames(sourceRepo), "the copy's keys/ differs from the source's")
        let (s, d) = try (Repository.open(at: sourceRepo, withoutKey: true), Repository.open(at: dest, withoutKey: true))
        XCTAssertTrue(d.config.isEncrypted)
        XCTAssertEqual(d.config.id, s.config.id)
        XCTAssertEqual(d.config.mac, s.config.mac)
        XCTAssertEqual(Set(try indexedBlobs(dest).keys), Set(try indexedBlobs(sourceRepo).keys))
        try assertRestoreMatchesSource(from: dest, label: "first")
        // Without the key the copy checks too: every file against its name, pack headers against the index.
        let keyless = try accord(["check", "--read-data", "--without-key", "-d", dest])
        XCTAssert(keyless.ok, "check --read-data --without-key on the copy failed:\n\(keyless)")
        // The second key file opens the copy too.
        try accordOK(["snapshots", "list", "-d", dest, "--password-file", try writePasswordFile("a second passphrase")])

        // An incremental sync sends exactly the blobs the copy lacks, byte for byte as stored.
        try appendToFile(source + "/docs/notes.txt", Array("one more line for the second snapshot\n".utf8))
        var rng = SeededRandom(seed: 22)
        try writeFile(source + "/data/new.bin", rng.bytes(150_000))
        try backupSource()
        let (src, dst) = (try indexedBlobs(sourceRepo), try indexedBlobs(dest))
        let new = src.filter { dst[$0.key] == nil }
        XCTAssertFalse(new.isEmpty)
        let second = try decodeSync(try accordOK(["sync", "-d", sourceRepo, "--to", dest, "--json"]))
        XCTAssertEqual(second.snapshots, 1)
        XCTAssertEqual(second.blobs, new.count, "the second sync sent other blobs than the new ones")
        XCTAssertEqual(second.payloadBytes, new.values.reduce(UInt64(0)) { $0 + UInt64($1) }, "the payload is not the new blobs' stored bytes")
        try assertRestoreMatchesSource(from: dest, label: "second")
        let third = try decodeSync(try accordOK(["sync", "-d", sourceRepo, "--to", dest, "--json"]))
        XCTAssertEqual([third.snapshots, third.blobs], [0, 0])
    }

    /// Delta blobs of an encrypted repository travel sealed as stored when the
    /// copy holds their base whole, and are opened, decoded and sealed again
    /// whole for a copy that lacks it; both copies check and restore.
    func testEncryptedDeltaBlobsTravelAsStoredOrResealedWhole() throws {
        func rows(_ n: Int, bump: Set<Int> = []) -> [UInt8] {
            var out: [UInt8] = []
            for i in 1...n { out += Array("\(i)\t\(bump.contains(i) ? 7 : 0)\t".utf8) + [UInt8](repeating: 0x20, count: 90) + [0x0a] }
            return out
        }
        let dumpFile = source + "/db/dump.sql"
        try FileManager.default.createDirectory(atPath: source + "/db", withIntermediateDirectories: true)
        try writeFile(dumpFile, rows(120_000))   // ~12 MB: ~45 chunks of the dump profile
        let first = try backupSource()
        let dest = scratch.sub("dest")
        try accordOK(["sync", "-d", sourceRepo, "--to", dest, "-q"])
        var rng = SeededRandom(seed: 26)
        try writeFile(dumpFile, rows(120_000, bump: Set((0..<300).map { _ in 1 + rng.int(0..<120_000) })))
        let second = try backupSource()
        XCTAssertEqual(try decodeSync(try accordOK(["sync", "-d", sourceRepo, "--to", dest, "--json"])).snapshots, 1)
        let sourceDeltas = try sealedDeltaBlobs(sourceRepo)
        XCTAssertGreaterThan(sourceDeltas.count, 20, "day 2 stored too few delta blobs for the test to mean anything")
        XCTAssertEqual(try sealedDeltaBlobs(dest), sourceDeltas, "sealed deltas whose bases the copy holds must arrive as stored")
        try assertRestoreMatchesSource(from: dest, label: "deltas")

        let fresh = scratch.sub("dest-day2-only")
        XCTAssertEqual(try decodeSync(try accordOK(["sync", "-d", sourceRepo, "--to", fresh, "--json", second.id])).snapshots, 1)
        XCTAssertEqual(try sealedDeltaBlobs(fresh), [], "a sealed delta was sent to a copy without its base")
        XCTAssertEqual(Set(try indexedBlobs(fresh).keys).intersection(sourceDeltas), sourceDeltas, "the deltas did not arrive whole")
        try assertRestoreMatchesSource(from: fresh, label: "resealed")
        XCTAssertNotEqual(first.id, second.id)
    }

    /// A sync killed once serve has renamed its first pack leaves a copy that
    /// checks with the key; the rerun (serve, keyless, adopts the unindexed
    /// packs) sends exactly the blobs the packs there lack.
    func testAKilledEncryptedSyncResumesSendingOnlyWhatIsMissing() throws {
        var rng = SeededRandom(seed: 27)
        for i in 0..<5 { try writeFile(source + "/data/big\(i).bin", rng.bytes(8 << 20)) }
        try backupSource()
        let dest = scratch.sub("dest")
        let sync = try start(["sync", "-d", sourceRepo, "--to", dest, "-q"])
        let deadline = Date().addingTimeInterval(120)
        while sync.isRunning && packFiles(of: dest).isEmpty && Date() < deadline { usleep(1000) }
        let interrupted = sync.isRunning
        sync.kill()
        _ = sync.finish()
        waitForUnlocked(dest)
        let inPacks = Set(try storedNonces(dest).map(\.blob))
        let needed = Set(try indexedBlobs(sourceRepo).keys)
        let missing = needed.subtracting(inPacks)
        if interrupted { XCTAssertFalse(inPacks.isEmpty, "no pack was renamed before the kill") }
        print("killed sync: \(interrupted ? "interrupted" : "had completed") with \(inPacks.count) of \(needed.count) blobs in the copy's packs")
        let rerun = try decodeSync(try accordOK(["sync", "-d", sourceRepo, "--to", dest, "--json"]))
        XCTAssertEqual(rerun.snapshots, 1)
        XCTAssertEqual(rerun.blobs, missing.count, "the rerun sent \(rerun.blobs) blobs; the copy's packs lacked \(missing.count) of \(needed.count)")
        try assertRestoreMatchesSource(from: dest, label: "resumed")
    }

    /// The local serve starts without the variables that name a passphrase.
    func testLocalServeIsStartedWithoutThePassphraseVariables() {
        let argv = SyncTransport.localServeArgv("/srv/copy")
        XCTAssertEqual(Array(argv.prefix(5)), ["/usr/bin/env", "-u", "ACCORD_PASSWORD_FILE", "-u", "ACCORD_PASSWORD_COMMAND"])
        XCTAssertEqual(Array(argv.suffix(3)), ["serve", "--repo", "/srv/copy"])
    }

    /// The issue's nonce test for "a sync server and a backup on the same
    /// repository": a backup into the copy (with the key) while a sync writes
    /// into it; no nonce of any stored blob repeats.
    func testABackupIntoTheCopyDuringASyncRepeatsNoNonce() throws {
        try makeTree(source, seed: 23, randomFiles: 4, randomSize: 500_000)
        try backupSource()
        let dest = scratch.sub("dest")
        try accordOK(["sync", "-d", sourceRepo, "--to", dest, "-q"])
        var rng = SeededRandom(seed: 24)
        for i in 0..<6 { try writeFile(source + "/data/more\(i).bin", rng.bytes(400_000)) }
        try backupSource()
        let other = scratch.sub("other")
        try makeTree(other, seed: 25, randomFiles: 6, randomSize: 400_000)
        // The same data in both as well: the backup stores its own seal of blobs the sync brings too.
        try writeFile(other + "/shared.bin", try readFile(source + "/data/more0.bin"))

        let sync = try start(["sync", "-d", sourceRepo, "--to", dest, "-q"])
        let backup = try start(["backup", "-d", dest, "-q", other])
        let (rs, rb) = (sync.finish(), backup.finish())
        XCTAssert(rs.ok, "the sync failed:\n\(rs)")
        XCTAssert(rb.ok, "the backup into the copy failed:\n\(rb)")

        let nonces = try storedNonces(dest)
        XCTAssertGreaterThan(nonces.count, 20)
        var seen: [[UInt8]: (BlobID, PackID)] = [:]
        for n in nonces {
            if let first = seen[n.nonce] {
                XCTFail("nonce \(hexString(n.nonce)) of blob \(n.blob.short) in pack \(n.pack.short) repeats that of blob \(first.0.short) in pack \(first.1.short)")
            }
            seen[n.nonce] = (n.blob, n.pack)
        }
        XCTAssertEqual(snapshotFiles(of: dest).count, 3)
        let check = try accord(["check", "--read-data", "-d", dest])
        XCTAssert(check.ok && check.stdout.contains("no errors found"), "check --read-data on the copy failed:\n\(check)")
    }
}

/// `accord serve` of an encrypted repository spoken to frame by frame by a
/// hostile client: each lie is refused with an error and nothing is stored.
final class EncryptedServeProtocolTests: SyncTestCase {
    var dest: String { scratch.sub("dest") }
    var src: Repository!
    var config: [UInt8] = []
    var snapshotBytes: [UInt8] = []

    override func setUpWithError() throws {
        try super.setUpWithError()
        try useEncryption()
        try makeTree(source, seed: 31, randomFiles: 2, randomSize: 200_000)
        let snap = try backupSource()
        setenv("ACCORD_SCRYPT_N", "16384", 1)
        src = try Repository.open(at: sourceRepo, key: testKey)
        _ = try src.openAllSnapshots()
        config = try readFile(sourceRepo + "/config")
        snapshotBytes = try readFile(sourceRepo + "/snapshots/" + snap.id)
    }

    /// A serve of `dest` past its hello (which creates the keyless copy).
    func session(_ name: String) throws -> ServeSession {
        let s = try ServeSession(["--repo", dest], logPath: scratch.sub("serve-\(name).log"))
        guard case .helloOK? = try s.hello(config) else { throw SSHStartError(message: "no helloOK from serve:\n\(s.log)") }
        return s
    }

    /// A stored blob of the source with its location (the first one of `compression`).
    func sourceBlob(_ compression: BlobCompression) throws -> (id: BlobID, location: BlobLocation, stored: [UInt8]) {
        var found: (BlobID, BlobLocation)?
        src.index.forEach { id, l in if found == nil && l.compression == compression { found = (id, l) } }
        let (id, l) = try XCTUnwrap(found, "the source holds no blob of compression \(compression)")
        var stored: [UInt8] = []
        try src.readStored(id, location: l, into: &stored)
        return (id, l, stored)
    }

    func sealed(_ id: BlobID, _ l: BlobLocation, _ stored: [UInt8], rawLength: UInt32? = nil, compression: BlobCompression? = nil,
                hash: ID? = nil) -> SealedSyncBlob {
        SealedSyncBlob(index: 0, type: l.type, compression: compression ?? l.compression, rawLength: rawLength ?? l.rawLength, id: id,
                       storedHash: hash ?? SHA256Hasher.hash(stored), stored: stored)
    }

    /// Sends `have(prefix)` then `frame`, then `flush`; the answer must be an
    /// error containing `expected`, and the copy must hold no pack, snapshot or key file.
    func assertRefused(_ name: String, prefix: UInt64, _ frame: Frame, _ expected: String,
                       file: StaticString = #filePath, line: UInt = #line) throws {
        let s = try session(name)
        defer { s.kill() }
        try s.connection.send(.have([prefix]))
        guard case .missing? = try s.connection.receive(timeout: 60) else { return XCTFail("no missing:\n\(s.log)", file: file, line: line) }
        try s.connection.send(frame)
        try s.connection.send(.flush)
        let reply = try s.connection.receive(timeout: 60)
        let m = try XCTUnwrap(errorMessage(reply), "\(name) was answered \(String(describing: reply))", file: file, line: line)
        XCTAssert(m.contains(expected), "\(name): \(m)", file: file, line: line)
        XCTAssertEqual(s.exit()?.status, 1, s.log, file: file, line: line)
        XCTAssertEqual(packFiles(of: dest), [], "\(name): a pack was stored", file: file, line: line)
        XCTAssertEqual(snapshotFiles(of: dest), [], "\(name): a snapshot was stored", file: file, line: line)
        XCTAssertEqual(keyNames(dest), [], "\(name): a key file was stored", file: file, line: line)
    }

    func testServeHoldsTheCopyWithoutTheKeyAndRefusesEachLie() throws {
        let raw = try sourceBlob(.none)
        let good = sealed(raw.id, raw.location, raw.stored)
        var flipped = raw.stored
        flipped[flipped.count / 2] ^= 0x40
        try assertRefused("a wrong SHA-256", prefix: raw.id.w0, .sealedBlobs([sealed(raw.id, raw.location, flipped, hash: good.storedHash)]),
                          "the SHA-256 of its \(raw.stored.count) stored bytes")
        let otherID = BlobID(w0: raw.id.w0 ^ 1, w1: raw.id.w1, w2: raw.id.w2, w3: raw.id.w3)
        try assertRefused("an id off the prefix", prefix: raw.id.w0, .sealedBlobs([sealed(otherID, raw.location, raw.stored)]),
                          "does not start with the prefix")
        try assertRefused("a raw-length lie", prefix: raw.id.w0, .sealedBlobs([sealed(raw.id, raw.location, raw.stored, rawLength: raw.location.rawLength + 1)]),
                          "stored raw, it must be its raw length")
        var delta = Array(repeating: UInt8(0xab), count: 32) + Sys.randomBytes(60)
        delta[0] = 0x5a
        try assertRefused("a delta on a missing base", prefix: raw.id.w0, .sealedBlobs([sealed(raw.id, raw.location, delta, compression: .delta)]),
                          "its base 5aabab")
        try assertRefused("a plain blobs frame", prefix: raw.id.w0,
                          .blobs([SyncBlob(index: 0, type: .data, compression: .none, rawLength: raw.location.rawLength, stored: raw.stored)]),
                          "its blobs travel as sealedBlobs")
        // The honest blob is then accepted: the refusals above were for the lies.
        let s = try session("honest")
        defer { s.kill() }
        try s.connection.send(.have([raw.id.w0]))
        guard case .missing(1, let bits)? = try s.connection.receive(timeout: 60), bits == [1] else { return XCTFail("no missing:\n\(s.log)") }
        try s.connection.send(.sealedBlobs([good]))
        try s.connection.send(.flush)
        guard case .flushed(1, 1)? = try s.connection.receive(timeout: 60) else { return XCTFail("the honest blob was not stored:\n\(s.log)") }
        XCTAssertEqual(try indexedBlobs(dest), [raw.id: UInt32(raw.stored.count)])
    }

    func testServeRefusesFarFutureOrUnsealedSnapshotsAndForeignKeyFiles() throws {
        func refuse(_ name: String, _ frame: Frame, _ expected: String) throws {
            let s = try session(name)
            defer { s.kill() }
            try s.connection.send(frame)
            let m = try XCTUnwrap(errorMessage(try s.connection.receive(timeout: 60)), "\(name) was accepted:\n\(s.log)")
            XCTAssert(m.contains(expected), "\(name): \(m)")
            XCTAssertEqual(s.exit()?.status, 1, s.log)
            XCTAssertEqual(snapshotFiles(of: dest), [], "\(name): a snapshot was stored")
            XCTAssertEqual(keyNames(dest), [], "\(name): a key file was stored")
        }
        var future = Array("ACCSNAP3".utf8)
        future += withUnsafeBytes(of: (Timestamp.now().seconds + 10 * 86_400).littleEndian, Array.init)
        future += Sys.randomBytes(200)
        try refuse("a far-future snapshot", .snapshot(future), "ahead of this node's clock")
        let farther = Array(future[0..<8]) + withUnsafeBytes(of: Int64.max.littleEndian, Array.init) + Array(future[16...])
        try refuse("a snapshot dated Int64.max", .snapshot(farther), "ahead of this node's clock")
        try refuse("an unsealed snapshot", .snapshot(Array(#"{"time":"2026-12-03T00:00:00Z"}"#.utf8)), "not a sealed snapshot file")

        let other = scratch.sub("other-repo")
        try Repository.initialize(at: other, key: testKey)
        let foreign = try readFile(other + "/keys/" + XCTUnwrap(keyNames(other).first))
        try refuse("a key file of another repository", .keyFile(foreign), "belongs to repository")
        try refuse("bytes that are no key file", .keyFile(Array("{}".utf8)), "was not stored")

        // The real snapshot and key files are taken (the snapshot names blobs serve cannot see: checked at restore).
        let s = try session("honest")
        defer { s.kill() }
        for k in keyNames(sourceRepo) {
            try s.connection.send(.keyFile(try readFile(sourceRepo + "/keys/" + k)))
            guard case .keyOK(let id)? = try s.connection.receive(timeout: 60), id.hex == k else { return XCTFail("key \(k) not taken:\n\(s.log)") }
        }
        try s.connection.send(.snapshot(snapshotBytes))
        guard case .snapshotOK(let id)? = try s.connection.receive(timeout: 60) else { return XCTFail("the sealed snapshot was not taken:\n\(s.log)") }
        XCTAssertEqual(snapshotFiles(of: dest), [id.hex])
        XCTAssertEqual(keyNames(dest), keyNames(sourceRepo))
    }

    /// `haveBases` says which bases are stored whole: a base stored only as a
    /// delta (as a backup into the copy may store one) or absent is marked, and
    /// a sealed delta on such a base is refused.
    func testServeSaysWhichBasesAreStoredWholeAndRefusesADeltaOnADelta() throws {
        let raw = try sourceBlob(.none)
        let s = try session("bases")
        defer { s.kill() }
        let deltaID = BlobID(hashing: [7, 7, 7])
        let onDelta = BlobID(hashing: [8, 8, 8])
        try s.connection.send(.have([raw.id.w0, deltaID.w0, onDelta.w0]))
        guard case .missing? = try s.connection.receive(timeout: 60) else { return XCTFail("no missing:\n\(s.log)") }
        // The whole blob, then (a lie serve cannot see through without the key) a delta on it.
        let delta = raw.id.bytes + Sys.randomBytes(60)
        try s.connection.send(.sealedBlobs([sealed(raw.id, raw.location, raw.stored)]))
        try s.connection.send(.flush)
        guard case .flushed? = try s.connection.receive(timeout: 60) else { return XCTFail("not flushed:\n\(s.log)") }
        var d = sealed(deltaID, raw.location, delta, rawLength: 10, compression: .delta)
        d.index = 1
        try s.connection.send(.sealedBlobs([d]))
        try s.connection.send(.flush)
        guard case .flushed? = try s.connection.receive(timeout: 60) else { return XCTFail("the delta was not taken:\n\(s.log)") }
        try s.connection.send(.haveBases([raw.id, deltaID, onDelta]))
        guard case .missing(3, let bits)? = try s.connection.receive(timeout: 60) else { return XCTFail("no answer to haveBases:\n\(s.log)") }
        XCTAssertEqual(bits, [0b110], "stored whole, only as a delta, absent")
        var second = sealed(onDelta, raw.location, deltaID.bytes + Sys.randomBytes(60), rawLength: 10, compression: .delta)
        second.index = 2
        try s.connection.send(.sealedBlobs([second]))
        try s.connection.send(.flush)
        let m = try XCTUnwrap(errorMessage(try s.connection.receive(timeout: 60)), "a delta on a delta was taken")
        XCTAssert(m.contains("only as a delta itself"), m)
        XCTAssertEqual(Set(try indexedBlobs(dest).keys), [raw.id, deltaID])
    }

    /// A copy of one encrypted repository takes no other: not another id, not
    /// another MAC, not a plain one, even with "accept another repository".
    func testServeRefusesAnotherRepositoryEvenWithTheFlag() throws {
        let s = try session("create")
        s.kill()
        let other = scratch.sub("other-repo")
        let o = try Repository.initialize(at: other, key: testKey)
        for (name, cfg, expected) in [("another encrypted repository", try readFile(other + "/config"), "another encrypted repository"),
                                      ("a plain repository", try readFile(try Repository.initialize(at: scratch.sub("plain")).layout.configPath),
                                       "the client's is plain")] {
            let t = try ServeSession(["--repo", dest], logPath: scratch.sub("serve-\(o.config.id.prefix(4)).log"))
            defer { t.kill() }
            let m = try XCTUnwrap(errorMessage(try t.hello(cfg, flags: Frame.flagAllowOtherRepository)), "\(name) was accepted")
            XCTAssert(m.contains(expected), "\(name): \(m)")
        }
        var json = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(config)) as? [String: Any])
        json["mac"] = String(repeating: "0", count: 64)
        let t = try ServeSession(["--repo", dest], logPath: scratch.sub("serve-mac.log"))
        defer { t.kill() }
        let m = try XCTUnwrap(errorMessage(try t.hello(Array(try JSONSerialization.data(withJSONObject: json)))), "another MAC was accepted")
        XCTAssert(m.contains("another MAC"), m)
    }
}

/// Sync of an encrypted repository over the real sshd to a DR copy.
final class EncryptedSSHSyncTests: SSHSyncTestCase {
    func testEncryptedSyncOverSSHGivesServeNoPassphraseAndTheCopyRestoresWithTheKey() throws {
        try useEncryption()
        try makeTree(source, seed: 41, randomFiles: 2, randomSize: 300_000)
        try backupSource()
        let dest = scratch.sub("dr-copy")
        let dump = scratch.sub("serve-environment")
        // serve's own environment and arguments, written by the shell sudo runs, which then becomes serve.
        let script = try remoteScript("record-serve.sh", """
            exec sudo -n /bin/sh -c '{ echo "args: $*"; env; } > \(dump); exec \(AccordBinary.path) "$@"' sh "$@"
            """)
        let r = try accordOK(syncArgs(to: dest, extra: ["--remote-command", script, "--ssh-option", "SendEnv=ACCORD_*"]))
        XCTAssertEqual(try decodeSync(r).snapshots, 1)
        let recorded = try String(contentsOfFile: dump, encoding: .utf8)
        XCTAssert(recorded.contains("args: serve --repo \(dest)"), recorded)
        for name in ["ACCORD_PASSWORD", "password", AccordTestCase.testPassphrase] {
            XCTAssertFalse(recorded.contains(name), "serve was given \(name):\n\(recorded)")
        }
        XCTAssertEqual(keyNames(dest), keyNames(sourceRepo))
        XCTAssertFalse(keyNames(dest).isEmpty)
        try assertRestoreMatchesSource(from: dest, label: "dr")
    }

    /// The AE5 flow `-a backup -s -u USER -n NODE` of an encrypted repository:
    /// the DR copy gets the snapshot, the key files and the marker, and checks
    /// and restores with the key. (The DR directory is the repository's own path
    /// in this flow; on one machine a remote command points serve elsewhere.)
    func testAE5BackupWithSyncOfAnEncryptedRepositoryOverSSH() throws {
        try useEncryption()
        try makeTree(source, seed: 42, randomFiles: 2, randomSize: 200_000)
        let plan = scratch.sub("plan.yaml")
        try writeFile(plan, Array("""
            base: ae5
            name: tree-only
            storage: {root: \(source), excludes: [], replace: []}
            dumps: []
            objects: []

            """.utf8))
        let dest = scratch.sub("dr-copy")
        let script = try remoteScript("serve-elsewhere.sh", "exec sudo -n \(AccordBinary.path) serve --repo \(dest)")
        let flow = ["-a", "backup", "-d", sourceRepo, "--plan", plan, "-s", "-u", ssh.user, "-n", "127.0.0.1", ssh.configOption,
                    "--remote-command", script]
        try accordOK(flow, environment: ["ACCORD_SETTINGS": scratch.sub("no-settings.yaml")])
        XCTAssertEqual(snapshotFiles(of: dest).count, 1)
        XCTAssertTrue(FileManager.default.fileExists(atPath: dest + "/restore"), "no restore marker on the DR copy")
        XCTAssertEqual(keyNames(dest), keyNames(sourceRepo))
        try appendToFile(source + "/docs/notes.txt", Array("day two\n".utf8))
        try accordOK(flow, environment: ["ACCORD_SETTINGS": scratch.sub("no-settings.yaml")])
        XCTAssertEqual(snapshotFiles(of: dest), snapshotFiles(of: sourceRepo))
        try assertRestoreMatchesSource(from: dest, label: "ae5")
    }
}
