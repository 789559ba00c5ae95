import Foundation
import AccordRuntime

/// `keys/<id>`: the repository's master key wrapped under a key derived from
/// a passphrase with scrypt (FORMAT.md, "Key files"). Several key files wrap
/// the same master key (one per passphrase). A key file is untrusted input:
/// its KDF parameters are checked against a floor and a ceiling before any
/// work is done for them.
public struct KeyFile: Codable, Equatable, Sendable {
    public struct KDF: Codable, Equatable, Sendable {
        public var algorithm: String
        public var N: UInt64
        public var r: UInt64
        public var p: UInt64
        /// 32 random bytes, hex.
        public var salt: String
    }

    public var version: Int
    public var created: String
    public var host: String
    public var username: String
    /// The config's `id`: a key file opens only its own repository.
    public var repository: String
    public var kdf: KDF
    /// Hex of `Nonce(12) || AES-256-GCM(master key) || Tag(16)`.
    public var sealed: String

    /// The largest key file a reader reads.
    public static let maxFileSize = 64 << 10
    /// Bounds on the scrypt parameters a reader accepts (and a writer uses).
    public static let nRange: ClosedRange<UInt64> = (1 << 14)...(1 << 20)
    public static let rRange: ClosedRange<UInt64> = 1...16
    public static let pRange: ClosedRange<UInt64> = 1...4
    public static let maxMemory: UInt64 = 1 << 30
    /// New key files: N = 2^17, r = 8, p = 1 (~0.4 s and 128 MiB here).
    public static let defaultN: UInt64 = 1 << 17
    /// `ACCORD_SCRYPT_N` chooses N for new key files (tests, slow machines), within `nRange`.
    public static let costVariable = "ACCORD_SCRYPT_N"
    static let aadDomain = Array("ACCORDKY".utf8)

    /// N for a new key file: `$ACCORD_SCRYPT_N` when it is a power of two in range, else the default.
    public static func chosenN() throws -> UInt64 {
        guard let s = Sys.environment(costVariable), !s.isEmpty else { return defaultN }
        guard let n = UInt64(s), n.nonzeroBitCount == 1, nRange.contains(n) else {
            throw KeyError.badCost("$\(costVariable) is \(s); it must be a power of two from \(nRange.lowerBound) to \(nRange.upperBound)")
        }
        return n
    }

    /// The KDF of a machine secret (see `isMachineSecret`).
    public static let machineKDF = "hkdf-sha256"

    /// Is `passphrase` a 256-bit machine secret: exactly 64 lowercase hex
    /// digits, what accord generates for the AE5 key file? Such a secret
    /// cannot be guessed, so stretching it buys nothing: its key file uses
    /// HKDF-SHA256 instead of scrypt, and opening costs microseconds, not
    /// ~0.4 s and 128 MiB. Every other passphrase gets scrypt.
    public static func isMachineSecret(_ passphrase: [UInt8]) -> Bool {
        passphrase.count == 64 && passphrase.allSatisfy { ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) }
    }

    /// Wraps `master` under `passphrase` for the repository with id `repository` (hex).
    public static func create(master: [UInt8], passphrase: [UInt8], repository: String, n: UInt64? = nil) throws -> KeyFile {
        guard !passphrase.isEmpty else { throw KeyError.emptyPassphrase }
        let salt = Crypto.randomBytes(32)
        let kdf = isMachineSecret(passphrase) ? KDF(algorithm: machineKDF, N: 0, r: 0, p: 0, salt: hexString(salt))
            : KDF(algorithm: "scrypt", N: try n ?? chosenN(), r: 8, p: 1, salt: hexString(salt))
        var f = KeyFile(version: 1, created: Timestamp.now().rfc3339, host: Sys.hostname, username: Sys.userName,
                        repository: repository, kdf: kdf, sealed: "")
        let wrap = AESGCMKey(try f.derive(passphrase))
        f.sealed = hexString(try wrap.seal(master, aad: f.aad()))
        return f
    }

    func aad() throws -> [UInt8] {
        guard let id = ID(hex: repository) else { throw KeyError.corrupt("field `repository` is not 64 lowercase hex digits") }
        return Self.aadDomain + id.bytes
    }

    func derive(_ passphrase: [UInt8]) throws -> [UInt8] {
        guard let salt = hexBytes(kdf.salt), salt.count == 32 else { throw KeyError.corrupt("field `kdf.salt` is not 64 hex digits") }
        if kdf.algorithm == Self.machineKDF {
            // Only a machine secret opens such a file: a typed passphrase never meets an unstretched KDF.
            guard Self.isMachineSecret(passphrase) else { throw KeyError.wrongPassphrase }
            return Crypto.hkdf(key: passphrase, salt: salt, info: Array("accord key file".utf8), length: 32)
        }
        return try Crypto.scrypt(passphrase: passphrase, salt: salt, n: kdf.N, r: kdf.r, p: kdf.p, length: 32)
    }

    /// The master key, if `passphrase` is this file's; `KeyError.wrongPassphrase` if not.
    public func unwrap(passphrase: [UInt8]) throws -> [UInt8] {
        if let p = problem() { throw KeyError.corrupt(p) }
        guard let sealedBytes = hexBytes(sealed), sealedBytes.count == RepositoryCrypto.masterKeySize + AESGCMKey.overhead else {
            throw KeyError.corrupt("field `sealed` is not \(2 * (RepositoryCrypto.masterKeySize + AESGCMKey.overhead)) hex digits")
        }
        let wrap = AESGCMKey(try derive(passphrase))
        do { return try wrap.open(sealedBytes, aad: try aad()) } catch CryptoError.authenticationFailed {
            throw KeyError.wrongPassphrase
        }
    }

    /// The first field outside what a reader accepts, or nil.
    public func problem() -> String? {
        if version != 1 { return "field `version` is \(version); this accord reads key files of version 1" }
        if kdf.algorithm == Self.machineKDF {
            if kdf.N != 0 || kdf.r != 0 || kdf.p != 0 { return "fields `kdf.N`, `kdf.r`, `kdf.p` must be 0 for \(Self.machineKDF)" }
            return ID(hex: repository) == nil ? "field `repository` is not 64 lowercase hex digits" : sealProblem()
        }
        if kdf.algorithm != "scrypt" { return "field `kdf.algorithm` is \"\(kdf.algorithm.prefix(40))\"; it must be \"scrypt\" or \"\(Self.machineKDF)\"" }
        if !Self.nRange.contains(kdf.N) || kdf.N.nonzeroBitCount != 1 {
            return "field `kdf.N` is \(kdf.N); it must be a power of two from \(Self.nRange.lowerBound) to \(Self.nRange.upperBound)"
        }
        if !Self.rRange.contains(kdf.r) { return "field `kdf.r` is \(kdf.r); it must be \(Self.rRange.lowerBound)-\(Self.rRange.upperBound)" }
        if !Self.pRange.contains(kdf.p) { return "field `kdf.p` is \(kdf.p); it must be \(Self.pRange.lowerBound)-\(Self.pRange.upperBound)" }
        if 128 * kdf.N * kdf.r * kdf.p > Self.maxMemory { return "its scrypt parameters need more than 1 GiB of memory" }
        if ID(hex: repository) == nil { return "field `repository` is not 64 lowercase hex digits" }
        return sealProblem()
    }

    /// The salt and the sealed key must decode to their sizes (checked for both KDFs).
    func sealProblem() -> String? {
        if hexBytes(kdf.salt)?.count != 32 { return "field `kdf.salt` is not 64 lowercase hex digits" }
        if hexBytes(sealed)?.count != RepositoryCrypto.masterKeySize + AESGCMKey.overhead {
            return "field `sealed` is not \(2 * (RepositoryCrypto.masterKeySize + AESGCMKey.overhead)) lowercase hex digits"
        }
        return nil
    }

    public func encode() throws -> [UInt8] {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return Array(try e.encode(self)) + [0x0a]
    }

    /// Decodes and checks a key file's bytes (at most `maxFileSize`).
    public static func decode(_ bytes: [UInt8], name: String) throws -> KeyFile {
        guard bytes.count <= maxFileSize else { throw KeyError.unreadable(name, "it is \(bytes.count) bytes, more than a key file can be (\(maxFileSize))") }
        let f: KeyFile
        do { f = try JSONDecoder().decode(KeyFile.self, from: Data(bytes)) } catch {
            throw KeyError.unreadable(name, "not key file JSON")
        }
        if let p = f.problem() { throw KeyError.unreadable(name, p) }
        return f
    }
}

public enum KeyError: Error, CustomStringConvertible, Equatable {
    case wrongPassphrase
    case emptyPassphrase
    case corrupt(String)
    case unreadable(String, String)
    case badCost(String)
    case noKeyFiles(String)
    case noKeyOpens(String, tried: Int, source: String)
    case noPassphrase(String)
    case lastKey(String)
    case keyNotFound(String)
    case plainRepository(String, source: String)
    case configMAC(String)

    public var description: String {
        switch self {
        case .wrongPassphrase: return "wrong passphrase"
        case .emptyPassphrase: return "the passphrase is empty"
        case .corrupt(let r): return "key file is corrupt: \(r)"
        case .unreadable(let name, let r): return "key file \(name) cannot be used: \(r)"
        case .badCost(let r): return r
        case .noKeyFiles(let repo): return "repository \(repo) is encrypted but has no readable key file in keys/: restore keys/ from a copy of the repository"
        case .noKeyOpens(let repo, let tried, let source):
            return "wrong passphrase for repository \(repo): none of its \(tried) key file(s) opens with the passphrase from \(source)"
        case .noPassphrase(let repo): return "repository \(repo) is encrypted: give its passphrase with --password-file FILE, $ACCORD_PASSWORD_FILE or $ACCORD_PASSWORD_COMMAND"
        case .lastKey(let id): return "key \(id) is the repository's last key file: add another (`accord key add`) before removing it"
        case .keyNotFound(let id): return "no key file matches \(id): `accord key list` shows them"
        case .plainRepository(let repo, let source):
            return "repository \(repo) is not encrypted (its config says format version 1 or 2), but a key is configured (\(source)): "
                + "its config may have been replaced to downgrade it. If it really is a plain repository, run without a key configured"
        case .configMAC(let path): return "config \(path) does not match its MAC under the repository key: it was changed or replaced; restore it from a copy of the repository"
        }
    }
}
