import CLibcrypto
import Foundation

/// The cryptographic primitives of format version 3 (FORMAT.md, "Encryption"),
/// all from OpenSSL's libcrypto: HMAC-SHA256, HKDF-SHA256 (RFC 5869), scrypt
/// (RFC 7914), random bytes and AES-256-GCM. Nothing here knows repositories.
public enum CryptoError: Error, CustomStringConvertible, Equatable {
    /// Authentication failed: wrong key, or the sealed bytes (or what they are bound to) changed.
    case authenticationFailed
    case tooShort(Int)
    case libcrypto(String)

    public var description: String {
        switch self {
        case .authenticationFailed: return "authentication failed (wrong key, or the bytes were changed)"
        case .tooShort(let n): return "sealed data of \(n) bytes is shorter than a nonce and a tag"
        case .libcrypto(let what): return "libcrypto failed: \(what)"
        }
    }
}

public enum Crypto {
    /// Cryptographically strong random bytes (OpenSSL's DRBG, seeded by the kernel; fork-safe).
    public static func randomBytes(_ count: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        if count > 0 {
            let ok = out.withUnsafeMutableBufferPointer { RAND_bytes($0.baseAddress, Int32(count)) }
            precondition(ok == 1, "RAND_bytes failed: the system has no entropy source")
        }
        return out
    }

    /// HKDF-SHA256 (RFC 5869): extract with `salt`, expand with `info` to `length` bytes (≤ 8160).
    public static func hkdf(key ikm: [UInt8], salt: [UInt8], info: [UInt8], length: Int) -> [UInt8] {
        precondition(length > 0 && length <= 255 * 32, "HKDF output length out of range")
        let prk = HMACKey(salt.isEmpty ? [UInt8](repeating: 0, count: 32) : salt).mac(ikm)
        let expander = HMACKey(prk)
        var out: [UInt8] = []
        out.reserveCapacity(length + 32)
        var t: [UInt8] = []
        var i: UInt8 = 1
        while out.count < length {
            t = expander.mac(t + info + [i])
            out += t
            i &+= 1
        }
        return Array(out.prefix(length))
    }

    /// scrypt (RFC 7914) of `passphrase` through `EVP_PBE_scrypt`, with the
    /// memory cap passed explicitly (OpenSSL's default cap of 32 MiB refuses
    /// N = 2^15 and above at r = 8).
    public static func scrypt(passphrase: [UInt8], salt: [UInt8], n: UInt64, r: UInt64, p: UInt64, length: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: length)
        let maxmem = 128 * n * r * p + 128 * r * p + (16 << 20)
        // A non-empty buffer: an empty passphrase must not pass a null pointer.
        let pass = passphrase.map { CChar(bitPattern: $0) } + [0]
        let ok = pass.withUnsafeBufferPointer { pw in
            salt.withUnsafeBufferPointer { s in
                out.withUnsafeMutableBufferPointer { o in
                    EVP_PBE_scrypt(pw.baseAddress, passphrase.count, s.baseAddress, s.count, n, r, p, maxmem, o.baseAddress, length)
                }
            }
        }
        guard ok == 1 else { throw CryptoError.libcrypto("scrypt N=\(n) r=\(r) p=\(p)") }
        return out
    }

    /// Compares two byte strings in time independent of where they differ.
    public static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var d: UInt8 = 0
        for i in 0..<a.count { d |= a[i] ^ b[i] }
        return d == 0
    }
}

/// An HMAC-SHA256 key with its inner and outer SHA-256 states computed once:
/// a MAC then costs the message's SHA-256 plus two blocks, and no allocation.
/// Immutable after `init`, so any number of threads may use one.
public struct HMACKey: Sendable {
    private let inner: SHA256_CTX
    private let outer: SHA256_CTX

    public init(_ key: [UInt8]) {
        var k = key.count > 64 ? SHA256Hasher.hash(key).bytes : key
        k += [UInt8](repeating: 0, count: 64 - k.count)
        var i = SHA256_CTX(), o = SHA256_CTX()
        SHA256_Init(&i); SHA256_Init(&o)
        let ipad = k.map { $0 ^ 0x36 }, opad = k.map { $0 ^ 0x5c }
        SHA256_Update(&i, ipad, 64)
        SHA256_Update(&o, opad, 64)
        inner = i; outer = o
    }

    /// HMAC-SHA256 of `data`, as an id.
    @inline(__always)
    public func mac(_ data: UnsafeRawBufferPointer) -> ID {
        var c = inner
        if data.count > 0 { SHA256_Update(&c, data.baseAddress, data.count) }
        var d: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        return withUnsafeMutableBytes(of: &d) { p in
            let b = p.baseAddress!.assumingMemoryBound(to: UInt8.self)
            SHA256_Final(b, &c)
            var o = outer
            SHA256_Update(&o, b, 32)
            SHA256_Final(b, &o)
            return ID(bytes: p.baseAddress!)
        }
    }

    public func mac(_ data: [UInt8]) -> [UInt8] { data.withUnsafeBytes { mac($0) }.bytes }
}
