import XCTest
import AccordCore

/// The primitives against published test vectors: a wrong constant or a
/// misused libcrypto call fails here, not in a repository.
final class CryptoPrimitiveTests: XCTestCase {
    func hex(_ s: String) -> [UInt8] { hexBytes(s)! }

    func testHMACSHA256MatchesRFC4231() {
        // RFC 4231 test case 2.
        XCTAssertEqual(hexString(HMACKey(Array("Jefe".utf8)).mac(Array("what do ya want for nothing?".utf8))),
                       "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        // Test case 6: a key longer than a block is hashed first.
        XCTAssertEqual(hexString(HMACKey([UInt8](repeating: 0xaa, count: 131)).mac(Array("Test Using Larger Than Block-Size Key - Hash Key First".utf8))),
                       "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54")
    }

    func testHKDFMatchesRFC5869() {
        // RFC 5869 test case 1.
        let okm = Crypto.hkdf(key: [UInt8](repeating: 0x0b, count: 22), salt: hex("000102030405060708090a0b0c"),
                              info: hex("f0f1f2f3f4f5f6f7f8f9"), length: 42)
        XCTAssertEqual(hexString(okm), "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865")
    }

    func testScryptMatchesRFC7914() throws {
        // RFC 7914 section 12, second vector.
        let out = try Crypto.scrypt(passphrase: Array("password".utf8), salt: Array("NaCl".utf8), n: 1024, r: 8, p: 16, length: 64)
        XCTAssertEqual(hexString(out), "fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b3731622eaf30d92e22a3886ff109279d9830dac727afb94a83ee6d8360cbdfa2cc0640")
    }

    func testAESGCMMatchesTheNISTVectorAndRejectsAnyChange() throws {
        // McGrew-Viega test case 14 (AES-256): zero key, zero IV, 16 zero bytes.
        let k = AESGCMKey([UInt8](repeating: 0, count: 32))
        var sealed: [UInt8] = []
        try [UInt8](repeating: 0, count: 16).withUnsafeBytes { p in
            try [UInt8]().withUnsafeBytes { try k.seal(p, aad: $0, nonce: [UInt8](repeating: 0, count: 12), appendingTo: &sealed) }
        }
        XCTAssertEqual(hexString(sealed.dropFirst(12)), "cea7403d4d606b6e074ec5d3baf39d18" + "d0d1c8a799996bf0265b98b5d48ab919")
        XCTAssertEqual(try k.open(sealed, aad: []), [UInt8](repeating: 0, count: 16))
        for i in [0, 12, 20, sealed.count - 1] {
            var bad = sealed; bad[i] ^= 1
            XCTAssertThrowsError(try k.open(bad, aad: [])) { XCTAssertEqual($0 as? CryptoError, .authenticationFailed) }
        }
        XCTAssertThrowsError(try k.open(sealed, aad: [1])) { XCTAssertEqual($0 as? CryptoError, .authenticationFailed) }
        XCTAssertThrowsError(try k.open(Array(sealed.prefix(27)), aad: [])) { XCTAssertEqual($0 as? CryptoError, .tooShort(27)) }
        // Fresh nonces: sealing the same bytes twice gives different output.
        XCTAssertNotEqual(try k.seal([1, 2, 3], aad: []), try k.seal([1, 2, 3], aad: []))
    }

    func testAKeyFileUnwrapsOnlyWithItsPassphraseAndForItsRepository() throws {
        let master = Crypto.randomBytes(32), repo = hexString(Crypto.randomBytes(32))
        let f = try KeyFile.create(master: master, passphrase: Array("pw".utf8), repository: repo, n: 1 << 14)
        XCTAssertEqual(try f.unwrap(passphrase: Array("pw".utf8)), master)
        XCTAssertThrowsError(try f.unwrap(passphrase: Array("pW".utf8))) { XCTAssertEqual($0 as? KeyError, .wrongPassphrase) }
        var moved = f
        moved.repository = hexString(Crypto.randomBytes(32))
        XCTAssertThrowsError(try moved.unwrap(passphrase: Array("pw".utf8))) { XCTAssertEqual($0 as? KeyError, .wrongPassphrase) }
        XCTAssertEqual(try KeyFile.decode(try f.encode(), name: "k"), f)
    }
}

/// A machine secret (64 hex digits, 256 bits) is wrapped with HKDF, not scrypt;
/// a typed passphrase never opens such a key file, and always gets scrypt.
final class MachineSecretKeyFileTests: XCTestCase {
    func testAMachineSecretGetsHKDFAndOnlyItOpensTheFile() throws {
        let master = Crypto.randomBytes(32), repo = hexString(Crypto.randomBytes(32))
        let secret = Array(hexString(Crypto.randomBytes(32)).utf8)
        XCTAssertTrue(KeyFile.isMachineSecret(secret))
        let f = try KeyFile.create(master: master, passphrase: secret, repository: repo)
        XCTAssertEqual(f.kdf.algorithm, KeyFile.machineKDF)
        XCTAssertEqual(try f.unwrap(passphrase: secret), master)
        var other = secret; other[0] = other[0] == 0x61 ? 0x62 : 0x61
        XCTAssertThrowsError(try f.unwrap(passphrase: other)) { XCTAssertEqual($0 as? KeyError, .wrongPassphrase) }
        // Upper-case hex or another length is a passphrase: scrypt.
        let typed = Array(String(decoding: secret, as: UTF8.self).uppercased().utf8)
        XCTAssertFalse(KeyFile.isMachineSecret(typed))
        XCTAssertEqual(try KeyFile.create(master: master, passphrase: typed, repository: repo, n: 1 << 14).kdf.algorithm, "scrypt")
        // An hkdf key file with scrypt cost fields is refused.
        var bad = f; bad.kdf.N = 1 << 14
        XCTAssertThrowsError(try KeyFile.decode(try bad.encode(), name: "k"))
    }
}
