import Foundation
import XCTest
import AccordCore
import AccordEngine
import AccordRuntime

/// The passphrase of the encrypted engine tests' repositories.
let engineTestKey = KeySource.fixed(Array("correct horse battery staple".utf8), description: "the engine tests' passphrase")

/// Every chunk-list test on an encrypted repository (format version 3).
/// (One test is restated so that test discovery on Linux, which looks for
/// test methods a class declares, finds the class; it then runs every inherited one.)
final class EncryptedChunkListBackupTests: ChunkListBackupTests {
    override class var key: KeySource? { engineTestKey }
    override func testDamagedChunkListLosesOnlyItsFile() throws { try super.testDamagedChunkListLosesOnlyItsFile() }
}

/// Every delta-blob test (deltas, forget + prune, repair index, many packs
/// read at once) on an encrypted repository (format version 3).
final class EncryptedDeltaBlobTests: DeltaBlobTests {
    override class var key: KeySource? { engineTestKey }
    override func testDeltasHalveTheDailyGrowthAgainstAVersion1Repository() throws {
        throw XCTSkip("compares plain versions 1 and 2")
    }
}

/// What encryption promises about the bytes at rest, and its refusals.
final class EncryptedRepositoryTests: DumpBackupTestCase {
    override class var key: KeySource? { engineTestKey }

    /// Every file of the repository, read whole.
    func repositoryFiles() throws -> [(String, [UInt8])] {
        TreeBuilderFiles.regularFiles(under: repo).map { ($0, (try? TreeBuilder.read(Array($0.utf8))) ?? []) }
    }

    func testNoPlaintextAndNoPlainIdOfAKnownFileIsFoundInTheRepository() throws {
        var rng = SeededRandom(seed: 0xE1C)
        let root = scratch.sub("src")
        try TreeBuilder.mkdir(Array(root.utf8))
        let random = rng.bytes(200_000)            // incompressible: stored raw before sealing
        let text = Array(String(repeating: "secret-token=hunter2;", count: 3000).utf8)
        try TreeBuilder.write(Array((root + "/random.bin").utf8), random)
        try TreeBuilder.write(Array((root + "/text.txt").utf8), text)
        let result = try backupTree(root)
        let plainIDs = [random, text].map { SHA256Hasher.hash($0).bytes }
        let needles: [(String, [UInt8])] = [("a 64-byte piece of the random file", Array(random[100_000..<100_064])),
                                             ("the text's secret", Array("secret-token=hunter2".utf8)),
                                             ("the file name", Array("random.bin".utf8)),
                                             ("the plain SHA-256 of the random file", plainIDs[0]),
                                             ("the plain SHA-256 of the text", plainIDs[1]),
                                             ("the hex plain SHA-256", Array(hexString(plainIDs[0]).utf8))]
        let files = try repositoryFiles()
        XCTAssertTrue(files.contains { $0.0.contains("/keys/") }, "no key file written")
        for (path, bytes) in files {
            for (what, needle) in needles {
                XCTAssertNil(bytes.firstRange(of: needle), "\(what) is readable in \(path)")
            }
        }
        XCTAssertEqual(try restored(result.id, root + "/random.bin"), random)
        XCTAssertEqual(try restored(result.id, root + "/text.txt"), text)
    }

    /// Restore opens each sealed blob in its pack window (no second copy):
    /// blobs shared by several files and repeated in one are written to
    /// every place; a blob whose seal is damaged fails only its own file.
    func testRestoreOpensSharedBlobsInPlaceAndADamagedSealFailsOnlyItsFile() throws {
        var rng = SeededRandom(seed: 0x1A9)
        let root = scratch.sub("src")
        try TreeBuilder.mkdir(Array(root.utf8))
        let shared = rng.bytes(3_000_000), small = rng.bytes(90_000), other = Array(rng.text(150_000))
        let files: [(String, [UInt8])] = [("/a.bin", shared), ("/b.bin", shared), ("/twice.bin", shared + shared),
                                          ("/small.bin", small), ("/small-copy.bin", small), ("/other.txt", other)]
        for (name, bytes) in files { try TreeBuilder.write(Array((root + name).utf8), bytes) }
        let result = try backupTree(root)
        for (name, bytes) in files { XCTAssertEqual(try restored(result.id, root + name), bytes, name) }
        // Damage one byte inside the sealed ciphertext of one of the small files' content blobs.
        let r = try open()
        let id = try XCTUnwrap(try entry(result.id, root + "/small.bin").blobs.last, "the small file has content blobs")
        let l = try XCTUnwrap(r.index.lookup(id))
        let path = r.layout.packPath(r.index.pack(of: l))
        var pack = try TreeBuilder.read(Array(path.utf8))
        pack[Int(l.offset) + 20] ^= 0x40
        try TreeBuilder.write(Array(path.utf8), pack)
        let target = scratch.sub("damaged")
        var o = RestoreOptions(target: Array(target.utf8))
        o.threads = 2
        let out = try Restore(repository: try open(), options: o).run(try r.loadSnapshot(result.id))
        XCTAssertEqual(Set(out.failed.map { $0.hasSuffix("/small.bin") || $0.hasSuffix("/small-copy.bin") }), [true], "\(out.failed)")
        XCTAssertEqual(out.failed.count, 2, "\(out.failed)")
        for (name, bytes) in files where !name.hasPrefix("/small") {
            XCTAssertEqual(try TreeBuilder.read(Array((target + root + name).utf8)), bytes, name)
        }
    }

    func testWrongOrMissingPassphraseIsOneClearErrorAndWritesNothing() throws {
        _ = try backupTree(try smallTree())
        let before = try repositoryFiles().map(\.0).sorted()
        XCTAssertThrowsError(try Repository.open(at: repo, key: .fixed(Array("wrong".utf8), description: "test source"))) { e in
            XCTAssertTrue("\(e)".contains("wrong passphrase") && "\(e)".contains("test source"), "\(e)")
        }
        XCTAssertThrowsError(try Repository.open(at: repo)) { e in
            XCTAssertTrue("\(e)".contains("is encrypted") && "\(e)".contains("--password-file"), "\(e)")
        }
        XCTAssertEqual(try repositoryFiles().map(\.0).sorted(), before, "a failed open wrote or removed files")
    }

    func smallTree() throws -> String {
        let root = scratch.sub("small")
        try TreeBuilder.mkdir(Array(root.utf8))
        try TreeBuilder.write(Array((root + "/a.txt").utf8), Array("hello encrypted world\n".utf8))
        return root
    }

    func testAConfigEditedToSayPlainIsRefusedWithAKeyAndAnEditedFieldFailsItsMAC() throws {
        _ = try backupTree(try smallTree())
        let configPath = repo + "/config"
        let original = try TreeBuilder.read(Array(configPath.utf8))
        // Downgrade: the same config claiming version 2, without encryption.
        var json = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(original)) as? [String: Any])
        json["version"] = 2
        json.removeValue(forKey: "encryption"); json.removeValue(forKey: "mac")
        try TreeBuilder.write(Array(configPath.utf8), Array(try JSONSerialization.data(withJSONObject: json)))
        XCTAssertThrowsError(try Repository.open(at: repo, key: key)) { e in
            XCTAssertTrue("\(e)".contains("not encrypted"), "\(e)")
        }
        // An edited field under a kept MAC.
        var edited = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(original)) as? [String: Any])
        edited["packSize"] = 1 << 20
        try TreeBuilder.write(Array(configPath.utf8), Array(try JSONSerialization.data(withJSONObject: edited)))
        XCTAssertThrowsError(try Repository.open(at: repo, key: key)) { e in
            XCTAssertTrue("\(e)".contains("MAC"), "\(e)")
        }
        try TreeBuilder.write(Array(configPath.utf8), original)
        XCTAssertNoThrow(try Repository.open(at: repo, key: key))
    }

    func testSwappedBlobsAndAForeignSnapshotAreRejected() throws {
        var rng = SeededRandom(seed: 0x5A9)
        let root = scratch.sub("swap")
        try TreeBuilder.mkdir(Array(root.utf8))
        // Below the dump profile's 1 KiB minimum chunk: one blob each whatever the
        // (keyed, so random) gear table cuts (3000 bytes sometimes made two).
        let a = rng.bytes(1000), b = rng.bytes(1000)
        try TreeBuilder.write(Array((root + "/a").utf8), a)
        try TreeBuilder.write(Array((root + "/b").utf8), b)
        let result = try backupTree(root)
        let r = try open()
        let ia = a.withUnsafeBytes { r.blobID(of: $0) }, ib = b.withUnsafeBytes { r.blobID(of: $0) }
        let la = try XCTUnwrap(r.index.lookup(ia)), lb = try XCTUnwrap(r.index.lookup(ib))
        XCTAssertEqual(la.storedLength, lb.storedLength, "test setup: equal stored sizes")
        // Swap the two blobs' stored bytes inside their pack(s).
        let pa = r.layout.packPath(r.index.pack(of: la)), pb = r.layout.packPath(r.index.pack(of: lb))
        var packA = try TreeBuilder.read(Array(pa.utf8))
        var packB = pa == pb ? packA : try TreeBuilder.read(Array(pb.utf8))
        let sa = Array(packA[Int(la.offset)..<Int(la.offset + la.storedLength)])
        let sb = Array(packB[Int(lb.offset)..<Int(lb.offset + lb.storedLength)])
        if pa == pb {
            packA.replaceSubrange(Int(la.offset)..<Int(la.offset + la.storedLength), with: sb)
            packA.replaceSubrange(Int(lb.offset)..<Int(lb.offset + lb.storedLength), with: sa)
            try TreeBuilder.write(Array(pa.utf8), packA)
        } else {
            packA.replaceSubrange(Int(la.offset)..<Int(la.offset + la.storedLength), with: sb)
            packB.replaceSubrange(Int(lb.offset)..<Int(lb.offset + lb.storedLength), with: sa)
            try TreeBuilder.write(Array(pa.utf8), packA)
            try TreeBuilder.write(Array(pb.utf8), packB)
        }
        let r2 = try open()
        XCTAssertThrowsError(try r2.readBlob(ia)) { XCTAssertTrue("\($0)".contains("authenticate"), "\($0)") }
        XCTAssertThrowsError(try r2.readBlob(ib)) { XCTAssertTrue("\($0)".contains("authenticate"), "\($0)") }
        // A snapshot of another encrypted repository (same passphrase, other master key) does not open here.
        let other = scratch.sub("other")
        _ = try Repository.initialize(at: other, key: key)
        var o = options()
        o.paths = [Array(root.utf8)]
        let foreign = try Backup(repository: try Repository.open(at: other, key: key), options: o).run()
        let name = foreign.id.hex
        try TreeBuilder.write(Array((repo + "/snapshots/" + name).utf8), try TreeBuilder.read(Array((other + "/snapshots/" + name).utf8)))
        XCTAssertThrowsError(try open().loadSnapshot(foreign.id)) { XCTAssertTrue("\($0)".contains("another repository"), "\($0)") }
        XCTAssertNoThrow(try open().loadSnapshot(result.id))
    }

    func testTwoKeyFilesBothOpenItAndRemovingOneLeavesTheOther() throws {
        let r = try open()
        let second = Array("second passphrase".utf8)
        let added = try r.addKey(passphrase: second)
        XCTAssertNoThrow(try Repository.open(at: repo, key: key))
        XCTAssertEqual(try Repository.open(at: repo, key: .fixed(second)).usedKey, added)
        let first = try XCTUnwrap(r.usedKey)
        try r.removeKey(first)
        XCTAssertThrowsError(try Repository.open(at: repo, key: key))
        let r2 = try Repository.open(at: repo, key: .fixed(second))
        XCTAssertThrowsError(try r2.removeKey(added)) { XCTAssertTrue("\($0)".contains("last key"), "\($0)") }
        XCTAssertEqual(try r2.keyFiles().count, 1)
    }

    func testAKeyFileOutsideTheKDFBoundsIsRefusedBeforeAnyWork() throws {
        let r = try open()
        var f = try XCTUnwrap(try r.keyFiles().first?.file)
        for (n, rr) in [(UInt64(1) << 40, UInt64(8)), (1 << 10, 8), (1 << 17, 1000), (3 << 14, 8)] {
            f.kdf.N = n; f.kdf.r = rr
            XCTAssertThrowsError(try KeyFile.decode(try f.encode(), name: "k")) { e in
                XCTAssertTrue("\(e)".contains("kdf."), "\(e)")
            }
        }
    }
}

/// `TreeBuilder`-style listing of regular files (recursive).
enum TreeBuilderFiles {
    static func regularFiles(under dir: String) -> [String] {
        var out: [String] = []
        guard let e = FileManager.default.enumerator(atPath: dir) else { return [] }
        while let rel = e.nextObject() as? String {
            var isDir: ObjCBool = false
            if FileManager.default.fileExists(atPath: dir + "/" + rel, isDirectory: &isDir), !isDir.boolValue { out.append(dir + "/" + rel) }
        }
        return out
    }
}

/// A damaged key file costs one key, not the repository: the next key file opens it.
final class DamagedKeyFileTests: DumpBackupTestCase {
    override class var key: KeySource? { engineTestKey }

    func testADamagedKeyFileDoesNotLockOutTheOthers() throws {
        let r = try open()
        let first = try XCTUnwrap(r.usedKey)
        let second = Array("second passphrase".utf8)
        try r.addKey(passphrase: second)
        // Damage the first key file's seal and store it under its new content name.
        var f = try XCTUnwrap(try r.keyFiles().first { $0.id == first }?.file)
        f.sealed = "zz" + f.sealed.dropFirst(2)
        let bytes = try f.encode()
        try TreeBuilder.write(Array((repo + "/keys/" + KeyID(hashing: bytes).hex).utf8), bytes, mode: 0o600)
        try FileManager.default.removeItem(atPath: repo + "/keys/" + first.hex)
        XCTAssertNoThrow(try Repository.open(at: repo, key: .fixed(second)), "the intact key file must still open the repository")
        XCTAssertThrowsError(try Repository.open(at: repo, key: key)) { e in
            XCTAssertTrue("\(e)".contains("sealed"), "the damaged key file is named: \(e)")
        }
    }
}

/// What a hostile sync client or a local writer can do to `keys/`: plant key
/// files of another master under a known passphrase, fill the directory, or
/// swap the config for a plain one beside the key files. None locks the owner out
/// or opens a plain door.
final class HostileKeyFileTests: DumpBackupTestCase {
    override class var key: KeySource? { engineTestKey }

    func testAPlantedKeyFileOfAnotherMasterIsSkippedAndTheRealOneOpens() throws {
        let r = try open()
        let secret = Array(hexString(Crypto.randomBytes(32)).utf8)
        let real = try r.addKey(passphrase: secret)
        // Who knows the secret wraps a master of their own under it, for this repository id.
        for _ in 0..<3 {
            let fake = try KeyFile.create(master: Crypto.randomBytes(32), passphrase: secret, repository: r.config.id)
            let bytes = try fake.encode()
            try TreeBuilder.write(Array((repo + "/keys/" + KeyID(hashing: bytes).hex).utf8), bytes, mode: 0o600)
        }
        XCTAssertEqual(try Repository.open(at: repo, key: .fixed(secret)).usedKey, real)
        try FileManager.default.removeItem(atPath: repo + "/keys/" + real.hex)
        XCTAssertThrowsError(try Repository.open(at: repo, key: .fixed(secret))) { XCTAssertTrue("\($0)".contains("MAC"), "\($0)") }
    }

    func testARepositoryHoldsAtMost32KeyFiles() throws {
        let r = try open()
        while try r.keyFiles().count < Repository.maxKeyFiles {
            try r.addKey(passphrase: Array(hexString(Crypto.randomBytes(32)).utf8))
        }
        XCTAssertThrowsError(try r.addKey(passphrase: Array(hexString(Crypto.randomBytes(32)).utf8))) {
            XCTAssertTrue("\($0)".contains("32"), "\($0)")
        }
        let extra = try KeyFile.create(master: r.crypto!.master, passphrase: Array(hexString(Crypto.randomBytes(32)).utf8), repository: r.config.id)
        XCTAssertThrowsError(try r.storeKeyFile(try extra.encode()), "a sync server must refuse a 33rd key file")
        XCTAssertNoThrow(try Repository.open(at: repo, key: key), "the first key file still opens behind 31 others")
    }

    func testAPlainConfigBesideKeyFilesIsRefusedEvenWithoutAKeyConfigured() throws {
        let configPath = repo + "/config"
        var json = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(try TreeBuilder.read(Array(configPath.utf8)))) as? [String: Any])
        json["version"] = 2
        json.removeValue(forKey: "encryption"); json.removeValue(forKey: "mac")
        try TreeBuilder.write(Array(configPath.utf8), Array(try JSONSerialization.data(withJSONObject: json)))
        XCTAssertThrowsError(try Repository.open(at: repo)) { XCTAssertTrue("\($0)".contains("key file"), "\($0)") }
        XCTAssertThrowsError(try Repository.open(at: repo, key: .fixed([1], explicit: false)))
    }
}
