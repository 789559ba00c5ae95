import Foundation
import XCTest
import AccordCore
import AccordRuntime
#if canImport(Glibc)
import Glibc
#endif

/// No nonce repeats under one key (FORMAT.md, "Encryption", nonces) on the
/// paths where a counter-based scheme would reuse one: two backups writing
/// into one encrypted repository at once, a backup killed with SIGKILL and
/// run again, and prune repacking. Every sealed blob's nonce (the first 12
/// stored bytes; bytes 32..<44 of a delta) in every pack and every
/// snapshot's (bytes 16..<28 of the file) is collected from the real
/// processes' output; a nonce seen twice must be the same sealed object
/// (prune copies stored bytes unchanged into new packs), never two
/// different ciphertexts.
final class NonceReuseTests: AccordTestCase {
    struct Nonces {
        /// Nonce → SHA-256 of the stored bytes that carry it, per key.
        var blob: [[UInt8]: ID] = [:], snapshot: [[UInt8]: ID] = [:]
        var repeats: [String] = []
        /// How many packs hold each blob id (two backups at once both store shared chunks).
        var copies: [BlobID: Int] = [:]
        var blobCount: Int { blob.count }
    }

    /// The nonces of every sealed blob and snapshot of `repository`, read without the key.
    func nonces(_ repository: String? = nil) throws -> Nonces {
        let r = try Repository.open(at: repository ?? repo, withoutKey: true)
        XCTAssertTrue(r.config.isEncrypted)
        var n = Nonces()
        var repeats: [String] = []
        func note(_ nonce: [UInt8], _ stored: ArraySlice<UInt8>, _ table: inout [[UInt8]: ID], _ what: String) {
            let digest = SHA256Hasher.hash(Array(stored))
            if let seen = table[nonce], seen != digest { repeats.append("nonce \(hexString(nonce)) repeats in \(what)") }
            table[nonce] = digest
        }
        for pack in try r.listPacks() {
            let bytes = try r.readPack(pack)
            for e in try r.readPackHeader(pack) {
                n.copies[e.id, default: 0] += 1
                let at = Int(e.offset) + (e.compression == .delta ? 32 : 0)
                note(Array(bytes[at..<(at + 12)]), bytes[Int(e.offset)..<Int(e.offset + e.storedLength)], &n.blob, "pack \(pack.short) blob \(e.id.short)")
            }
        }
        for sid in try r.listSnapshotIDs() {
            let bytes = try r.backend.read(.snapshot, sid.hex)
            XCTAssertEqual(Array(bytes.prefix(8)), Array("ACCSNAP3".utf8))
            note(Array(bytes[16..<28]), bytes[...], &n.snapshot, "snapshot \(sid.short)")
        }
        n.repeats = repeats
        return n
    }

    /// An encrypted repository with small packs (so a killed backup leaves
    /// some), made through the library: its pack size is under the config's
    /// MAC, so it cannot be edited afterwards as `initRepository` does.
    func initEncrypted(packSize: Int) throws {
        setenv(KeyFile.costVariable, "16384", 1)
        var config = RepositoryConfig.new(encrypted: true)
        config.packSize = packSize
        try Repository.initialize(at: repo, config: config, key: .fixed(Array(AccordTestCase.testPassphrase.utf8)))
    }

    func assertNoRepeat(_ n: Nonces, minBlobs: Int, snapshots: Int, _ context: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(n.repeats, [], context, file: file, line: line)
        XCTAssertGreaterThanOrEqual(n.blobCount, minBlobs, "\(context): too few sealed blobs for the test to mean anything", file: file, line: line)
        XCTAssertEqual(n.snapshot.count, snapshots, context, file: file, line: line)
    }

    func testTwoBackupsWritingAtOnceNeverRepeatANonce() throws {
        try useEncryption()
        // Two trees made from one seed, then half of one rewritten: both runs seal the
        // shared chunks at the same time, each under its own nonces.
        var rng = SeededRandom(seed: 0x90CE_0001), same = SeededRandom(seed: 0x90CE_0001)
        let a = try SourceTree(root: scratch.sub("a"), rng: &rng, randomFiles: 6, randomSize: 1_000_000, textFiles: 2, textSize: 500_000)
        let b = try SourceTree(root: scratch.sub("b"), rng: &same, randomFiles: 6, randomSize: 1_000_000, textFiles: 2, textSize: 500_000)
        try initEncrypted(packSize: 1 << 20)
        _ = try b.rewriteRandomFiles(3, rng: &rng)
        for round in 0..<2 {
            let runs = try [a.root, b.root].map { try start(["backup", "-d", repo, "--json", $0]) }
            for r in runs.map({ $0.finish() }) { XCTAssertTrue(r.ok, "round \(round): \(r)") }
            if round == 0 { _ = try a.rewriteTextFiles(1, rng: &rng); _ = try b.rewriteTextFiles(1, rng: &rng) }
        }
        let n = try nonces()
        assertNoRepeat(n, minBlobs: 40, snapshots: 4, "two backups at once")
        // The runs overlapped: chunks both trees share were sealed by each, under different nonces.
        XCTAssertGreaterThan(n.copies.values.filter { $0 > 1 }.count, 0, "no blob was stored by both backups: they did not run at once")
        try assertCheckPasses(nil, readData: true, "after two backups at once")
    }

    func testBackupKilledAndRunAgainNeverRepeatsANonce() throws {
        try useEncryption()
        var rng = SeededRandom(seed: 0x90CE_0002)
        let tree = try SourceTree(root: scratch.sub("src"), rng: &rng, randomFiles: 12, randomSize: 1_500_000, textFiles: 4, textSize: 1_000_000)
        try initEncrypted(packSize: 1 << 20)
        _ = try backup([tree.root])
        let rounds = 3
        var killed = 0, leftovers = 0
        for k in 0..<rounds {
            _ = try tree.rewriteRandomFiles(6, rng: &rng)
            // Killed as soon as its first new pack lands in data/: after sealing, before the index.
            let before = packIDs().count
            let cmd = try start(["backup", "-d", repo, "--json", tree.root])
            while cmd.isRunning && packIDs().count == before { sleepSeconds(0.005) }
            if cmd.isRunning { cmd.kill() }
            let r = cmd.finish()
            XCTAssertTrue(r.ok || (r.signaled && r.status == SIGKILL), "kill \(k): \(r)")
            if !r.ok { killed += 1 }
            let index = try Repository.open(at: repo, withoutKey: true)
            try index.loadIndex()
            leftovers += packIDs().filter { !index.index.containsPack($0) }.count
            // The rerun adopts the killed run's packs and seals what they lack, with new nonces.
            _ = try backup([tree.root])
        }
        print("nonce kill test: \(killed) of \(rounds) backups killed after their first pack, leaving \(leftovers) unindexed packs")
        XCTAssertGreaterThan(leftovers, 0, "no killed run left a pack for its rerun to adopt: the kills missed the pack-writing phase")
        let n = try nonces()
        assertNoRepeat(n, minBlobs: 60, snapshots: 1 + rounds + (rounds - killed), "after killed backups and reruns")
        try assertCheckPasses(nil, "after killed backups")
    }

    func testPruneRepackingNeverRepeatsANonce() throws {
        try useEncryption()
        var rng = SeededRandom(seed: 0x90CE_0003)
        let tree = try SourceTree(root: scratch.sub("src"), rng: &rng, randomFiles: 8, randomSize: 500_000, textFiles: 3, textSize: 300_000)
        try initEncrypted(packSize: 1 << 20)
        var ids: [String] = []
        for round in 0..<4 {
            if round > 0 { _ = try tree.rewriteRandomFiles(3, rng: &rng); _ = try tree.appendText(40_000, rng: &rng) }
            ids.append(try backup([tree.root]).id)
        }
        let before = try nonces()
        assertNoRepeat(before, minBlobs: 30, snapshots: 4, "before prune")
        try accordOK("forget", "-d", repo, ids[0], ids[1])
        try accordOK("prune", "-d", repo, "--max-unused", "0%")
        // Another backup after the repack seals new blobs next to the copied ones.
        _ = try tree.rewriteRandomFiles(2, rng: &rng)
        ids.append(try backup([tree.root]).id)
        let after = try nonces()
        assertNoRepeat(after, minBlobs: 20, snapshots: 3, "after prune and a backup")
        // The copies kept their nonces (stored bytes are copied, not resealed): every surviving old nonce is an old object.
        for (nonce, digest) in after.blob where before.blob[nonce] != nil { XCTAssertEqual(before.blob[nonce], digest) }
        try assertCheckPasses(nil, readData: true, "after prune")

        // The detector itself: a second copy of a pack with one ciphertext byte changed
        // carries a blob's nonce again over other bytes, and is reported.
        let r = try Repository.open(at: repo, withoutKey: true)
        // A pack with a blob stored whole (a pack of day-2 deltas alone has none).
        let (pack, entry) = try XCTUnwrap(try r.listPacks().lazy.compactMap { p in
            (try? r.readPackHeader(p))?.first { $0.compression != .delta }.map { (p, $0) } }.first)
        var bytes = try r.readPack(pack)
        bytes[Int(entry.offset) + 12] ^= 0x01
        let copy = PackID(hashing: bytes)
        try Files.mkdir(repo + "/data/" + String(copy.hex.prefix(2)))
        try Files.write(packPath(copy), bytes, mode: 0o600)
        XCTAssertEqual(try nonces().repeats.count, 1, "a planted repeat was not found")
    }
}
