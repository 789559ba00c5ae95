import Foundation
import XCTest
import AccordCore
import AccordEngine
import AccordRuntime

/// `check` of an encrypted repository with its key and without it (a DR
/// node that never holds the key): each kind of damage — a flipped byte in a
/// pack, an index file, a snapshot or a key file, a truncated pack, a missing
/// pack — is named by both, and the keyless one says what it could not check.
final class KeylessCheckTests: DumpBackupTestCase {
    override class var key: KeySource? { engineTestKey }

    var snapshot: SnapshotID!
    /// The key file of the second passphrase (the engine tests' passphrase opens the other).
    var secondKey: KeyID!

    override func setUpWithError() throws {
        try super.setUpWithError()
        let root = scratch.sub("src")
        try TreeBuilder.mkdir(Array(root.utf8))
        var rng = SeededRandom(seed: 0xC4EC)
        try TreeBuilder.write(Array((root + "/random.bin").utf8), rng.bytes(300_000))
        try TreeBuilder.write(Array((root + "/notes.txt").utf8), Array(String(repeating: "keyless check\n", count: 500).utf8))
        snapshot = try backupTree(root).id
        // A second key file, so that a damaged one still leaves the repository openable with the key.
        secondKey = try Repository.open(at: repo, key: key).addKey(passphrase: Array("a second passphrase".utf8))
    }

    func check(withKey: Bool, readData: Bool = true) throws -> CheckReport {
        let r = withKey ? try Repository.open(at: repo, key: key) : try Repository.open(at: repo, withoutKey: true)
        var o = CheckOptions()
        o.readData = readData
        o.threads = 2
        return try Check(repository: r, options: o).run()
    }

    func files(_ dir: String) -> [String] { ((try? Sys.listDirectory(repo + "/" + dir)) ?? []).filter { ID(hex: $0) != nil }.sorted() }
    func packFilesUnderData() -> [String] {
        var out: [String] = []
        for sub in (try? Sys.listDirectory(repo + "/data")) ?? [] where sub.count == 2 {
            for name in (try? Sys.listDirectory(repo + "/data/" + sub)) ?? [] where ID(hex: name) != nil { out.append(repo + "/data/" + sub + "/" + name) }
        }
        return out.sorted()
    }

    func flipByte(_ path: String, at offset: Int) throws {
        var b = try TreeBuilder.read(Array(path.utf8))
        b[offset] ^= 0x01
        try TreeBuilder.write(Array(path.utf8), b)
    }

    /// Both checks fail, and each names `name` in an error.
    func assertNamed(_ name: String, _ what: String, file: StaticString = #filePath, line: UInt = #line) throws {
        for withKey in [true, false] {
            let report = try check(withKey: withKey)
            let how = withKey ? "check with the key" : "check without the key"
            XCTAssertFalse(report.ok, "\(how) missed \(what)", file: file, line: line)
            XCTAssertTrue(report.errors.contains { $0.contains(name) }, "\(how) does not name \(name) (\(what)): \(report.errors)", file: file, line: line)
            XCTAssertEqual(report.notChecked.isEmpty, withKey, "\(how): \(report.notChecked)", file: file, line: line)
        }
    }

    func testAnUndamagedRepositoryPassesBothAndTheKeylessOneSaysWhatItLeftOut() throws {
        let full = try check(withKey: true)
        XCTAssertTrue(full.ok, "\(full.errors)")
        XCTAssertEqual(full.notChecked, [])
        let keyless = try check(withKey: false)
        XCTAssertTrue(keyless.ok, "\(keyless.errors)")
        XCTAssertEqual(keyless.snapshots, 1)
        XCTAssertEqual(keyless.packs, full.packs)
        XCTAssertEqual(keyless.bytesRead, full.bytesRead, "without the key every pack is still read whole")
        XCTAssertTrue(keyless.notChecked.contains { $0.contains("manifests") }, "\(keyless.notChecked)")
        XCTAssertTrue(keyless.notChecked.contains { $0.contains("blob's contents") }, "\(keyless.notChecked)")
        XCTAssertTrue(try check(withKey: false, readData: false).notChecked.contains { $0.contains("--read-data") })
    }

    func testAFlippedByteInAPackIsNamed() throws {
        let pack = try XCTUnwrap(packFilesUnderData().first)
        try flipByte(pack, at: 20)
        try assertNamed(String(pack.split(separator: "/").last!), "a flipped byte in a pack")
    }

    func testATruncatedPackIsNamed() throws {
        let pack = try XCTUnwrap(packFilesUnderData().first)
        let b = try TreeBuilder.read(Array(pack.utf8))
        try TreeBuilder.write(Array(pack.utf8), Array(b.prefix(b.count / 2)))
        try assertNamed(String(pack.split(separator: "/").last!), "a truncated pack")
    }

    func testAMissingPackIsNamed() throws {
        let pack = try XCTUnwrap(packFilesUnderData().first)
        try FileManager.default.removeItem(atPath: pack)
        try assertNamed(String(pack.split(separator: "/").last!), "a missing pack")
    }

    func testAFlippedByteInAnIndexFileIsNamed() throws {
        let name = try XCTUnwrap(files("index").first)
        try flipByte(repo + "/index/" + name, at: 40)
        try assertNamed(name, "a flipped byte in an index file")
    }

    func testAFlippedByteInASnapshotIsNamed() throws {
        let name = try XCTUnwrap(files("snapshots").first)
        XCTAssertEqual(name, snapshot.hex)
        try flipByte(repo + "/snapshots/" + name, at: 40)
        try assertNamed(name, "a flipped byte in a snapshot")
    }

    func testAFlippedByteInAKeyFileIsNamed() throws {
        XCTAssertEqual(files("keys").count, 2)
        try flipByte(repo + "/keys/" + secondKey.hex, at: 30)
        try assertNamed(secondKey.hex, "a flipped byte in a key file")
    }

    /// A key file renamed to its hash after its salt was cut: within the KDF bounds, named by `check` (an open skips it and tries the next key file).
    func testAKeyFileWithAMalformedSaltIsNamedWithoutTheKey() throws {
        let name = secondKey.hex
        var file = try KeyFile.decode(try TreeBuilder.read(Array((repo + "/keys/" + name).utf8)), name: name)
        file.kdf.salt = String(file.kdf.salt.prefix(10))
        let bytes = try file.encode()
        let id = SHA256Hasher.hash(bytes).hex
        try TreeBuilder.write(Array((repo + "/keys/" + id).utf8), bytes)
        let report = try check(withKey: false)
        XCTAssertTrue(report.errors.contains { $0.contains(String(id.prefix(8))) && ($0.contains("malformed") || $0.contains("kdf.salt")) }, "\(report.errors)")
    }

    func testAKeyFileOfAnotherRepositoryIsNamed() throws {
        let other = scratch.sub("other")
        let o = try Repository.initialize(at: other, key: key)
        let name = try XCTUnwrap(o.keyFiles().first).id.hex
        try FileManager.default.copyItem(atPath: other + "/keys/" + name, toPath: repo + "/keys/" + name)
        try assertNamed(String(name.prefix(8)), "a key file of another repository")
    }
}
