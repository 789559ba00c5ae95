import Foundation
import XCTest
@testable import AccordCore
import AccordRuntime

/// The test vectors of FORMAT.md's "Encryption" section, byte for byte.
///
/// From a fixed master key, repository id, passphrase, salt and nonces, this
/// builds each object of format version 3 the way FORMAT.md describes it (the
/// AAD, the sealed layouts, the key file and the config's canonical text are
/// assembled here from the document's rules, not by the code), checks that
/// the code's own functions agree (ids, MAC, gear words, and that
/// `RepositoryCrypto` and `KeyFile` open what was built), renders the result
/// as text and compares it with `Golden/crypto-example.txt` and with the
/// block in FORMAT.md. A changed byte in the code or the document fails here.
///
/// Random nonces and salts are replaced by fixed ones through the fixed-nonce
/// `AESGCMKey.seal(_:aad:nonce:appendingTo:)`, for vectors only.
///
/// `ACCORD_UPDATE_GOLDEN=1 swift test --filter CryptoVectorTests` rewrites the
/// golden file and the FORMAT.md block; read the diff.
final class CryptoVectorTests: XCTestCase {
    static let goldenFile = "crypto-example.txt"
    static let blockStart = "<!-- golden: Tests/AccordCoreTests/Golden/crypto-example.txt"
    static let blockEnd = "<!-- end golden -->"

    static let master = Array(UInt8(0x00)...UInt8(0x1f))
    static let repositoryID = Array(UInt8(0x20)...UInt8(0x3f))
    static let passphrase = Array("correct horse battery staple".utf8)
    static let salt = Array(UInt8(0x40)...UInt8(0x5f))
    static let keyNonce = Array(UInt8(0x60)...UInt8(0x6b))
    static let blobNonce = Array(UInt8(0x70)...UInt8(0x7b))
    static let deltaNonce = Array(UInt8(0x80)...UInt8(0x8b))
    static let snapshotNonce = Array(UInt8(0x90)...UInt8(0x9b))
    static let created = "2026-12-03T12:00:00.000000000Z"
    static let hello = Array("hello\n".utf8)
    static let base = Array(String(repeating: "accord backup: chunk, hash, pack.\n", count: 6).utf8)
    static var target: [UInt8] { Array(String(repeating: "accord backup: chunk, hash, pack.\n", count: 3).utf8) + Array("accord backup: chunk, HASH, seal.\n".utf8) + Array(String(repeating: "accord backup: chunk, hash, pack.\n", count: 2).utf8) }

    static var crypto: RepositoryCrypto { RepositoryCrypto(master: master, repositoryID: repositoryID) }
    static func subkey(_ label: String, _ n: Int = 32) -> [UInt8] { Crypto.hkdf(key: master, salt: repositoryID, info: Array(label.utf8), length: n) }
    static func le32(_ v: Int) -> [UInt8] { withUnsafeBytes(of: UInt32(v).littleEndian, Array.init) }
    static func le64(_ v: Int64) -> [UInt8] { withUnsafeBytes(of: v.littleEndian, Array.init) }

    /// FORMAT.md, "Sealed blobs": "ACCORD3B" || Compression(u8) || RawLength(u32 LE) || ID(32) [|| BaseID(32)].
    static func specBlobAAD(compression: UInt8, rawLength: Int, id: [UInt8], base: [UInt8]? = nil) -> [UInt8] {
        Array("ACCORD3B".utf8) + [compression] + le32(rawLength) + id + (base ?? [])
    }

    static func seal(_ key: [UInt8], _ plain: [UInt8], aad: [UInt8], nonce: [UInt8]) throws -> [UInt8] {
        var out: [UInt8] = []
        try plain.withUnsafeBytes { p in try aad.withUnsafeBytes { try AESGCMKey(key).seal(p, aad: $0, nonce: nonce, appendingTo: &out) } }
        return out
    }

    // MARK: The tests

    func testVectorsMatchGoldenFile() throws {
        let actual = try Self.render()
        if Self.updating {
            try Data(actual.utf8).write(to: Self.sourceGoldenURL)
            print("CryptoVectorTests: rewrote \(Self.sourceGoldenURL.path)")
            return
        }
        guard let url = Bundle.module.resourceURL?.appendingPathComponent("Golden/\(Self.goldenFile)"),
              let expected = try? String(contentsOf: url, encoding: .utf8) else {
            XCTFail("Golden/\(Self.goldenFile) is missing from the test bundle: run ACCORD_UPDATE_GOLDEN=1 swift test --filter CryptoVectorTests")
            return
        }
        if actual != expected {
            let out = FileManager.default.temporaryDirectory.appendingPathComponent("crypto-example.actual.txt")
            try? Data(actual.utf8).write(to: out)
            XCTFail("the encrypted format changed: `diff \(Self.sourceGoldenURL.path) \(out.path)`; if meant, bump the format "
                    + "(FORMAT.md, \"Versioning\") and rerun with ACCORD_UPDATE_GOLDEN=1")
        }
    }

    func testFormatMdShowsTheVectors() throws {
        let actual = try Self.render()
        let doc = try String(contentsOf: Self.formatMdURL, encoding: .utf8)
        guard let block = Self.block(in: doc) else {
            XCTFail("FORMAT.md has no block between `\(Self.blockStart) …` + ```text and ``` + `\(Self.blockEnd)`")
            return
        }
        if Self.updating {
            let updated = String(doc[..<block.lowerBound]) + actual + String(doc[block.upperBound...])
            if updated != doc { try Data(updated.utf8).write(to: Self.formatMdURL) }
            return
        }
        if String(doc[block]) != actual {
            let out = FileManager.default.temporaryDirectory.appendingPathComponent("crypto-example.actual.txt")
            try? Data(actual.utf8).write(to: out)
            XCTFail("FORMAT.md's encryption vectors differ from what the code computes (compare with \(out.path)): rerun with ACCORD_UPDATE_GOLDEN=1")
        }
    }

    /// The objects built from the document's rules are what the code builds and opens.
    func testCodeAgreesWithTheDocumentsRules() throws {
        let c = Self.crypto
        // Ids, gear words.
        XCTAssertEqual(Self.hello.withUnsafeBytes { c.blobID($0) }.bytes, HMACKey(Self.subkey(RepositoryCrypto.Label.blobID)).mac(Self.hello))
        let g = Self.subkey(RepositoryCrypto.Label.gear, 2048)
        XCTAssertEqual(c.gearWords[0], g[0..<8].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) })
        XCTAssertEqual(c.gearWords[255], g[2040..<2048].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) })
        // AAD.
        let id = Self.hello.withUnsafeBytes { c.blobID($0) }
        XCTAssertEqual(RepositoryCrypto.blobAAD(id: id, compression: .none, rawLength: 6, base: nil), Self.specBlobAAD(compression: 0, rawLength: 6, id: id.bytes))
        // The blob built here opens with the code, and the code's own seal has the same layout and opens too.
        let v = try Self.build()
        var opened: [UInt8] = []
        try v.sealedBlob.withUnsafeBytes { try c.openBlob($0, id: id, compression: .none, rawLength: 6, into: &opened) }
        XCTAssertEqual(opened, Self.hello)
        var own: [UInt8] = []
        try Self.hello.withUnsafeBytes { try c.sealBlob($0, id: id, compression: .none, rawLength: 6, appendingTo: &own) }
        XCTAssertEqual(own.count, Self.hello.count + 28)
        XCTAssertNotEqual(Array(own.prefix(12)), Self.blobNonce, "the code's seal must draw a random nonce")
        try own.withUnsafeBytes { try c.openBlob($0, id: id, compression: .none, rawLength: 6, into: &opened) }
        XCTAssertEqual(opened, Self.hello)
        // Moved to another id, or its length changed in the header: no longer opens.
        XCTAssertThrowsError(try v.sealedBlob.withUnsafeBytes { try c.openBlob($0, id: v.deltaID, compression: .none, rawLength: 6, into: &opened) })
        XCTAssertThrowsError(try v.sealedBlob.withUnsafeBytes { try c.openBlob($0, id: id, compression: .none, rawLength: 7, into: &opened) })
        // The delta.
        try v.sealedDelta.withUnsafeBytes { try c.openBlob($0, id: v.deltaID, compression: .delta, rawLength: Self.target.count, into: &opened) }
        XCTAssertEqual(opened, v.baseID.bytes + v.program)
        // Opened where they lie (restore's pack window): the same version 2 bytes, in a range of the buffer.
        func inPlace(_ sealed: [UInt8], id: BlobID, _ compression: BlobCompression, _ rawLength: Int) throws -> (plain: [UInt8], spent: [UInt8]) {
            var buf = sealed
            let plain = try buf.withUnsafeMutableBytes { Array(try c.openBlobInPlace($0, id: id, compression: compression, rawLength: rawLength)) }
            return (plain, buf)
        }
        XCTAssertEqual(try inPlace(v.sealedBlob, id: id, .none, 6).plain, Self.hello)
        let delta = try inPlace(v.sealedDelta, id: v.deltaID, .delta, Self.target.count)
        XCTAssertEqual(delta.plain, v.baseID.bytes + v.program)
        // Spent bytes never open again (the ciphertext is gone), nor do altered ones, nor under another id.
        XCTAssertThrowsError(try inPlace(delta.spent, id: v.deltaID, .delta, Self.target.count))
        var flipped = v.sealedBlob
        flipped[13] ^= 1
        XCTAssertThrowsError(try inPlace(flipped, id: id, .none, 6))
        XCTAssertThrowsError(try inPlace(v.sealedBlob, id: v.deltaID, .none, 6))
        XCTAssertThrowsError(try inPlace(Array(v.sealedBlob.prefix(27)), id: id, .none, 6))
        XCTAssertThrowsError(try inPlace(Array(v.sealedDelta.prefix(32 + 28)), id: v.deltaID, .delta, Self.target.count))
        // Snapshot, config, key file.
        let s = try c.openSnapshot(v.sealedSnapshot)
        XCTAssertEqual(s.json, v.snapshotJSON)
        XCTAssertEqual(s.time, v.snapshotTime)
        XCTAssertEqual(RepositoryCrypto.sealedSnapshotTime(v.sealedSnapshot), v.snapshotTime)
        XCTAssertEqual(c.configMAC(v.config), hexString(HMACKey(Self.subkey(RepositoryCrypto.Label.configMAC)).mac(Array(v.canonical.utf8))))
        XCTAssertNoThrow(try v.config.validate(repository: "/vectors", configPath: "/vectors/config"))
        let file = try KeyFile.decode(v.keyFile, name: "vector")
        XCTAssertEqual(try file.unwrap(passphrase: Self.passphrase), Self.master)
        XCTAssertThrowsError(try file.unwrap(passphrase: Array("wrong".utf8)))
        XCTAssertEqual(try file.derive(Self.passphrase), v.wrappingKey)
        XCTAssertEqual(try file.aad(), Array("ACCORDKY".utf8) + Self.repositoryID)
    }

    // MARK: Building and rendering

    struct Vectors {
        var wrappingKey: [UInt8], keyFile: [UInt8]
        var sealedBlob: [UInt8], blobAAD: [UInt8]
        var baseID: BlobID, deltaID: BlobID, program: [UInt8], sealedDelta: [UInt8], deltaAAD: [UInt8]
        var snapshotJSON: [UInt8], snapshotTime: Int64, sealedSnapshot: [UInt8]
        var config: RepositoryConfig, canonical: String, configJSON: [UInt8]
    }

    static func build() throws -> Vectors {
        let c = crypto
        let sealKey = subkey(RepositoryCrypto.Label.blobSeal)
        // A raw blob (compression 0).
        let id = HMACKey(subkey(RepositoryCrypto.Label.blobID)).mac(hello)
        let blobAAD = specBlobAAD(compression: 0, rawLength: hello.count, id: id)
        let sealedBlob = try seal(sealKey, hello, aad: blobAAD, nonce: blobNonce)
        // A delta blob (compression 2): BaseID in clear in front of the sealed program.
        let baseID = base.withUnsafeBytes { c.blobID($0) }, deltaID = target.withUnsafeBytes { c.blobID($0) }
        let program = try XCTUnwrap(base.withUnsafeBytes { b in target.withUnsafeBytes { DeltaCodec.encode(base: b, target: $0, limit: target.count) } })
        let deltaAAD = specBlobAAD(compression: 2, rawLength: target.count, id: deltaID.bytes, base: baseID.bytes)
        let sealedDelta = baseID.bytes + (try seal(sealKey, program, aad: deltaAAD, nonce: deltaNonce))
        // A snapshot.
        var summary = Snapshot.Summary()
        summary.files = 1; summary.totalBytes = 6; summary.bytesRead = 6; summary.addedBlobs = 2; summary.addedBytes = 34
        let time = Timestamp(seconds: 1_796_299_200, nanoseconds: 0)
        let snapshot = Snapshot(time: time, host: "node1", username: "root", plan: "", tags: [], paths: ["/etc/hello"], sources: [],
                                parent: nil, manifest: [deltaID], summary: summary)
        let json = try snapshot.encode()
        let header = Array("ACCSNAP3".utf8) + le64(time.seconds)
        let sealedSnapshot = header + (try seal(subkey(RepositoryCrypto.Label.snapshotSeal), json, aad: header, nonce: snapshotNonce))
        // The config and its MAC.
        var config = RepositoryConfig(version: 3, id: hexString(repositoryID), chunkerSeed: String(repeating: "0", count: 16),
                                      compression: .init(algorithm: "zlib", level: 1), packSize: 16 << 20, created: created,
                                      encryption: "aes-256-gcm", mac: nil)
        let canonical = "accord config\nversion=3\nid=\(hexString(repositoryID))\nchunkerSeed=0000000000000000\ncompression=zlib:1\n"
            + "packSize=16777216\ncreated=\(created)\nencryption=aes-256-gcm\n"
        config.mac = hexString(HMACKey(subkey(RepositoryCrypto.Label.configMAC)).mac(Array(canonical.utf8)))
        // The key file.
        let wrappingKey = try Crypto.scrypt(passphrase: passphrase, salt: salt, n: 1 << 14, r: 8, p: 1, length: 32)
        let wrapped = try seal(wrappingKey, master, aad: Array("ACCORDKY".utf8) + repositoryID, nonce: keyNonce)
        let file = KeyFile(version: 1, created: created, host: "node1", username: "root", repository: hexString(repositoryID),
                           kdf: .init(algorithm: "scrypt", N: 1 << 14, r: 8, p: 1, salt: hexString(salt)), sealed: hexString(wrapped))
        return Vectors(wrappingKey: wrappingKey, keyFile: try file.encode(), sealedBlob: sealedBlob, blobAAD: blobAAD,
                       baseID: baseID, deltaID: deltaID, program: program, sealedDelta: sealedDelta, deltaAAD: deltaAAD,
                       snapshotJSON: json, snapshotTime: time.seconds, sealedSnapshot: sealedSnapshot,
                       config: config, canonical: canonical, configJSON: try Repository.encodeJSON(config))
    }

    /// Hex in lines of 32 bytes, each indented.
    static func hexLines(_ b: [UInt8], indent: String = "    ") -> String {
        stride(from: 0, to: b.count, by: 32).map { indent + hexString(Array(b[$0..<min(b.count, $0 + 32)])) }.joined(separator: "\n") + "\n"
    }

    /// Text lines, indented (an empty line stays empty).
    static func indented(_ bytes: [UInt8]) -> String {
        String(decoding: bytes, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).dropLast()
            .map { $0.allSatisfy { $0 == " " } ? "" : "    " + $0 }.joined(separator: "\n") + "\n"
    }

    static func render() throws -> String {
        let v = try build()
        func label(_ l: String) -> String { "  \"\(l)\"" + String(repeating: " ", count: max(1, 27 - l.count)) }
        var o = "Inputs (fixed here; random in a repository)\n"
        o += "  master key          \(hexString(master))\n"
        o += "  repository id       \(hexString(repositoryID))   (config `id`)\n"
        o += "  passphrase          \"correct horse battery staple\" (UTF-8, 28 bytes)\n"
        o += "  key file salt       \(hexString(salt))\n"
        o += "  nonces              key file \(hexString(keyNonce)), blob \(hexString(blobNonce)),\n"
        o += "                      delta \(hexString(deltaNonce)), snapshot \(hexString(snapshotNonce))\n\n"
        o += "Subkeys = HKDF-SHA256(IKM = master key, salt = repository id, info = label)\n"
        for l in [RepositoryCrypto.Label.blobID, RepositoryCrypto.Label.blobSeal, RepositoryCrypto.Label.snapshotSeal, RepositoryCrypto.Label.configMAC] {
            o += label(l) + hexString(subkey(l)) + "\n"
        }
        let gear = subkey(RepositoryCrypto.Label.gear, 2048)
        o += label(RepositoryCrypto.Label.gear) + "(L = 2048) " + hexString(Array(gear.prefix(16))) + " …\n"
        let words = crypto.gearWords
        o += "    gear[0] = 0x\(String(format: "%016llx", words[0])), gear[1] = 0x\(String(format: "%016llx", words[1])), gear[255] = 0x\(String(format: "%016llx", words[255]))\n\n"
        let helloID = HMACKey(subkey(RepositoryCrypto.Label.blobID)).mac(hello)
        o += "Blob ids = HMAC-SHA256(blob-id key, plaintext)\n"
        o += "  \"hello\\n\"           \(hexString(helloID))\n"
        o += "    (its plain SHA-256, the id in versions 1-2: \(SHA256Hasher.hash(hello).hex))\n"
        o += "  base (\(base.count) bytes)    \(v.baseID.hex)\n"
        o += "  target (\(target.count) bytes)  \(v.deltaID.hex)\n\n"
        o += "Sealed blob \"hello\\n\", compression 0, raw length 6: stored length 34 (6 + 28)\n"
        o += "  AAD (\(v.blobAAD.count) bytes)\n" + hexLines(v.blobAAD)
        o += "  Nonce(12)           \(hexString(Array(v.sealedBlob[0..<12])))\n"
        o += "  ciphertext(6)       \(hexString(Array(v.sealedBlob[12..<18])))\n"
        o += "  Tag(16)             \(hexString(Array(v.sealedBlob[18...])))\n\n"
        o += "Sealed delta blob: target on base, compression 2, raw length \(target.count); program of \(v.program.count) bytes,\n"
        o += "stored length \(v.sealedDelta.count) (32 + \(v.program.count) + 28)\n"
        o += "  program             \(hexString(v.program))\n"
        o += "  AAD (\(v.deltaAAD.count) bytes)\n" + hexLines(v.deltaAAD)
        o += "  stored bytes = BaseID(32) || Nonce(12) || ciphertext || Tag(16)\n" + hexLines(v.sealedDelta) + "\n"
        o += "Sealed snapshot file (\(v.sealedSnapshot.count) bytes; its JSON is \(v.snapshotJSON.count) bytes)\n"
        o += "  snapshot JSON\n" + indented(v.snapshotJSON)
        o += "  \"ACCSNAP3\" || Time  \(hexString(Array(v.sealedSnapshot[0..<16])))   (Time \(v.snapshotTime) = 2026-12-03T12:00:00Z)\n"
        o += "  Nonce(12)           \(hexString(Array(v.sealedSnapshot[16..<28])))\n"
        o += "  ciphertext\n" + hexLines(Array(v.sealedSnapshot[28..<(v.sealedSnapshot.count - 16)]))
        o += "  Tag(16)             \(hexString(Array(v.sealedSnapshot.suffix(16))))\n"
        o += "  file name           \(SHA256Hasher.hash(v.sealedSnapshot).hex)\n\n"
        o += "Config: canonical text (\(v.canonical.utf8.count) bytes, each line ending in \\n)\n"
        o += v.canonical.split(separator: "\n").map { "    " + $0 }.joined(separator: "\n") + "\n"
        o += "  mac = HMAC-SHA256(config-mac key, canonical text)\n    \(v.config.mac ?? "")\n"
        o += "  config file\n" + indented(v.configJSON) + "\n"
        o += "Key file (scrypt N = 16384, r = 8, p = 1; new key files use N = 131072)\n"
        o += "  wrapping key = scrypt(passphrase, salt, N, r, p, 32)\n    \(hexString(v.wrappingKey))\n"
        o += "  AAD = \"ACCORDKY\" || repository id\n" + hexLines(Array("ACCORDKY".utf8) + repositoryID)
        o += "  key file keys/\(SHA256Hasher.hash(v.keyFile).hex)\n"
        o += indented(v.keyFile)
        return o
    }

    // MARK: Paths

    static var updating: Bool { ProcessInfo.processInfo.environment["ACCORD_UPDATE_GOLDEN"] == "1" }
    static var testsDirectory: URL { URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent() }
    static var sourceGoldenURL: URL { testsDirectory.appendingPathComponent("Golden/\(goldenFile)") }
    static var formatMdURL: URL {
        testsDirectory.deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("FORMAT.md")
    }

    /// The lines between "```text" (after the start marker) and "```" (before the end marker).
    static func block(in doc: String) -> Range<String.Index>? {
        guard let start = doc.range(of: blockStart),
              let fence = doc.range(of: "\n```text\n", range: start.upperBound..<doc.endIndex),
              let end = doc.range(of: "\n```\n" + blockEnd, range: fence.upperBound..<doc.endIndex) else { return nil }
        return fence.upperBound..<doc.index(after: end.lowerBound)
    }
}
